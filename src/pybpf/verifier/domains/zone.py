"""Zone: the relational numeric domain, difference constraints ``x - y <= k`` plus intervals.

Variables are strings (``"r1.packet_offset"``, ``"packet_size"``, ``"pc[4]"``). The state is
kept in a *split* form:

- ``iv[x] = (lo, hi)``: the interval of ``x`` (an absent key means unbounded);
- ``succ[x][y] = k`` (mirrored as ``pred[y][x]``): the difference ``x - y <= k`` between two
  variables, stored only when the intervals do not already imply it.

The representation is kept *closed*: the stored differences are transitively closed and
every interval is as tight as the differences allow, so queries are exact and adding one
constraint costs one pass over the predecessors and successors it touches (no cubic
closure). Operations that make the zone empty return ``False``; the caller then treats
the whole abstract state as bottom.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence

from pybpf.verifier.domains.interval import INF, Interval

__all__ = ["Zone", "THRESHOLDS"]

# Widening jumps to the next of these bounds before giving up to infinity (sorted).
THRESHOLDS = sorted(
    {
        -(1 << 63),
        -(1 << 31),
        -4096,
        -512,
        -1,
        0,
        1,
        512,
        4096,
        65535,
        (1 << 31) - 1,
        (1 << 32) - 1,
        (1 << 63) - 1,
        (1 << 64) - 1,
    }
)

_TOP = (-INF, INF)


class Zone:
    """Intervals and closed difference constraints over named integer variables."""

    __slots__ = ("iv", "succ", "pred")

    def __init__(self) -> None:
        self.iv: dict[str, tuple] = {}
        self.succ: dict[str, dict[str, int]] = {}
        self.pred: dict[str, dict[str, int]] = {}

    def copy(self) -> Zone:
        """An independent copy."""
        other = Zone.__new__(Zone)
        other.iv = dict(self.iv)
        other.succ = {x: dict(d) for x, d in self.succ.items()}
        other.pred = {x: dict(d) for x, d in self.pred.items()}
        return other

    # ---- queries -------------------------------------------------------------------------
    def bounds(self, x: str) -> tuple:
        """``(lo, hi)`` of ``x`` (``(-INF, INF)`` when unconstrained)."""
        return self.iv.get(x, _TOP)

    def interval(self, x: str) -> Interval:
        """The interval of ``x``."""
        lo, hi = self.iv.get(x, _TOP)
        return Interval(lo, hi)

    def diff(self, x: str | None, y: str | None) -> int | float:
        """The best known upper bound of ``x - y`` (``None`` stands for the constant 0)."""
        if x is None:
            return 0 if y is None else -self.iv.get(y, _TOP)[0]
        if y is None:
            return self.iv.get(x, _TOP)[1]
        if x == y:
            return 0
        implied = self.iv.get(x, _TOP)[1] - self.iv.get(y, _TOP)[0]
        stored = self.succ.get(x, {}).get(y, INF)
        return stored if stored < implied else implied

    def variables(self) -> set[str]:
        """Every variable that has a constraint."""
        return set(self.iv) | set(self.succ) | set(self.pred)

    def constrains(self, x: str) -> bool:
        """``x`` has an interval bound or a difference constraint."""
        return x in self.iv or x in self.succ or x in self.pred

    # ---- forgetting and assignment ------------------------------------------------------
    def forget(self, x: str) -> None:
        """Remove every constraint on ``x`` (the rest stays closed)."""
        self.iv.pop(x, None)
        out = self.succ.pop(x, None)
        if out:
            for y in out:
                inc = self.pred[y]
                del inc[x]
                if not inc:
                    del self.pred[y]
        inc = self.pred.pop(x, None)
        if inc:
            for z in inc:
                out = self.succ[z]
                del out[x]
                if not out:
                    del self.succ[z]

    def set(self, x: str, lo: int | float, hi: int | float) -> None:
        """Assign ``x`` an interval, forgetting its relations (``lo <= hi`` required)."""
        self.forget(x)
        if lo != -INF or hi != INF:
            self.iv[x] = (lo, hi)

    def assign(self, x: str, y: str, c: int = 0) -> None:
        """``x := y + c`` keeping every relation of ``y``."""
        if x == y:
            self.shift(x, c)
            return
        self.forget(x)
        lo, hi = self.iv.get(y, _TOP)
        if lo != -INF or hi != INF:
            self.iv[x] = (lo + c, hi + c)
        for j, d in list(self.succ.get(y, {}).items()):
            self._store(x, j, d + c)
        for i, d in list(self.pred.get(y, {}).items()):
            self._store(i, x, d - c)
        self._store(x, y, c)
        self._store(y, x, -c)

    def shift(self, x: str, c: int) -> None:
        """``x := x + c`` in place (relations follow)."""
        if c == 0:
            return
        lo, hi = self.iv.get(x, _TOP)
        if lo != -INF or hi != INF:
            self.iv[x] = (lo + c, hi + c)
        out = self.succ.get(x)
        if out:
            for y in out:
                out[y] += c
                self.pred[y][x] += c
        inc = self.pred.get(x)
        if inc:
            for z in inc:
                inc[z] -= c
                self.succ[z][x] -= c

    def add_range(self, x: str, lo: int | float, hi: int | float) -> None:
        """``x := x + d`` for an unknown ``d`` in ``[lo, hi]``, keeping what still holds."""
        if lo == hi and lo not in (INF, -INF):
            self.shift(x, int(lo))
            return
        xlo, xhi = self.iv.get(x, _TOP)
        new_lo = xlo + lo if xlo != -INF and lo != -INF else -INF
        new_hi = xhi + hi if xhi != INF and hi != INF else INF
        if new_lo == -INF and new_hi == INF:
            self.iv.pop(x, None)
        else:
            self.iv[x] = (new_lo, new_hi)
        out = self.succ.get(x)  # x - y <= k  becomes  x' - y <= k + hi
        if out:
            for y in list(out):
                if hi == INF:
                    del out[y]
                    del self.pred[y][x]
                    if not self.pred[y]:
                        del self.pred[y]
                else:
                    out[y] += hi
                    self.pred[y][x] += hi
            if not out:
                del self.succ[x]
        inc = self.pred.get(x)  # z - x <= k  becomes  z - x' <= k - lo
        if inc:
            for z in list(inc):
                if lo == -INF:
                    del inc[z]
                    del self.succ[z][x]
                    if not self.succ[z]:
                        del self.succ[z]
                else:
                    inc[z] -= lo
                    self.succ[z][x] -= lo
            if not inc:
                del self.pred[x]

    def _store(self, x: str, y: str, k: int | float) -> None:
        """Record ``x - y <= k`` unless an existing fact or the intervals already say it."""
        if k == INF or x == y:
            return
        if self.iv.get(x, _TOP)[1] - self.iv.get(y, _TOP)[0] <= k:
            return
        out = self.succ.setdefault(x, {})
        old = out.get(y)
        if old is not None and old <= k:
            return
        out[y] = k
        self.pred.setdefault(y, {})[x] = k

    # ---- constraints ---------------------------------------------------------------------
    def add_le(self, x: str | None, y: str | None, k: int | float) -> bool:
        """Add ``x - y <= k`` (``None`` is the constant 0); ``False`` when now empty."""
        if k == INF:
            return True
        if x is None:
            return True if y is None else self._raise_lb(y, -k)
        if y is None:
            return self._lower_ub(x, k)
        if x == y:
            return k >= 0
        if self.diff(x, y) <= k:
            return True
        if self.diff(y, x) + k < 0:
            return False
        preds = [(x, 0)]
        preds.extend(self.pred.get(x, {}).items())
        succs = [(y, 0)]
        succs.extend(self.succ.get(y, {}).items())
        for i, dix in preds:
            for j, dyj in succs:
                bound = dix + k + dyj
                if i == j:
                    if bound < 0:
                        return False
                    continue
                self._store(i, j, bound)
        x_lo = self.iv.get(x, _TOP)[0]
        y_hi = self.iv.get(y, _TOP)[1]
        if y_hi != INF:
            for i, dix in preds:
                if not self._tighten_ub(i, dix + k + y_hi):
                    return False
        if x_lo != -INF:
            for j, dyj in succs:
                if not self._tighten_lb(j, x_lo - k - dyj):
                    return False
        return True

    def add_eq(self, x: str, y: str, c: int = 0) -> bool:
        """Add ``x == y + c``."""
        return self.add_le(x, y, c) and self.add_le(y, x, -c)

    def meet_interval(self, x: str, lo: int | float, hi: int | float) -> bool:
        """Intersect ``x`` with ``[lo, hi]``; ``False`` when now empty."""
        if hi != INF and not self._lower_ub(x, hi):
            return False
        if lo != -INF and not self._raise_lb(x, lo):
            return False
        return True

    def _tighten_ub(self, x: str, hi: int | float) -> bool:
        lo, old = self.iv.get(x, _TOP)
        if hi >= old:
            return True
        if hi < lo:
            return False
        self.iv[x] = (lo, hi)
        return True

    def _tighten_lb(self, x: str, lo: int | float) -> bool:
        old, hi = self.iv.get(x, _TOP)
        if lo <= old:
            return True
        if lo > hi:
            return False
        self.iv[x] = (lo, hi)
        return True

    def _lower_ub(self, x: str, hi: int | float) -> bool:
        if hi >= self.iv.get(x, _TOP)[1]:
            return True
        if not self._tighten_ub(x, hi):
            return False
        for z, d in self.pred.get(x, {}).items():
            if not self._tighten_ub(z, d + hi):
                return False
        return True

    def _raise_lb(self, x: str, lo: int | float) -> bool:
        if lo <= self.iv.get(x, _TOP)[0]:
            return True
        if not self._tighten_lb(x, lo):
            return False
        for j, d in self.succ.get(x, {}).items():
            if not self._tighten_lb(j, lo - d):
                return False
        return True

    def extend(self, x: str, source: Zone, only: Callable[[str], bool] | None = None) -> None:
        """Give ``x`` (meaningless here) as many of ``source``'s constraints on it as possible.

        A constraint is taken only if, together with those already taken, it leaves some
        value of ``x`` for every valuation of the other variables (``w_j - x <= b`` and
        ``x - w_i <= a`` need ``w_j - w_i <= a + b`` here), so the states this zone
        describes are unchanged; a later join then keeps, e.g., ``packet_size - x >= 14``
        from the side where ``x`` means something. Bounds are tried first (a relation to a
        variable not extended yet would shut out ``x``'s own bound, which the other side's
        relation brings back anyway). ``only``: take relations only to the variables it
        accepts (bounds are always taken).
        """
        self.forget(x)
        ups = list(source.succ.get(x, {}).items())  # x - w <= k
        lows = list(source.pred.get(x, {}).items())  # w - x <= k
        if only is not None:
            ups = [(w, k) for w, k in ups if only(w)]
            lows = [(w, k) for w, k in lows if only(w)]
        lo, hi = source.iv.get(x, _TOP)
        candidates = [(True, w, k) for w, k in ups] + [(False, w, k) for w, k in lows]
        if lo != -INF:
            candidates.insert(0, (False, None, -lo))
        if hi != INF:
            candidates.insert(0, (True, None, hi))
        taken_up: list[tuple] = []
        taken_low: list[tuple] = []
        for up, w, k in candidates:
            if up and all(self.diff(wj, w) <= k + kj for wj, kj in taken_low):
                taken_up.append((w, k))
            elif not up and all(self.diff(w, wi) <= ki + k for wi, ki in taken_up):
                taken_low.append((w, k))
        for w, k in taken_up:
            self.add_le(x, w, k)
        for w, k in taken_low:
            self.add_le(w, x, k)

    # ---- lattice ---------------------------------------------------------------------------
    def join(self, other: Zone) -> Zone:
        """The least upper bound (exact for closed operands)."""
        res = Zone()
        changed: list[tuple[str, tuple, tuple]] = []
        for x, (lo1, hi1) in self.iv.items():
            b = other.iv.get(x)
            if b is not None:
                res.iv[x] = (min(lo1, b[0]), max(hi1, b[1]))
                if b != (lo1, hi1):
                    changed.append((x, (lo1, hi1), b))
        # Differences the intervals imply on both sides (x = y = 0 on one side and x = y = 1
        # on the other: x - y = 0 on both) hold after the join but no longer follow from the
        # joined intervals: keep them as relations. Only variables whose intervals differ
        # can lose such a fact.
        for x, (_, hx1), (_, hx2) in changed:
            for y, (ly1, _), (ly2, _) in changed:
                if x != y:
                    k = max(hx1 - ly1, hx2 - ly2)
                    if k != INF:
                        res._store(x, y, k)
        for x, out in self.succ.items():
            for y, k1 in out.items():
                k2 = other.diff(x, y)
                if k2 != INF:
                    res._store(x, y, k1 if k1 > k2 else k2)
        for x, out in other.succ.items():
            mine = self.succ.get(x, {})
            for y, k2 in out.items():
                if y in mine:
                    continue
                k1 = self.diff(x, y)
                if k1 != INF:
                    res._store(x, y, k1 if k1 > k2 else k2)
        return res

    def widen(
        self, new: Zone, hard: bool = False, thresholds: Sequence[int] | None = None
    ) -> Zone:
        """Widening: unstable bounds jump to the next threshold (or infinity if ``hard``).

        ``thresholds`` (sorted; default :data:`THRESHOLDS`) may add the program's own
        constants, so ``i != 1000`` loops widen to 1000 first and stay bounded.

        Stable differences are kept, and (unless ``hard``) bounds that jumped are then
        tightened again by them, so ``r0 - r1 <= 0`` with ``r1 <= 100`` still bounds ``r0``.
        """
        res = Zone()
        jumped = []
        marks = THRESHOLDS if thresholds is None else thresholds
        for x, (lo1, hi1) in self.iv.items():
            b = new.iv.get(x)
            if b is None:
                continue
            lo2, hi2 = b
            lo = lo1 if lo2 >= lo1 else (-INF if hard else _threshold_below(lo2, marks))
            hi = hi1 if hi2 <= hi1 else (INF if hard else _threshold_above(hi2, marks))
            if (lo, hi) != (lo1, hi1):
                jumped.append(x)
            if lo != -INF or hi != INF:
                res.iv[x] = (lo, hi)
        for x, out in self.succ.items():
            for y, k1 in out.items():
                if new.diff(x, y) <= k1:
                    res._store(x, y, k1)
        if hard:
            return res
        # A difference the old intervals implied (x <= 1, y >= 1: x - y <= 0) is lost when
        # x's bound jumps; keep it as a relation when the new state still satisfies it.
        for x in jumped:
            for y in self.iv:
                if y == x:
                    continue
                k = self.diff(x, y)
                if k != INF and new.diff(x, y) <= k:
                    res._store(x, y, k)
                k = self.diff(y, x)
                if k != INF and new.diff(y, x) <= k:
                    res._store(y, x, k)
        for _ in range(len(jumped) + 1):
            changed = False
            for x in jumped:
                before = res.iv.get(x, _TOP)
                for y, k in res.succ.get(x, {}).items():
                    res._tighten_ub(x, res.iv.get(y, _TOP)[1] + k)
                for z, k in res.pred.get(x, {}).items():
                    res._tighten_lb(x, res.iv.get(z, _TOP)[0] - k)
                changed = changed or res.iv.get(x, _TOP) != before
            if not changed:
                break
        return res

    def meet(self, other: Zone) -> Zone | None:
        """The intersection, or ``None`` when empty."""
        res = self.copy()
        for x, (lo, hi) in other.iv.items():
            if not res.meet_interval(x, lo, hi):
                return None
        for x, out in other.succ.items():
            for y, k in out.items():
                if not res.add_le(x, y, k):
                    return None
        return res

    def leq(self, other: Zone, ignore: Iterable[str] = ()) -> bool:
        """Inclusion: every constraint of ``other`` holds here (variables in ``ignore`` skipped)."""
        skip = ignore if isinstance(ignore, (set, frozenset)) else set(ignore)
        for x, (lo, hi) in other.iv.items():
            if x in skip:
                continue
            mlo, mhi = self.iv.get(x, _TOP)
            if mlo < lo or mhi > hi:
                return False
        for x, out in other.succ.items():
            if x in skip:
                continue
            for y, k in out.items():
                if y in skip:
                    continue
                if self.diff(x, y) > k:
                    return False
        return True

    def project(self, keep: Iterable[str]) -> Zone:
        """A copy that forgets every variable not in ``keep``."""
        wanted = set(keep)
        res = self.copy()
        for x in res.variables() - wanted:
            res.forget(x)
        return res

    def __repr__(self) -> str:
        parts = [f"{x}={Interval(*b)!r}" for x, b in sorted(self.iv.items())]
        for x, out in sorted(self.succ.items()):
            parts.extend(f"{x}-{y}<={k}" for y, k in sorted(out.items()))
        return "Zone(" + ", ".join(parts) + ")"


def _threshold_above(value: int | float, marks: Sequence[int]) -> int | float:
    if value == INF:
        return INF
    index = bisect_left(marks, value)
    return marks[index] if index < len(marks) else INF


def _threshold_below(value: int | float, marks: Sequence[int]) -> int | float:
    if value == -INF:
        return -INF
    index = bisect_right(marks, value) - 1
    return marks[index] if index >= 0 else -INF
