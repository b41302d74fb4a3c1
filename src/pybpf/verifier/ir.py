"""Verifier IR: the instruction forms the analysis reasons about, as plain frozen records.

Decoded :class:`~pybpf.isa.Instruction` objects are lowered to these (see
:mod:`pybpf.verifier.lower`), and so are PREVAIL's test programs, which add ``assume``.
The IR separates what the bit encoding mixes: ``Bin`` (ALU), ``Un`` (negation and byte
swaps), ``Mem`` (loads and stores), ``Atomic``, the three ``lddw`` pseudo loads, calls by
kind, ``Jmp`` (with an optional :class:`Condition`) and ``Assume``, which the CFG puts on
the two edges of every conditional jump. ``str()`` prints PREVAIL's syntax, which the
diagnostics quote.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "Imm",
    "BinOp",
    "UnOp",
    "CondOp",
    "Condition",
    "Bin",
    "Un",
    "LoadMapFd",
    "LoadMapValue",
    "LoadMapByIndex",
    "LoadFunc",
    "Mem",
    "AtomicOp",
    "Atomic",
    "Packet",
    "Call",
    "CallLocal",
    "Callx",
    "CallKfunc",
    "Exit",
    "Jmp",
    "MayGoto",
    "Assume",
    "Undefined",
    "Value",
    "IrInstruction",
]


@dataclass(frozen=True, slots=True)
class Imm:
    """An immediate operand (64-bit values are kept as Python ints, sign as written)."""

    value: int

    def __str__(self) -> str:
        return str(self.value)


Value = int | Imm  # a register number or an immediate


def _reg(r: int, is64: bool = True) -> str:
    return f"{'r' if is64 else 'w'}{r}"


def _val(v: Value, is64: bool = True) -> str:
    return str(v) if isinstance(v, Imm) else _reg(v, is64)


class BinOp(Enum):
    """Binary ALU operations (``MOVSX*`` sign-extend the low bits of the source)."""

    MOV = "="
    ADD = "+="
    SUB = "-="
    MUL = "*="
    UDIV = "/="
    UMOD = "%="
    SDIV = "s/="
    SMOD = "s%="
    OR = "|="
    AND = "&="
    LSH = "<<="
    RSH = ">>="
    ARSH = "s>>="
    XOR = "^="
    MOVSX8 = "s8="
    MOVSX16 = "s16="
    MOVSX32 = "s32="


class UnOp(Enum):
    """Unary operations: negation and byte-order conversions."""

    NEG = "neg"
    BE16 = "be16"
    BE32 = "be32"
    BE64 = "be64"
    LE16 = "le16"
    LE32 = "le32"
    LE64 = "le64"
    SWAP16 = "swap16"
    SWAP32 = "swap32"
    SWAP64 = "swap64"


class CondOp(Enum):
    """Comparison of a conditional jump (unsigned unless ``S``-prefixed)."""

    EQ = "=="
    NE = "!="
    SET = "&=="
    NSET = "&!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    SLT = "s<"
    SLE = "s<="
    SGT = "s>"
    SGE = "s>="

    @property
    def negated(self) -> CondOp:
        """The operation true exactly when this one is false."""
        return _NEGATE[self]

    @property
    def is_signed(self) -> bool:
        """A signed ordering comparison."""
        return self in (CondOp.SLT, CondOp.SLE, CondOp.SGT, CondOp.SGE)


_NEGATE = {
    CondOp.EQ: CondOp.NE,
    CondOp.NE: CondOp.EQ,
    CondOp.SET: CondOp.NSET,
    CondOp.NSET: CondOp.SET,
    CondOp.LT: CondOp.GE,
    CondOp.GE: CondOp.LT,
    CondOp.LE: CondOp.GT,
    CondOp.GT: CondOp.LE,
    CondOp.SLT: CondOp.SGE,
    CondOp.SGE: CondOp.SLT,
    CondOp.SLE: CondOp.SGT,
    CondOp.SGT: CondOp.SLE,
}


@dataclass(frozen=True, slots=True)
class Condition:
    """``left op right`` on 64 bits, or on the low 32 bits when ``is64`` is false."""

    op: CondOp
    left: int
    right: Value
    is64: bool = True

    def negate(self) -> Condition:
        """The opposite condition."""
        return Condition(self.op.negated, self.left, self.right, self.is64)

    def __str__(self) -> str:
        op = self.op.value if self.is64 else "w" + self.op.value
        return f"r{self.left} {op} {_val(self.right)}"


@dataclass(frozen=True, slots=True)
class Bin:
    """``dst op= src`` (``lddw`` of a plain 64-bit constant is a ``MOV`` with ``lddw``)."""

    op: BinOp
    dst: int
    src: Value
    is64: bool = True
    lddw: bool = False

    def __str__(self) -> str:
        suffix = "ll" if self.lddw else ""
        return f"{_reg(self.dst, self.is64)} {self.op.value} {_val(self.src, self.is64)}{suffix}"


@dataclass(frozen=True, slots=True)
class Un:
    """``dst = op dst``."""

    op: UnOp
    dst: int
    is64: bool = True

    def __str__(self) -> str:
        if self.op == UnOp.NEG:
            return f"{_reg(self.dst, self.is64)} = -{_reg(self.dst, self.is64)}"
        return f"{_reg(self.dst)} = {self.op.value} {_reg(self.dst)}"


@dataclass(frozen=True, slots=True)
class LoadMapFd:
    """``dst = map_fd fd``: a map reference."""

    dst: int
    fd: int

    def __str__(self) -> str:
        return f"r{self.dst} = map_fd {self.fd}"


@dataclass(frozen=True, slots=True)
class LoadMapValue:
    """``dst = map_val(fd) + offset``: the address of a map's (only) value."""

    dst: int
    fd: int
    offset: int

    def __str__(self) -> str:
        return f"r{self.dst} = map_val({self.fd}) + {self.offset}"


@dataclass(frozen=True, slots=True)
class LoadMapByIndex:
    """``lddw`` by map index (``BPF_PSEUDO_MAP_IDX[_VALUE]``); resolved against the maps."""

    dst: int
    index: int
    value: bool
    offset: int = 0

    def __str__(self) -> str:
        if self.value:
            return f"r{self.dst} = mva(map_by_idx({self.index})) + {self.offset}"
        return f"r{self.dst} = map_by_idx({self.index})"


@dataclass(frozen=True, slots=True)
class LoadFunc:
    """``dst = code address``: a callback target (``BPF_PSEUDO_FUNC``)."""

    dst: int
    target: int

    def __str__(self) -> str:
        return f"r{self.dst} = func <{self.target}>"


@dataclass(frozen=True, slots=True)
class Mem:
    """A load (``value`` is the destination register) or a store (register or immediate)."""

    base: int
    offset: int
    width: int
    value: Value
    is_load: bool
    is_signed: bool = False

    def __str__(self) -> str:
        sign = "s" if self.is_signed else "u"
        off = f" + {self.offset}" if self.offset >= 0 else f" - {-self.offset}"
        access = f"*({sign}{self.width * 8} *)(r{self.base}{off})"
        if self.is_load:
            return f"{_val(self.value)} = {access}"
        return f"{access} = {_val(self.value)}"


class AtomicOp(Enum):
    """Atomic read-modify-write operations."""

    ADD = "+="
    OR = "|="
    AND = "&="
    XOR = "^="
    XCHG = "x="
    CMPXCHG = "cx="


@dataclass(frozen=True, slots=True)
class Atomic:
    """``lock *(base + offset) op= src`` (``fetch``: the old value goes back to ``src``)."""

    op: AtomicOp
    fetch: bool
    base: int
    offset: int
    width: int
    src: int

    def __str__(self) -> str:
        fetch = " fetch" if self.fetch and self.op not in (AtomicOp.XCHG, AtomicOp.CMPXCHG) else ""
        off = f" + {self.offset}" if self.offset >= 0 else f" - {-self.offset}"
        return f"lock *(u{self.width * 8} *)(r{self.base}{off}) {self.op.value} r{self.src}{fetch}"


@dataclass(frozen=True, slots=True)
class Packet:
    """Legacy ``LD_ABS``/``LD_IND``: ``r0 = *(skb + [regoffset +] offset)`` (width bytes)."""

    width: int
    offset: int
    regoffset: int | None = None

    def __str__(self) -> str:
        where = f"r{self.regoffset} + {self.offset}" if self.regoffset is not None else self.offset
        return f"r0 = *(u{self.width * 8} *)skb[{where}]"


@dataclass(frozen=True, slots=True)
class Call:
    """A helper call by id."""

    func: int
    name: str = ""

    def __str__(self) -> str:
        return f"call {self.func}" + (f"; {self.name}" if self.name else "")


@dataclass(frozen=True, slots=True)
class CallLocal:
    """A bpf-to-bpf call of the function starting at ``target``."""

    target: int

    def __str__(self) -> str:
        return f"call <{self.target}>"


@dataclass(frozen=True, slots=True)
class Callx:
    """A helper call through a register holding the helper id."""

    reg: int

    def __str__(self) -> str:
        return f"callx r{self.reg}"


@dataclass(frozen=True, slots=True)
class CallKfunc:
    """A kernel function call by BTF id (not supported by the analysis)."""

    btf_id: int

    def __str__(self) -> str:
        return f"call kfunc {self.btf_id}"


@dataclass(frozen=True, slots=True)
class Exit:
    """``exit``: return from the program or the current function."""

    def __str__(self) -> str:
        return "exit"


@dataclass(frozen=True, slots=True)
class Jmp:
    """``goto target`` or ``if cond goto target``."""

    target: int
    cond: Condition | None = None

    def __str__(self) -> str:
        if self.cond is None:
            return f"goto <{self.target}>"
        return f"if {self.cond} goto <{self.target}>"


@dataclass(frozen=True, slots=True)
class MayGoto:
    """Linux's ``may_goto``: either branch may be taken."""

    target: int

    def __str__(self) -> str:
        return f"may_goto <{self.target}>"


@dataclass(frozen=True, slots=True)
class Assume:
    """Continue only where ``cond`` holds (``implicit``: placed by the CFG on a jump edge)."""

    cond: Condition
    implicit: bool = False

    def __str__(self) -> str:
        return f"assume {self.cond}"


@dataclass(frozen=True, slots=True)
class Undefined:
    """An instruction the analysis does not model (always refused)."""

    code: int
    reason: str = "unsupported instruction"

    def __str__(self) -> str:
        return f"undefined {self.code:#04x}"


IrInstruction = (
    Bin
    | Un
    | LoadMapFd
    | LoadMapValue
    | LoadMapByIndex
    | LoadFunc
    | Mem
    | Atomic
    | Packet
    | Call
    | CallLocal
    | Callx
    | CallKfunc
    | Exit
    | Jmp
    | MayGoto
    | Assume
    | Undefined
)
