"""Word arithmetic on intervals: every eBPF ALU operation on 32- and 64-bit values, exactly wrapped.

A value is described by two intervals, its *signed* view and its *unsigned* view (both are
sound descriptions of the same set of words). :func:`compute` applies one ALU operation at a
given width to two such pairs and returns the pair for the result, following RFC 9669 and
Linux: division by zero gives 0, modulo by zero leaves the dividend, shift amounts are
masked to the width, and 32-bit results are zero-extended to 64 bits.
"""

from __future__ import annotations

from pybpf.verifier.domains.interval import (
    INF,
    S32,
    S64,
    U32,
    U64,
    Interval,
    signed_range,
    unsigned_range,
    wrap_signed,
    wrap_unsigned,
)

__all__ = [
    "Pair",
    "compute",
    "low32",
    "from_signed",
    "from_unsigned",
    "reconcile",
    "sign_extend",
    "swap_bytes",
    "truncate",
]

Pair = tuple[Interval, Interval]  # (signed view, unsigned view)


def from_signed(s: Interval, width: int = 64) -> Interval:
    """The unsigned view implied by a signed view of a ``width``-bit word."""
    if s.lo >= 0:
        return s
    if s.hi < 0:
        return s + (1 << width)
    return unsigned_range(width)


def from_unsigned(u: Interval, width: int = 64) -> Interval:
    """The signed view implied by an unsigned view of a ``width``-bit word."""
    half = 1 << (width - 1)
    if u.hi < half:
        return u
    if u.lo >= half:
        return u - (1 << width)
    return signed_range(width)


def reconcile(s: Interval, u: Interval, width: int = 64) -> Pair | None:
    """Both views narrowed by each other (and by the word ranges); ``None`` if empty."""
    s = s.meet(signed_range(width))
    u = u.meet(unsigned_range(width))
    if s is None or u is None:
        return None
    for _ in range(2):
        u = u.meet(from_signed(s, width))
        if u is None:
            return None
        s = s.meet(from_unsigned(u, width))
        if s is None:
            return None
    return s, u


def low32(s: Interval, u: Interval) -> Pair:
    """The (signed, unsigned) views of the low 32 bits of a 64-bit value."""
    if u.within(0, 0xFFFFFFFF):
        u32 = u
        return from_unsigned(u32, 32), u32
    if s.within(S32.lo, S32.hi):
        return s, from_signed(s, 32)
    w = wrap_unsigned(u, 32)
    return from_unsigned(w, 32), w


def truncate(u: Interval, width: int) -> Interval:
    """The unsigned value of the low ``width`` bits."""
    return wrap_unsigned(u, width)


def _zero_extend32(s32: Interval, u32: Interval) -> Pair:
    u = u32.meet(from_signed(s32, 32)) or u32
    return u, u


def _bitlen_mask(value: int | float) -> int | float:
    if value == INF:
        return INF
    return (1 << int(value).bit_length()) - 1


def _bitwise(op: str, a: Interval, b: Interval, width: int) -> Interval:
    """AND/OR/XOR on unsigned views."""
    sa, sb = a.singleton(), b.singleton()
    if sa is not None and sb is not None:
        if op == "and":
            return Interval.const(sa & sb)
        if op == "or":
            return Interval.const(sa | sb)
        return Interval.const(sa ^ sb)
    if op == "and":
        for x, y in ((a, sb), (b, sa)):
            if y is not None and y == _bitlen_mask(y) and x.hi <= y:
                return x  # masking with 2**k - 1 a value already below it
        return Interval(0, min(a.hi, b.hi))
    top = max(_bitlen_mask(a.hi), _bitlen_mask(b.hi))
    if op == "or":
        return Interval(max(a.lo, b.lo), min(top, (1 << width) - 1))
    return Interval(0, min(top, (1 << width) - 1))


def _udiv(a: Interval, b: Interval) -> Interval:
    parts = []
    if b.lo <= 0:
        parts.append(Interval.const(0))
    nz = b.meet(Interval(1, INF))
    if nz is not None:
        hi = a.hi if a.hi == INF else a.hi // nz.lo
        lo = 0 if nz.hi == INF else a.lo // nz.hi
        parts.append(Interval(lo, hi))
    return _hull(parts)


def _umod(a: Interval, b: Interval) -> Interval:
    parts = []
    if b.lo <= 0:
        parts.append(a)
    nz = b.meet(Interval(1, INF))
    if nz is not None:
        if a.hi < nz.lo:
            parts.append(a)
        elif a.is_singleton and nz.is_singleton:
            parts.append(Interval.const(int(a.lo) % int(nz.lo)))
        else:
            parts.append(Interval(0, min(a.hi, nz.hi - 1)))
    return _hull(parts)


def _tdiv(x: int, y: int) -> int:
    q = abs(x) // abs(y)
    return q if (x >= 0) == (y > 0) else -q


def _tmod(x: int, y: int) -> int:
    return x - _tdiv(x, y) * y


def _sdiv(a: Interval, b: Interval, width: int) -> Interval:
    parts = []
    if b.contains(0):
        parts.append(Interval.const(0))
    for part in (b.meet(Interval(-INF, -1)), b.meet(Interval(1, INF))):
        if part is None:
            continue
        if a.lo == -INF or a.hi == INF or part.lo == -INF or part.hi == INF:
            return signed_range(width)
        corners = [_tdiv(int(x), int(y)) for x in (a.lo, a.hi) for y in (part.lo, part.hi)]
        parts.append(Interval(min(corners), max(corners)))
    return wrap_signed(_hull(parts), width)


def _smod(a: Interval, b: Interval, width: int) -> Interval:
    parts = []
    if b.contains(0):
        parts.append(a)
    nz = [p for p in (b.meet(Interval(-INF, -1)), b.meet(Interval(1, INF))) if p is not None]
    if nz:
        if a.is_singleton and len(nz) == 1 and nz[0].is_singleton:
            parts.append(Interval.const(_tmod(int(a.lo), int(nz[0].lo))))
        else:
            big = max(max(abs(p.lo), abs(p.hi)) for p in nz)
            small = min(min(abs(p.lo), abs(p.hi)) for p in nz)
            if a.within(-small + 1, small - 1):
                parts.append(a)
            else:
                m = big - 1
                lo = 0 if a.lo >= 0 else max(a.lo, -m)
                hi = 0 if a.hi <= 0 else min(a.hi, m)
                parts.append(Interval(lo, hi))
    return _hull(parts)


def _hull(parts: list[Interval]) -> Interval:
    out = parts[0]
    for p in parts[1:]:
        out = out.join(p)
    return out


def _shift_amount(b_u: Interval, width: int) -> tuple[int, int]:
    mask = width - 1
    if b_u.is_singleton:
        k = int(b_u.lo) & mask
        return k, k
    if b_u.within(0, mask):
        return int(b_u.lo), int(b_u.hi)
    return 0, mask


def _shifts(op: str, s: Interval, u: Interval, k1: int, k2: int, width: int) -> Pair:
    smax = signed_range(width)
    umax = unsigned_range(width)
    if op == "lsh":
        if u.hi != INF and (int(u.hi) << k2) <= umax.hi:
            ru = Interval(int(u.lo) << k1, int(u.hi) << k2)
        else:
            ru = umax
        if s.lo != -INF and s.hi != INF:
            vals = [int(b) << k for b in (s.lo, s.hi) for k in (k1, k2)]
            rs = Interval(min(vals), max(vals))
            rs = rs if rs.within(smax.lo, smax.hi) else smax
        else:
            rs = smax
        return rs, ru
    if op == "rsh":
        if k1 == 0 and k2 == 0:
            return s, u
        return smax, Interval(int(u.lo) >> k2, int(u.hi) >> k1)
    # arsh
    lo = min(int(s.lo) >> k1, int(s.lo) >> k2)
    hi = max(int(s.hi) >> k1, int(s.hi) >> k2)
    return Interval(lo, hi), umax


def compute(op: str, width: int, a: Pair, b: Pair) -> Pair:
    """``a op b`` at ``width`` bits (operands as 64-bit pairs); the result as a 64-bit pair.

    ``op`` is one of ``add sub mul udiv umod sdiv smod and or xor lsh rsh arsh``.
    """
    if width == 32:
        a = low32(*a)
        b = low32(*b)
    sa, ua = a
    sb, ub = b
    if op == "add":
        rs, ru = wrap_signed(sa + sb, width), wrap_unsigned(ua + ub, width)
    elif op == "sub":
        rs, ru = wrap_signed(sa - sb, width), wrap_unsigned(ua - ub, width)
    elif op == "mul":
        rs, ru = wrap_signed(sa * sb, width), wrap_unsigned(ua * ub, width)
    elif op == "udiv":
        ru = _udiv(ua, ub)
        rs = from_unsigned(ru, width)
    elif op == "umod":
        ru = _umod(ua, ub)
        rs = from_unsigned(ru, width)
    elif op == "sdiv":
        rs = _sdiv(sa, sb, width)
        ru = from_signed(rs, width)
    elif op == "smod":
        rs = _smod(sa, sb, width)
        ru = from_signed(rs, width)
    elif op in ("and", "or", "xor"):
        ru = _bitwise(op, ua, ub, width)
        rs = from_unsigned(ru, width)
    elif op in ("lsh", "rsh", "arsh"):
        k1, k2 = _shift_amount(ub, width)
        rs, ru = _shifts(op, sa, ua, k1, k2, width)
    else:
        raise ValueError(f"unknown operation {op}")
    both = reconcile(rs, ru, width)
    if both is None:  # cannot happen for non-empty operands; stay sound
        both = signed_range(width), unsigned_range(width)
    if width == 32:
        return _zero_extend32(*both)
    return both


def negate(a: Pair, width: int) -> Pair:
    """``-a`` at ``width`` bits, as a 64-bit pair."""
    if width == 32:
        a = low32(*a)
    rs = wrap_signed(-a[0], width)
    ru = wrap_unsigned(-a[1], width)
    both = reconcile(rs, ru, width) or (signed_range(width), unsigned_range(width))
    return _zero_extend32(*both) if width == 32 else both


def sign_extend(a: Pair, bits: int, width: int) -> Pair:
    """``movsx``: sign-extend the low ``bits`` of ``a`` into a ``width``-bit result."""
    s, u = a
    if s.within(-(1 << (bits - 1)), (1 << (bits - 1)) - 1):
        rs = s
    else:
        low = u.singleton()
        if low is not None:
            low &= (1 << bits) - 1
            rs = Interval.const(low - (1 << bits) if low >> (bits - 1) else low)
        else:
            rs = signed_range(bits)
    if width == 32:
        ru32 = from_signed(rs, 32)
        return ru32, ru32
    return rs, from_signed(rs)


def swap_bytes(a: Pair, bits: int, swap: bool) -> Pair:
    """Byte-swap (``swap``) or truncate the low ``bits`` of a value, zero-extended to 64."""
    s, u = a
    if bits == 64 and not swap:
        return a
    n = u.singleton()
    if n is not None:
        value = n & ((1 << bits) - 1)
        if swap:
            value = int.from_bytes(value.to_bytes(bits // 8, "little"), "big")
        r = Interval.const(value)
        return (r, r) if bits < 64 else (from_unsigned(r), r)
    if bits == 64:
        return S64, U64
    if not swap:
        r = truncate(u, bits)
        return r, r
    r = unsigned_range(bits)
    return r, r


__all__ += ["negate", "S64", "U64", "S32", "U32"]
