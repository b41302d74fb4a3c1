"""Hypothesis strategies: random valid eBPF instructions of every opcode family."""

from __future__ import annotations

from hypothesis import strategies as st

from pybpf.isa.instruction import LDDW_CODE, Instruction
from pybpf.isa.opcodes import (
    AluOp,
    AtomicOp,
    CallKind,
    Class,
    JmpOp,
    Mode,
    Pseudo,
    Size,
    Source,
    alu_opcode,
    jmp_opcode,
    mem_opcode,
)

__all__ = ["valid_instructions", "programs", "registers", "offsets", "imm32s"]

registers = st.integers(0, 10)
offsets = st.one_of(
    st.sampled_from([0, 1, -1, 8, -8, 0x7FFF, -0x8000]), st.integers(-0x8000, 0x7FFF)
)
imm32s = st.one_of(
    st.sampled_from([0, 1, -1, 16, 32, 64, 0x7FFFFFFF, -0x80000000]),
    st.integers(-0x80000000, 0x7FFFFFFF),
)
_ALU_CLASSES = st.sampled_from([Class.ALU, Class.ALU64])
_JMP_CLASSES = st.sampled_from([Class.JMP, Class.JMP32])
_BINARY_ALU = [op for op in AluOp if op not in (AluOp.NEG, AluOp.END, AluOp.MOV)]
_CONDITIONS = [op for op in JmpOp if op not in (JmpOp.JA, JmpOp.CALL, JmpOp.EXIT, JmpOp.JCOND)]
_RMW = [op for op in AtomicOp if op not in (AtomicOp.LOAD_ACQ, AtomicOp.STORE_REL)]


@st.composite
def _alu_binary(draw) -> Instruction:
    cls = draw(_ALU_CLASSES)
    op = draw(st.sampled_from(_BINARY_ALU))
    off = draw(st.sampled_from([0, 1])) if op in (AluOp.DIV, AluOp.MOD) else 0
    if draw(st.booleans()):
        return Instruction(alu_opcode(cls, op, Source.X), draw(registers), draw(registers), off)
    return Instruction(alu_opcode(cls, op, Source.K), draw(registers), off=off, imm=draw(imm32s))


@st.composite
def _alu_special(draw) -> Instruction:
    cls = draw(_ALU_CLASSES)
    dst = draw(registers)
    kind = draw(st.sampled_from(["neg", "end", "mov_k", "mov_x", "movsx", "cast"]))
    if kind == "neg":
        return Instruction(alu_opcode(cls, AluOp.NEG, Source.K), dst)
    if kind == "end":
        source = draw(st.sampled_from([Source.K, Source.X])) if cls == Class.ALU else Source.K
        return Instruction(
            alu_opcode(cls, AluOp.END, source), dst, imm=draw(st.sampled_from([16, 32, 64]))
        )
    if kind == "mov_k":
        return Instruction(alu_opcode(cls, AluOp.MOV, Source.K), dst, imm=draw(imm32s))
    code = alu_opcode(cls, AluOp.MOV, Source.X)
    if kind == "mov_x":
        return Instruction(code, dst, draw(registers))
    if kind == "movsx":
        widths = [8, 16, 32] if cls == Class.ALU64 else [8, 16]
        return Instruction(code, dst, draw(registers), draw(st.sampled_from(widths)))
    code = alu_opcode(Class.ALU64, AluOp.MOV, Source.X)  # addr_space_cast
    return Instruction(code, dst, draw(registers), 1, draw(st.sampled_from([1, 1 << 16])))


@st.composite
def _jump(draw) -> Instruction:
    kind = draw(st.sampled_from(["cond", "ja", "gotol", "may_goto", "call", "callx", "exit"]))
    if kind == "cond":
        cls = draw(_JMP_CLASSES)
        op = draw(st.sampled_from(_CONDITIONS))
        if draw(st.booleans()):
            code = jmp_opcode(cls, op, Source.X)
            return Instruction(code, draw(registers), draw(registers), draw(offsets))
        code = jmp_opcode(cls, op, Source.K)
        return Instruction(code, draw(registers), off=draw(offsets), imm=draw(imm32s))
    if kind == "ja":
        return Instruction(jmp_opcode(Class.JMP, JmpOp.JA, Source.K), off=draw(offsets))
    if kind == "gotol":
        return Instruction(jmp_opcode(Class.JMP32, JmpOp.JA, Source.K), imm=draw(imm32s))
    if kind == "may_goto":
        return Instruction(jmp_opcode(Class.JMP, JmpOp.JCOND, Source.K), off=draw(offsets))
    if kind == "call":
        call_kind = draw(st.sampled_from(list(CallKind)))
        code = jmp_opcode(Class.JMP, JmpOp.CALL, Source.K)
        return Instruction(code, src=int(call_kind), imm=draw(imm32s))
    if kind == "callx":
        code = jmp_opcode(Class.JMP, JmpOp.CALL, Source.X)
        register = draw(registers)
        if draw(st.booleans()):
            return Instruction(code, dst=register)
        return Instruction(code, imm=register)  # LLVM <= 18's encoding
    return Instruction(jmp_opcode(Class.JMP, JmpOp.EXIT, Source.K))


@st.composite
def _memory(draw) -> Instruction:
    kind = draw(st.sampled_from(["ldx", "ldsx", "st", "stx", "atomic", "acq_rel"]))
    size = draw(st.sampled_from(list(Size)))
    dst, src, off = draw(registers), draw(registers), draw(offsets)
    if kind == "ldx":
        return Instruction(mem_opcode(Class.LDX, Mode.MEM, size), dst, src, off)
    if kind == "ldsx":
        size = draw(st.sampled_from([Size.B, Size.H, Size.W]))
        return Instruction(mem_opcode(Class.LDX, Mode.MEMSX, size), dst, src, off)
    if kind == "st":
        return Instruction(mem_opcode(Class.ST, Mode.MEM, size), dst, off=off, imm=draw(imm32s))
    if kind == "stx":
        return Instruction(mem_opcode(Class.STX, Mode.MEM, size), dst, src, off)
    if kind == "atomic":
        size = draw(st.sampled_from([Size.W, Size.DW]))
        op = draw(st.sampled_from(_RMW))
        return Instruction(mem_opcode(Class.STX, Mode.ATOMIC, size), dst, src, off, int(op))
    op = draw(st.sampled_from([AtomicOp.LOAD_ACQ, AtomicOp.STORE_REL]))
    return Instruction(mem_opcode(Class.STX, Mode.ATOMIC, size), dst, src, off, int(op))


@st.composite
def _ld(draw) -> Instruction:
    if draw(st.booleans()):
        pseudo = draw(st.sampled_from(list(Pseudo)))
        imm_hi = draw(imm32s) if draw(st.booleans()) else 0
        return Instruction(LDDW_CODE, draw(registers), int(pseudo), imm=draw(imm32s), imm_hi=imm_hi)
    mode = draw(st.sampled_from([Mode.ABS, Mode.IND]))
    size = draw(st.sampled_from([Size.B, Size.H, Size.W]))
    src = draw(registers) if mode == Mode.IND else 0
    return Instruction(mem_opcode(Class.LD, mode, size), src=src, imm=draw(imm32s))


def valid_instructions() -> st.SearchStrategy[Instruction]:
    """Any instruction the codec accepts: every ALU, jump, call, load/store and atomic
    family (v4 and Linux extensions included) and every ``lddw`` pseudo source."""
    return st.one_of(_alu_binary(), _alu_special(), _jump(), _memory(), _ld())


def programs(max_size: int = 20) -> st.SearchStrategy[list[Instruction]]:
    """Non-empty lists of valid instructions."""
    return st.lists(valid_instructions(), min_size=1, max_size=max_size)
