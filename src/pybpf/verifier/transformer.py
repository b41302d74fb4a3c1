"""Transformer: how each instruction changes the abstract state (ALU, branches; dispatch).

:func:`transform` returns the state after an instruction, assuming its assertions hold
(the checker proves them separately). ALU results follow :mod:`~pybpf.verifier.domains.arith`
exactly; relations are kept where the operation is a shift of the value by a constant
(``r1 += 4``, or a 32-bit operation on a value that already fits in 32 bits), so the zone
still knows ``r3.packet_offset = r1.packet_offset + 4``. Pointer arithmetic moves the
pointer's offset and keeps its (abstract, non-null) address. Memory and calls live in
:mod:`~pybpf.verifier.memory` and :mod:`~pybpf.verifier.calls`.
"""

from __future__ import annotations

from pybpf.verifier import calls, ir, memory
from pybpf.verifier.domains import arith
from pybpf.verifier.domains.interval import S64, Interval
from pybpf.verifier.domains.state import State
from pybpf.verifier.domains.types import OFFSET_KIND, T
from pybpf.verifier.program import ProgramInfo
from pybpf.verifier.values import _exclude, assume_numbers, const_pair, set_const, shift_value

__all__ = ["transform"]

_ARITH = {
    ir.BinOp.ADD: "add",
    ir.BinOp.SUB: "sub",
    ir.BinOp.MUL: "mul",
    ir.BinOp.UDIV: "udiv",
    ir.BinOp.UMOD: "umod",
    ir.BinOp.SDIV: "sdiv",
    ir.BinOp.SMOD: "smod",
    ir.BinOp.AND: "and",
    ir.BinOp.OR: "or",
    ir.BinOp.XOR: "xor",
    ir.BinOp.LSH: "lsh",
    ir.BinOp.RSH: "rsh",
    ir.BinOp.ARSH: "arsh",
}
_MOVSX = {ir.BinOp.MOVSX8: 8, ir.BinOp.MOVSX16: 16, ir.BinOp.MOVSX32: 32}
# Unsigned comparisons with 0 only say whether a pointer is null (its abstract address is 0).
_NULL_TESTS = (ir.CondOp.EQ, ir.CondOp.NE, ir.CondOp.LT, ir.CondOp.LE, ir.CondOp.GT, ir.CondOp.GE)
_POINTERS = int(T.CTX | T.STACK | T.PACKET | T.SHARED | T.SOCKET | T.BTF_ID | T.ALLOC_MEM)


def _join(parts: list[State]) -> State:
    live = [p for p in parts if not p.bottom]
    if not live:
        return State.make_bottom()
    out = live[0]
    for p in live[1:]:
        out = out.join(p)
    return out


def _imm_pair(ins: ir.Bin) -> arith.Pair:
    assert isinstance(ins.src, ir.Imm)
    value = ins.src.value
    if ins.lddw:
        value &= (1 << 64) - 1
    return const_pair(value)


def _set_number(s: State, loc: str, pair: arith.Pair) -> None:
    s.havoc(loc, int(T.NUM))
    s.set_values(loc, *pair)


def _mov(s: State, ins: ir.Bin) -> None:
    dst = f"r{ins.dst}"
    if isinstance(ins.src, ir.Imm):
        value = ins.src.value & ((1 << 64) - 1) if ins.lddw else ins.src.value
        if not ins.is64:
            value &= 0xFFFFFFFF
        set_const(s, dst, value)
        return
    src = f"r{ins.src}"
    if ins.is64:
        s.copy_loc(dst, src)
        return
    sv, uv = s.values(src)
    if uv.within(0, 0xFFFFFFFF):
        if dst != src:
            s.copy_loc(dst, src)
        s.set_type(dst, int(T.NUM))
        return
    _set_number(s, dst, arith._zero_extend32(*arith.low32(sv, uv)))


def _movsx(s: State, ins: ir.Bin) -> None:
    bits = _MOVSX[ins.op]
    dst = f"r{ins.dst}"
    src = f"r{ins.src}"
    sv, uv = s.values(src)
    in_range = sv.within(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    if in_range and (ins.is64 or sv.lo >= 0):
        if dst != src:
            s.copy_loc(dst, src)
        s.set_type(dst, int(T.NUM))
        return
    _set_number(s, dst, arith.sign_extend((sv, uv), bits, 64 if ins.is64 else 32))


def _add_const_num(s: State, loc: str, c: int, is64: bool) -> None:
    sv, uv = s.values(loc)
    if is64:
        shift_value(s, loc, c)
        return
    if uv.within(0, 0xFFFFFFFF) and (uv + c).within(0, 0xFFFFFFFF):
        shift_value(s, loc, c)
        return
    _set_number(s, loc, arith.compute("add", 32, (sv, uv), const_pair(c)))


def _add_const_ptr(s: State, loc: str, t: int, lo: int | float, hi: int | float) -> None:
    """Move a pointer of type ``t`` by ``[lo, hi]`` bytes."""
    off = OFFSET_KIND.get(t)
    if off is None:
        s.havoc(loc)
        return
    s.zone.add_range(f"{loc}.{off}", lo, hi)
    if t == T.STACK:
        size = f"{loc}.stack_numeric_size"
        if lo >= 0:
            s.zone.add_range(size, -hi, -lo)
        else:
            s.zone.forget(size)
        memory.recompute_numeric_size(s, loc)


def _add_sub(s: State, ins: ir.Bin, privileged: bool) -> State:
    dst = f"r{ins.dst}"
    sign = 1 if ins.op == ir.BinOp.ADD else -1
    src_single: int | None = None
    if isinstance(ins.src, ir.Imm):
        src_single = ins.src.value
    elif s.has_type(f"r{ins.src}", int(T.NUM)):
        src_single = s.values(f"r{ins.src}")[0].singleton()
    if src_single is not None:
        c = sign * src_single
        parts = []
        for t, part in (
            s.split(dst) if s.type_of(dst) & (s.type_of(dst) - 1) else [(s.type_of(dst), s)]
        ):
            if t == T.NUM:
                _add_const_num(part, dst, c, ins.is64)
            elif not ins.is64:
                _pointer_low32(part, dst, sign < 0 and privileged)
            else:
                _add_const_ptr(part, dst, t, c, c)
            parts.append(part)
        return _join(parts)
    src = f"r{ins.src}"
    width = 64 if ins.is64 else 32
    parts = []
    for td, pd in s.split(dst):
        for ts, part in pd.split(src):
            if td == T.NUM and ts == T.NUM:
                pair = arith.compute(_ARITH[ins.op], width, part.values(dst), part.values(src))
                _set_number(part, dst, pair)
            elif not ins.is64:
                # a distance within one region, or (privileged) an address's low half
                same = td == ts and td in OFFSET_KIND
                number = sign < 0 and td != T.NUM and (same or privileged and ts == T.NUM)
                _pointer_low32(part, dst, number)
            elif td != T.NUM and ts == T.NUM:
                sv = part.values(src)[0]
                lo, hi = (sv.lo, sv.hi) if sign > 0 else (-sv.hi, -sv.lo)
                base = part.zone.interval(f"{dst}.{OFFSET_KIND.get(td)}").singleton()
                _add_const_ptr(part, dst, td, lo, hi)
                if sign > 0 and base is not None and td in OFFSET_KIND and sv.lo >= 0:
                    # constant offset + number: the offset is that number shifted
                    part.zone.assign(f"{dst}.{OFFSET_KIND[td]}", f"{src}.svalue", base)
            elif td == T.NUM and sign > 0:
                sv = part.values(dst)[0]
                tmp = "r11"
                part.copy_loc(tmp, dst)
                part.copy_loc(dst, src)
                base = part.zone.interval(f"{src}.{OFFSET_KIND.get(ts)}").singleton()
                _add_const_ptr(part, dst, ts, sv.lo, sv.hi)
                if base is not None and ts in OFFSET_KIND and sv.lo >= 0:
                    part.zone.assign(f"{dst}.{OFFSET_KIND[ts]}", f"{tmp}.svalue", base)
                part.havoc(tmp)
            elif td == ts and sign < 0 and td in OFFSET_KIND:
                _pointer_difference(part, dst, src, OFFSET_KIND[td])
            else:
                part.set_bottom()
            parts.append(part)
    return _join(parts)


def _pointer_low32(s: State, dst: str, number: bool) -> None:
    """A 32-bit ``add``/``sub`` with a pointer: Linux makes a pointer minus a pointer, and
    for privileged programs a pointer minus a number, an unknown scalar (the low half of a
    difference, zero-extended; ``number``) and refuses the rest (a value no check accepts
    here)."""
    if number:
        _set_number(s, dst, (Interval(0, 0xFFFFFFFF), Interval(0, 0xFFFFFFFF)))
    else:
        s.havoc(dst)


def _pointer_difference(s: State, dst: str, src: str, kind: str) -> None:
    """``dst -= src`` for two pointers into the same region: the distance, as a number."""
    a, b = f"{dst}.{kind}", f"{src}.{kind}"
    z = s.zone
    diff = Interval(-z.diff(b, a), z.diff(a, b)).meet(S64) or S64
    const = z.interval(b).singleton()
    sv, uv = f"{dst}.svalue", f"{dst}.uvalue"
    if const is not None and dst != src and z.constrains(a):
        z.assign(sv, a, -const)  # keeps e.g. "r2.svalue = packet_size" for end - start
        s.set_type(dst, int(T.NUM))
        z.forget(uv)
        if not (z.meet_interval(sv, diff.lo, diff.hi) and s.normalize(dst)):
            s.set_bottom()
        return
    s.havoc(dst, int(T.NUM))
    s.set_values(dst, diff, arith.from_signed(diff))


def _alu(s: State, ins: ir.Bin, privileged: bool = False) -> State:
    if ins.op == ir.BinOp.MOV:
        _mov(s, ins)
        return s
    if ins.op in _MOVSX:
        _movsx(s, ins)
        return s
    if ins.op in (ir.BinOp.ADD, ir.BinOp.SUB):
        return _add_sub(s, ins, privileged)
    dst = f"r{ins.dst}"
    width = 64 if ins.is64 else 32
    a = s.values(dst)
    b = _imm_pair(ins) if isinstance(ins.src, ir.Imm) else s.values(f"r{ins.src}")
    op = _ARITH[ins.op]
    if op == "and" and b[1].is_singleton:
        mask = int(b[1].lo) if ins.is64 else int(b[1].lo) & 0xFFFFFFFF
        if mask == (1 << mask.bit_length()) - 1 and a[1].hi <= mask:
            return s  # masking a value that already fits: no change, relations kept
    pair = arith.compute(op, width, a, b)
    _set_number(s, dst, pair)
    return s


def _unary(s: State, ins: ir.Un) -> None:
    dst = f"r{ins.dst}"
    pair = s.values(dst)
    if ins.op == ir.UnOp.NEG:
        _set_number(s, dst, arith.negate(pair, 64 if ins.is64 else 32))
        return
    kind, bits = ins.op.name[:-2], int(ins.op.name[-2:])
    swap = kind in ("BE", "SWAP")  # the host (and every pybpf engine) is little-endian
    if not swap and bits == 64:
        return
    _set_number(s, dst, arith.swap_bytes(pair, bits, swap))


def _assume(s: State, cond: ir.Condition) -> State:
    left = f"r{cond.left}"
    if isinstance(cond.right, ir.Imm):
        imm = cond.right.value
        parts = []
        for t, part in s.split(left):
            if t == T.NUM:
                assume_numbers(part, cond, imm, None)
            elif t == T.UNINIT:
                part.set_bottom()
            elif t == T.FUNC:
                assume_numbers(part, cond, imm, None)
            elif imm == 0 and cond.is64 and cond.op in _NULL_TESTS:
                _null_test(part, left, cond.op)
            parts.append(part)
        return _join(parts)
    right = f"r{cond.right}"
    tl, tr = s.type_of(left), s.type_of(right)
    if tl == tr == T.NUM:
        assume_numbers(s, cond, None, right)
        return s
    if s.same_type(left, right):
        parts = []
        for t, part in s.split(left):
            if t == T.NUM:
                assume_numbers(part, cond, None, right)
            elif t in (T.CTX, T.STACK, T.PACKET) and cond.is64:
                _assume_offsets(part, cond, OFFSET_KIND[t])
            parts.append(part)
        return _join(parts)
    if tr == T.NUM:
        parts = []
        for t, part in s.split(left):
            if t == T.NUM:
                assume_numbers(part, cond, None, right)
            parts.append(part)
        return _join(parts)
    return s


def _null_test(s: State, loc: str, op: ir.CondOp) -> None:
    """``ptr op 0`` (unsigned): only says whether the pointer is null."""
    addr = f"{loc}.addr"
    lo, _ = s.zone.bounds(addr)
    if op == ir.CondOp.LT:
        s.set_bottom()
    elif op in (ir.CondOp.EQ, ir.CondOp.LE):
        if lo > 0:
            s.set_bottom()
        else:
            ids = s.refs.get(loc, frozenset())
            if len(ids) == 1:
                s.held = s.held - ids  # nothing was acquired
            set_const(s, loc, 0)  # a null pointer is the number 0, as in Linux
    elif op in (ir.CondOp.NE, ir.CondOp.GT):
        if not s.zone.meet_interval(addr, 1, float("inf")):
            s.set_bottom()


def _assume_offsets(s: State, cond: ir.Condition, kind: str) -> None:
    a, b = f"r{cond.left}.{kind}", f"r{cond.right}.{kind}"
    z = s.zone
    op = cond.op
    ok = True
    if op == ir.CondOp.EQ:
        ok = z.add_eq(a, b)
    elif op == ir.CondOp.NE:
        ok = not (z.diff(a, b) <= 0 and z.diff(b, a) <= 0)
        x, y = z.interval(a).singleton(), z.interval(b).singleton()
        if ok and y is not None:
            ok = _exclude(s, a, y)
        elif ok and x is not None:
            ok = _exclude(s, b, x)
    elif op in (ir.CondOp.LT, ir.CondOp.SLT):
        ok = z.add_le(a, b, -1)
    elif op in (ir.CondOp.LE, ir.CondOp.SLE):
        ok = z.add_le(a, b, 0)
    elif op in (ir.CondOp.GT, ir.CondOp.SGT):
        ok = z.add_le(b, a, -1)
    elif op in (ir.CondOp.GE, ir.CondOp.SGE):
        ok = z.add_le(b, a, 0)
    if not ok:
        s.set_bottom()


def transform(
    ins: ir.IrInstruction | None, state: State, info: ProgramInfo, frame: str, site: int = 0
) -> State:
    """The state after ``ins`` (``frame``: the call-frame prefix of the node, ``""`` at top;
    ``site``: the node's id)."""
    if state.bottom or ins is None:
        return state
    s = state.copy()
    if isinstance(ins, ir.Bin):
        return _alu(s, ins, info.privileged)
    if isinstance(ins, ir.Un):
        _unary(s, ins)
    elif isinstance(ins, ir.Assume):
        return _assume(s, ins.cond)
    elif isinstance(ins, (ir.Jmp, ir.MayGoto)):
        return s
    elif isinstance(
        ins, (ir.Mem, ir.Atomic, ir.Packet, ir.LoadMapFd, ir.LoadMapValue, ir.LoadFunc)
    ):
        return memory.transform(s, ins, info)
    elif isinstance(ins, (ir.Call, ir.Callx, ir.CallLocal, ir.Exit)):
        return calls.transform(s, ins, info, frame, site)
    else:
        s.set_bottom()  # unsupported instructions never pass their assertions
    return s
