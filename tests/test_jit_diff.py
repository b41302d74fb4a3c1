"""JIT against the interpreter on random programs (hypothesis): same r0, memory and errors.

Four generators, from narrow to wide:

- one ALU or jump instruction on register operands (one compiled program per operation,
  cached, run on many operand pairs: LLVM cannot fold anything);
- batches of ALU/jump instructions on constant operands, each result stored to memory
  (LLVM folds them at compile time, where undefined behaviour would show);
- structured programs: ALU, loads and stores on the input region and the stack (with
  some out-of-bounds offsets), atomics, forward branches, bounded loops, helper calls and
  local calls, ending with a dump of every register to memory; run with debug checks and,
  when the interpreter found no fault, unchecked too;
- arbitrary instruction streams from ``tests/strategies.py``: whatever the interpreter
  accepts must run (or fail) identically in the JIT.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from pybpf.isa import AluOp, AtomicOp, Class, Instruction, JmpOp, Source
from pybpf.isa.opcodes import alu_opcode
from pybpf.jit import JitProgram
from pybpf.memory import Region
from pybpf.vm import Interpreter
from strategies import programs
from test_jit import EXIT, I, needs_jit, outcome, same

pytestmark = needs_jit

U64 = 1 << 64
EDGES64 = [0, 1, 2, 7, 31, 32, 33, 63, 64, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0x7FFFFFFF,
           0x80000000, 0xFFFFFFFF, 0x1_0000_0000, 0x7FFF_FFFF_FFFF_FFFF,
           0x8000_0000_0000_0000, U64 - 2, U64 - 1]  # fmt: skip
EDGES32 = [0, 1, -1, 2, -2, 31, 32, 63, 64, 0x7FFFFFFF, -0x80000000, 0x7FFF, -0x8000]
u64s = st.one_of(st.sampled_from(EDGES64), st.integers(0, U64 - 1))
imm32s = st.one_of(st.sampled_from(EDGES32), st.integers(-(1 << 31), (1 << 31) - 1))

BINARY = [AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.DIV, AluOp.OR, AluOp.AND, AluOp.LSH,
          AluOp.RSH, AluOp.MOD, AluOp.XOR, AluOp.MOV, AluOp.ARSH]  # fmt: skip
CONDITIONS = [op for op in JmpOp if op not in (JmpOp.JA, JmpOp.CALL, JmpOp.EXIT, JmpOp.JCOND)]
UNARY = ["neg", "le16", "le32", "le64", "be16", "be32", "be64", "bswap16", "bswap32",
         "bswap64", "movsx8", "movsx16", "movsx32"]  # fmt: skip

# An operation: ("alu", op, w64, signed) | ("jmp", op, w64) | ("unary", name, w64)
alu_ops = st.tuples(st.just("alu"), st.sampled_from(BINARY), st.booleans(), st.booleans())
jmp_ops = st.tuples(st.just("jmp"), st.sampled_from(CONDITIONS), st.booleans())
unary_ops = st.tuples(st.just("unary"), st.sampled_from(UNARY), st.booleans())
operations = st.one_of(alu_ops, jmp_ops, unary_ops)


def apply(operation, dst: int, src, *, out: int = 0) -> list[Instruction]:
    """Instructions computing ``operation`` on rdst (and ``src``: a register name or imm),
    leaving the result in r``out`` (jumps: 1 when taken, else 2)."""
    kind = operation[0]
    if kind == "alu":
        _, op, w64, signed = operation
        off = 1 if signed and op in (AluOp.DIV, AluOp.MOD) else 0
        return [I.alu(op, dst, src, w64=w64, off=off), I.mov(out, f"r{dst}")]
    if kind == "jmp":
        _, op, w64 = operation
        return [I.mov(out, 1), I.jmp(op, dst, src, 1, w64=w64), I.mov(out, 2)]
    _, name, w64 = operation
    cls = Class.ALU64 if w64 else Class.ALU
    if name == "neg":
        insn = Instruction(alu_opcode(cls, AluOp.NEG, Source.K), dst)
    elif name.startswith("movsx"):
        bits = int(name[5:])
        if not w64 and bits == 32:
            bits = 16
        insn = Instruction(alu_opcode(cls, AluOp.MOV, Source.X), dst, dst, bits)
    else:
        bits = int(name[-2:])
        if name.startswith("bswap"):
            insn = Instruction(alu_opcode(Class.ALU64, AluOp.END, Source.K), dst, imm=bits)
        else:
            source = Source.X if name.startswith("be") else Source.K
            insn = Instruction(alu_opcode(Class.ALU, AluOp.END, source), dst, imm=bits)
    return [insn, I.mov(out, f"r{dst}")]


# ---- 1. register operands: one compiled program per operation --------------------------------
@cache
def _compiled(operation):
    prog = [I.mov(3, "r1"), *apply(operation, 3, "r2"), EXIT]
    return Interpreter(prog, entry_registers=(1, 2, 10)), JitProgram(prog, entry_registers=(1, 2))


@settings(max_examples=200, deadline=None)
@given(operation=operations, a=u64s, b=u64s)
def test_register_operands(operation, a, b):
    interp, jit = _compiled(operation)
    assert jit.run((a, b)) == interp.run((a, b))


# ---- 2. constant operands, folded by LLVM, many per compiled program -------------------------
@st.composite
def constant_batches(draw):
    prog, count = [], draw(st.integers(1, 12))
    for i in range(count):
        operation = draw(operations)
        prog.append(I.lddw(3, draw(u64s)))
        if draw(st.booleans()):
            prog.append(I.lddw(4, draw(u64s)))
            src = "r4"
        else:
            src = draw(imm32s)
        prog += apply(operation, 3, src, out=5)
        prog.append(I.stx(8, 1, 8 * i, 5))
    return prog + [I.mov(0, "r5"), EXIT]


@settings(max_examples=40, deadline=None)
@given(prog=constant_batches())
def test_constant_operands_folded_at_compile_time(prog):
    interp, jit = same(prog, bytes(96), entry_registers=(1, 10), debug_checks=False)
    assert interp[0] == "ok" and jit == interp


# ---- 3. structured programs ------------------------------------------------------------------
MEM = 128  # bytes 0..63: the program's data; 64..127: the final register dump
DATA_REGS = [0, 3, 4, 5, 6, 7, 8]  # r9 holds the region's address, r1-r2 are call arguments
HELPER = 1000


def mix_helper(ctx, r1, r2, r3, r4, r5):
    """A deterministic helper: some arithmetic on its arguments."""
    return (r1 * 3 + r2 ^ r3 - r4 + (r5 << 7)) & (U64 - 1)


def _reinit_args(draw) -> list[Instruction]:
    return [I.mov(r, draw(imm32s)) for r in (1, 2, 3, 4, 5)]


@st.composite
def _alu_step(draw, regs=DATA_REGS):
    operation = draw(st.one_of(alu_ops, unary_ops))
    dst = draw(st.sampled_from(regs))
    src = f"r{draw(st.sampled_from(regs))}" if draw(st.booleans()) else draw(imm32s)
    insns = apply(operation, dst, src, out=dst)
    return insns[:1]  # the result stays in dst


@st.composite
def _memory_step(draw):
    size = draw(st.sampled_from([1, 2, 4, 8]))
    reg = draw(st.sampled_from(DATA_REGS))
    kind = draw(st.sampled_from(["ldx", "ldsx", "stx", "st", "stack", "atomic"]))
    # Mostly inside the 64-byte data area, sometimes just outside the region.
    off = draw(st.one_of(st.integers(0, 64 - size), st.sampled_from([-1, -8, MEM, MEM - 1])))
    if kind == "ldx":
        return [I.ldx(size, reg, 9, off)]
    if kind == "ldsx":
        return [I.ldx(min(size, 4), reg, 9, off, signed=True)]
    if kind == "stx":
        return [I.stx(size, 9, off, reg)]
    if kind == "st":
        return [I.st(size, 9, off, draw(imm32s))]
    if kind == "stack":
        slot = -draw(st.integers(1, 64)) * size
        slot = draw(st.one_of(st.just(slot), st.sampled_from([-513, 0, 1])))
        return [I.stx(size, 10, slot, reg), I.ldx(size, draw(st.sampled_from(DATA_REGS)), 10, slot)]
    size = draw(st.sampled_from([4, 8]))
    off = draw(st.one_of(st.integers(0, 64 // size - 1).map(lambda i: i * size), st.just(MEM)))
    op = draw(st.sampled_from([op for op in AtomicOp if op != AtomicOp.LOAD_ACQ]))
    return [I.atomic(size, op, 9, off, reg)]


@st.composite
def _call_step(draw):
    return _reinit_args(draw) + [I.call(HELPER)] + _reinit_args(draw)


@st.composite
def _loop_step(draw):
    body = draw(st.lists(_alu_step(regs=[0, 3, 4, 5, 6, 8]), min_size=1, max_size=3))
    flat = [insn for step in body for insn in step]
    n = draw(st.integers(1, 6))
    slots = sum(insn.slots for insn in flat) + 2
    return [I.mov(7, n), *flat, I.add(7, -1), I.jmp(JmpOp.JNE, 7, 0, -slots)]


@st.composite
def structured_programs(draw):
    steps = [[I.mov(9, "r1")] + [I.lddw(r, draw(u64s)) for r in DATA_REGS]]
    branch_points = []
    for _ in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["alu", "alu", "mem", "mem", "branch", "call", "loop",
                                     "local"]))  # fmt: skip
        if kind == "alu":
            steps.append(draw(_alu_step()))
        elif kind == "mem":
            steps.append(draw(_memory_step()))
        elif kind == "call":
            steps.append(draw(_call_step()))
        elif kind == "loop":
            steps.append(draw(_loop_step()))
        elif kind == "local":
            steps.append(["LOCAL", *_reinit_args(draw)])
        else:
            branch_points.append(len(steps))
            steps.append(["BRANCH", draw(jmp_ops), draw(st.sampled_from(DATA_REGS)),
                          draw(st.one_of(imm32s, st.sampled_from(DATA_REGS).map("r{}".format))),
                          draw(st.integers(1, 3))])  # fmt: skip
    dump = [I.stx(8, 9, 64 + 8 * i, r) for i, r in enumerate(DATA_REGS)] + [EXIT]
    callee = [I.mov(0, "r1"), *draw(_alu_step(regs=[0, 1, 2, 3])), I.stx(8, 10, -8, 0),
              I.mov(1, "r0"), I.mov(2, 3), I.call(HELPER), I.ldx(8, 3, 10, -8),
              I.add(0, "r3"), EXIT]  # fmt: skip

    # Resolve branches (forward, over the next k steps) and local calls.
    def step_slots(step):
        if step and step[0] == "BRANCH":
            return 1
        if step and step[0] == "LOCAL":
            return 1 + len(step) - 1
        return sum(insn.slots for insn in step)

    sizes = [step_slots(s) for s in steps]
    total = sum(sizes) + len(dump)
    prog, pc = [], 0
    for i, step in enumerate(steps):
        if step and step[0] == "BRANCH":
            _, (_, op, w64), reg, src, k = step
            off = sum(sizes[i + 1 : i + 1 + k])
            prog.append(I.jmp(op, reg, src, off, w64=w64))
        elif step and step[0] == "LOCAL":
            prog.append(Instruction(0x85, src=1, imm=total - pc - 1))
            prog.extend(step[1:])
        else:
            prog.extend(step)
        pc += sizes[i]
    return prog + dump + callee


def _run_both(prog, mem, *, debug_checks=True):
    return same(prog, mem, entry_registers=(1, 2, 10), helpers={HELPER: mix_helper},
                debug_checks=debug_checks)  # fmt: skip


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prog=structured_programs(), mem=st.binary(min_size=MEM, max_size=MEM))
def test_structured_programs(prog, mem):
    interp, jit = _run_both(prog, mem)
    event(f"outcome: {interp[0]} {interp[1] if interp[0] == 'error' else ''}")
    assert jit == interp
    if interp[0] == "ok":  # no fault: the unchecked code must agree too
        assert _run_both(prog, mem, debug_checks=False)[1] == interp


# ---- 4. arbitrary instruction streams --------------------------------------------------------
DETERMINISTIC = {i: mix_helper for i in range(1, 12)}


@st.composite
def arbitrary_programs(draw):
    """Any valid instructions after every register is set, jumps and calls kept in range."""
    body = draw(programs(max_size=12))
    prefix = [I.lddw(r, draw(u64s)) for r in (0, 4, 5, 6, 7, 8, 9)]
    prog = prefix + body + [EXIT]
    nslots = sum(insn.slots for insn in prog)
    fixed, pc = [], 0
    for insn in prog:
        if insn.is_jump or (insn.is_call and insn.src == 1):
            target = draw(st.integers(len(prefix) * 2, nslots - 1))
            offset = target - pc - 1
            if insn.is_call or (insn.cls == Class.JMP32 and insn.jmp_op == JmpOp.JA):
                insn = replace(insn, imm=offset)
            else:
                insn = replace(insn, off=offset)
        fixed.append(insn)
        pc += insn.slots
    return fixed


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prog=arbitrary_programs(), args=st.tuples(u64s, u64s))
def test_arbitrary_programs_the_interpreter_accepts(prog, args):
    # r10 must not leak into values: the two engines' stack addresses differ.
    assume(not any(_reads_r10_as_value(insn) for insn in prog))
    with Region(64, kind="input") as region:
        try:
            interp = Interpreter(prog, entry_registers=(1, 2, 3, 10), budget=2000,
                                 helpers=DETERMINISTIC)  # fmt: skip
        except Exception:  # noqa: BLE001 - refused at load: nothing to compare
            event("refused by the interpreter")
            return
        run_args = (region.address, *args)
        expected = outcome(interp, region, run_args)
        region.view[:] = bytes(64)
        jit = JitProgram(prog, entry_registers=(1, 2, 3, 10), budget=2000,
                         helpers=DETERMINISTIC, debug_checks=True)  # fmt: skip
        try:
            got = outcome(jit, region, run_args)
        finally:
            jit.close()
            interp.close()
    event(f"outcome: {expected[0]} {expected[1] if expected[0] == 'error' else ''}")
    assert got == expected


def _reads_r10_as_value(insn: Instruction) -> bool:
    """True when r10 flows into a register or memory (not only as a memory base)."""
    if insn.is_alu and insn.source == Source.X and insn.src == 10:
        return True
    if insn.cls == Class.STX and insn.src == 10:
        return True
    if insn.is_jmp_class and insn.source == Source.X and 10 in (insn.src, insn.dst):
        return True
    if insn.is_callx and insn.callx_register == 10:
        return True
    return insn.is_alu and insn.dst == 10 or (insn.is_conditional_jump and insn.dst == 10)


@pytest.mark.parametrize("operation", [("alu", AluOp.DIV, True, True),
                                       ("alu", AluOp.MOD, False, True),
                                       ("unary", "bswap16", True)])  # fmt: skip
def test_register_operands_at_the_edges(operation):
    interp, jit = _compiled(operation)
    assert jit.run((U64 - 1, 0)) == interp.run((U64 - 1, 0))
