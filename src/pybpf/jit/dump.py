"""Dump: a compiled program's native code as ``bpftool prog dump jited`` shows it.

:func:`jited_functions` parses the assembly LLVM prints for a :class:`JitProgram`
(:meth:`~pybpf.jit.JitProgram.assembly`, AT&T syntax on x86 as bpftool prints it) into
functions of instructions, without assembler directives and comments. :func:`dump_jited`
formats them as text (``name:`` then one instruction a line, jump-target labels kept)
or as bpftool's ``-j`` records (``[{"name", "insns": [{"operation", "operands"}]}]``,
plus ``"label"`` on instructions that start a jump target). LLVM's assembly carries no
byte offsets, so instructions have no ``pc``.

Functions: ``pybpf_entry`` (the program; its eBPF functions are usually inlined into it,
the others stay as ``bpf_fn_<pc>``), and, with ``harness=True``, ``pybpf_repeat`` (the
native ``repeat`` loop). :func:`jit_listing` compiles instructions just to show them
(for ``pybpf disasm --jited``): ``lddw`` values never shape the code, so map
references need no maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pybpf.isa import Instruction

__all__ = ["JitedFunction", "jited_functions", "dump_jited", "jit_listing", "HARNESS"]

ENTRY_NAME = "pybpf_entry"
HARNESS = ("pybpf_repeat",)


@dataclass
class JitedFunction:
    """One native function: its name and ``(labels, operation, operands)`` instructions."""

    name: str
    insns: list[tuple[tuple[str, ...], str, tuple[str, ...]]] = field(default_factory=list)


def _operands(text: str) -> tuple[str, ...]:
    """Split AT&T operands at top-level commas (``8(%rax,%rbx,1), %rcx`` is two)."""
    out, depth, current = [], 0, []
    for char in text:
        if char == "," and depth == 0:
            out.append("".join(current).strip())
            current = []
            continue
        depth += char == "("
        depth -= char == ")"
        current.append(char)
    if "".join(current).strip():
        out.append("".join(current).strip())
    return tuple(out)


def jited_functions(assembly: str, *, harness: bool = False) -> list[JitedFunction]:
    """The functions of LLVM assembly text, directives and comments dropped: the entry
    first, then the eBPF functions LLVM kept, then (``harness``) the repeat loop."""
    functions: list[JitedFunction] = []
    current: JitedFunction | None = None
    labels: list[str] = []
    typed = {  # ELF assembly marks functions; data (the lddw table) is not one
        line.split(None, 1)[1].split(",")[0].strip()
        for line in assembly.splitlines()
        if line.strip().startswith(".type") and "@function" in line
    }
    for raw in assembly.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        stripped = line.strip()
        if not line[0].isspace() and stripped.endswith(":"):
            name = stripped[:-1]
            if name.startswith(".L"):
                if name.startswith(".Lfunc_end"):
                    current = None
                elif current is not None:
                    labels.append(name)
                continue
            labels = []
            if typed and name not in typed:
                current = None  # a data label
                continue
            current = JitedFunction(name)
            if harness or name not in HARNESS:
                functions.append(current)
            continue
        if current is None or stripped.startswith("."):
            continue  # directives (.p2align, .cfi_*, ...) and data
        operation, _, rest = stripped.partition("\t") if "\t" in stripped else (
            stripped.partition(" ")
        )  # fmt: skip
        current.insns.append((tuple(labels), operation.strip(), _operands(rest.strip())))
        labels = []
    order = {ENTRY_NAME: 0, **{name: 2 for name in HARNESS}}
    functions.sort(key=lambda fn: order.get(fn.name, 1))  # stable: eBPF functions by pc
    return [fn for fn in functions if fn.insns]


def dump_jited(assembly: str, *, json: bool = False, harness: bool = False) -> Any:
    """``assembly`` as bpftool's ``dump jited`` text, or its ``-j`` records."""
    functions = jited_functions(assembly, harness=harness)
    if json:
        records = []
        for fn in functions:
            insns = []
            for labels, operation, operands in fn.insns:
                insn: dict[str, Any] = {"operation": operation, "operands": list(operands)}
                if labels:
                    insn["label"] = labels[-1]
                insns.append(insn)
            records.append({"name": fn.name, "insns": insns})
        return records
    lines = []
    for fn in functions:
        lines.append(f"{fn.name}:")
        for labels, operation, operands in fn.insns:
            lines.extend(f"{label}:" for label in labels)
            lines.append(f"\t{operation:<8}{', '.join(operands)}".rstrip())
        lines.append("")
    return "\n".join(lines)


def jit_listing(
    insns: Sequence[Instruction],
    *,
    json: bool = False,
    debug_checks: bool = False,
    opt_level: int = 2,
    entry_registers: Sequence[int] = (1, 10),
    legacy_packet: bool = True,
    harness: bool = False,
) -> Any:
    """Compile ``insns`` (not run) and return :func:`dump_jited` of their native code.

    For ``pybpf disasm --jited``: load errors are the engines' (the load check);
    :class:`~pybpf.errors.NotSupportedError` (``feature="jit"``) without llvmlite.
    """
    from pybpf.jit.program import JitProgram

    with JitProgram(
        insns,
        debug_checks=debug_checks,
        opt_level=opt_level,
        entry_registers=entry_registers,
        legacy_packet=legacy_packet,
        lddw_resolver=lambda insn, pc: 0,  # values live in a table: the code is the same
        inline_maps=False,
        helpers={},
    ) as prog:
        return dump_jited(prog.assembly(), json=json, harness=harness)
