"""The verifier's abstract domains: intervals, word arithmetic, zone, stack and product state.

The word-arithmetic tests are soundness properties: for random value sets, every concrete
result of an ALU operation (computed by an independent reference below) must lie in the
abstract result.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.verifier import ir
from pybpf.verifier.domains import arith
from pybpf.verifier.domains.interval import INF, Interval, wrap_signed, wrap_unsigned
from pybpf.verifier.domains.stack import Stack
from pybpf.verifier.domains.state import State
from pybpf.verifier.domains.types import T
from pybpf.verifier.domains.zone import Zone
from pybpf.verifier.values import assume_numbers

M64 = (1 << 64) - 1


def _signed(value: int, width: int) -> int:
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


def _tdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def reference(op: str, width: int, a: int, b: int) -> int:
    """RFC 9669 semantics of ``a op b`` at ``width`` bits; the 64-bit unsigned result."""
    mask = (1 << width) - 1
    x, y = a & mask, b & mask
    sx, sy = _signed(x, width), _signed(y, width)
    if op == "add":
        r = x + y
    elif op == "sub":
        r = x - y
    elif op == "mul":
        r = x * y
    elif op == "udiv":
        r = x // y if y else 0
    elif op == "umod":
        r = x % y if y else x
    elif op == "sdiv":
        r = _tdiv(sx, sy) if sy else 0
    elif op == "smod":
        r = sx - _tdiv(sx, sy) * sy if sy else sx
    elif op == "and":
        r = x & y
    elif op == "or":
        r = x | y
    elif op == "xor":
        r = x ^ y
    elif op == "lsh":
        r = x << (y & (width - 1))
    elif op == "rsh":
        r = x >> (y & (width - 1))
    else:  # arsh
        r = sx >> (y & (width - 1))
    return r & mask


def _pair(values: list[int]) -> arith.Pair:
    u = [v & M64 for v in values]
    s = [_signed(v, 64) for v in u]
    return Interval(min(s), max(s)), Interval(min(u), max(u))


def _contains(pair: arith.Pair, value: int) -> bool:
    s, u = pair
    return u.contains(value & M64) and s.contains(_signed(value, 64))


_WORDS = st.one_of(
    st.integers(0, 16),
    st.integers(-16, -1),
    st.integers(0, M64),
    st.sampled_from([1 << 31, (1 << 31) - 1, 1 << 32, (1 << 32) - 1, 1 << 63, M64, (1 << 63) - 1]),
)
_SETS = st.lists(_WORDS, min_size=1, max_size=4)
_OPS = st.sampled_from(
    ["add", "sub", "mul", "udiv", "umod", "sdiv", "smod", "and", "or", "xor", "lsh", "rsh", "arsh"]
)


@settings(max_examples=500, deadline=None)
@given(_OPS, st.sampled_from([32, 64]), _SETS, _SETS)
def test_compute_contains_every_concrete_result(op, width, xs, ys):
    result = arith.compute(op, width, _pair(xs), _pair(ys))
    for x in xs:
        for y in ys:
            assert _contains(result, reference(op, width, x, y)), (op, width, x, y, result)


@settings(max_examples=200, deadline=None)
@given(_SETS, st.sampled_from([8, 16, 32]), st.sampled_from([32, 64]))
def test_sign_extend_is_sound(xs, bits, width):
    result = arith.sign_extend(_pair(xs), bits, width)
    for x in xs:
        value = _signed(x, bits) & ((1 << width) - 1)
        assert _contains(result, value)


@settings(max_examples=200, deadline=None)
@given(_SETS, st.sampled_from([32, 64]))
def test_negate_is_sound(xs, width):
    result = arith.negate(_pair(xs), width)
    for x in xs:
        assert _contains(result, -(x & ((1 << width) - 1)) & ((1 << width) - 1))


@settings(max_examples=200, deadline=None)
@given(_SETS, st.sampled_from([16, 32, 64]), st.booleans())
def test_swap_bytes_is_sound(xs, bits, swap):
    result = arith.swap_bytes(_pair(xs), bits, swap)
    for x in xs:
        low = x & ((1 << bits) - 1)
        if swap:
            low = int.from_bytes(low.to_bytes(bits // 8, "little"), "big")
        assert _contains(result, low)


def _holds(op: ir.CondOp, width: int, a: int, b: int) -> bool:
    mask = (1 << width) - 1
    x, y = a & mask, b & mask
    sx, sy = _signed(x, width), _signed(y, width)
    return {
        ir.CondOp.EQ: x == y,
        ir.CondOp.NE: x != y,
        ir.CondOp.SET: bool(x & y),
        ir.CondOp.NSET: not x & y,
        ir.CondOp.LT: x < y,
        ir.CondOp.LE: x <= y,
        ir.CondOp.GT: x > y,
        ir.CondOp.GE: x >= y,
        ir.CondOp.SLT: sx < sy,
        ir.CondOp.SLE: sx <= sy,
        ir.CondOp.SGT: sx > sy,
        ir.CondOp.SGE: sx >= sy,
    }[op]


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(list(ir.CondOp)), st.booleans(), _SETS, _SETS, st.booleans())
def test_branch_refinement_keeps_every_satisfying_value(op, is64, xs, ys, with_imm):
    state = State()
    state.havoc("r1", int(T.NUM))
    state.set_values("r1", *_pair(xs))
    if with_imm:
        imm = _signed(ys[0], 32)  # a jump immediate is a sign-extended 32-bit value
        ys = [imm]
        assume_numbers(state, ir.Condition(op, 1, ir.Imm(imm), is64), imm, None)
    else:
        state.havoc("r2", int(T.NUM))
        state.set_values("r2", *_pair(ys))
        assume_numbers(state, ir.Condition(op, 1, 2, is64), None, "r2")
    width = 64 if is64 else 32
    for x in xs:
        for y in ys:
            if _holds(op, width, x, y):
                assert not state.bottom, (op, is64, x, y)
                assert _contains(state.values("r1"), x)
                if not with_imm:
                    assert _contains(state.values("r2"), y)


def test_wrap_rules():
    assert wrap_unsigned(Interval(-1, -1), 64) == Interval(M64, M64)
    assert wrap_unsigned(Interval(-1, 0), 64) == Interval(0, M64)
    assert wrap_signed(Interval(1 << 63, 1 << 63), 64) == Interval(-(1 << 63), -(1 << 63))
    assert wrap_unsigned(Interval(1 << 32, (1 << 32) + 5), 32) == Interval(0, 5)
    assert arith.low32(Interval(-1, -1), Interval(M64, M64)) == (
        Interval(-1, -1),
        Interval(0xFFFFFFFF, 0xFFFFFFFF),
    )


def test_32_bit_results_are_zero_extended():
    s, u = arith.compute("add", 32, _pair([0xFFFFFFFF]), _pair([1]))
    assert u == Interval(0, 0) and s == Interval(0, 0)
    s, u = arith.compute("sub", 32, _pair([0]), _pair([1]))
    assert u == Interval(0xFFFFFFFF, 0xFFFFFFFF) and s == u


def test_division_by_zero_follows_bpf():
    assert arith.compute("udiv", 64, _pair([7]), _pair([0])) == (Interval(0, 0), Interval(0, 0))
    assert arith.compute("umod", 64, _pair([7]), _pair([0]))[1] == Interval(7, 7)


# ---- zone --------------------------------------------------------------------------------
def test_zone_closes_differences_and_intervals():
    z = Zone()
    assert z.add_le("a", "b", 2)  # a - b <= 2
    assert z.add_le("b", "c", -5)  # b - c <= -5
    assert z.diff("a", "c") == -3
    assert z.meet_interval("c", 0, 10)
    assert z.bounds("a")[1] == 7
    assert not z.add_le("c", "a", 2)  # c - a <= 2 contradicts a - c <= -3


def test_zone_assign_keeps_relations_and_shift_moves_them():
    z = Zone()
    z.set("size", 0, 100)
    z.assign("end", "size")
    z.assign("p", "end", -8)
    assert z.diff("p", "size") == -8
    z.shift("p", 4)
    assert z.diff("p", "size") == -4 and z.diff("size", "p") == 4


def test_zone_join_keeps_relations_implied_on_both_sides():
    a, b = Zone(), Zone()
    a.set("i", 0, 0)
    a.set("n", 0, 0)
    b.set("i", 1, 1)
    b.set("n", 1, 1)
    j = a.join(b)
    assert j.bounds("i") == (0, 1)
    assert j.diff("i", "n") == 0 and j.diff("n", "i") == 0


def test_zone_widening_jumps_to_thresholds_and_keeps_stable_relations():
    old, new = Zone(), Zone()
    old.set("bound", 1, 100)
    new.set("bound", 1, 100)
    old.set("x", 0, 1)
    new.set("x", 0, 2)
    new.add_le("x", "bound", 0)
    w = old.widen(new)
    assert w.bounds("x") == (0, 100)  # kept x <= bound, then tightened by it
    hard = old.widen(new, hard=True)
    assert hard.bounds("x")[1] == INF


def test_zone_leq_and_add_range():
    small, big = Zone(), Zone()
    small.set("x", 2, 3)
    big.set("x", 0, 10)
    assert small.leq(big) and not big.leq(small)
    z = Zone()
    z.set("n", 0, 10)
    z.assign("p", "n")
    z.add_range("p", 0, 4)
    assert z.diff("p", "n") == 4 and z.diff("n", "p") == 0


# ---- stack and state ---------------------------------------------------------------------
def test_stack_numeric_bytes_and_cells():
    s = Stack()
    s.set_numeric(8, 16)
    assert s.all_numeric(8, 16) and not s.all_numeric(7, 16)
    assert s.numeric_run(8) == 8
    s.cells[8] = 8
    assert s.overlapping(12, 13) == [8] and s.cell(8, 8) == "s[8...15]"
    joined, dropped = s.join(Stack())
    assert joined.numeric == 0 and dropped == ["s[8...15]"]


def test_state_join_keeps_offsets_meaningful_on_one_side():
    a, b = State(), State()
    a.havoc("r1", int(T.PACKET))
    a.zone.set("r1.packet_offset", 14, 14)
    b.havoc("r1", int(T.NUM))
    b.set_values("r1", Interval(0, 0), Interval(0, 0))
    j = a.join(b)
    assert j.type_of("r1") == int(T.PACKET | T.NUM)
    assert j.zone.bounds("r1.packet_offset") == (14, 14)
    assert a.leq(j) and b.leq(j) and not j.leq(a)


def test_state_type_classes_survive_joins():
    a, b = State(), State()
    for s, t in ((a, T.NUM), (b, T.CTX)):
        s.havoc("r1", int(t))
        s.copy_loc("r2", "r1")
    j = a.join(b)
    assert j.same_type("r1", "r2")
    parts = dict(j.split("r1"))
    assert parts[int(T.CTX)].type_of("r2") == int(T.CTX)


_VARS = ["a", "b", "c"]
_CONSTRAINTS = st.lists(
    st.tuples(
        st.sampled_from(_VARS + ["x", None]),
        st.sampled_from(_VARS + ["x", None]),
        st.integers(-20, 20),
    ),
    max_size=8,
)


def _zone(constraints) -> Zone | None:
    z = Zone()
    for x, y, k in constraints:
        if not z.add_le(x, y, k):
            return None
    return z


@settings(max_examples=300, deadline=None)
@given(_CONSTRAINTS, _CONSTRAINTS)
def test_extending_a_free_variable_keeps_the_other_variables(mine, theirs):
    here = _zone([c for c in mine if "x" not in c])
    source = _zone(theirs)
    if here is None or source is None:
        return
    extended = here.copy()
    extended.extend("x", source)
    for u in _VARS + [None]:
        for w in _VARS + [None]:
            assert extended.diff(u, w) == here.diff(u, w), (u, w)


# ---- the transformer's shortcuts agree with the word semantics ---------------------------------
_BIN_OPS = {
    "add": ir.BinOp.ADD,
    "sub": ir.BinOp.SUB,
    "mul": ir.BinOp.MUL,
    "udiv": ir.BinOp.UDIV,
    "umod": ir.BinOp.UMOD,
    "sdiv": ir.BinOp.SDIV,
    "smod": ir.BinOp.SMOD,
    "and": ir.BinOp.AND,
    "or": ir.BinOp.OR,
    "xor": ir.BinOp.XOR,
    "lsh": ir.BinOp.LSH,
    "rsh": ir.BinOp.RSH,
    "arsh": ir.BinOp.ARSH,
}


@settings(max_examples=600, deadline=None)
@given(
    _OPS,
    st.booleans(),
    _SETS,
    _WORDS,
    st.booleans(),
)
def test_alu_instructions_contain_every_concrete_result(op, is64, xs, y, with_imm):
    """Whole instructions (relational shortcuts included) against the reference."""
    from pybpf.verifier.program import ProgramInfo
    from pybpf.verifier.transformer import transform

    info = ProgramInfo(context=None)  # type: ignore[arg-type]  # ALU never reads it
    state = State()
    state.havoc("r1", int(T.NUM))
    state.set_values("r1", *_pair(xs))
    if with_imm:
        imm = _signed(y, 32)
        src: ir.Value = ir.Imm(imm)
        y = imm
    else:
        state.havoc("r2", int(T.NUM))
        state.set_values("r2", *_pair([y]))
        src = 2
    after = transform(ir.Bin(_BIN_OPS[op], 1, src, is64), state, info, "")
    width = 64 if is64 else 32
    for x in xs:
        assert _contains(after.values("r1"), reference(op, width, x, y)), (op, is64, x, y)


@settings(max_examples=300, deadline=None)
@given(_SETS, st.booleans(), st.sampled_from([8, 16, 32, 0]))
def test_moves_contain_every_concrete_result(xs, is64, bits):
    from pybpf.verifier.program import ProgramInfo
    from pybpf.verifier.transformer import transform

    info = ProgramInfo(context=None)  # type: ignore[arg-type]
    state = State()
    state.havoc("r2", int(T.NUM))
    state.set_values("r2", *_pair(xs))
    op = {0: ir.BinOp.MOV, 8: ir.BinOp.MOVSX8, 16: ir.BinOp.MOVSX16, 32: ir.BinOp.MOVSX32}[bits]
    after = transform(ir.Bin(op, 1, 2, is64), state, info, "")
    mask = (1 << (64 if is64 else 32)) - 1
    for x in xs:
        value = (_signed(x, bits) if bits else x) & mask
        assert _contains(after.values("r1"), value), (bits, is64, x)


def test_32_bit_and_with_all_ones_truncates():
    from pybpf.verifier.program import ProgramInfo
    from pybpf.verifier.transformer import transform

    state = State()
    state.havoc("r1", int(T.NUM))
    state.set_values("r1", *_pair([1 << 32]))
    info = ProgramInfo(context=None)  # type: ignore[arg-type]
    after = transform(ir.Bin(ir.BinOp.AND, 1, ir.Imm(-1), False), state, info, "")
    assert after.values("r1")[1] == Interval(0, 0)
