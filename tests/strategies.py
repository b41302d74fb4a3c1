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


# ---- programs for the kernel execution differential (tests/test_kernel_exec_diff.py) -------
# Random XDP programs that every engine must run alike: ALU and forward jumps over scratch
# registers, stack and bounds-checked packet loads and stores, atomics on the stack and in map
# values, array/hash lookups, updates and deletes through helpers, and a local call. r6 holds
# the context, r7/r8 the packet start/end (checked to hold PACKET_SIZE bytes); r0 is stored to
# the packet's first 8 bytes at the end. Built so the kernel's verifier accepts them as root:
# the stack area used is zeroed first, r1-r5 are reloaded after every call.

import dataclasses as _dc  # noqa: E402
import random as _random  # noqa: E402

DIFF_PACKET_SIZE = 64
DIFF_SCRATCH = (0, 1, 2, 3, 4, 5, 9)
DIFF_STACK = 128  # [-128, 0) zeroed and used
DIFF_KEY, DIFF_VALUE = -136, -144
DIFF_ARRAY_ENTRIES, DIFF_HASH_ENTRIES = 4, 6
_MASK64 = (1 << 64) - 1
_SHIFTS = (AluOp.LSH, AluOp.RSH, AluOp.ARSH)
_DIFF_ALU = [op for op in AluOp if op not in (AluOp.NEG, AluOp.END)]
_DIFF_JMP = [op for op in JmpOp if op not in (JmpOp.JA, JmpOp.CALL, JmpOp.EXIT, JmpOp.JCOND)]
_DIFF_ATOMICS = [op for op in AtomicOp if op not in (AtomicOp.LOAD_ACQ, AtomicOp.STORE_REL)]
_SIZE_BYTES = {Size.B: 1, Size.H: 2, Size.W: 4, Size.DW: 8}


def _diff_s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _diff_lddw(dst: int, value: int, src: int = 0) -> Instruction:
    return Instruction(LDDW_CODE, dst, src, imm=_diff_s32(value), imm_hi=_diff_s32(value >> 32))


def _diff_imm(rng: _random.Random) -> int:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice([0, 1, -1, 2, 7, 0x7FFFFFFF, -0x80000000, 0x100])
    if roll < 0.6:
        return rng.randint(-300, 300)
    return _diff_s32(rng.getrandbits(32))


def _diff_value64(rng: _random.Random) -> int:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice([0, 1, _MASK64, 1 << 63, (1 << 63) - 1, 0xFFFFFFFF, 0x80000000])
    if roll < 0.5:
        return rng.randint(-300, 300) & _MASK64
    return rng.getrandbits(64)


@_dc.dataclass
class DiffBlock:
    """Instructions that stay together; ``refs`` are (index in ``insns``, kind, target) for
    ``lddw`` map loads (kind ``map``) and local calls (kind ``call``); a jump block has
    ``target``, the index of the block it jumps to."""

    insns: list[Instruction]
    refs: list[tuple[int, str, str]] = _dc.field(default_factory=list)
    target: int | None = None


@_dc.dataclass
class DiffProgram:
    """One random program: main body blocks, the subprogram, the input packet."""

    blocks: list[DiffBlock]
    sub: list[Instruction]
    packet: bytes
    v4: bool = True

    def main(self, keep: int | None = None) -> tuple[list[Instruction], list[tuple[int, str, str]]]:
        """Prologue, the first ``keep`` blocks (jumps past them land at the epilogue) and the
        epilogue, with references as (pc, kind, target)."""
        blocks = self.blocks if keep is None else self.blocks[:keep]
        out = _diff_prologue()
        refs: list[tuple[int, str, str]] = []
        starts, pc = [], sum(i.slots for i in out)
        for block in blocks:
            starts.append(pc)
            pc += sum(i.slots for i in block.insns)
        starts.append(pc)
        for index, block in enumerate(blocks):
            insns = list(block.insns)
            if block.target is not None:
                target = starts[min(block.target, len(blocks))]
                jump = insns[0]
                insns[0] = Instruction(
                    jump.code, jump.dst, jump.src, target - (starts[index] + 1), jump.imm
                )
            local = starts[index]
            slot_of = []
            for insn in insns:
                slot_of.append(local)
                local += insn.slots
            refs += [(slot_of[i], kind, name) for i, kind, name in block.refs]
            out += insns
        out += _diff_epilogue()
        return out, refs


def _diff_prologue() -> list[Instruction]:
    mov = alu_opcode(Class.ALU64, AluOp.MOV, Source.X)
    out = [
        Instruction(mov, 6, 1),
        Instruction(mem_opcode(Class.LDX, Mode.MEM, Size.W), 7, 6, 0),
        Instruction(mem_opcode(Class.LDX, Mode.MEM, Size.W), 8, 6, 4),
        Instruction(mov, 2, 7),
        Instruction(alu_opcode(Class.ALU64, AluOp.ADD, Source.K), 2, imm=DIFF_PACKET_SIZE),
    ]
    body_guard = len(out)
    out.append(Instruction(jmp_opcode(Class.JMP, JmpOp.JGT, Source.X), 2, 8))  # to the abort
    st = mem_opcode(Class.ST, Mode.MEM, Size.DW)
    out += [Instruction(st, 10, off=-8 * (i + 1)) for i in range(DIFF_STACK // 8)]
    out += [Instruction(st, 10, off=DIFF_VALUE)]
    out.append(Instruction(st, 10, off=DIFF_KEY))
    out[body_guard] = Instruction(out[body_guard].code, 2, 8, -1)  # patched by the caller
    return out


def _diff_epilogue() -> list[Instruction]:
    return [
        Instruction(mem_opcode(Class.STX, Mode.MEM, Size.DW), 7, 0, 0),
        Instruction(alu_opcode(Class.ALU64, AluOp.MOV, Source.K), 0, imm=2),
        Instruction(jmp_opcode(Class.JMP, JmpOp.EXIT, Source.K)),
        Instruction(alu_opcode(Class.ALU64, AluOp.MOV, Source.K), 0, imm=1),
        Instruction(jmp_opcode(Class.JMP, JmpOp.EXIT, Source.K)),
    ]


def diff_link(insns: list[Instruction]) -> list[Instruction]:
    """Point the prologue's length check at the abort (the last two instructions)."""
    out = list(insns)
    guard = 5
    slots = [0]
    for insn in out:
        slots.append(slots[-1] + insn.slots)
    abort = slots[len(out) - 2]
    out[guard] = Instruction(out[guard].code, 2, 8, abort - (slots[guard] + 1))
    return out


def _diff_alu(rng: _random.Random, regs: tuple[int, ...], v4: bool) -> Instruction:
    cls = rng.choice((Class.ALU, Class.ALU64))
    width = 64 if cls == Class.ALU64 else 32
    dst = rng.choice(regs)
    roll = rng.random()
    if roll < 0.05:
        return Instruction(alu_opcode(cls, AluOp.NEG, Source.K), dst)
    if roll < 0.1:
        if cls == Class.ALU64 and v4:
            return Instruction(
                alu_opcode(cls, AluOp.END, Source.K), dst, imm=rng.choice((16, 32, 64))
            )
        source = rng.choice((Source.K, Source.X))
        return Instruction(
            alu_opcode(Class.ALU, AluOp.END, source), dst, imm=rng.choice((16, 32, 64))
        )
    if v4 and roll < 0.16:
        bits = rng.choice((8, 16, 32) if cls == Class.ALU64 else (8, 16))
        return Instruction(alu_opcode(cls, AluOp.MOV, Source.X), dst, rng.choice(regs), bits)
    op = rng.choice(_DIFF_ALU)
    off = 1 if v4 and op in (AluOp.DIV, AluOp.MOD) and rng.random() < 0.4 else 0
    if rng.random() < 0.5:
        return Instruction(alu_opcode(cls, op, Source.X), dst, rng.choice(regs), off)
    if op in _SHIFTS:
        return Instruction(alu_opcode(cls, op, Source.K), dst, imm=rng.randrange(width))
    imm = _diff_imm(rng)
    if op in (AluOp.DIV, AluOp.MOD) and imm == 0:
        imm = rng.choice((1, -1, 3))
    return Instruction(alu_opcode(cls, op, Source.K), dst, off=off, imm=imm)


def _diff_reload_args(rng: _random.Random) -> list[Instruction]:
    return [_diff_lddw(reg, _diff_value64(rng)) for reg in (1, 2, 3, 4, 5)]


def _diff_stack_offset(rng: _random.Random, size: Size, limit: int = DIFF_STACK) -> int:
    nbytes = _SIZE_BYTES[size]
    return -nbytes * rng.randint(1, limit // nbytes)


def _diff_memory(rng: _random.Random, v4: bool) -> list[Instruction]:
    size = rng.choice(list(Size))
    nbytes = _SIZE_BYTES[size]
    on_packet = rng.random() < 0.4
    base = 7 if on_packet else 10
    if on_packet:
        off = rng.randint(8, DIFF_PACKET_SIZE - nbytes)
    else:
        off = _diff_stack_offset(rng, size)
    roll = rng.random()
    if roll < 0.35:
        return [
            Instruction(mem_opcode(Class.STX, Mode.MEM, size), base, rng.choice(DIFF_SCRATCH), off)
        ]
    if roll < 0.5:
        return [
            Instruction(mem_opcode(Class.ST, Mode.MEM, size), base, off=off, imm=_diff_imm(rng))
        ]
    if v4 and size != Size.DW and roll < 0.62:
        return [
            Instruction(
                mem_opcode(Class.LDX, Mode.MEMSX, size), rng.choice(DIFF_SCRATCH), base, off
            )
        ]
    return [Instruction(mem_opcode(Class.LDX, Mode.MEM, size), rng.choice(DIFF_SCRATCH), base, off)]


def _diff_atomic(
    rng: _random.Random, base: int, off: int, size: Size, srcs: tuple[int, ...] = DIFF_SCRATCH
) -> Instruction:
    ops = _DIFF_ATOMICS if base != 0 else [o for o in _DIFF_ATOMICS if o != AtomicOp.CMPXCHG]
    op = rng.choice(ops)
    src = rng.choice([r for r in srcs if r != 0] if op == AtomicOp.CMPXCHG else srcs)
    return Instruction(mem_opcode(Class.STX, Mode.ATOMIC, size), base, src, off, int(op))


def _diff_map_block(rng: _random.Random) -> DiffBlock:
    name = rng.choice(("arr", "hash"))
    entries = DIFF_ARRAY_ENTRIES if name == "arr" else DIFF_HASH_ENTRIES
    key = rng.randrange(entries + 2)  # sometimes past an array's end
    st_w = mem_opcode(Class.ST, Mode.MEM, Size.W)
    insns = [Instruction(st_w, 10, off=DIFF_KEY, imm=key), _diff_lddw(1, 0, int(Pseudo.MAP_FD))]
    refs = [(1, "map", name)]
    key_ptr = [
        Instruction(alu_opcode(Class.ALU64, AluOp.MOV, Source.X), 2, 10),
        Instruction(alu_opcode(Class.ALU64, AluOp.ADD, Source.K), 2, imm=DIFF_KEY),
    ]
    call = jmp_opcode(Class.JMP, JmpOp.CALL, Source.K)
    roll = rng.random()
    if roll < 0.5:  # lookup, then work on the value
        body: list[Instruction] = []
        for _ in range(rng.randint(1, 3)):
            kind = rng.random()
            size = rng.choice((Size.W, Size.DW)) if kind < 0.4 else rng.choice(list(Size))
            off = rng.randrange(0, 8, _SIZE_BYTES[size])
            if kind < 0.4:
                body.append(_diff_atomic(rng, 0, off, size, (9,)))  # r1-r5 are gone after a call
            elif kind < 0.7:
                body.append(Instruction(mem_opcode(Class.STX, Mode.MEM, size), 0, 9, off))
            else:
                body.append(Instruction(mem_opcode(Class.LDX, Mode.MEM, size), 9, 0, off))
        body.append(Instruction(mem_opcode(Class.LDX, Mode.MEM, Size.DW), 0, 0, 0))
        insns += key_ptr + [Instruction(call, imm=1)]
        insns.append(Instruction(jmp_opcode(Class.JMP, JmpOp.JEQ, Source.K), 0, off=len(body)))
        insns += body
    elif roll < 0.8 or name == "arr":  # update from a register, with a random flag
        value = rng.choice((2, 3, 4, 5, 9))  # r1 already holds the map
        insns += [
            Instruction(mem_opcode(Class.STX, Mode.MEM, Size.DW), 10, value, DIFF_VALUE),
            *key_ptr,
            Instruction(alu_opcode(Class.ALU64, AluOp.MOV, Source.X), 3, 10),
            Instruction(alu_opcode(Class.ALU64, AluOp.ADD, Source.K), 3, imm=DIFF_VALUE),
            Instruction(
                alu_opcode(Class.ALU64, AluOp.MOV, Source.K), 4, imm=rng.choice((0, 0, 1, 2))
            ),
            Instruction(call, imm=2),
        ]
    else:  # delete from the hash
        insns += key_ptr + [Instruction(call, imm=3)]
    return DiffBlock(insns + _diff_reload_args(rng), refs)


def _diff_call_block(rng: _random.Random) -> DiffBlock:
    call = Instruction(jmp_opcode(Class.JMP, JmpOp.CALL, Source.K), src=int(CallKind.LOCAL), imm=-1)
    return DiffBlock([call, *_diff_reload_args(rng)], [(0, "call", "sub")])


def random_diff_program(seed: int, length: int = 30, v4: bool = True) -> DiffProgram:
    """The program for ``seed``: ``length`` blocks (see the section comment above)."""
    rng = _random.Random(f"exec-diff:{seed}")
    blocks = [DiffBlock([_diff_lddw(reg, _diff_value64(rng)) for reg in DIFF_SCRATCH])]
    for index in range(1, length):
        roll = rng.random()
        if roll < 0.35:
            blocks.append(DiffBlock([_diff_alu(rng, DIFF_SCRATCH, v4)]))
        elif roll < 0.5:
            cls = rng.choice((Class.JMP, Class.JMP32))
            op = rng.choice(_DIFF_JMP)
            if rng.random() < 0.5:
                jump = Instruction(
                    jmp_opcode(cls, op, Source.X),
                    rng.choice(DIFF_SCRATCH),
                    rng.choice(DIFF_SCRATCH),
                )
            else:
                jump = Instruction(
                    jmp_opcode(cls, op, Source.K), rng.choice(DIFF_SCRATCH), imm=_diff_imm(rng)
                )
            blocks.append(DiffBlock([jump], target=rng.randint(index + 1, min(length, index + 6))))
        elif roll < 0.7:
            blocks.append(DiffBlock(_diff_memory(rng, v4)))
        elif roll < 0.78:
            size = rng.choice((Size.W, Size.DW))
            blocks.append(DiffBlock([_diff_atomic(rng, 10, _diff_stack_offset(rng, size), size)]))
        elif roll < 0.93:
            blocks.append(_diff_map_block(rng))
        else:
            blocks.append(_diff_call_block(rng))
    sub = [Instruction(alu_opcode(Class.ALU64, AluOp.MOV, Source.X), 0, 1)]
    sub += [_diff_alu(rng, (0, 1, 2, 3, 4, 5), v4) for _ in range(rng.randint(2, 8))]
    sub.append(Instruction(jmp_opcode(Class.JMP, JmpOp.EXIT, Source.K)))
    packet = bytes(rng.getrandbits(8) for _ in range(DIFF_PACKET_SIZE))
    return DiffProgram(blocks, sub, packet, v4)


def diff_programs(v4: bool = True) -> st.SearchStrategy[DiffProgram]:
    """Random execution-differential programs (shrinks over the seed)."""
    return st.integers(0, 2**32 - 1).map(lambda seed: random_diff_program(seed, v4=v4))
