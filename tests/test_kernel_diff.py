"""Kernel differential test: random ALU/JMP programs give the same registers in Linux and pybpf.

Each program is a random straight-line body of ALU, ALU64, JMP and JMP32 instructions
(forward conditional jumps only, so it ends; sdiv/smod/movsx/bswap/jmp32 included) run on
ten random 64-bit register values. In the kernel it runs inside an XDP program
(BPF_PROG_TEST_RUN) whose prologue spills the context pointer to the stack and loads r0-r9
with ``lddw``, and whose epilogue spills r0-r9 and copies them into the packet, so all 64
bits of every register come back. pybpf's interpreter runs the same prologue, body and spill
(r1 holds a register number where the kernel has the context pointer) once per register,
returning the spilled register that r1 selects.

The generator avoids only what the verifier refuses by design: shifts by an immediate >= the
width and division or modulo by an immediate 0 (register divisors of 0 are generated and must
agree). Set ``PYBPF_KERNEL_DIFF_SEED`` to replay another seed; failures print the seed,
program number, the shortest failing prefix of the body and both register files.
"""

from __future__ import annotations

import os
import random
import struct
import time
from dataclasses import dataclass

import pytest

from kernel import requires_bpf
from pybpf.isa import Instruction, encode
from pybpf.isa.disasm import disassemble
from pybpf.isa.instruction import LDDW_CODE
from pybpf.isa.opcodes import AluOp, Class, JmpOp, Mode, Size, Source, alu_opcode, jmp_opcode
from pybpf.isa.opcodes import mem_opcode as mem

SEED = int(os.environ.get("PYBPF_KERNEL_DIFF_SEED", "0x6b646966"), 0)
PROGRAMS = 300
BODY_LENGTHS = (20, 40)
NREGS = 10  # r0..r9; r10 is the frame pointer
PACKET = bytes(8 * NREGS)
XDP_PASS, XDP_ABORTED = 2, 0

MASK64 = (1 << 64) - 1

_ALU_OPS = [
    AluOp.ADD,
    AluOp.SUB,
    AluOp.MUL,
    AluOp.DIV,
    AluOp.MOD,
    AluOp.OR,
    AluOp.AND,
    AluOp.LSH,
    AluOp.RSH,
    AluOp.ARSH,
    AluOp.XOR,
    AluOp.MOV,
]
_JMP_OPS = [
    JmpOp.JEQ,
    JmpOp.JNE,
    JmpOp.JGT,
    JmpOp.JGE,
    JmpOp.JLT,
    JmpOp.JLE,
    JmpOp.JSET,
    JmpOp.JSGT,
    JmpOp.JSGE,
    JmpOp.JSLT,
    JmpOp.JSLE,
]
_SPECIAL64 = [
    0,
    1,
    MASK64,
    1 << 63,
    (1 << 63) - 1,
    0xFFFFFFFF,
    0x80000000,
    0x7FFFFFFF,
    0xFFFFFFFF80000000,
    0x100000000,
]
_SPECIAL32 = [0, 1, -1, 0x7FFFFFFF, -0x80000000, 2, -2]


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _imm64(rng: random.Random) -> int:
    pick = rng.random()
    if pick < 0.3:
        return rng.choice(_SPECIAL64)
    if pick < 0.5:
        return rng.randint(-300, 300) & MASK64
    if pick < 0.6:
        return rng.getrandbits(32)
    return rng.getrandbits(64)


def _imm32(rng: random.Random) -> int:
    pick = rng.random()
    if pick < 0.3:
        return rng.choice(_SPECIAL32)
    if pick < 0.6:
        return rng.randint(-64, 64)
    return _s32(rng.getrandbits(32))


def lddw(dst: int, value: int) -> Instruction:
    """``dst = value ll``."""
    return Instruction(LDDW_CODE, dst=dst, imm=_s32(value), imm_hi=_s32(value >> 32))


def _alu(cls: Class, op: AluOp, dst: int, src: int | None = None, imm: int = 0, off: int = 0):
    source = Source.K if src is None else Source.X
    return Instruction(alu_opcode(cls, op, source), dst=dst, src=src or 0, off=off, imm=imm)


# A body item: the instruction, and for a jump the index of the body item it jumps to
# (len(body) means "just past the body").
@dataclass(frozen=True)
class Item:
    insn: Instruction
    target: int | None = None


def _random_alu(rng: random.Random, v4: bool) -> Instruction:
    cls = rng.choice((Class.ALU, Class.ALU64))
    width = 64 if cls == Class.ALU64 else 32
    dst = rng.randrange(NREGS)
    roll = rng.random()
    if roll < 0.05:
        return _alu(cls, AluOp.NEG, dst)
    if roll < 0.12:
        bits = rng.choice((16, 32, 64))
        if cls == Class.ALU64 and v4:
            return _alu(cls, AluOp.END, dst, imm=bits)  # bswap
        # le (source K) or be (source X); src stays 0
        code = alu_opcode(Class.ALU, AluOp.END, rng.choice((Source.K, Source.X)))
        return Instruction(code, dst=dst, imm=bits)
    if not v4:
        roll = 0.26 + roll * 0.74  # no movsx, sdiv or smod before cpu v4
    if roll < 0.18:
        bits = rng.choice((8, 16, 32) if cls == Class.ALU64 else (8, 16))
        return _alu(cls, AluOp.MOV, dst, src=rng.randrange(NREGS), off=bits)  # movsx
    if roll < 0.26:
        op = rng.choice((AluOp.DIV, AluOp.MOD))
        if rng.random() < 0.5:
            return _alu(cls, op, dst, src=rng.randrange(NREGS), off=1)  # sdiv/smod
        return _alu(cls, op, dst, imm=_imm32(rng) or rng.choice((1, -1, 7)), off=1)
    op = rng.choice(_ALU_OPS)
    if rng.random() < 0.5:
        return _alu(cls, op, dst, src=rng.randrange(NREGS))
    if op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH):
        return _alu(cls, op, dst, imm=rng.randrange(width))
    imm = _imm32(rng)
    if op in (AluOp.DIV, AluOp.MOD) and imm == 0:
        imm = rng.choice((1, -1, 3))
    return _alu(cls, op, dst, imm=imm)


def random_body(rng: random.Random, length: int, v4: bool = True) -> list[Item]:
    """A random body of ``length`` items; jumps only forward, at most to just past the end.

    ``v4=False`` leaves out the cpu v4 instructions (sdiv, smod, movsx, bswap)."""
    items: list[Item] = []
    for index in range(length):
        roll = rng.random()
        if roll < 0.2:
            cls = rng.choice((Class.JMP, Class.JMP32))
            op = rng.choice(_JMP_OPS)
            target = rng.randint(index + 1, min(length, index + 8))
            if rng.random() < 0.5:
                insn = Instruction(
                    jmp_opcode(cls, op, Source.X),
                    dst=rng.randrange(NREGS),
                    src=rng.randrange(NREGS),
                )
            else:
                insn = Instruction(
                    jmp_opcode(cls, op, Source.K), dst=rng.randrange(NREGS), imm=_imm32(rng)
                )
            items.append(Item(insn, target))
        elif roll < 0.25:
            items.append(Item(lddw(rng.randrange(NREGS), _imm64(rng))))
        else:
            items.append(Item(_random_alu(rng, v4)))
    return items


def materialize(items: list[Item], length: int | None = None) -> list[Instruction]:
    """The first ``length`` items as instructions, jump offsets in slots; jumps past the
    kept prefix land just after it."""
    kept = items if length is None else items[:length]
    starts = [0]
    for item in kept:
        starts.append(starts[-1] + item.insn.slots)
    out = []
    for index, item in enumerate(kept):
        insn = item.insn
        if item.target is not None:
            target = min(item.target, len(kept))
            off = starts[target] - starts[index + 1]
            insn = Instruction(insn.code, insn.dst, insn.src, off, insn.imm)
        out.append(insn)
    return out


def _stx(base: int, off: int, src: int) -> Instruction:
    return Instruction(mem(Class.STX, Mode.MEM, Size.DW), dst=base, src=src, off=off)


def _ldx(size: Size, dst: int, base: int, off: int) -> Instruction:
    return Instruction(mem(Class.LDX, Mode.MEM, size), dst=dst, src=base, off=off)


EXIT = Instruction(jmp_opcode(Class.JMP, JmpOp.EXIT, Source.K))


def kernel_program(init: list[int], body: list[Instruction]) -> list[Instruction]:
    """The XDP program that runs ``body`` on ``init`` and writes r0-r9 to the packet."""
    slot = [-16 - 8 * reg for reg in range(NREGS)]  # stack slot of each register
    copy = []
    for reg in range(NREGS):
        copy += [_ldx(Size.DW, 5, 10, slot[reg]), _stx(2, 8 * reg, 5)]
    out = [_stx(10, -8, 1)]  # spill the context pointer
    out += [lddw(reg, value) for reg, value in enumerate(init)]
    out += body
    out += [_stx(10, slot[reg], reg) for reg in range(NREGS)]
    out += [
        _ldx(Size.DW, 1, 10, -8),  # ctx
        _ldx(Size.W, 2, 1, 0),  # data
        _ldx(Size.W, 3, 1, 4),  # data_end
        _alu(Class.ALU64, AluOp.MOV, 4, src=2),
        _alu(Class.ALU64, AluOp.ADD, 4, imm=len(PACKET)),
        Instruction(jmp_opcode(Class.JMP, JmpOp.JGT, Source.X), dst=4, src=3, off=len(copy) + 2),
        *copy,
        _alu(Class.ALU64, AluOp.MOV, 0, imm=XDP_PASS),
        EXIT,
        _alu(Class.ALU64, AluOp.MOV, 0, imm=XDP_ABORTED),
        EXIT,
    ]
    return out


def kernel_registers(init: list[int], body: list[Instruction]) -> list[int]:
    """r0-r9 after ``body`` as the Linux kernel computes them."""
    from pybpf import syscall

    fd, _log = syscall.prog_load(
        syscall.ProgType.XDP, encode(kernel_program(init, body)), log_level=0
    )
    with fd:
        result = syscall.prog_test_run(fd, PACKET)
    assert result.retval == XDP_PASS, f"the register dump did not fit: retval {result.retval}"
    return list(struct.unpack(f"<{NREGS}Q", result.data_out[: len(PACKET)]))


def pybpf_program(init: list[int], body: list[Instruction]) -> list[Instruction]:
    """The pybpf program: the kernel one's prologue, body and register spill, then
    ``r0 = <spilled r[r1]>`` where r1 (spilled first) selects the register to return."""
    slot = [-16 - 8 * reg for reg in range(NREGS)]
    out = [_stx(10, -8, 1)]  # spill the selector
    out += [lddw(reg, value) for reg, value in enumerate(init)]
    out += body
    out += [_stx(10, slot[reg], reg) for reg in range(NREGS)]
    out += [
        _ldx(Size.DW, 1, 10, -8),
        _alu(Class.ALU64, AluOp.LSH, 1, imm=3),
        _alu(Class.ALU64, AluOp.MOV, 2, src=10),
        _alu(Class.ALU64, AluOp.SUB, 2, src=1),
        _ldx(Size.DW, 0, 2, slot[0]),
        EXIT,
    ]
    return out


def pybpf_registers(interpreter: type, init: list[int], body: list[Instruction]) -> list[int]:
    """r0-r9 after ``body`` as pybpf's interpreter computes them (one run per register)."""
    with interpreter(pybpf_program(init, body)) as vm:
        return [vm.run((reg,)) & MASK64 for reg in range(NREGS)]


def cases(seed: int, count: int, v4: bool = True):
    """``count`` reproducible ``(number, init, items)`` cases for ``seed``."""
    for number in range(count):
        rng = random.Random(f"{seed}:{number}")
        init = [_imm64(rng) for _ in range(NREGS)]
        yield number, init, random_body(rng, rng.randint(*BODY_LENGTHS), v4)


_V4: list[bool] = []


def kernel_has_v4() -> bool:
    """Whether this kernel's verifier takes cpu v4 instructions (Linux 6.6+): sdiv here."""
    if not _V4:
        from pybpf import syscall
        from pybpf.errors import SyscallError

        sdiv = [
            _alu(Class.ALU64, AluOp.MOV, 0, imm=XDP_PASS),
            _alu(Class.ALU64, AluOp.DIV, 0, imm=1, off=1),
            EXIT,
        ]
        try:
            syscall.prog_load(syscall.ProgType.XDP, encode(sdiv), log_level=0)[0].close()
            _V4.append(True)
        except SyscallError:
            _V4.append(False)
    return _V4[0]


def _report(seed, number, init, items, interpreter) -> str:
    """The shortest failing prefix of a disagreeing body, with both register files."""
    length = len(items)
    for cut in range(1, len(items) + 1):
        body = materialize(items, cut)
        if kernel_registers(init, body) != pybpf_registers(interpreter, init, body):
            length = cut
            break
    body = materialize(items, length)
    kern = kernel_registers(init, body)
    mine = pybpf_registers(interpreter, init, body)
    lines = [
        f"seed {seed:#x} (PYBPF_KERNEL_DIFF_SEED), program {number}: "
        f"first {length} of {len(items)} body instructions disagree",
        "initial registers: " + ", ".join(f"r{i}={v:#x}" for i, v in enumerate(init)),
        disassemble(body),
    ]
    for reg in range(NREGS):
        mark = "  <-- differs" if kern[reg] != mine[reg] else ""
        lines.append(f"r{reg}: kernel {kern[reg]:#018x} pybpf {mine[reg]:#018x}{mark}")
    return "\n".join(lines)


# ---- tests --------------------------------------------------------------------------------


@requires_bpf
def test_harness_returns_every_register():
    init = [(0x1111111111111111 * (reg + 1)) & MASK64 for reg in range(NREGS)]
    assert kernel_registers(init, []) == init
    add = [_alu(Class.ALU64, AluOp.ADD, 0, src=9), _alu(Class.ALU, AluOp.MOV, 9, imm=-1)]
    expected = [(init[0] + init[9]) & MASK64, *init[1:9], 0xFFFFFFFF]
    assert kernel_registers(init, add) == expected


@requires_bpf
def test_generated_programs_pass_the_verifier():
    # Every shape the generator makes must load: a refusal here is a generator bug.
    rng = random.Random(SEED)
    for _ in range(30):
        init = [_imm64(rng) for _ in range(NREGS)]
        kernel_registers(init, materialize(random_body(rng, 40, kernel_has_v4())))


@requires_bpf
def test_kernel_matches_interpreter():
    try:
        from pybpf.vm import Interpreter
    except ImportError:
        pytest.skip("pybpf.vm not available")
    started = time.perf_counter()
    failures = []
    for number, init, items in cases(SEED, PROGRAMS, kernel_has_v4()):
        body = materialize(items)
        if kernel_registers(init, body) != pybpf_registers(Interpreter, init, body):
            failures.append(_report(SEED, number, init, items, Interpreter))
            if len(failures) == 3:
                break
    elapsed = time.perf_counter() - started
    summary = f"{len(failures)} disagreement(s) in {elapsed:.1f}s:"
    assert not failures, "\n\n".join([summary, *failures])
