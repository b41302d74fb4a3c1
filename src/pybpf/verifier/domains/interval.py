"""Interval: integer bounds with infinities, and the exact wrap-around rules of 32/64-bit words.

An :class:`Interval` is ``[lo, hi]`` over the mathematical integers; ``lo`` may be ``-INF``
and ``hi`` may be ``INF``. Arithmetic is exact over the integers (no overflow); the
``wrap_*`` functions then map a mathematical result onto a machine word the way the
hardware does (modulo ``2**width``), returning the whole word range when the wrapped
values are not one contiguous interval. The empty interval is ``None``.
"""

from __future__ import annotations

__all__ = [
    "INF",
    "Interval",
    "S64",
    "U64",
    "S32",
    "U32",
    "signed_range",
    "unsigned_range",
    "wrap_signed",
    "wrap_unsigned",
]

INF = float("inf")


class Interval:
    """An interval ``[lo, hi]`` of integers (bounds may be infinite); never empty."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo: int | float, hi: int | float) -> None:
        self.lo = lo
        self.hi = hi

    @staticmethod
    def const(value: int) -> Interval:
        """The singleton ``[value, value]``."""
        return Interval(value, value)

    @staticmethod
    def top() -> Interval:
        """``[-oo, +oo]``."""
        return Interval(-INF, INF)

    # ---- queries -------------------------------------------------------------------------
    @property
    def is_singleton(self) -> bool:
        """True when the interval holds exactly one integer."""
        return self.lo == self.hi

    @property
    def is_top(self) -> bool:
        """True for ``[-oo, +oo]``."""
        return self.lo == -INF and self.hi == INF

    def singleton(self) -> int | None:
        """The only value, or ``None``."""
        return int(self.lo) if self.lo == self.hi else None

    def contains(self, value: int) -> bool:
        """``value`` lies in the interval."""
        return self.lo <= value <= self.hi

    def within(self, lo: int | float, hi: int | float) -> bool:
        """The whole interval lies in ``[lo, hi]``."""
        return lo <= self.lo and self.hi <= hi

    def leq(self, other: Interval) -> bool:
        """Inclusion: every value of ``self`` is in ``other``."""
        return other.lo <= self.lo and self.hi <= other.hi

    # ---- lattice ---------------------------------------------------------------------------
    def join(self, other: Interval) -> Interval:
        """The smallest interval holding both."""
        return Interval(min(self.lo, other.lo), max(self.hi, other.hi))

    def meet(self, other: Interval) -> Interval | None:
        """The intersection, or ``None`` when empty."""
        lo = max(self.lo, other.lo)
        hi = min(self.hi, other.hi)
        return None if lo > hi else Interval(lo, hi)

    # ---- exact integer arithmetic -------------------------------------------------------
    def __add__(self, other: Interval | int) -> Interval:
        if isinstance(other, int):
            return Interval(self.lo + other, self.hi + other)
        return Interval(_add(self.lo, other.lo), _add(self.hi, other.hi))

    def __sub__(self, other: Interval | int) -> Interval:
        if isinstance(other, int):
            return Interval(self.lo - other, self.hi - other)
        return Interval(_add(self.lo, -other.hi), _add(self.hi, -other.lo))

    def __neg__(self) -> Interval:
        return Interval(-self.hi, -self.lo)

    def __mul__(self, other: Interval) -> Interval:
        if self.is_top or other.is_top:
            return Interval.top()
        products = [_mul(a, b) for a in (self.lo, self.hi) for b in (other.lo, other.hi)]
        return Interval(min(products), max(products))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Interval) and self.lo == other.lo and self.hi == other.hi

    def __hash__(self) -> int:
        return hash((self.lo, self.hi))

    def __repr__(self) -> str:
        return f"[{_fmt(self.lo)}, {_fmt(self.hi)}]"


def _fmt(bound: int | float) -> str:
    if bound == INF:
        return "+oo"
    if bound == -INF:
        return "-oo"
    return str(int(bound))


def _add(a: int | float, b: int | float) -> int | float:
    # -oo + +oo never happens for well-formed intervals; keep the infinite side.
    if a in (INF, -INF):
        return a
    if b in (INF, -INF):
        return b
    return a + b


def _mul(a: int | float, b: int | float) -> int | float:
    if a == 0 or b == 0:
        return 0
    if a in (INF, -INF) or b in (INF, -INF):
        return INF if (a > 0) == (b > 0) else -INF
    return a * b


def signed_range(width: int) -> Interval:
    """All values of a signed ``width``-bit word."""
    return Interval(-(1 << (width - 1)), (1 << (width - 1)) - 1)


def unsigned_range(width: int) -> Interval:
    """All values of an unsigned ``width``-bit word."""
    return Interval(0, (1 << width) - 1)


S64 = signed_range(64)
U64 = unsigned_range(64)
S32 = signed_range(32)
U32 = unsigned_range(32)


def wrap_unsigned(value: Interval, width: int) -> Interval:
    """The values of ``value mod 2**width`` as one interval (the word range if they split)."""
    modulus = 1 << width
    if value.lo == -INF or value.hi == INF or value.hi - value.lo >= modulus:
        return unsigned_range(width)
    lo_block = int(value.lo) >> width
    hi_block = int(value.hi) >> width
    if lo_block != hi_block:
        return unsigned_range(width)
    shift = lo_block * modulus
    return Interval(int(value.lo) - shift, int(value.hi) - shift)


def wrap_signed(value: Interval, width: int) -> Interval:
    """The values of ``value`` reduced to signed ``width`` bits, as one interval if possible."""
    half = 1 << (width - 1)
    shifted = wrap_unsigned(value + half, width)
    return Interval(shifted.lo - half, shifted.hi - half)
