"""Values: a register's number (signed and unsigned views) set, shifted and constrained by branches.

These functions keep the zone's relations wherever the operation allows: adding a
constant shifts the variables (unless the word wraps), and a comparison between two
registers becomes a difference constraint between their views. A 32-bit comparison
constrains the 64-bit variables only when the 64-bit value is known to equal its low 32
bits (as an unsigned or a signed word); otherwise it is only checked for feasibility
against the low-32-bit intervals.
"""

from __future__ import annotations

from pybpf.verifier import ir
from pybpf.verifier.domains.arith import Pair, low32
from pybpf.verifier.domains.interval import S32, S64, U32, U64, Interval
from pybpf.verifier.domains.state import State
from pybpf.verifier.domains.types import T

__all__ = ["const_pair", "set_const", "shift_value", "assume_numbers"]

_MOD64 = 1 << 64


def const_pair(value: int) -> Pair:
    """The views of a constant (any integer, reduced to 64 bits)."""
    u = value % _MOD64
    s = u - _MOD64 if u >> 63 else u
    return Interval.const(s), Interval.const(u)


def set_const(s: State, loc: str, value: int) -> None:
    """``loc := value`` as a number."""
    s.havoc(loc, int(T.NUM))
    s.set_values(loc, *const_pair(value))


def _shift_view(s: State, var: str, view: Interval, rng: Interval, c: int) -> None:
    moved = view + c
    if moved.within(rng.lo, rng.hi):
        s.zone.shift(var, c)
    elif moved.lo > rng.hi:
        s.zone.shift(var, c - _MOD64)
    elif moved.hi < rng.lo:
        s.zone.shift(var, c + _MOD64)
    else:
        s.zone.forget(var)


def shift_value(s: State, loc: str, c: int) -> None:
    """``loc += c`` on 64 bits, relations kept in each view that does not wrap."""
    sv, uv = s.values(loc)
    _shift_view(s, f"{loc}.svalue", sv, S64, c)
    _shift_view(s, f"{loc}.uvalue", uv, U64, c)
    s.normalize(loc)


# ---- branches --------------------------------------------------------------------------------
def _exclude(s: State, var: str, value: int) -> bool:
    lo, hi = s.zone.bounds(var)
    if lo == hi == value:
        return False
    if lo == value:
        return s.zone.meet_interval(var, value + 1, hi)
    if hi == value:
        return s.zone.meet_interval(var, lo, value - 1)
    return True


def _bound(s: State, var: str, op: ir.CondOp, k: int | float) -> bool:
    """``var op k`` for an ordering or equality ``op`` (signedness is the caller's business)."""
    z = s.zone
    if op in (ir.CondOp.LT, ir.CondOp.SLT):
        return z.meet_interval(var, -float("inf"), k - 1)
    if op in (ir.CondOp.LE, ir.CondOp.SLE):
        return z.meet_interval(var, -float("inf"), k)
    if op in (ir.CondOp.GT, ir.CondOp.SGT):
        return z.meet_interval(var, k + 1, float("inf"))
    if op in (ir.CondOp.GE, ir.CondOp.SGE):
        return z.meet_interval(var, k, float("inf"))
    if op == ir.CondOp.EQ:
        return z.meet_interval(var, k, k)
    if op == ir.CondOp.NE:
        return _exclude(s, var, int(k))
    return True


def _feasible(op: ir.CondOp, a: Interval, b: Interval) -> bool:
    if op in (ir.CondOp.LT, ir.CondOp.SLT):
        return a.lo < b.hi
    if op in (ir.CondOp.LE, ir.CondOp.SLE):
        return a.lo <= b.hi
    if op in (ir.CondOp.GT, ir.CondOp.SGT):
        return a.hi > b.lo
    if op in (ir.CondOp.GE, ir.CondOp.SGE):
        return a.hi >= b.lo
    if op == ir.CondOp.EQ:
        return a.meet(b) is not None
    if op == ir.CondOp.NE:
        return not (a.is_singleton and a == b)
    return True


def _bits(op: ir.CondOp, a: Interval, b: Interval) -> bool:
    """Feasibility of ``a & b != 0`` (SET) or ``a & b == 0`` (NSET)."""
    x, y = a.singleton(), b.singleton()
    if x is not None and y is not None:
        return bool(x & y) == (op == ir.CondOp.SET)
    if op == ir.CondOp.SET:
        if a == Interval(0, 0) or b == Interval(0, 0):
            return False
        if y is not None and y > 0 and a.hi < (y & -y):
            return False
    return True


_UNSIGNED = (ir.CondOp.LT, ir.CondOp.LE, ir.CondOp.GT, ir.CondOp.GE)
_SIGNED = (ir.CondOp.SLT, ir.CondOp.SLE, ir.CondOp.SGT, ir.CondOp.SGE)
_FLIP = {
    ir.CondOp.LT: ir.CondOp.GT,
    ir.CondOp.LE: ir.CondOp.GE,
    ir.CondOp.GT: ir.CondOp.LT,
    ir.CondOp.GE: ir.CondOp.LE,
    ir.CondOp.SLT: ir.CondOp.SGT,
    ir.CondOp.SLE: ir.CondOp.SGE,
    ir.CondOp.SGT: ir.CondOp.SLT,
    ir.CondOp.SGE: ir.CondOp.SLE,
    ir.CondOp.EQ: ir.CondOp.EQ,
    ir.CondOp.NE: ir.CondOp.NE,
}


def _imm(s: State, left: str, op: ir.CondOp, imm: int, is64: bool) -> bool:
    sv, uv = s.values(left)
    if is64:
        cs, cu = const_pair(imm)
        ks, ku = int(cs.lo), int(cu.lo)
        if op in (ir.CondOp.SET, ir.CondOp.NSET):
            if not _bits(op, uv, cu):
                return False
            return op != ir.CondOp.SET or _exclude(s, f"{left}.uvalue", 0)
        if op in _SIGNED:
            return _bound(s, f"{left}.svalue", op, ks)
        if op in _UNSIGNED:
            return _bound(s, f"{left}.uvalue", op, ku)
        return _bound(s, f"{left}.svalue", op, ks) and _bound(s, f"{left}.uvalue", op, ku)
    ku = imm & 0xFFFFFFFF
    ks = ku - (1 << 32) if ku >> 31 else ku
    s32, u32 = low32(sv, uv)
    u_exact, s_exact = uv.within(U32.lo, U32.hi), sv.within(S32.lo, S32.hi)
    if op in (ir.CondOp.SET, ir.CondOp.NSET):
        return _bits(op, u32, Interval.const(ku))
    if op in _SIGNED or (op in (ir.CondOp.EQ, ir.CondOp.NE) and s_exact and not u_exact):
        if s_exact:
            return _bound(s, f"{left}.svalue", op, ks)
        return _feasible(op, s32, Interval.const(ks))
    if u_exact:
        return _bound(s, f"{left}.uvalue", op, ku)
    return _feasible(op, u32, Interval.const(ku))


def _rel(s: State, a: str, b: str, op: ir.CondOp) -> bool:
    """``a op b`` as zone constraints between two variables of the same view."""
    z = s.zone
    if op in (ir.CondOp.LT, ir.CondOp.SLT):
        return z.add_le(a, b, -1)
    if op in (ir.CondOp.LE, ir.CondOp.SLE):
        return z.add_le(a, b, 0)
    if op in (ir.CondOp.GT, ir.CondOp.SGT):
        return z.add_le(b, a, -1)
    if op in (ir.CondOp.GE, ir.CondOp.SGE):
        return z.add_le(b, a, 0)
    if op == ir.CondOp.EQ:
        return z.add_eq(a, b)
    if op == ir.CondOp.NE:
        if z.diff(a, b) <= 0 and z.diff(b, a) <= 0:
            return False
        x, y = z.interval(a).singleton(), z.interval(b).singleton()
        if y is not None:
            return _exclude(s, a, y)
        if x is not None:
            return _exclude(s, b, x)
    return True


def _reg(s: State, left: str, right: str, op: ir.CondOp, is64: bool) -> bool:
    ls, lu = s.values(left)
    rs, ru = s.values(right)
    if op in (ir.CondOp.SET, ir.CondOp.NSET):
        if is64:
            return _bits(op, lu, ru)
        return _bits(op, low32(ls, lu)[1], low32(rs, ru)[1])
    if is64:
        if op in _SIGNED:
            return _rel(s, f"{left}.svalue", f"{right}.svalue", op)
        if op in _UNSIGNED:
            return _rel(s, f"{left}.uvalue", f"{right}.uvalue", op)
        return _rel(s, f"{left}.svalue", f"{right}.svalue", op) and _rel(
            s, f"{left}.uvalue", f"{right}.uvalue", op
        )
    signed = op in _SIGNED
    view, rng = ("svalue", S32) if signed else ("uvalue", U32)
    lv = ls if signed else lu
    rv = rs if signed else ru
    l_exact, r_exact = lv.within(rng.lo, rng.hi), rv.within(rng.lo, rng.hi)
    if l_exact and r_exact:
        return _rel(s, f"{left}.{view}", f"{right}.{view}", op)
    l32 = low32(ls, lu)[0 if signed else 1]
    r32 = low32(rs, ru)[0 if signed else 1]
    if not _feasible(op, l32, r32):
        return False
    if l_exact and op not in (ir.CondOp.NE,):
        bound = (
            r32.hi if op in (ir.CondOp.LT, ir.CondOp.LE, ir.CondOp.SLT, ir.CondOp.SLE) else r32.lo
        )
        if op == ir.CondOp.EQ:
            return s.zone.meet_interval(f"{left}.{view}", r32.lo, r32.hi)
        return _bound(s, f"{left}.{view}", op, bound)
    if r_exact and op not in (ir.CondOp.NE,):
        flipped = _FLIP[op]
        bound = (
            l32.hi
            if flipped in (ir.CondOp.LT, ir.CondOp.LE, ir.CondOp.SLT, ir.CondOp.SLE)
            else l32.lo
        )
        if op == ir.CondOp.EQ:
            return s.zone.meet_interval(f"{right}.{view}", l32.lo, l32.hi)
        return _bound(s, f"{right}.{view}", flipped, bound)
    return True


def assume_numbers(s: State, cond: ir.Condition, imm: int | None, right: str | None) -> None:
    """Refine ``s`` (both operands numbers) by ``cond``; bottom when it cannot hold."""
    left = f"r{cond.left}"
    if not s.normalize(left) or (right is not None and not s.normalize(right)):
        return
    if right is None:
        assert imm is not None
        ok = _imm(s, left, cond.op, imm, cond.is64)
    else:
        ok = _reg(s, left, right, cond.op, cond.is64)
    if not ok:
        s.set_bottom()
        return
    s.normalize(left)
    if right is not None and not s.bottom:
        s.normalize(right)
