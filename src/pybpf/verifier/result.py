"""Result: the verdict of one verification, its diagnostics and the invariants behind them.

Besides the verdict a :class:`Result` records what the loader needs: the stack depth the
program uses (deepest frame chain) and, per instruction that reads or writes the context,
the field offset and width (``ctx_accesses``), which the loader rewrites to the runtime's
own context layout.

A :class:`Diagnostic` names the instruction (``pc``, the CFG label such as ``0/11:12``
for an edge inside an inlined call, and the source line when BTF line info is known), the
assertion that failed in words, and the abstract values involved, e.g.
``21: Upper bound must be at most packet_size (valid_access(r1.offset+2, width=2) for
read) (r1 = packet+[14, 34])``. :class:`Result` collects them; ``raise_for_errors()``
turns a rejection into :class:`~pybpf.errors.VerifierError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pybpf.errors import VerifierError
from pybpf.verifier.domains.state import State
from pybpf.verifier.domains.types import OFFSET_KIND, T, format_types, single

__all__ = ["Diagnostic", "Result", "describe_register", "describe_state"]


def _bounds(state: State, var: str) -> str:
    lo, hi = state.zone.bounds(var)
    if lo == hi:
        return str(int(lo))
    left = "-oo" if lo == float("-inf") else str(int(lo))
    right = "+oo" if hi == float("inf") else str(int(hi))
    return f"[{left}, {right}]"


def describe_register(state: State, reg: int) -> str:
    """A short description of a register's abstract value (``packet+[14, 34]``, ``number 3``)."""
    loc = f"r{reg}"
    t = state.type_of(loc)
    one = single(t)
    if one is None:
        return format_types(t)
    if one == T.NUM:
        return f"number {_bounds(state, f'{loc}.svalue')}"
    kind = OFFSET_KIND.get(one)
    name = format_types(t)
    if kind is None:
        return name
    return f"{name}+{_bounds(state, f'{loc}.{kind}')}"


def _bound_text(lo: int | float, hi: int | float) -> str:
    if lo == hi:
        return str(int(lo))
    left = "-oo" if lo == float("-inf") else str(int(lo))
    right = "+oo" if hi == float("inf") else str(int(hi))
    return f"[{left}, {right}]"


def describe_state(state: State) -> list[str]:
    """The invariant as PREVAIL prints it: ``r1.type=packet``, ``r1.packet_offset=[0, 4]``,
    ``packet_size-r3.packet_offset<=-1``, ``s[504...511].type=number``; sorted."""
    if state.bottom:
        return ["_|_"]
    out = [f"{loc}.type={format_types(t)}" for loc, t in state.types.items()]
    out += [f"{v}={_bound_text(lo, hi)}" for v, (lo, hi) in state.zone.iv.items()]
    for x, row in state.zone.succ.items():
        out += [f"{x}-{y}<={k}" for y, k in row.items()]
    numeric, i = state.stack.numeric, 0
    while numeric >> i:
        if numeric >> i & 1:
            n = state.stack.numeric_run(i)
            out.append(f"s[{i}...{i + n - 1}].type=number")
            i += n
        else:
            i += 1
    return sorted(out)


@dataclass(frozen=True)
class Diagnostic:
    """One failed assertion.

    ``unsupported`` marks a construct pybpf does not model (a kfunc call, a helper without a
    transcribed prototype, ...): the program may be safe, pybpf cannot tell. Otherwise the
    diagnostic is a proven (or unprovable) safety violation.
    """

    label: str
    pc: int | None
    message: str
    values: str = ""
    line: int | None = None
    source: str = ""
    unsupported: bool = False

    def __str__(self) -> str:
        text = f"{self.label}: {self.message}"
        if self.values:
            text += f" ({self.values})"
        if self.source:
            text += f" ; {self.source}"
        return text

    def to_json(self) -> dict[str, Any]:
        """``{pc, label, message, line, unsupported}``."""
        return {
            "pc": self.pc,
            "label": self.label,
            "message": str(self),
            "line": self.line,
            "unsupported": self.unsupported,
        }


@dataclass
class Result:
    """The outcome of verifying one program."""

    errors: list[Diagnostic] = field(default_factory=list)
    instructions: int = 0
    # loop_bound: the most visits of any loop head when terminates (0: no loop), else None
    loop_bound: int | None = None
    program: str | None = None
    section: str | None = None
    invariants: Mapping[str, State] = field(default_factory=dict)
    stack_depth: int = 0
    ctx_accesses: Mapping[int, tuple[int, int, bool]] = field(default_factory=dict)
    # every loop (also in global functions and callbacks) is proven to run at most
    # Options.loop_limit times; false: an engine must keep an instruction budget
    terminates: bool = True

    @property
    def accepted(self) -> bool:
        """No assertion failed."""
        return not self.errors

    @property
    def unsupported(self) -> bool:
        """Rejected only for constructs pybpf does not model (every error is ``unsupported``)."""
        return bool(self.errors) and all(d.unsupported for d in self.errors)

    @property
    def verdict(self) -> str:
        """``"accept"`` or ``"reject"``."""
        return "accept" if self.accepted else "reject"

    def report(self) -> str:
        """Every diagnostic, one per line, then the verdict."""
        lines = [str(d) for d in self.errors]
        if self.accepted:
            bound = (
                f" (terminates within {self.loop_bound} loop iterations)" if self.loop_bound else ""
            )
            lines.append(f"PASS{bound}")
        else:
            lines.append(f"FAIL: {len(self.errors)} error(s)")
        return "\n".join(lines)

    def raise_for_errors(self) -> None:
        """Raise :class:`~pybpf.errors.VerifierError` (first error, full report) if rejected."""
        if self.accepted:
            return
        first = self.errors[0]
        text = f"{first.message} ({first.values})" if first.values else first.message
        raise VerifierError(
            text,
            report=self.report(),
            label=first.label,
            pc=first.pc,
            line=first.line,
            program=self.program,
            section=self.section,
        )

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON form of one program's result."""
        return {
            "program": self.program,
            "section": self.section,
            "verdict": self.verdict,
            "instructions": self.instructions,
            "loop_bound": self.loop_bound,
            "terminates": self.terminates,
            "errors": [d.to_json() for d in self.errors],
        }
