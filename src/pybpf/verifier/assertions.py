"""Assertions: what must hold before each instruction, as plain records derived from the IR.

:func:`assertions_for` lists the safety conditions of one instruction (in the order they are
checked); :mod:`pybpf.verifier.checker` decides whether each holds in an abstract state and
:mod:`pybpf.verifier.transformer` computes the state after the instruction assuming they
all hold. ``str()`` of an assertion is the condition in PREVAIL's notation, quoted by the
diagnostics (``valid_access(r1.offset+4, width=2) for read``, ``r3.type == number``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.progtypes.contexts import helper_allowed
from pybpf.verifier import ir
from pybpf.verifier.contracts import ArgKind, contract_for
from pybpf.verifier.domains.types import Group, format_types
from pybpf.verifier.program import ProgramInfo

__all__ = [
    "TypeConstraint",
    "ValidAccess",
    "ValidStore",
    "Addable",
    "Comparable",
    "ValidDivisor",
    "ValidSize",
    "ValidMapKeyValue",
    "ZeroCtxOffset",
    "FuncConstraint",
    "ValidHelper",
    "ValidReturn",
    "BoundedLoopCount",
    "NonNullArithmetic",
    "NoLeakedReferences",
    "ReleasesReference",
    "Unsupported",
    "Assertion",
    "assertions_for",
]


@dataclass(frozen=True, slots=True)
class TypeConstraint:
    """``reg`` has one of the types of ``group``."""

    reg: int
    group: int

    def __str__(self) -> str:
        names = format_types(self.group)
        op = "in" if names.startswith("{") else "=="
        return f"r{self.reg}.type {op} {names}"


@dataclass(frozen=True, slots=True)
class ValidAccess:
    """``[reg + offset, reg + offset + width)`` is accessible (``width`` 0: a comparison).

    ``width`` is a byte count or, when ``width_reg`` is set, the value of that register.
    ``access`` is ``"read"``, ``"write"`` or ``"compare"``; ``or_null`` lets a null
    pointer (number 0) through with nothing to access.
    """

    reg: int
    offset: int = 0
    width: int = 0
    access: str = "compare"
    width_reg: int | None = None
    or_null: bool = False

    def __str__(self) -> str:
        off = f"r{self.reg}.offset"
        if self.offset > 0:
            off += f"+{self.offset}"
        elif self.offset < 0:
            off += str(self.offset)
        if self.access == "compare":
            return f"valid_access({off}) for comparison/subtraction"
        width = f"r{self.width_reg}" if self.width_reg is not None else str(self.width)
        return f"valid_access({off}, width={width}) for {self.access}"


@dataclass(frozen=True, slots=True)
class ValidStore:
    """A value stored through ``mem`` is a number unless ``mem`` points to the stack."""

    mem: int
    val: int

    def __str__(self) -> str:
        return f"r{self.mem}.type != stack -> r{self.val}.type == number"


@dataclass(frozen=True, slots=True)
class Addable:
    """If ``ptr`` is a pointer then ``num`` is a number."""

    ptr: int
    num: int

    def __str__(self) -> str:
        return f"r{self.ptr}.type in {{ctx, stack, packet, shared}} -> r{self.num}.type == number"


@dataclass(frozen=True, slots=True)
class Comparable:
    """``r1`` and ``r2`` are both numbers or point into the same singleton region."""

    r1: int
    r2: int
    or_r2_is_number: bool

    def __str__(self) -> str:
        return (
            f"r{self.r2}.type == number or r{self.r1}.type == r{self.r2}.type "
            "in {ctx, stack, packet}"
        )


@dataclass(frozen=True, slots=True)
class ValidDivisor:
    """``reg`` is a number (and not 0 when division by zero is forbidden)."""

    reg: int
    is_signed: bool
    is64: bool = True

    def __str__(self) -> str:
        return f"{'r' if self.is64 else 'w'}{self.reg} != 0"


@dataclass(frozen=True, slots=True)
class ValidSize:
    """``reg`` is a positive size (or zero when ``can_be_zero``)."""

    reg: int
    can_be_zero: bool

    def __str__(self) -> str:
        return f"r{self.reg}.value {'>=' if self.can_be_zero else '>'} 0"


@dataclass(frozen=True, slots=True)
class ValidMapKeyValue:
    """``access_reg`` points to a whole key (or value) of the map in ``map_fd_reg``."""

    access_reg: int
    map_fd_reg: int
    key: bool
    write: bool = False

    def __str__(self) -> str:
        what = "key_size" if self.key else "value_size"
        return f"within(r{self.access_reg}:{what}(r{self.map_fd_reg}))"


@dataclass(frozen=True, slots=True)
class ZeroCtxOffset:
    """``reg`` points to the start of the context."""

    reg: int
    or_null: bool = False

    def __str__(self) -> str:
        return f"r{self.reg}.ctx_offset == 0"


@dataclass(frozen=True, slots=True)
class FuncConstraint:
    """``reg`` holds the id of a helper the program may call (``callx``)."""

    reg: int

    def __str__(self) -> str:
        return f"r{self.reg}.type is helper"


@dataclass(frozen=True, slots=True)
class ValidHelper:
    """Helper ``func`` exists, has a known prototype and suits the program type."""

    func: int

    def __str__(self) -> str:
        return f"helper {self.func} is usable"


@dataclass(frozen=True, slots=True)
class ValidReturn:
    """``r0`` at program exit lies in ``[lo, hi]``."""

    lo: int
    hi: int

    def __str__(self) -> str:
        return f"r0.value in [{self.lo}, {self.hi}]"


@dataclass(frozen=True, slots=True)
class BoundedLoopCount:
    """The loop headed at ``head`` runs at most ``limit`` times (checked after the fixpoint)."""

    head: str
    limit: int

    def __str__(self) -> str:
        return f"pc[{self.head}] < {self.limit}"


@dataclass(frozen=True, slots=True)
class NonNullArithmetic:
    """Pointer arithmetic on ``reg`` only once it is known not to be null."""

    reg: int

    def __str__(self) -> str:
        return f"r{self.reg} is not a maybe-null pointer"


@dataclass(frozen=True, slots=True)
class NoLeakedReferences:
    """No acquired reference (socket, ring-buffer record) or spin lock is still held."""

    def __str__(self) -> str:
        return "no reference or lock is held"


@dataclass(frozen=True, slots=True)
class ReleasesReference:
    """``reg`` holds exactly one reference the program still holds."""

    reg: int

    def __str__(self) -> str:
        return f"r{self.reg} is a held reference"


@dataclass(frozen=True, slots=True)
class Unsupported:
    """An instruction the analysis cannot prove anything about."""

    reason: str

    def __str__(self) -> str:
        return self.reason


Assertion = (
    TypeConstraint
    | ValidAccess
    | ValidStore
    | Addable
    | Comparable
    | ValidDivisor
    | ValidSize
    | ValidMapKeyValue
    | ZeroCtxOffset
    | FuncConstraint
    | ValidHelper
    | ValidReturn
    | BoundedLoopCount
    | NonNullArithmetic
    | NoLeakedReferences
    | ReleasesReference
    | Unsupported
)


def _condition(cond: ir.Condition, info: ProgramInfo) -> list[Assertion]:
    if info.privileged:
        out = [TypeConstraint(cond.left, Group.ANY_INITIALIZED)]
        if not isinstance(cond.right, ir.Imm):
            out.append(TypeConstraint(cond.right, Group.ANY_INITIALIZED))
        return out
    if isinstance(cond.right, ir.Imm):
        if cond.right.value != 0:
            return [TypeConstraint(cond.left, Group.NUMBER)]
        out: list[Assertion] = []
        if cond.op.is_signed or not cond.is64:
            out.append(TypeConstraint(cond.left, Group.NUMBER))
        out.append(ValidAccess(cond.left))
        return out
    out = [ValidAccess(cond.left), ValidAccess(cond.right)]
    if cond.op not in (ir.CondOp.EQ, ir.CondOp.NE):
        out.append(TypeConstraint(cond.left, Group.PTR_OR_NUM))
    out.append(Comparable(cond.left, cond.right, False))
    return out


def _call(call: ir.Call, info: ProgramInfo) -> list[Assertion]:
    contract = contract_for(call.func, info)
    if contract is None:
        return [ValidHelper(call.func)]
    if not helper_allowed(info.context, contract.name):
        return [Unsupported(f"helper {contract.name} is not available to {info.context.name}")]
    refs = info.options.linux_rules
    out: list[Assertion] = [NoLeakedReferences()] if contract.is_tail_call and refs else []
    map_reg: int | None = None
    for arg in contract.args:
        reg, kind = arg.reg, arg.kind
        if arg.release and refs:
            out.append(ReleasesReference(reg))
        if kind == ArgKind.ANYTHING:
            if not info.privileged:
                out.append(TypeConstraint(reg, Group.NUMBER))
        elif kind == ArgKind.MAP_FD:
            out.append(TypeConstraint(reg, Group.MAP_FD))
            map_reg = reg
        elif kind == ArgKind.MAP_FD_PROGRAMS:
            out.append(TypeConstraint(reg, Group.MAP_FD_PROGRAMS))
        elif kind in (ArgKind.MAP_KEY, ArgKind.MAP_VALUE, ArgKind.MAP_VALUE_OUT):
            if map_reg is None:
                return [Unsupported(f"helper {call.func}: map argument without a map")]
            out.append(TypeConstraint(reg, Group.MEM))
            out.append(
                ValidMapKeyValue(
                    reg, map_reg, kind == ArgKind.MAP_KEY, kind == ArgKind.MAP_VALUE_OUT
                )
            )
        elif kind == ArgKind.STACK:
            out.append(TypeConstraint(reg, Group.STACK_OR_NUM if arg.or_null else Group.STACK))
        elif kind == ArgKind.CTX:
            out.append(TypeConstraint(reg, Group.CTX_OR_NUM if arg.or_null else Group.CTX))
            out.append(ZeroCtxOffset(reg, arg.or_null))
        elif kind == ArgKind.FUNC:
            out.append(TypeConstraint(reg, Group.FUNC))
        elif kind == ArgKind.SOCKET:
            out.append(TypeConstraint(reg, Group.SOCKET))
        elif kind == ArgKind.SOCK_COMMON:
            out.append(TypeConstraint(reg, Group.CTX | Group.SOCKET | Group.BTF_ID))
        elif kind == ArgKind.BTF_ID:
            out.append(TypeConstraint(reg, Group.BTF_ID))
        elif kind == ArgKind.ALLOC_MEM:
            out.append(TypeConstraint(reg, Group.ALLOC_MEM))
        elif kind == ArgKind.SHARED_MEM:
            out.append(TypeConstraint(reg, Group.SHARED))
        elif kind == ArgKind.SIZE:
            out.append(TypeConstraint(reg, Group.NUMBER))
            out.append(ValidSize(reg, arg.or_null))
        elif kind == ArgKind.FIXED_MEM:
            out.append(TypeConstraint(reg, Group.MEM))
            access = "write" if arg.writes and not arg.reads else "read"
            out.append(ValidAccess(reg, 0, arg.size, access))
        elif kind == ArgKind.MEM:
            size_reg = arg.size_reg
            assert size_reg is not None
            out.append(TypeConstraint(size_reg, Group.NUMBER))
            out.append(ValidSize(size_reg, arg.size_can_be_zero))
            out.append(TypeConstraint(reg, Group.MEM_OR_NUM if arg.or_null else Group.MEM))
            access = "write" if arg.writes and not arg.reads else "read"
            out.append(ValidAccess(reg, 0, 0, access, width_reg=size_reg, or_null=arg.or_null))
        else:
            return [Unsupported(f"helper {call.func}: unsupported argument kind {kind.name}")]
    return out


def _mem(ins: ir.Mem, info: ProgramInfo, options_stack: int) -> list[Assertion]:
    access = "read" if ins.is_load else "write"
    stored: list[Assertion] = []
    strict = info.options.linux_rules
    if strict and not ins.is_load and not isinstance(ins.value, ir.Imm):
        stored.append(TypeConstraint(ins.value, Group.ANY_INITIALIZED))
    if ins.base == 10:
        if ins.offset < -options_stack or ins.offset + ins.width > 0:
            return [*stored, ValidAccess(10, ins.offset, ins.width, access)]
        return stored
    out: list[Assertion] = [
        *stored,
        TypeConstraint(ins.base, Group.POINTER),
        ValidAccess(ins.base, ins.offset, ins.width, access),
    ]
    if not ins.is_load and not info.privileged and not isinstance(ins.value, ir.Imm):
        if ins.width != 8:
            out.append(TypeConstraint(ins.value, Group.NUMBER))
        else:
            out.append(ValidStore(ins.base, ins.value))
    return out


def _bin(ins: ir.Bin, info: ProgramInfo) -> list[Assertion]:
    src = ins.src
    op = ins.op
    if op == ir.BinOp.MOV:
        if isinstance(src, ir.Imm):
            return []
        if not ins.is64:
            return [TypeConstraint(src, Group.NUMBER)]
        if info.options.linux_rules:  # Linux's "!read_ok"
            return [TypeConstraint(src, Group.ANY_INITIALIZED)]
        return []
    if op in (ir.BinOp.MOVSX8, ir.BinOp.MOVSX16, ir.BinOp.MOVSX32):
        return [] if isinstance(src, ir.Imm) else [TypeConstraint(src, Group.NUMBER)]
    if op == ir.BinOp.ADD:
        if isinstance(src, ir.Imm):
            return [TypeConstraint(ins.dst, Group.PTR_OR_NUM), NonNullArithmetic(ins.dst)]
        return [
            TypeConstraint(ins.dst, Group.PTR_OR_NUM),
            TypeConstraint(src, Group.PTR_OR_NUM),
            Addable(src, ins.dst),
            Addable(ins.dst, src),
            NonNullArithmetic(ins.dst),
            NonNullArithmetic(src),
        ]
    if op == ir.BinOp.SUB:
        if isinstance(src, ir.Imm):
            return [TypeConstraint(ins.dst, Group.PTR_OR_NUM), NonNullArithmetic(ins.dst)]
        return [
            TypeConstraint(ins.dst, Group.PTR_OR_NUM),
            Comparable(ins.dst, src, True),
            NonNullArithmetic(ins.dst),
        ]
    if op in (ir.BinOp.UDIV, ir.BinOp.UMOD, ir.BinOp.SDIV, ir.BinOp.SMOD):
        out: list[Assertion] = [TypeConstraint(ins.dst, Group.NUMBER)]
        if not isinstance(src, ir.Imm):
            signed = op in (ir.BinOp.SDIV, ir.BinOp.SMOD)
            out.append(ValidDivisor(src, signed, ins.is64))
        return out
    if isinstance(src, ir.Imm):
        return [TypeConstraint(ins.dst, Group.NUMBER)]
    return [TypeConstraint(ins.dst, Group.NUMBER), TypeConstraint(src, Group.NUMBER)]


def assertions_for(ins: ir.IrInstruction | None, info: ProgramInfo, depth: int) -> list[Assertion]:
    """The preconditions of ``ins`` executed ``depth`` frames deep (1 in the entry function)."""
    if ins is None:
        return []
    if isinstance(ins, ir.Bin):
        return _bin(ins, info)
    if isinstance(ins, ir.Un):
        return [TypeConstraint(ins.dst, Group.NUMBER)]
    if isinstance(ins, ir.Mem):
        return _mem(ins, info, info.options.subprogram_stack_size)
    if isinstance(ins, ir.Atomic):
        return [
            TypeConstraint(ins.src, Group.NUMBER),
            TypeConstraint(ins.base, Group.POINTER),
            ValidAccess(ins.base, ins.offset, ins.width, "write"),
        ]
    if isinstance(ins, ir.Jmp):
        return [] if ins.cond is None else _condition(ins.cond, info)
    if isinstance(ins, ir.Assume):
        return [] if ins.implicit else _condition(ins.cond, info)
    if isinstance(ins, ir.Call):
        return _call(ins, info)
    if isinstance(ins, ir.Callx):
        return [TypeConstraint(ins.reg, Group.NUMBER), FuncConstraint(ins.reg)]
    if isinstance(ins, ir.Exit):
        if depth > 1:
            return []
        out: list[Assertion] = [TypeConstraint(0, Group.NUMBER)]
        if info.options.linux_rules:
            out.append(NoLeakedReferences())
        if info.return_range is not None:
            out.append(ValidReturn(*info.return_range))
        return out
    if isinstance(ins, ir.Packet):
        return [TypeConstraint(6, Group.CTX), ZeroCtxOffset(6)]
    if isinstance(ins, ir.CallKfunc):
        return [Unsupported("kfunc calls are not supported")]
    if isinstance(ins, ir.Undefined):
        return [Unsupported(ins.reason)]
    if isinstance(ins, ir.LoadMapByIndex):
        return [Unsupported(f"map index {ins.index} is not resolved")]
    return []
