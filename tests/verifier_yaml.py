"""PREVAIL test cases: a reader of PREVAIL's YAML test files, its assembly syntax and constraints.

Test support for ``tests/test_verifier_yaml.py`` (``../shared/verifier-tests``). A case has
``pre`` constraints (the entry state, used as given), ``code`` blocks in PREVAIL's syntax
(llvm-objdump's plus ``assume``, ``map_fd``, ``map_val``, ``callx``, ``s8=``, ...),
``options`` and the expected ``messages``. :func:`load_cases` reads a file;
:func:`run_case` verifies one case with :func:`pybpf.verifier.analyze` and returns our
diagnostics. Instructions are numbered one per line, as PREVAIL numbers them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pybpf.maptypes import MapType
from pybpf.progtypes.contexts import ContextLayout, Field, FieldKind
from pybpf.verifier import MapDescriptor, Options, ProgramInfo, analyze, ir
from pybpf.verifier.domains.stack import cell_name
from pybpf.verifier.domains.state import State
from pybpf.verifier.domains.types import ADDRESSED, ALL, T, parse_type
from pybpf.verifier.values import const_pair

__all__ = ["Case", "load_cases", "parse_program", "state_from_constraints", "run_case", "TEST_INFO"]

# PREVAIL's test platform: a 64-byte context with data at 0 and data_end at 4, one map.
TEST_CONTEXT = ContextLayout(
    "prevail_test_ctx",
    64,
    (
        Field("data", 0, 4, kind=FieldKind.PACKET),
        Field("data_end", 4, 4, kind=FieldKind.PACKET_END),
    ),
)
TEST_MAP = MapDescriptor(fd=0, type=int(MapType.ARRAY), key_size=4, value_size=4, max_entries=4)
TEST_INFO = ProgramInfo(context=TEST_CONTEXT, privileged=False, default_map=TEST_MAP)


# Cases whose own code says PREVAIL's diagnostic is wrong ("this should be safe to
# dereference but the verifier fails it"); pybpf, which assumes a branch's condition on
# each joined path apart (verifier.fixpoint), proves them, as Linux does.
PREVAIL_FALSE_ALARMS = {("jump.yaml", "lost implications in correlated branches")}


@dataclass
class Case:
    """One test case of a PREVAIL YAML file."""

    file: str
    name: str
    pre: list[str]
    code: dict[str, str]
    options: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    @property
    def expects_error(self) -> bool:
        """PREVAIL reported a diagnostic other than the unreachable-code warning (and the
        case does not itself call that diagnostic PREVAIL's false alarm)."""
        if (self.file, self.name) in PREVAIL_FALSE_ALARMS:
            return False
        return any("Code becomes unreachable" not in m for m in self.messages)

    @property
    def skip_reason(self) -> str | None:
        """Why pybpf does not run this case, or ``None``."""
        if "big_endian" in self.options:
            return "big_endian: pybpf models little-endian targets only"
        if "observe" in self.raw or "expected-exception" in self.raw:
            return "observe: queries PREVAIL's invariants, not a safety verdict"
        return None


def load_cases(path: Path) -> list[Case]:
    """Every case of one YAML file."""
    out = []
    with open(path) as fh:
        for doc in yaml.safe_load_all(fh):
            if not doc:
                continue
            out.append(
                Case(
                    file=path.name,
                    name=str(doc.get("test-case")),
                    pre=[str(c) for c in doc.get("pre") or []],
                    code={str(k): str(v) for k, v in (doc.get("code") or {}).items()},
                    options=[str(o) for o in doc.get("options") or []],
                    messages=[str(m) for m in doc.get("messages") or []],
                    raw=doc,
                )
            )
    return out


# ---- instructions ------------------------------------------------------------------------------
_REG = r"([rw])(\d+)"
_NUM = r"(-?(?:0x[0-9a-fA-F]+|\d+))"
_BINOPS = {op.value: op for op in ir.BinOp}
_CONDOPS = {op.value: op for op in ir.CondOp}
_ATOMIC = {op.value: op for op in ir.AtomicOp}
_UNOPS = {f"{k}{b}": ir.UnOp[f"{k.upper()}{b}"] for k in ("be", "le", "swap") for b in (16, 32, 64)}


class ParseError(ValueError):
    """A line of PREVAIL assembly pybpf cannot read."""


def _num(text: str) -> int:
    return int(text, 0)


def _operand(text: str) -> int | ir.Imm:
    text = text.strip()
    m = re.fullmatch(_REG, text)
    if m:
        return int(m.group(2))
    return ir.Imm(_num(text))


def _access(text: str) -> tuple[int, int, bool, int]:
    m = re.fullmatch(r"\*\(([us])(8|16|32|64) \*\)\(r(\d+) *([+-]) *(\d+)\)", text.strip())
    if not m:
        raise ParseError(f"bad memory operand {text!r}")
    offset = int(m.group(5)) * (1 if m.group(4) == "+" else -1)
    return int(m.group(3)), offset, m.group(1) == "s", int(m.group(2)) // 8


def _condition(text: str) -> ir.Condition:
    m = re.fullmatch(rf"{_REG} +(\S+) +(\S+)", text.strip())
    if not m:
        raise ParseError(f"bad condition {text!r}")
    op = m.group(3)
    is64 = m.group(1) == "r"
    if op.startswith("w"):
        op, is64 = op[1:], False
    right = _operand(m.group(4).replace("w", "r", 1) if m.group(4).startswith("w") else m.group(4))
    return ir.Condition(_CONDOPS[op], int(m.group(2)), right, is64)


def parse_line(line: str, labels: dict[str, int]) -> ir.IrInstruction:
    """One instruction of PREVAIL's syntax (jump targets resolved through ``labels``)."""
    text = line.split(";", 1)[0].strip()
    target = re.search(r"<([^<>]+)>$", text)
    dest = labels[target.group(1)] if target else None
    if text == "exit":
        return ir.Exit()
    if m := re.fullmatch(r"goto <[^>]+>", text):
        return ir.Jmp(dest)
    if m := re.fullmatch(r"if (.+) goto <[^>]+>", text):
        return ir.Jmp(dest, _condition(m.group(1)))
    if m := re.fullmatch(r"assume (.+)", text):
        return ir.Assume(_condition(m.group(1)))
    if m := re.fullmatch(r"call <[^>]+>", text):
        return ir.CallLocal(dest)
    if m := re.fullmatch(rf"call {_NUM}", text):
        return ir.Call(_num(m.group(1)))
    if m := re.fullmatch(r"callx r(\d+)", text):
        return ir.Callx(int(m.group(1)))
    if m := re.fullmatch(r"lock (\*\([^)]*\)\([^)]*\)) (\S+) r(\d+)( fetch)?", text):
        base, offset, _, width = _access(m.group(1))
        op = _ATOMIC[m.group(2)]
        fetch = bool(m.group(4)) or op in (ir.AtomicOp.XCHG, ir.AtomicOp.CMPXCHG)
        return ir.Atomic(op, fetch, base, offset, width, int(m.group(3)))
    if m := re.fullmatch(r"(\*\([^)]*\)\([^)]*\)) *= *(\S+)", text):
        base, offset, _, width = _access(m.group(1))
        return ir.Mem(base, offset, width, _operand(m.group(2)), False)
    if m := re.fullmatch(r"r0 = \*\(u(8|16|32) \*\)skb\[(.+)\]", text):
        width = int(m.group(1)) // 8
        where = m.group(2).strip()
        if re.fullmatch(r"r\d+", where):
            return ir.Packet(width, 0, int(where[1:]))
        return ir.Packet(width, _num(where))
    m = re.fullmatch(rf"{_REG} *(\S*?=) *(.+)", text)
    if not m:
        raise ParseError(f"cannot read {line!r}")
    is64, dst, op, rhs = m.group(1) == "r", int(m.group(2)), m.group(3), m.group(4).strip()
    if op == "=":
        if rhs.startswith("*("):
            base, offset, signed, width = _access(rhs)
            return ir.Mem(base, offset, width, dst, True, signed)
        if mm := re.fullmatch(r"map_fd (\d+)", rhs):
            return ir.LoadMapFd(dst, int(mm.group(1)))
        if mm := re.fullmatch(r"map_by_idx\((\d+)\)", rhs):
            return ir.LoadMapByIndex(dst, int(mm.group(1)), False)
        if mm := re.fullmatch(r"mva\(map_by_idx\((\d+)\)\) \+ (\d+)", rhs):
            return ir.LoadMapByIndex(dst, int(mm.group(1)), True, int(mm.group(2)))
        if mm := re.fullmatch(r"map_val\((\d+)\) \+ (\d+)", rhs):
            return ir.LoadMapValue(dst, int(mm.group(1)), int(mm.group(2)))
        if mm := re.fullmatch(rf"- *{_REG}", rhs):
            return ir.Un(ir.UnOp.NEG, dst, is64)
        if mm := re.fullmatch(rf"(\w+) {_REG}", rhs):
            return ir.Un(_UNOPS[mm.group(1)], dst, True)
        if mm := re.fullmatch(rf"{_NUM}ll", rhs):
            return ir.Bin(ir.BinOp.MOV, dst, ir.Imm(_num(mm.group(1))), True, lddw=True)
    if op not in _BINOPS:
        raise ParseError(f"unknown operation {op!r} in {line!r}")
    src = _operand(rhs.replace("w", "r", 1) if rhs.startswith("w") else rhs)
    return ir.Bin(_BINOPS[op], dst, src, is64)


def parse_program(code: dict[str, str]) -> list[tuple[int, ir.IrInstruction]]:
    """The blocks of a case, in order, one pc per line."""
    lines: list[str] = []
    labels: dict[str, int] = {}
    for label, block in code.items():
        labels[label.strip("<>")] = len(lines)
        lines.extend(ln for ln in block.splitlines() if ln.split(";", 1)[0].strip())
    return [(pc, parse_line(line, labels)) for pc, line in enumerate(lines)]


# ---- constraints -------------------------------------------------------------------------------
def _interval(text: str) -> tuple[int | float, int | float]:
    text = text.strip()
    if text.startswith("["):
        lo, hi = (t.strip() for t in text[1:-1].split(","))
        low = -float("inf") if lo == "-oo" else int(lo)
        return low, (float("inf") if hi == "+oo" else int(hi))
    return int(text), int(text)


def _var(name: str) -> str:
    name = name.strip()
    m = re.fullmatch(r"s\[(\d+)\.\.\.(\d+)\]\.(\w+)", name)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        return f"{cell_name(lo, hi - lo + 1)}.{m.group(3)}"
    return name


def state_from_constraints(constraints: list[str]) -> State:
    """The abstract state PREVAIL builds from ``pre`` (unmentioned registers are unknown)."""
    s = State()
    values: list[tuple[str, str]] = []
    equal: list[tuple[str, str]] = []
    for c in constraints:
        c = c.strip()
        if m := re.fullmatch(r"s\[(\d+)\.\.\.(\d+)\]\.type=(\w+)", c):
            lo, hi = int(m.group(1)), int(m.group(2))
            if parse_type(m.group(3)) == T.NUM:
                s.stack.set_numeric(lo, hi + 1)
            continue
        if m := re.fullmatch(r"(r\d+)\.type *= *(r\d+)\.type", c):
            equal.append((m.group(1), m.group(2)))
            continue
        if m := re.fullmatch(r"(r\d+)\.type *in *\{(.*)\}", c):
            types = 0
            for name in m.group(2).split(","):
                types |= parse_type(name)
            s.set_type(m.group(1), types & s.type_of(m.group(1)))
            continue
        if m := re.fullmatch(r"(r\d+)\.type *= *(\w+)", c):
            s.set_type(m.group(1), parse_type(m.group(2)) & s.type_of(m.group(1)))
            continue
        values.append((c, ""))
    for a, b in equal:
        both = s.type_of(a) & s.type_of(b)
        s.set_type(a, both)
        s.set_type(b, both)
        s.teq[a] = s.teq[b] = hash((a, b))
    for c, _ in values:
        if m := re.fullmatch(r"(.+?)-(.+?)<=(-?\d+)", c):
            s.zone.add_le(_var(m.group(1)), _var(m.group(2)), int(m.group(3)))
            continue
        left, right = (t.strip() for t in c.split("=", 1))
        targets = [_var(left)]
        if m := re.fullmatch(r"(r\d+)\.[su]value", left):
            # PREVAIL gives pointers a value; pybpf gives them an address (0 is null)
            types = s.type_of(m.group(1))
            if types & ADDRESSED:
                targets = [f"{m.group(1)}.addr"] + (targets if types & T.NUM else [])
        for var in targets:
            _constrain(s, var, left, right)
    return s


def _constrain(s: State, var: str, left: str, right: str) -> None:
    if m := re.fullmatch(r"s\[(\d+)\.\.\.(\d+)\]\.\w+", left):
        lo, hi = int(m.group(1)), int(m.group(2))
        s.stack.cells[lo] = hi - lo + 1
        s.types.setdefault(cell_name(lo, hi - lo + 1), int(T.NUM))
    if m := re.fullmatch(r"([a-z_]+|r\d+\.\w+|s\[[^\]]+\]\.\w+)(?:([+-])(\d+))?", right):
        other = _var(m.group(1))
        if other.endswith("value") and var.endswith(".addr"):
            other = other.rsplit(".", 1)[0] + ".addr"
        k = int(m.group(3) or 0) * (-1 if m.group(2) == "-" else 1)
        s.zone.add_eq(var, other, k)
    else:
        lo, hi = _interval(right)
        s.zone.meet_interval(var, lo, hi)


def options_of(case: Case, prevail_model: bool = True) -> Options:
    """The analysis options a case asks for.

    With ``prevail_model`` the Linux rules PREVAIL's model lacks are off (``linux_rules``:
    reference tracking, refusing copies of never-written registers, ...), so verdicts compare
    like for like; without it pybpf's defaults apply.
    """
    return Options(
        termination="termination" in case.options,
        allow_division_by_zero="!allow_division_by_zero" not in case.options,
        strict="strict" in case.options,
        must_exit=False,
        linux_rules=not prevail_model,
    )


def _resolve(program: list[tuple[int, ir.IrInstruction]]) -> list[tuple[int, ir.IrInstruction]]:
    out = []
    for pc, ins in program:
        if isinstance(ins, ir.LoadMapByIndex) and ins.index == 0:
            ins = ir.LoadMapValue(ins.dst, 0, ins.offset) if ins.value else ir.LoadMapFd(ins.dst, 0)
        out.append((pc, ins))
    return out


def run_case(case: Case, prevail_model: bool = True) -> list[str]:
    """Our diagnostics for a case (empty when pybpf proves it safe)."""
    program = _resolve(parse_program(case.code))
    info = ProgramInfo(
        context=TEST_CONTEXT,
        privileged=False,
        default_map=TEST_MAP,
        options=options_of(case, prevail_model),
    )
    entry = state_from_constraints(case.pre)
    result = analyze(program, info, entry)
    return [str(d) for d in result.errors]


__all__ += ["ParseError", "parse_line", "options_of", "const_pair", "ALL"]
