"""Interpreter semantics against an independent Python model (hypothesis).

The model below is written from RFC 9669's text, not from the interpreter: it works on
Python integers with explicit two's-complement conversions and floor-to-truncation
adjustments. Programs load the operands with ``lddw``, apply one instruction and return
the result (or which way a jump went) in r0.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.isa import AluOp, AtomicOp, JmpOp
from pybpf.memory import AddressSpace, Region
from pybpf.vm import Interpreter
from test_vm import EXIT, I

U64 = 1 << 64
EDGES64 = [0, 1, 2, 3, 7, 31, 32, 33, 63, 64, 65, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000,
           0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x1_0000_0000, 0x7FFF_FFFF_FFFF_FFFF,
           0x8000_0000_0000_0000, U64 - 2, U64 - 1]  # fmt: skip
EDGES32 = [0, 1, -1, 2, -2, 31, 32, 63, 64, 0x7FFFFFFF, -0x80000000, 0x7FFF, -0x8000]

u64s = st.one_of(st.sampled_from(EDGES64), st.integers(0, U64 - 1))
imm32s = st.one_of(st.sampled_from(EDGES32), st.integers(-(1 << 31), (1 << 31) - 1))

BINARY = [AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.DIV, AluOp.OR, AluOp.AND, AluOp.LSH,
          AluOp.RSH, AluOp.MOD, AluOp.XOR, AluOp.MOV, AluOp.ARSH]  # fmt: skip


# ---- the model -------------------------------------------------------------------------------
def to_signed(x: int, width: int) -> int:
    x %= 1 << width
    return x - (1 << width) if x >= 1 << (width - 1) else x


def trunc_div(a: int, b: int) -> int:
    q = a // b  # floors
    if q < 0 and q * b != a:
        q += 1  # toward zero
    return q


def model_alu(op: AluOp, width: int, a: int, b: int, signed: bool) -> int:
    """dst after ``dst op= b`` on ``width`` bits; ``a`` is the full 64-bit dst."""
    mod = 1 << width
    ua, ub = a % mod, b % mod
    if op == AluOp.ADD:
        r = ua + ub
    elif op == AluOp.SUB:
        r = ua - ub
    elif op == AluOp.MUL:
        r = ua * ub
    elif op == AluOp.DIV:
        if ub == 0:
            r = 0
        elif signed:
            r = trunc_div(to_signed(ua, width), to_signed(ub, width))
        else:
            r = ua // ub
    elif op == AluOp.MOD:
        if ub == 0:
            r = ua  # dst unchanged (its low half for ALU32)
        elif signed:
            sa, sb = to_signed(ua, width), to_signed(ub, width)
            r = sa - trunc_div(sa, sb) * sb
        else:
            r = ua % ub
    elif op == AluOp.OR:
        r = ua | ub
    elif op == AluOp.AND:
        r = ua & ub
    elif op == AluOp.XOR:
        r = ua ^ ub
    elif op == AluOp.LSH:
        r = ua << (ub % width)
    elif op == AluOp.RSH:
        r = ua >> (ub % width)
    elif op == AluOp.ARSH:
        r = to_signed(ua, width) >> (ub % width)
    elif op == AluOp.MOV:
        r = ub
    else:
        raise AssertionError(op)
    return r % mod


def model_cond(op: JmpOp, width: int, a: int, b: int) -> bool:
    mod = 1 << width
    ua, ub = a % mod, b % mod
    sa, sb = to_signed(ua, width), to_signed(ub, width)
    return {
        JmpOp.JEQ: ua == ub,
        JmpOp.JNE: ua != ub,
        JmpOp.JGT: ua > ub,
        JmpOp.JGE: ua >= ub,
        JmpOp.JLT: ua < ub,
        JmpOp.JLE: ua <= ub,
        JmpOp.JSET: (ua & ub) != 0,
        JmpOp.JSGT: sa > sb,
        JmpOp.JSGE: sa >= sb,
        JmpOp.JSLT: sa < sb,
        JmpOp.JSLE: sa <= sb,
    }[op]


def run(prog, *args, memory=None):
    vm = Interpreter(prog, entry_registers=(1, 2, 10))
    try:
        return vm.run(args, memory=memory)
    finally:
        vm.close()


# ---- ALU / ALU64 ------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    op=st.sampled_from(BINARY),
    w64=st.booleans(),
    register=st.booleans(),
    signed=st.booleans(),
    a=u64s,
    b=u64s,
    imm=imm32s,
)
def test_alu_binary_matches_model(op, w64, register, signed, a, b, imm):
    signed = signed and op in (AluOp.DIV, AluOp.MOD)
    width = 64 if w64 else 32
    operand = "r2" if register else imm
    prog = [
        I.lddw(1, a),
        I.lddw(2, b),
        I.alu(op, 1, operand, w64=w64, off=1 if signed else 0),
        I.mov(0, "r1"),
        EXIT,
    ]
    # K operands: ALU64 sign-extends imm to 64 bits, ALU32 takes its 32 bits.
    value = b if register else imm % U64
    assert run(prog) == model_alu(op, width, a, value, signed)


@settings(max_examples=200, deadline=None)
@given(w64=st.booleans(), a=u64s)
def test_neg_matches_model(w64, a):
    width = 64 if w64 else 32
    prog = [I.lddw(1, a), I.alu(AluOp.NEG, 1, w64=w64), I.mov(0, "r1"), EXIT]
    assert run(prog) == (-(a % (1 << width))) % (1 << width)


@settings(max_examples=200, deadline=None)
@given(bits=st.sampled_from([8, 16, 32]), w64=st.booleans(), a=u64s, b=u64s)
def test_movsx_matches_model(bits, w64, a, b):
    if bits == 32 and not w64:
        bits = 16  # ALU32 movsx has 8 and 16 only
    width = 64 if w64 else 32
    movsx = I.alu(AluOp.MOV, 1, "r2", w64=w64, off=bits)
    prog = [I.lddw(1, a), I.lddw(2, b), movsx, I.mov(0, "r1"), EXIT]
    assert run(prog) == to_signed(b, bits) % (1 << width)


@settings(max_examples=200, deadline=None)
@given(bits=st.sampled_from([16, 32, 64]), kind=st.sampled_from(["le", "be", "bswap"]), a=u64s)
def test_byte_swaps_match_model(bits, kind, a):
    low = (a % (1 << bits)).to_bytes(bits // 8, "little")
    if kind == "le":
        insn = I.alu(AluOp.END, 1, bits, w64=False)  # source K: to little endian
        expected = int.from_bytes(low, "little")
    elif kind == "be":
        insn = I.alu(AluOp.END, 1, "r0", w64=False)  # source X: to big endian
        insn = type(insn)(insn.code, 1, 0, 0, bits)
        expected = int.from_bytes(low, "big")
    else:
        insn = I.alu(AluOp.END, 1, bits, w64=True)
        expected = int.from_bytes(low, "big")
    assert run([I.lddw(1, a), insn, I.mov(0, "r1"), EXIT]) == expected


# ---- JMP / JMP32 ------------------------------------------------------------------------------
CONDITIONS = [JmpOp.JEQ, JmpOp.JNE, JmpOp.JGT, JmpOp.JGE, JmpOp.JLT, JmpOp.JLE, JmpOp.JSET,
              JmpOp.JSGT, JmpOp.JSGE, JmpOp.JSLT, JmpOp.JSLE]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    op=st.sampled_from(CONDITIONS),
    w64=st.booleans(),
    register=st.booleans(),
    a=u64s,
    b=u64s,
    imm=imm32s,
)
def test_conditional_jumps_match_model(op, w64, register, a, b, imm):
    operand = "r2" if register else imm
    prog = [
        I.lddw(1, a),
        I.lddw(2, b),
        I.mov(0, 1),
        I.jmp(op, 1, operand, 1, w64=w64),
        I.mov(0, 0),
        EXIT,
    ]
    value = b if register else imm % U64  # imm sign-extended, then the width's low bits
    assert run(prog) == int(model_cond(op, 64 if w64 else 32, a, value))


def test_gotol_uses_the_32_bit_offset():
    from pybpf.isa import Class, Instruction, Source
    from pybpf.isa.opcodes import jmp_opcode

    gotol = Instruction(jmp_opcode(Class.JMP32, JmpOp.JA, Source.K), imm=1)
    assert run([I.mov(0, 1), gotol, I.mov(0, 2), EXIT]) == 1


# ---- loads, stores, atomics ------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(size=st.sampled_from([1, 2, 4, 8]), value=u64s, imm=imm32s, signed=st.booleans())
def test_loads_and_stores_match_model(size, value, imm, signed):
    bits = 8 * size
    signed = signed and size < 8
    prog = [
        I.lddw(2, value),
        I.stx(size, 10, -16, 2),
        I.st(size, 10, -8, imm),
        I.ldx(8, 5, 10, -8),  # warm the read cache: the next load takes the fast path
        I.ldx(size, 3, 10, -16, signed=signed),
        I.ldx(size, 4, 10, -8),
        I.mov(0, "r3"),
        I.stx(8, 10, -24, 4),
        EXIT,
    ]
    low = value % (1 << bits)
    assert run(prog) == (to_signed(low, bits) % U64 if signed else low)
    prog[-2:] = [I.mov(0, "r4"), EXIT]
    assert run(prog) == imm % (1 << bits)


RMW = {
    AtomicOp.ADD: lambda m, v: m + v,
    AtomicOp.OR: lambda m, v: m | v,
    AtomicOp.AND: lambda m, v: m & v,
    AtomicOp.XOR: lambda m, v: m ^ v,
}


@settings(max_examples=300, deadline=None)
@given(
    op=st.sampled_from(list(AtomicOp)[:-2]),  # every RMW operation
    size=st.sampled_from([4, 8]),
    mem=u64s,
    src=u64s,
    r0=u64s,
)
def test_atomics_match_model(op, size, mem, src, r0):
    mod = 1 << (8 * size)
    with Region(16, kind="map_value") as region:
        region.write(0, mem.to_bytes(8, "little"))
        prog = [
            I.lddw(0, r0),
            I.lddw(2, src),
            I.atomic(size, op, 1, 8 - size, 2),  # the last `size` bytes of the first 8
            I.stx(8, 1, 8, 2),  # record r2 (fetch results) at offset 8
            EXIT,
        ]
        got_r0 = run(prog, region.address, memory=AddressSpace([region]))
        word = int.from_bytes(region.read(8 - size, size), "little")
        got_src = int.from_bytes(region.read(8, 8), "little")
    old = int.from_bytes(mem.to_bytes(8, "little")[8 - size : 8], "little")
    exp_r0, exp_src = r0, src
    if op == AtomicOp.CMPXCHG:
        exp_word = src % mod if old == r0 % mod else old
        exp_r0 = old
    elif op == AtomicOp.XCHG:
        exp_word, exp_src = src % mod, old
    else:
        exp_word = RMW[AtomicOp(op & ~1)](old, src % mod) % mod
        if op & 1:
            exp_src = old  # fetch: zero-extended old value
    assert (word, got_src, got_r0) == (exp_word, exp_src, exp_r0)


def test_load_acquire_and_store_release():
    with Region(8) as region:
        region.write(0, bytes(range(1, 9)))
        prog = [
            I.atomic(2, AtomicOp.LOAD_ACQ, 0, 2, 1),  # r0 = *(u16 *)(r1 + 2)
            I.mov(3, 0xAB),
            I.atomic(1, AtomicOp.STORE_REL, 1, 7, 3),  # *(u8 *)(r1 + 7) = r3
            EXIT,
        ]
        assert run(prog, region.address, memory=AddressSpace([region])) == 0x0403
        assert region.read(7, 1) == b"\xab"


# ---- exhaustive edge grid (deterministic, complements the random search) ---------------------
GRID = [0, 1, U64 - 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x1_0000_0000, 1 << 63, 63, 64]
GRID_IMM = [0, 1, -1, 0x7FFFFFFF, -0x80000000, 31, 32]


def test_alu_edge_grid_matches_model():
    for op in BINARY:
        for w64 in (True, False):
            width = 64 if w64 else 32
            for signed in (False, True) if op in (AluOp.DIV, AluOp.MOD) else (False,):
                off = 1 if signed else 0
                for a in GRID:
                    for b in GRID:
                        prog = [I.lddw(1, a), I.lddw(2, b), I.alu(op, 1, "r2", w64=w64, off=off),
                                I.mov(0, "r1"), EXIT]  # fmt: skip
                        assert run(prog) == model_alu(op, width, a, b, signed), (op, w64, a, b)
                    for imm in GRID_IMM:
                        prog = [I.lddw(1, a), I.alu(op, 1, imm, w64=w64, off=off), I.mov(0, "r1"),
                                EXIT]  # fmt: skip
                        expected = model_alu(op, width, a, imm % U64, signed)
                        assert run(prog) == expected, (op, w64, a, imm)


def test_jump_edge_grid_matches_model():
    for op in CONDITIONS:
        for w64 in (True, False):
            width = 64 if w64 else 32
            for a in GRID:
                for b in GRID:
                    prog = [I.lddw(1, a), I.lddw(2, b), I.mov(0, 1),
                            I.jmp(op, 1, "r2", 1, w64=w64), I.mov(0, 0), EXIT]  # fmt: skip
                    assert run(prog) == model_cond(op, width, a, b), (op, w64, a, b)
                for imm in GRID_IMM:
                    prog = [I.lddw(1, a), I.mov(0, 1), I.jmp(op, 1, imm, 1, w64=w64), I.mov(0, 0),
                            EXIT]  # fmt: skip
                    assert run(prog) == model_cond(op, width, a, imm % U64), (op, w64, a, imm)
