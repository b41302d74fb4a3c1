"""State: the product domain (types x zone x stack) with type-aware join, widening and inclusion.

A location (``"r1"``, a stack cell ``"s[504...511]"``, a saved register ``"r6@0/5"``) has a
type set and, for each type it may have, numeric variables named ``"<loc>.<kind>"`` in
the zone. Variables of kinds the type set rules out are always forgotten, so joining a
state where ``r1`` is a packet pointer with one where it is a number keeps the packet
offset (it only matters on the packet side): before the zone join, a variable meaningful
on one side only is copied to the other side as an interval. Inclusion likewise ignores
constraints on variables that are meaningless on the smaller side.

Locations known to hold the same type (one was copied from the other, on every path) share
a *type class* (``teq``), so after joining "both numbers" with "both ctx pointers" the two
registers are still known to have the same type, which subtracting or comparing them needs.
A map reference also keeps the *set* of maps it may be (``fds``), which an interval of fds
would blur (joining map 0 and map 4 must not bring in map 2). References that must be
released (sockets from ``sk_lookup_*``, ring-buffer records) carry the ids of the calls that
acquired them (``refs``), and ``held`` is every reference that may still be outstanding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import count

from pybpf.verifier.domains.arith import Pair, reconcile
from pybpf.verifier.domains.interval import S64, U64, Interval
from pybpf.verifier.domains.stack import Stack, cell_name
from pybpf.verifier.domains.types import ADDRESS_KIND, ALL, KINDS, VALUE_KINDS, T, kinds_of
from pybpf.verifier.domains.zone import Zone

__all__ = ["State", "ALL_KINDS", "REFERENCED"]

ALL_KINDS = VALUE_KINDS + (ADDRESS_KIND,) + tuple(k for kinds in KINDS.values() for k in kinds)
_KINDS_CACHE: dict[int, frozenset[str]] = {}
_CLASS_IDS = count(1)
_MAP_REFS = int(T.MAP_FD | T.MAP_FD_PROGRAMS)
REFERENCED = int(T.SOCKET | T.ALLOC_MEM | T.BTF_ID)  # types that may hold an acquired object


def _join_sets(a: State, b: State, sa: dict, sb: dict, mask: int) -> dict:
    """Per-location id sets after a join: the union, or nothing where a side does not know."""
    out: dict[str, frozenset[int]] = {}
    for loc in set(sa) | set(sb):
        x, y = sa.get(loc), sb.get(loc)
        if x is None and not a.type_of(loc) & mask:
            x = frozenset()  # not such a pointer on this side: the other side decides
        if y is None and not b.type_of(loc) & mask:
            y = frozenset()
        if x is not None and y is not None:
            out[loc] = x | y
    return out


_LIMIT = "packet_limit"


def _limit_last(kind: str) -> tuple[bool, str]:
    return (kind == _LIMIT, kind)


def _relations(loc: str, kind: str) -> Callable[[str], bool]:
    """Which relations a side-only variable's extension may take: a packet pointer's
    ``packet_limit`` (extended last) only those to the location's own variables (its
    relation to ``packet_size`` comes back when a test makes the location a packet); the
    other variables none to ``packet_limit`` (not extended yet)."""
    if kind == _LIMIT:
        own = f"{loc}."
        return lambda w: w.startswith(own)
    limit = f"{loc}.{_LIMIT}"
    return lambda w: w != limit


def _kinds(types: int) -> frozenset[str]:
    cached = _KINDS_CACHE.get(types)
    if cached is None:
        cached = _KINDS_CACHE[types] = frozenset(kinds_of(types))
    return cached


class State:
    """One abstract state; ``bottom`` means unreachable."""

    __slots__ = ("types", "zone", "stack", "bottom", "teq", "fds", "refs", "held")

    def __init__(self) -> None:
        self.types: dict[str, int] = {}
        self.zone = Zone()
        self.stack = Stack()
        self.bottom = False
        self.teq: dict[str, int] = {}
        self.fds: dict[str, frozenset[int]] = {}
        self.refs: dict[str, frozenset[int]] = {}
        self.held: frozenset[int] = frozenset()

    @staticmethod
    def make_bottom() -> State:
        """The unreachable state."""
        s = State()
        s.bottom = True
        return s

    def copy(self) -> State:
        """An independent copy."""
        s = State.__new__(State)
        s.types = dict(self.types)
        s.zone = self.zone.copy()
        s.stack = self.stack.copy()
        s.bottom = self.bottom
        s.teq = dict(self.teq)
        s.fds = dict(self.fds)
        s.refs = dict(self.refs)
        s.held = self.held
        return s

    def set_bottom(self) -> None:
        """Make this state unreachable."""
        self.bottom = True

    # ---- types ---------------------------------------------------------------------------
    def type_of(self, loc: str) -> int:
        """The type set of a location (all types, uninitialised included, when unknown)."""
        return self.types.get(loc, ALL)

    def set_type(self, loc: str, types: int) -> None:
        """Give a location (a new value's) types, forgetting variables of the types it lost."""
        self.teq.pop(loc, None)
        self._set_types(loc, types)

    def _set_types(self, loc: str, types: int) -> None:
        if not types & _MAP_REFS:
            self.fds.pop(loc, None)
        if not types & REFERENCED:
            self.refs.pop(loc, None)
        old = self.types.get(loc, ALL)
        if types == ALL:
            self.types.pop(loc, None)
        else:
            self.types[loc] = types
        for kind in _kinds(old) - _kinds(types):
            self.zone.forget(f"{loc}.{kind}")

    def restrict_type(self, loc: str, types: int) -> bool:
        """Keep only ``types``; ``False`` (and bottom) when none is left."""
        for member in self.type_class(loc):
            new = self.type_of(member) & types
            if not new:
                self.bottom = True
                return False
            self._set_types(member, new)
            if new == T.PACKET and self.zone.constrains(f"{member}.{_LIMIT}"):
                if not self.zone.add_eq(f"{member}.{_LIMIT}", "packet_size"):
                    self.bottom = True
                    return False
        return True

    def type_class(self, loc: str) -> list[str]:
        """``loc`` and every location known to have the same type."""
        cid = self.teq.get(loc)
        if cid is None:
            return [loc]
        return [m for m, c in self.teq.items() if c == cid]

    def same_type(self, a: str, b: str) -> bool:
        """``a`` and ``b`` certainly have the same type."""
        ta = self.type_of(a)
        if ta != self.type_of(b):
            return False
        if ta & (ta - 1) == 0:
            return True
        cid = self.teq.get(a)
        return cid is not None and self.teq.get(b) == cid

    def has_type(self, loc: str, group: int) -> bool:
        """Every possible type of ``loc`` is in ``group``."""
        return self.type_of(loc) & ~group == 0

    def may_be(self, loc: str, types: int) -> bool:
        """Some possible type of ``loc`` is in ``types``."""
        return bool(self.type_of(loc) & types)

    def split(self, loc: str) -> list[tuple[int, State]]:
        """One copy per possible type of ``loc``, restricted to that type."""
        out = []
        t = self.type_of(loc)
        for bit in T:
            if t & bit:
                s = self.copy()
                if s.restrict_type(loc, int(bit)):
                    out.append((int(bit), s))
        return out

    # ---- numbers -------------------------------------------------------------------------
    def values(self, loc: str) -> Pair:
        """The (signed, unsigned) views of a location's value, each within its word range."""
        z = self.zone
        s = z.interval(f"{loc}.svalue").meet(S64) or S64
        u = z.interval(f"{loc}.uvalue").meet(U64) or U64
        return reconcile(s, u) or (s, u)

    def set_values(self, loc: str, s: Interval, u: Interval) -> bool:
        """Assign both views (relations forgotten) and reconcile them."""
        sv, uv = f"{loc}.svalue", f"{loc}.uvalue"
        self.zone.set(sv, s.lo, s.hi)
        self.zone.set(uv, u.lo, u.hi)
        return self.normalize(loc)

    def normalize(self, loc: str) -> bool:
        """Narrow a location's signed and unsigned views by each other; ``False`` if empty.

        When the value is known non-negative the two views are the same number and the
        equality is recorded in the zone, so a test on one view refines the other.
        """
        z = self.zone
        sv, uv = f"{loc}.svalue", f"{loc}.uvalue"
        s0, u0 = z.interval(sv), z.interval(uv)
        both = reconcile(s0, u0)
        if both is None:
            self.bottom = True
            return False
        s, u = both
        if not (z.meet_interval(sv, s.lo, s.hi) and z.meet_interval(uv, u.lo, u.hi)):
            self.bottom = True
            return False
        if s.lo >= 0 and (z.diff(sv, uv) > 0 or z.diff(uv, sv) > 0):
            if not z.add_eq(sv, uv):
                self.bottom = True
                return False
        return True

    def var(self, loc: str, kind: str) -> str:
        """The zone variable of a location's kind."""
        return f"{loc}.{kind}"

    def forget_kinds(self, loc: str, kinds: tuple[str, ...] | frozenset[str]) -> None:
        """Forget some variables of a location."""
        for kind in kinds:
            self.zone.forget(f"{loc}.{kind}")

    def havoc(self, loc: str, types: int = ALL) -> None:
        """Make a location unknown: any of ``types``, no numeric facts."""
        self.teq.pop(loc, None)
        self.fds.pop(loc, None)
        self.refs.pop(loc, None)
        for kind in ALL_KINDS:
            self.zone.forget(f"{loc}.{kind}")
        if types == ALL:
            self.types.pop(loc, None)
        else:
            self.types[loc] = types

    def copy_loc(self, dst: str, src: str) -> None:
        """``dst := src``: same types and every variable, relations kept."""
        if dst == src:
            return
        t = self.type_of(src)
        self.havoc(dst, t)
        if t & (t - 1):  # several possible types: remember they are the same
            cid = self.teq.get(src)
            if cid is None:
                cid = self.teq[src] = next(_CLASS_IDS)
            self.teq[dst] = cid
        if src in self.fds:
            self.fds[dst] = self.fds[src]
        if src in self.refs:
            self.refs[dst] = self.refs[src]
        for kind in _kinds(t):
            sv = f"{src}.{kind}"
            if self.zone.constrains(sv):
                self.zone.assign(f"{dst}.{kind}", sv)

    # ---- stack cells ---------------------------------------------------------------------
    def kill_cells(self, lo: int, hi: int) -> None:
        """Stop tracking every cell that shares a byte with ``[lo, hi)``."""
        for offset in self.stack.overlapping(lo, hi):
            width = self.stack.cells.pop(offset)
            self.havoc(cell_name(offset, width))

    # ---- lattice ---------------------------------------------------------------------------
    def _align(self, other: State) -> tuple[Zone, Zone, dict[str, int]]:
        """Zone copies where each side-only variable is copied over, and the joined types."""
        za, zb = self.zone.copy(), other.zone.copy()
        types: dict[str, int] = {}
        for loc in set(self.types) | set(other.types):
            ta, tb = self.type_of(loc), other.type_of(loc)
            if ta | tb != ALL:
                types[loc] = ta | tb
            if ta == tb:
                continue
            ka, kb = _kinds(ta), _kinds(tb)
            for kind in sorted(ka - kb, key=_limit_last):
                zb.extend(f"{loc}.{kind}", self.zone, _relations(loc, kind))
            for kind in sorted(kb - ka, key=_limit_last):
                za.extend(f"{loc}.{kind}", other.zone, _relations(loc, kind))
        return za, zb, types

    def join(self, other: State) -> State:
        """The least upper bound."""
        if self.bottom:
            return other.copy()
        if other.bottom:
            return self.copy()
        za, zb, types = self._align(other)
        res = State()
        res.zone = za.join(zb)
        res.types = types
        res.teq = self._join_classes(other)
        res.fds = _join_sets(self, other, self.fds, other.fds, _MAP_REFS)
        res.refs = _join_sets(self, other, self.refs, other.refs, REFERENCED)
        res.held = self.held | other.held
        res.stack, dropped = self.stack.join(other.stack)
        for name in dropped:
            res.havoc(name)
        return res

    def widen(
        self, new: State, hard: bool = False, thresholds: Sequence[int] | None = None
    ) -> State:
        """Widening of ``self`` (the older state) by ``new`` (``hard``: no thresholds;
        ``thresholds``: the zone's, when not its defaults)."""
        if self.bottom:
            return new.copy()
        if new.bottom:
            return self.copy()
        za, zb, types = self._align(new)
        res = State()
        res.zone = za.widen(zb, hard, thresholds)
        res.types = types
        res.teq = self._join_classes(new)
        res.fds = _join_sets(self, new, self.fds, new.fds, _MAP_REFS)
        res.refs = _join_sets(self, new, self.refs, new.refs, REFERENCED)
        res.held = self.held | new.held
        res.stack, dropped = self.stack.join(new.stack)
        for name in dropped:
            res.havoc(name)
        return res

    def map_fds(self, loc: str) -> frozenset[int] | None:
        """The maps a map reference may be, when known as a set."""
        return self.fds.get(loc)

    def _join_classes(self, other: State) -> dict[str, int]:
        """Type classes holding on both sides (a singleton type counts as its own class)."""
        pairs: dict[tuple, list[str]] = {}
        for loc in set(self.types) | set(other.types):
            ta, tb = self.type_of(loc), other.type_of(loc)
            joined = ta | tb
            if joined & (joined - 1) == 0 or joined == ALL:
                continue
            ka = self.teq.get(loc, ("t", ta) if ta & (ta - 1) == 0 else None)
            kb = other.teq.get(loc, ("t", tb) if tb & (tb - 1) == 0 else None)
            if ka is None or kb is None:
                continue
            pairs.setdefault((ka, kb), []).append(loc)
        out: dict[str, int] = {}
        for members in pairs.values():
            if len(members) > 1:
                cid = next(_CLASS_IDS)
                for m in members:
                    out[m] = cid
        return out

    def leq(self, other: State) -> bool:
        """Inclusion ``self <= other``."""
        if self.bottom:
            return True
        if other.bottom:
            return False
        ignore: set[str] = set()
        for loc in set(self.types) | set(other.types):
            ta = self.type_of(loc)
            if ta & ~other.type_of(loc):
                return False
            if loc in self.types:
                meaningful = _kinds(ta)
                ignore.update(f"{loc}.{k}" for k in ALL_KINDS if k not in meaningful)
        if not self.stack.leq(other.stack):
            return False
        if not self.held <= other.held:
            return False
        for mine, theirs, mask in (
            (self.fds, other.fds, _MAP_REFS),
            (self.refs, other.refs, REFERENCED),
        ):
            for loc, ids in theirs.items():
                if self.type_of(loc) & mask and not mine.get(loc, ids | {-1}) <= ids:
                    return False
        for loc, cid in other.teq.items():
            for member, c in other.teq.items():
                if c == cid and member > loc and not self.same_type(loc, member):
                    return False
        return self.zone.leq(other.zone, ignore)

    def __repr__(self) -> str:
        if self.bottom:
            return "State(_|_)"
        return f"State(types={self.types}, {self.zone!r}, {self.stack!r})"
