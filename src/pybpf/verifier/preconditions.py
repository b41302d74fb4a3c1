"""Preconditions: which assertions each instruction needs, read off the IR (what must hold).

:func:`assertions_for` lists the safety conditions of one instruction in the order they are
checked: types of the registers it uses, memory accesses in bounds, helper arguments that
match the helper's contract, the return value at the program's exit, and the rules Linux
adds for unprivileged programs (no pointer comparisons with numbers, no pointer stores to
maps) unless the program type is privileged.
"""

from __future__ import annotations

from pybpf.helpers import lookup
from pybpf.progtypes.contexts import LAYOUTS, helper_allowed_for
from pybpf.verifier import ir
from pybpf.verifier.assertions import (
    Addable,
    Assertion,
    Comparable,
    Forbidden,
    FuncConstraint,
    NoLeakedReferences,
    NonNullArithmetic,
    ReleasesReference,
    TypeConstraint,
    Unsupported,
    ValidAccess,
    ValidDivisor,
    ValidHelper,
    ValidMapKeyValue,
    ValidReturn,
    ValidSize,
    ValidStore,
    WritableMemory,
    ZeroCtxOffset,
)
from pybpf.verifier.contracts import ArgKind, contract_for
from pybpf.verifier.domains.types import Group
from pybpf.verifier.functions import GlobalFunction, ParamKind
from pybpf.verifier.program import ProgramInfo

__all__ = ["assertions_for", "CALLBACK_HELPERS"]

# Helpers whose callbacks pybpf verifies (as functions of their own, see verifier.api):
# helper name -> the callback's return range.
CALLBACK_HELPERS: dict[str, tuple[int, int]] = {
    "loop": (0, 1),
    "for_each_map_elem": (0, 1),
    "timer_set_callback": (0, 0),
}


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
    row = lookup(call.func) if call.func != 0 else None
    name = contract.name if contract is not None else row.name if row is not None else None
    prog_type = info.prog_type if info.options.type_helpers else None
    # a helper the type may not call is forbidden, whether or not pybpf models it
    if name is not None and not helper_allowed_for(prog_type, info.context, name):
        who = prog_type.type_name if prog_type is not None else info.context.name
        return [Forbidden(f"helper {name} is not available to {who} programs")]
    if row is not None and row.might_sleep and info.sleepable is False:
        return [Forbidden(f"helper {name} might sleep in a non-sleepable program")]
    if contract is None:
        return [ValidHelper(call.func)]
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
            if kind == ArgKind.MAP_VALUE_OUT:
                out.append(WritableMemory(reg))
        elif kind == ArgKind.STACK:
            out.append(TypeConstraint(reg, Group.STACK_OR_NUM if arg.or_null else Group.STACK))
        elif kind == ArgKind.CTX:
            out.append(TypeConstraint(reg, Group.CTX_OR_NUM if arg.or_null else Group.CTX))
            out.append(ZeroCtxOffset(reg, arg.or_null))
        elif kind == ArgKind.FUNC:  # the callback itself is verified on its own (api)
            if contract.name not in CALLBACK_HELPERS:
                return [Unsupported(f"helper {contract.name}: callbacks are not supported")]
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
            out.append(TypeConstraint(reg, Group.HELPER_MEM))
            access = "write" if arg.writes and not arg.reads else "read"
            out.append(ValidAccess(reg, 0, arg.size, access))
            if arg.writes:
                out.append(WritableMemory(reg))
        elif kind == ArgKind.MEM:
            size_reg = arg.size_reg
            assert size_reg is not None
            out.append(TypeConstraint(size_reg, Group.NUMBER))
            out.append(ValidSize(size_reg, arg.size_can_be_zero))
            mem = Group.HELPER_MEM_OR_NUM if arg.or_null else Group.HELPER_MEM
            out.append(TypeConstraint(reg, mem))
            access = "write" if arg.writes and not arg.reads else "read"
            out.append(ValidAccess(reg, 0, 0, access, width_reg=size_reg, or_null=arg.or_null))
            if arg.writes:
                out.append(WritableMemory(reg))
        else:
            return [Unsupported(f"helper {call.func}: unsupported argument kind {kind.name}")]
    return out


def _call_global(fn: GlobalFunction) -> list[Assertion]:
    """A call of a global function: each argument matches its BTF parameter."""
    out: list[Assertion] = []
    for i, param in enumerate(fn.params):
        reg = i + 1
        if param.kind == ParamKind.SCALAR:
            out.append(TypeConstraint(reg, Group.NUMBER))
        elif param.kind == ParamKind.CTX:
            out += [TypeConstraint(reg, Group.CTX), ZeroCtxOffset(reg)]
        else:  # memory of param.size bytes, or null
            out.append(TypeConstraint(reg, Group.MEM_OR_NUM))
            out.append(ValidAccess(reg, 0, param.size, "read", or_null=True))
            out.append(WritableMemory(reg))
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
    if not ins.is_load:
        out.append(WritableMemory(ins.base))
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


def _skb_context(info: ProgramInfo) -> bool:
    """LD_ABS/LD_IND are defined for socket-buffer contexts (any context of a test)."""
    layout = info.context
    return layout.name == "__sk_buff" or LAYOUTS.get(layout.name) is not layout


def _written(ins: ir.IrInstruction) -> int | None:
    """The register an instruction writes (besides r0 and r1-r5 for calls), if any."""
    if isinstance(ins, (ir.Bin, ir.Un, ir.LoadMapFd, ir.LoadMapValue, ir.LoadMapByIndex)):
        return ins.dst
    if isinstance(ins, ir.LoadFunc):
        return ins.dst
    if isinstance(ins, ir.Mem) and ins.is_load and not isinstance(ins.value, ir.Imm):
        return ins.value
    if isinstance(ins, ir.Atomic) and ins.fetch and ins.op != ir.AtomicOp.CMPXCHG:
        return ins.src
    return None


def assertions_for(ins: ir.IrInstruction | None, info: ProgramInfo, depth: int) -> list[Assertion]:
    """The preconditions of ``ins`` executed ``depth`` frames deep (1 in the entry function)."""
    if ins is None:
        return []
    if _written(ins) == 10:
        return [Forbidden("the frame pointer r10 is read-only")]
    if isinstance(ins, ir.Bin):
        return _bin(ins, info)
    if isinstance(ins, ir.Un):
        return [TypeConstraint(ins.dst, Group.NUMBER)]
    if isinstance(ins, ir.Mem):
        return _mem(ins, info, info.options.subprogram_stack_size)
    if isinstance(ins, ir.Atomic):
        out = [TypeConstraint(ins.src, Group.NUMBER)]
        if ins.op == ir.AtomicOp.CMPXCHG:
            out.append(TypeConstraint(0, Group.NUMBER))  # the value compared with
        return [
            *out,
            TypeConstraint(ins.base, Group.POINTER),
            ValidAccess(ins.base, ins.offset, ins.width, "write"),
            WritableMemory(ins.base),
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
        if not _skb_context(info):
            return [Forbidden("legacy packet loads need a socket buffer context")]
        out = [TypeConstraint(6, Group.CTX), ZeroCtxOffset(6)]
        if ins.regoffset is not None:
            out.append(TypeConstraint(ins.regoffset, Group.NUMBER))
        return out
    if isinstance(ins, ir.CallLocal) and ins.target in info.global_functions:
        return _call_global(info.global_functions[ins.target])
    if isinstance(ins, ir.CallKfunc):
        return [Unsupported("kfunc calls are not supported")]
    if isinstance(ins, ir.Undefined):
        return [Unsupported(ins.reason)]
    if isinstance(ins, ir.LoadMapByIndex):
        return [Unsupported(f"map index {ins.index} is not resolved")]
    return []
