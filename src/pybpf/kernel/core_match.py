"""core_match: CO-RE access specs: parsed from access strings, matched against target types.

libbpf's relo_core.c in two steps. :func:`parse_spec` turns a local ``bpf_core_relo``
(root type, access string ``"0:1:2"``, kind) into an :class:`AccessSpec`: accessors for
the named fields and array indexes it passes, and the bit offset it reaches.
:func:`spec_match` finds the same access in a candidate target type (by field name,
through anonymous members, with ``bpf_core_fields_are_compat``'s rules), and
:func:`types_are_compat` / :func:`types_match` decide the type-based kinds. Candidates
are the target types with the same essential name (``task_struct`` for
``task_struct___old``), indexed once per target BTF by :class:`CandidateIndex`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pybpf.btf import (
    Array,
    Composite,
    CoreRelo,
    CoreReloKind,
    Enum,
    Enum64,
    Float,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Kind,
    Pointer,
    Type,
    Union,
    Void,
)
from pybpf.btf import Spec as BTFSpec
from pybpf.errors import BTFError

__all__ = [
    "ENUMVAL_KINDS",
    "FIELD_KINDS",
    "SPEC_MAX_LEN",
    "TYPE_KINDS",
    "AccessSpec",
    "Accessor",
    "CandidateIndex",
    "CoreRefused",
    "candidate_index",
    "essential_name",
    "is_any_enum",
    "kind_core_compat",
    "parse_spec",
    "size_of",
    "spec_match",
    "types_are_compat",
    "types_match",
]

SPEC_MAX_LEN = 64  # BPF_CORE_SPEC_MAX_LEN
FIELD_KINDS = frozenset(
    {
        CoreReloKind.FIELD_BYTE_OFFSET,
        CoreReloKind.FIELD_BYTE_SIZE,
        CoreReloKind.FIELD_EXISTS,
        CoreReloKind.FIELD_SIGNED,
        CoreReloKind.FIELD_LSHIFT_U64,
        CoreReloKind.FIELD_RSHIFT_U64,
    }
)
TYPE_KINDS = frozenset(
    {
        CoreReloKind.TYPE_ID_LOCAL,
        CoreReloKind.TYPE_ID_TARGET,
        CoreReloKind.TYPE_EXISTS,
        CoreReloKind.TYPE_MATCHES,
        CoreReloKind.TYPE_SIZE,
    }
)
ENUMVAL_KINDS = frozenset({CoreReloKind.ENUMVAL_EXISTS, CoreReloKind.ENUMVAL_VALUE})


class CoreRefused(Exception):
    """A relocation libbpf refuses (its -EINVAL/-E2BIG/-EOPNOTSUPP); the caller adds where."""


def essential_name(name: str) -> str:
    """``name`` without a ``___flavor`` suffix (libbpf's bpf_core_essential_name_len)."""
    n = len(name)
    for i in range(n - 5, -1, -1):
        s = name[i : i + 5]
        if s[0] != "_" and s[1:4] == "___" and s[4] != "_":
            return name[: i + 1]
    return name


def is_any_enum(t: Type) -> bool:
    """ENUM or ENUM64."""
    return isinstance(t, Enum | Enum64)


def kind_core_compat(a: Type, b: Type) -> bool:
    """Same kind, or both enums (libbpf's btf_kind_core_compat)."""
    return a.kind == b.kind or (is_any_enum(a) and is_any_enum(b))


def size_of(btf: BTFSpec, type_id: int) -> int:
    """btf__resolve_size, refusing the relocation when the type has no size."""
    try:
        return btf.size_of(type_id)
    except BTFError as exc:
        raise CoreRefused(f"type [{type_id}] has no size: {exc.message}") from None


@dataclass
class Accessor:
    """One high-level step: a named field (``name``) or an array index of ``type_id``."""

    type_id: int
    idx: int
    name: str | None = None


@dataclass
class AccessSpec:
    """An access in one BTF: accessors, raw access indexes and the bit offset reached."""

    btf: BTFSpec
    root_type_id: int
    kind: CoreReloKind
    acc: list[Accessor] = field(default_factory=list)
    raw: list[int] = field(default_factory=list)
    bit_offset: int = 0


def _is_flex_arr(btf: BTFSpec, acc: Accessor | None, arr: Array) -> bool:
    if acc is None or not acc.name or arr.nelems > 0:
        return False
    t = btf.types[acc.type_id]
    return isinstance(t, Composite) and acc.idx == len(t.members) - 1


def parse_spec(btf: BTFSpec, relo: CoreRelo) -> AccessSpec:
    """bpf_core_parse_spec: the local access string as accessors and a bit offset."""
    spec = AccessSpec(btf, relo.type_id, relo.kind)
    text = relo.access
    if not text or text.startswith(":"):
        raise CoreRefused(f"bad access string {text!r}")
    if relo.kind in TYPE_KINDS:
        if text != "0":
            raise CoreRefused(f"type relocation with access string {text!r}")
        return spec
    try:
        spec.raw = [int(part) for part in text.split(":")]
    except ValueError:
        raise CoreRefused(f"bad access string {text!r}") from None
    if len(spec.raw) > SPEC_MAX_LEN:
        raise CoreRefused("access string too long")
    if not 0 < relo.type_id < len(btf.types):
        raise CoreRefused(f"no local type [{relo.type_id}]")
    t = btf.resolve(relo.type_id)
    type_id = t.id
    idx = spec.raw[0]
    spec.acc.append(Accessor(type_id, idx))
    if relo.kind in ENUMVAL_KINDS:
        if not is_any_enum(t) or len(spec.raw) > 1 or not 0 <= idx < len(t.values):
            raise CoreRefused("enum value relocation does not name an enumerator")
        spec.acc[0].name = t.values[idx].name
        return spec
    if relo.kind not in FIELD_KINDS:
        raise CoreRefused(f"unknown relocation kind {int(relo.kind)}")
    spec.bit_offset = idx * size_of(btf, type_id) * 8
    for idx in spec.raw[1:]:
        t = btf.resolve(type_id)
        type_id = t.id
        if isinstance(t, Composite):
            if not 0 <= idx < len(t.members):
                raise CoreRefused(f"member {idx} of [{type_id}] does not exist")
            m = t.members[idx]
            spec.bit_offset += m.bit_offset
            if m.name:
                spec.acc.append(Accessor(type_id, idx, m.name))
            type_id = m.type_id
        elif isinstance(t, Array):
            elem = btf.resolve(t.type_id)
            type_id = elem.id
            flex = _is_flex_arr(btf, spec.acc[-1] if spec.acc else None, t)
            if not flex and idx >= t.nelems:
                raise CoreRefused(f"index {idx} is past the array [{t.id}]")
            spec.acc.append(Accessor(type_id, idx))
            spec.bit_offset += idx * size_of(btf, type_id) * 8
        else:
            raise CoreRefused(f"access {text!r} goes through a {t.kind.name}")
    return spec


def _fields_compat(lb: BTFSpec, lid: int, tb: BTFSpec, tid: int) -> bool:
    """bpf_core_fields_are_compat."""
    while True:
        lt, tt = lb.resolve(lid), tb.resolve(tid)
        if isinstance(lt, Composite) and isinstance(tt, Composite):
            return True
        if not kind_core_compat(lt, tt):
            return False
        if isinstance(lt, Pointer | Float):
            return True
        if isinstance(lt, Fwd | Enum | Enum64):
            ln, tn = essential_name(lt.name), essential_name(tt.name)
            return not ln or not tn or ln == tn
        if isinstance(lt, Int):
            return lt.offset == 0 and tt.offset == 0
        if isinstance(lt, Array) and isinstance(tt, Array):
            lid, tid = lt.type_id, tt.type_id
            continue
        return False


def types_are_compat(lb: BTFSpec, lid: int, tb: BTFSpec, tid: int, level: int = 32) -> bool:
    """bpf_core_types_are_compat (names already matched by the caller)."""
    if not kind_core_compat(lb.types[lid], tb.types[tid]):
        return False
    depth = 32
    while True:
        depth -= 1
        if depth < 0:
            raise CoreRefused("type nesting too deep")
        lt, tt = lb.resolve(lid), tb.resolve(tid)
        if not kind_core_compat(lt, tt):
            return False
        if isinstance(lt, Void | Composite | Enum | Enum64 | Fwd):
            return True
        if isinstance(lt, Int) and isinstance(tt, Int):
            return lt.offset == 0 and tt.offset == 0
        if isinstance(lt, Pointer) and isinstance(tt, Pointer):
            lid, tid = lt.type_id, tt.type_id
            continue
        if isinstance(lt, Array) and isinstance(tt, Array):
            lid, tid = lt.type_id, tt.type_id
            continue
        if isinstance(lt, FuncProto) and isinstance(tt, FuncProto):
            if len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params, strict=True):
                if level <= 0:
                    raise CoreRefused("prototype nesting too deep")
                if not types_are_compat(
                    lb, lb.resolve(lp.type_id).id, tb, tb.resolve(tp.type_id).id, level - 1
                ):
                    return False
            lid, tid = lb.resolve(lt.return_type_id).id, tb.resolve(tt.return_type_id).id
            continue
        return False


def _names_match(local: str, target: str) -> bool:
    if not target:
        return not local
    return essential_name(local) == essential_name(target)


def types_match(
    lb: BTFSpec, lid: int, tb: BTFSpec, tid: int, behind_ptr: bool = False, level: int = 32
) -> bool:
    """__bpf_core_types_match: the stricter TYPE_MATCHES relation."""
    if level <= 0:
        raise CoreRefused("type nesting too deep")
    depth = 32
    while True:
        depth -= 1
        if depth < 0:
            raise CoreRefused("type nesting too deep")
        lt, tt = lb.resolve(lid), tb.resolve(tid)
        if not _names_match(lt.name, tt.name):
            return False
        if isinstance(lt, Void):
            return isinstance(tt, Void)
        if isinstance(lt, Fwd):
            if behind_ptr and not isinstance(tt, Fwd):
                return (tt.kind == Kind.STRUCT and not lt.is_union) or (
                    tt.kind == Kind.UNION and lt.is_union
                )
            return isinstance(tt, Fwd) and lt.is_union == tt.is_union
        if is_any_enum(lt):
            if not is_any_enum(tt) or lt.size != tt.size or len(lt.values) > len(tt.values):
                return False
            return all(any(_names_match(v.name, w.name) for w in tt.values) for v in lt.values)
        if isinstance(lt, Composite):
            if behind_ptr:
                if lt.kind == tt.kind:
                    return True
                return isinstance(tt, Fwd) and tt.is_union == isinstance(lt, Union)
            if lt.kind != tt.kind or len(lt.members) > len(tt.members):
                return False
            for lm in lt.members:
                if not any(
                    _names_match(lm.name, tm.name)
                    and types_match(lb, lm.type_id, tb, tm.type_id, behind_ptr, level - 1)
                    for tm in tt.members
                ):
                    return False
            return True
        if isinstance(lt, Int):
            return (
                isinstance(tt, Int)
                and lt.size == tt.size
                and bool(lt.encoding & IntEncoding.SIGNED) == bool(tt.encoding & IntEncoding.SIGNED)
            )
        if isinstance(lt, Pointer):
            if not isinstance(tt, Pointer):
                return False
            behind_ptr = True
            lid, tid = lt.type_id, tt.type_id
            continue
        if isinstance(lt, Array):
            if not isinstance(tt, Array) or lt.nelems != tt.nelems:
                return False
            lid, tid = lt.type_id, tt.type_id
            continue
        if isinstance(lt, FuncProto):
            if not isinstance(tt, FuncProto) or len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params, strict=True):
                if not types_match(lb, lp.type_id, tb, tp.type_id, behind_ptr, level - 1):
                    return False
            lid, tid = lt.return_type_id, tt.return_type_id
            continue
        return False


def _match_member(
    lb: BTFSpec, lacc: Accessor, tb: BTFSpec, tid: int, spec: AccessSpec
) -> tuple[bool, int]:
    """bpf_core_match_member: find the local named field in target ``tid`` (recursing into
    anonymous members); returns (found, the field's target type id)."""
    tt = tb.resolve(tid)
    if not isinstance(tt, Composite):
        return False, 0
    lt = lb.types[lacc.type_id]
    assert isinstance(lt, Composite)
    lm = lt.members[lacc.idx]
    for i, m in enumerate(tt.members):
        if len(spec.raw) >= SPEC_MAX_LEN:
            raise CoreRefused("struct nesting too deep")
        spec.bit_offset += m.bit_offset
        spec.raw.append(i)
        if not m.name:
            found, next_id = _match_member(lb, lacc, tb, m.type_id, spec)
            if found:
                return True, next_id
        elif m.name == lm.name:
            spec.acc.append(Accessor(tt.id, i, m.name))
            if _fields_compat(lb, lm.type_id, tb, m.type_id):
                return True, m.type_id
            spec.acc.pop()
            return False, 0
        spec.bit_offset -= m.bit_offset
        spec.raw.pop()
    return False, 0


def spec_match(local: AccessSpec, tb: BTFSpec, tid: int) -> AccessSpec | None:
    """bpf_core_spec_match: the target spec for candidate ``tid``, or ``None``."""
    targ = AccessSpec(tb, tid, local.kind)
    if local.kind in TYPE_KINDS:
        if local.kind == CoreReloKind.TYPE_MATCHES:
            ok = types_match(local.btf, local.root_type_id, tb, tid)
        else:
            ok = types_are_compat(local.btf, local.root_type_id, tb, tid)
        return targ if ok else None
    if local.kind in ENUMVAL_KINDS:
        tt = tb.resolve(tid)
        if not is_any_enum(tt):
            return None
        want = essential_name(local.acc[0].name or "")
        for i, v in enumerate(tt.values):
            if essential_name(v.name) == want:
                targ.acc.append(Accessor(tt.id, i, v.name))
                targ.raw.append(i)
                return targ
        return None
    for i, lacc in enumerate(local.acc):
        tt = tb.resolve(tid)
        tid = tt.id
        if lacc.name:
            found, tid = _match_member(local.btf, lacc, tb, tid, targ)
            if not found:
                return None
        else:
            if i > 0:
                if not isinstance(tt, Array):
                    return None
                flex = _is_flex_arr(tb, targ.acc[-1] if targ.acc else None, tt)
                if not flex and lacc.idx >= tt.nelems:
                    return None
                tid = tb.resolve(tt.type_id).id
            if len(targ.raw) >= SPEC_MAX_LEN:
                raise CoreRefused("struct nesting too deep")
            targ.acc.append(Accessor(tid, lacc.idx))
            targ.raw.append(lacc.idx)
            targ.bit_offset += lacc.idx * size_of(tb, tid) * 8
    return targ


class CandidateIndex:
    """Target types by essential name, built once per target BTF."""

    def __init__(self, btf: BTFSpec) -> None:
        self.btf = btf
        self.by_name: dict[str, list[int]] = {}
        for t in btf.types[1:]:
            if t.name:
                self.by_name.setdefault(essential_name(t.name), []).append(t.id)

    def candidates(self, local: Type) -> list[int]:
        """Ids of the target types that may match ``local`` (same essential name and kind)."""
        ids = self.by_name.get(essential_name(local.name), [])
        return [i for i in ids if kind_core_compat(self.btf.types[i], local)]


_INDEXES: dict[int, CandidateIndex] = {}


def candidate_index(btf: BTFSpec) -> CandidateIndex:
    """The (cached) candidate index of a target BTF."""
    index = _INDEXES.get(id(btf))
    if index is None or index.btf is not btf:
        index = CandidateIndex(btf)
        _INDEXES[id(btf)] = index
    return index
