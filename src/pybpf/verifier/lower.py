"""Lowering: decoded eBPF instructions to the verifier IR, one ``(pc, ir)`` pair per instruction.

Pcs count 8-byte slots as jumps do (an ``lddw`` takes two). Jump and call targets become
absolute pcs. Instructions the analysis cannot model become :class:`~pybpf.verifier.ir.Undefined`
with a reason, which the assertions always refuse.
"""

from __future__ import annotations

from collections.abc import Sequence

from pybpf.isa import AluOp, AtomicOp, CallKind, Class, Instruction, JmpOp, Mode, Pseudo, Source
from pybpf.verifier import ir

__all__ = ["lower", "lower_one"]

_BIN = {
    AluOp.ADD: ir.BinOp.ADD,
    AluOp.SUB: ir.BinOp.SUB,
    AluOp.MUL: ir.BinOp.MUL,
    AluOp.DIV: ir.BinOp.UDIV,
    AluOp.MOD: ir.BinOp.UMOD,
    AluOp.OR: ir.BinOp.OR,
    AluOp.AND: ir.BinOp.AND,
    AluOp.LSH: ir.BinOp.LSH,
    AluOp.RSH: ir.BinOp.RSH,
    AluOp.XOR: ir.BinOp.XOR,
    AluOp.MOV: ir.BinOp.MOV,
    AluOp.ARSH: ir.BinOp.ARSH,
}
_MOVSX = {8: ir.BinOp.MOVSX8, 16: ir.BinOp.MOVSX16, 32: ir.BinOp.MOVSX32}
_COND = {
    JmpOp.JEQ: ir.CondOp.EQ,
    JmpOp.JNE: ir.CondOp.NE,
    JmpOp.JSET: ir.CondOp.SET,
    JmpOp.JGT: ir.CondOp.GT,
    JmpOp.JGE: ir.CondOp.GE,
    JmpOp.JLT: ir.CondOp.LT,
    JmpOp.JLE: ir.CondOp.LE,
    JmpOp.JSGT: ir.CondOp.SGT,
    JmpOp.JSGE: ir.CondOp.SGE,
    JmpOp.JSLT: ir.CondOp.SLT,
    JmpOp.JSLE: ir.CondOp.SLE,
}
_ATOMIC = {
    AtomicOp.ADD: (ir.AtomicOp.ADD, False),
    AtomicOp.OR: (ir.AtomicOp.OR, False),
    AtomicOp.AND: (ir.AtomicOp.AND, False),
    AtomicOp.XOR: (ir.AtomicOp.XOR, False),
    AtomicOp.FETCH_ADD: (ir.AtomicOp.ADD, True),
    AtomicOp.FETCH_OR: (ir.AtomicOp.OR, True),
    AtomicOp.FETCH_AND: (ir.AtomicOp.AND, True),
    AtomicOp.FETCH_XOR: (ir.AtomicOp.XOR, True),
    AtomicOp.XCHG: (ir.AtomicOp.XCHG, True),
    AtomicOp.CMPXCHG: (ir.AtomicOp.CMPXCHG, True),
}


def _alu(insn: Instruction) -> ir.IrInstruction:
    is64 = insn.is_alu64
    op = insn.alu_op
    src: ir.Value = insn.src if insn.uses_register_source else ir.Imm(insn.imm)
    if op == AluOp.NEG:
        return ir.Un(ir.UnOp.NEG, insn.dst, is64)
    if op == AluOp.END:
        bits = insn.imm
        if bits not in (16, 32, 64):
            return ir.Undefined(insn.code, f"byte swap of {bits} bits")
        if insn.is_bswap:
            kind = f"SWAP{bits}"
        elif insn.source == Source.X:
            kind = f"BE{bits}"
        else:
            kind = f"LE{bits}"
        return ir.Un(ir.UnOp[kind], insn.dst, True)
    if insn.is_addr_space_cast:
        return ir.Undefined(insn.code, "addr_space_cast (arena) is not supported")
    if insn.movsx_bits:
        return ir.Bin(_MOVSX[insn.movsx_bits], insn.dst, insn.src, is64)
    if insn.is_signed_divmod:
        signed = ir.BinOp.SDIV if op == AluOp.DIV else ir.BinOp.SMOD
        return ir.Bin(signed, insn.dst, src, is64)
    if op == AluOp.MOV and insn.off != 0:
        return ir.Undefined(insn.code, f"mov with offset {insn.off}")
    return ir.Bin(_BIN[op], insn.dst, src, is64)


def _jmp(insn: Instruction, pc: int) -> ir.IrInstruction:
    op = insn.jmp_op
    if insn.is_call:
        kind = insn.call_kind
        if kind == CallKind.LOCAL:
            return ir.CallLocal(pc + 1 + insn.imm)
        if kind == CallKind.KFUNC:
            return ir.CallKfunc(insn.imm)
        return ir.Call(insn.imm)
    if insn.is_callx:
        return ir.Callx(insn.callx_register)
    if insn.is_exit:
        return ir.Exit()
    target = pc + 1 + insn.jump_offset
    if insn.is_ja:
        return ir.Jmp(target)
    if insn.is_may_goto:
        return ir.MayGoto(target)
    if op not in _COND:
        return ir.Undefined(insn.code, "unknown jump")
    right: ir.Value = insn.src if insn.uses_register_source else ir.Imm(insn.imm)
    cond = ir.Condition(_COND[op], insn.dst, right, insn.cls == Class.JMP)
    return ir.Jmp(target, cond)


def _lddw(insn: Instruction, pc: int) -> ir.IrInstruction:
    pseudo = insn.pseudo
    if pseudo == Pseudo.IMM64:
        return ir.Bin(ir.BinOp.MOV, insn.dst, ir.Imm(insn.imm64), True, lddw=True)
    if pseudo == Pseudo.MAP_FD:
        return ir.LoadMapFd(insn.dst, insn.imm)
    if pseudo == Pseudo.MAP_VALUE:
        return ir.LoadMapValue(insn.dst, insn.imm, insn.imm_hi)
    if pseudo == Pseudo.MAP_IDX:
        return ir.LoadMapByIndex(insn.dst, insn.imm, False)
    if pseudo == Pseudo.MAP_IDX_VALUE:
        return ir.LoadMapByIndex(insn.dst, insn.imm, True, insn.imm_hi)
    if pseudo == Pseudo.FUNC:
        return ir.LoadFunc(insn.dst, pc + 1 + insn.imm)
    return ir.Undefined(insn.code, f"lddw {pseudo.name.lower()} is not supported")


def lower_one(insn: Instruction, pc: int) -> ir.IrInstruction:
    """The IR form of one instruction at slot ``pc``."""
    cls = insn.cls
    if cls in (Class.ALU, Class.ALU64):
        return _alu(insn)
    if cls in (Class.JMP, Class.JMP32):
        return _jmp(insn, pc)
    if insn.is_lddw:
        return _lddw(insn, pc)
    if insn.is_legacy_packet_load:
        regoffset = insn.src if insn.mode == Mode.IND else None
        return ir.Packet(insn.nbytes, insn.imm, regoffset)
    if cls == Class.LDX:
        return ir.Mem(insn.src, insn.off, insn.nbytes, insn.dst, True, insn.is_sign_extending_load)
    if insn.is_store:
        value: ir.Value = insn.src if cls == Class.STX else ir.Imm(insn.imm)
        return ir.Mem(insn.dst, insn.off, insn.nbytes, value, False)
    if insn.is_atomic:
        try:
            op = insn.atomic_op
        except ValueError:
            return ir.Undefined(insn.code, f"atomic operation {insn.imm:#x}")
        if op == AtomicOp.LOAD_ACQ:
            return ir.Mem(insn.src, insn.off, insn.nbytes, insn.dst, True)
        if op == AtomicOp.STORE_REL:
            return ir.Mem(insn.dst, insn.off, insn.nbytes, insn.src, False)
        if insn.nbytes not in (4, 8):
            return ir.Undefined(insn.code, "atomic access must be 4 or 8 bytes")
        kind, fetch = _ATOMIC[op]
        return ir.Atomic(kind, fetch, insn.dst, insn.off, insn.nbytes, insn.src)
    return ir.Undefined(insn.code)


def lower(insns: Sequence[Instruction]) -> list[tuple[int, ir.IrInstruction]]:
    """The whole program as ``(pc, ir)`` pairs.

    clang's 32-bit zero extension ``rX <<= 32; rX >>= 32`` (nothing jumping between the
    two) becomes ``wX = wX; rX += 0``: the same value, but the zone keeps the relation of
    a value below 2**32 to its source (``i != 1000`` loops are then proven bounded).
    """
    out = []
    pc = 0
    for insn in insns:
        out.append((pc, lower_one(insn, pc)))
        pc += insn.slots
    return _zero_extensions(out)


def _targets(program: Sequence[tuple[int, ir.IrInstruction]]) -> set[int]:
    out = set()
    for _, ins in program:
        if isinstance(ins, (ir.Jmp, ir.MayGoto, ir.CallLocal, ir.LoadFunc)):
            out.add(ins.target)
    return out


def _is_shift32(ins: ir.IrInstruction, op: ir.BinOp) -> bool:
    return (
        isinstance(ins, ir.Bin)
        and ins.op == op
        and ins.is64
        and isinstance(ins.src, ir.Imm)
        and ins.src.value == 32
    )


def _zero_extensions(
    program: list[tuple[int, ir.IrInstruction]],
) -> list[tuple[int, ir.IrInstruction]]:
    targets: set[int] | None = None
    for i in range(len(program) - 1):
        (pc, first), (next_pc, second) = program[i], program[i + 1]
        if not (_is_shift32(first, ir.BinOp.LSH) and _is_shift32(second, ir.BinOp.RSH)):
            continue
        if first.dst != second.dst:
            continue
        if targets is None:
            targets = _targets(program)
        if next_pc in targets:
            continue
        program[i] = (pc, ir.Bin(ir.BinOp.MOV, first.dst, first.dst, False))
        program[i + 1] = (next_pc, ir.Bin(ir.BinOp.ADD, first.dst, ir.Imm(0), True))
    return program
