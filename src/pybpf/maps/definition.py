"""Map definition: what a map is (type, sizes, flags), and the checks Linux makes at creation.

A :class:`MapDefinition` is the plain description every map family is created from (the
loader builds one from a ``MapSpec``). :func:`check_common` applies the checks that
``BPF_MAP_CREATE`` makes for every type (name characters, access flags, ``map_extra``);
each family module adds its own, returning Linux's errno through
:class:`~pybpf.errors.MapError` (``operation="create"``).

Special fields (Linux's ``btf_record``): a value holding a ``struct bpf_spin_lock`` has its
offset in ``spin_lock_offset`` (-1: none), and every special field (the lock, ``bpf_timer``,
kptrs, ...) is in ``special_fields`` as ``(kind, offset, size)``, found in the value's BTF
by :meth:`MapDefinition.with_value_type` (:mod:`pybpf.btf.fields`) or given directly
(``spin_lock_offset=`` for maps made without BTF). Plain copies of a value (updates and
lookups without ``BPF_F_LOCK``, a program's ``bpf_map_update_elem``) never copy those
bytes: :func:`copy_into` skips them and :func:`clear_fields` zeroes them in what a lookup
returns, as Linux's ``copy_map_value`` and ``check_and_init_map_value`` do.
:func:`check_common` makes Linux's ``map_check_btf`` checks on them.

Also here: the update flags (``BPF_ANY``, ``BPF_NOEXIST``, ``BPF_EXIST``, ``BPF_F_LOCK``),
the limits the families share, and :func:`fail`, the one way map code raises an errno.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, replace
from typing import Any

from pybpf.config import settings
from pybpf.errors import MapError
from pybpf.maptypes import MapFlag, MapType

__all__ = [
    "MapDefinition",
    "BPF_ANY",
    "BPF_NOEXIST",
    "BPF_EXIST",
    "BPF_F_LOCK",
    "ACCESS_FLAGS",
    "KMALLOC_MAX_SIZE",
    "PCPU_MIN_UNIT_SIZE",
    "MAX_BPF_STACK",
    "MAX_MAP_BYTES",
    "round8",
    "fail",
    "check_common",
    "copy_into",
    "clear_fields",
    "SPIN_LOCK",
]

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

ACCESS_FLAGS = MapFlag.RDONLY | MapFlag.WRONLY | MapFlag.RDONLY_PROG | MapFlag.WRONLY_PROG
KMALLOC_MAX_SIZE = 1 << 22  # 4 MiB: PAGE_SIZE << MAX_PAGE_ORDER on x86-64
PCPU_MIN_UNIT_SIZE = 32 << 10  # the largest per-CPU value Linux allocates
MAX_BPF_STACK = 512
MAX_MAP_BYTES = 1 << 32  # larger buffers are refused (ENOMEM) before anything is allocated

SPIN_LOCK = "bpf_spin_lock"  # the kind of a special field that BPF_F_LOCK takes
_ENOTSUPP_FIELD = errno.EOPNOTSUPP  # map_check_btf's answer for a field the type cannot hold
_ALLOWED = {  # special field kind -> the map types that may hold it (map_check_btf)
    "lock": (MapType.HASH, MapType.ARRAY, MapType.CGROUP_STORAGE, MapType.SK_STORAGE,
             MapType.INODE_STORAGE, MapType.TASK_STORAGE, MapType.CGRP_STORAGE),
    "timer": (MapType.HASH, MapType.LRU_HASH, MapType.ARRAY),
    "kptr": (MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH,
             MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.SK_STORAGE, MapType.INODE_STORAGE,
             MapType.TASK_STORAGE, MapType.CGRP_STORAGE),
    "graph": (MapType.HASH, MapType.LRU_HASH, MapType.ARRAY),
    "uptr": (MapType.TASK_STORAGE,),
}  # fmt: skip
_CLASS = {
    "bpf_spin_lock": "lock",
    "bpf_res_spin_lock": "lock",
    "bpf_timer": "timer",
    "bpf_wq": "timer",
    "bpf_task_work": "timer",
    "bpf_list_head": "graph",
    "bpf_rb_root": "graph",
    "kptr": "kptr",
    "kptr_untrusted": "kptr",
    "percpu_kptr": "kptr",
    "uptr": "uptr",
}
_SINGLE = ("bpf_spin_lock", "bpf_res_spin_lock", "bpf_timer", "bpf_wq", "bpf_task_work",
           "bpf_refcount")  # fmt: skip

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


def _by_offset(field: tuple[str, int, int]) -> tuple[int, str]:
    return field[1], field[0]


def round8(n: int) -> int:
    """``n`` rounded up to a multiple of 8 (Linux's ``round_up(n, 8)``)."""
    return (n + 7) & ~7


def fail(err: int, message: str, operation: str, map_name: str = "") -> MapError:
    """The :class:`MapError` for ``err`` (return it to ``raise``)."""
    return MapError(message, errno=err, operation=operation, map_name=map_name)


@dataclass(frozen=True)
class MapDefinition:
    """How to create a map: Linux's ``BPF_MAP_CREATE`` attributes.

    - ``type``: a :class:`~pybpf.maptypes.MapType` (or its id);
    - ``key_size``, ``value_size``, ``max_entries``, ``flags`` (``BPF_F_*``), ``name``
      (at most 15 characters of ``[A-Za-z0-9_.]``), ``map_extra``;
    - ``ncpus``: how many CPUs per-CPU maps keep values for (0: the configured count,
      ``PYBPF_NCPUS``, default the machine's);
    - ``inner``: the template of a map-in-map's inner maps;
    - ``spin_lock_offset``: where the value's ``struct bpf_spin_lock`` is (-1: none);
      ``special_fields``: every special field as ``(kind, offset, size)`` by offset (the
      lock included: either field given fills in the other). See the module docstring.
    """

    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    name: str = ""
    ncpus: int = 0
    inner: MapDefinition | None = None
    map_extra: int = 0
    spin_lock_offset: int = -1
    special_fields: tuple[tuple[str, int, int], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.type, MapType):
            try:
                object.__setattr__(self, "type", MapType(int(self.type)))
            except ValueError:
                raise fail(
                    errno.EINVAL, f"unknown map type {self.type!r}", "create", self.name
                ) from None
        fields = tuple(
            sorted(((str(k), int(o), int(n)) for k, o, n in self.special_fields), key=_by_offset)
        )
        locks = [f[1] for f in fields if f[0] == SPIN_LOCK]
        lock = self.spin_lock_offset
        if lock >= 0 and lock not in locks:
            fields = tuple(sorted((*fields, (SPIN_LOCK, lock, 4)), key=_by_offset))
        elif lock < 0 and locks:
            object.__setattr__(self, "spin_lock_offset", locks[0])
        object.__setattr__(self, "special_fields", fields)

    def with_value_type(self, btf: Any, type_id: int) -> MapDefinition:
        """This definition with the special fields of value type ``type_id`` of ``btf`` (a
        :class:`pybpf.btf.Spec`), found as Linux's ``btf_parse_fields`` finds them
        (:func:`pybpf.btf.fields.special_fields`; MapError with Linux's errno)."""
        from pybpf.btf.fields import special_fields

        try:
            fields = special_fields(btf, type_id) if type_id else ()
        except MapError as err:
            err.map_name = self.name
            raise
        if not fields:
            return self
        lock = next((f.offset for f in fields if f.kind == SPIN_LOCK), -1)
        return replace(self, spin_lock_offset=lock, special_fields=tuple(map(tuple, fields)))

    @property
    def special_spans(self) -> tuple[tuple[int, int], ...]:
        """``(offset, size)`` of every special field: what plain copies leave alone."""
        return tuple((o, n) for _, o, n in self.special_fields)

    @property
    def percpu(self) -> bool:
        """True for the per-CPU types (values per CPU, padded to 8 bytes in user views)."""
        return self.type in (MapType.PERCPU_ARRAY, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH)

    def resolved(self) -> MapDefinition:
        """This definition with ``ncpus`` filled in (per-CPU types) or 1 (the others)."""
        if not self.percpu:
            return self if self.ncpus == 1 else replace(self, ncpus=1)
        return self if self.ncpus > 0 else replace(self, ncpus=max(1, settings().ncpus))

    def mismatch(self, other: MapDefinition) -> str | None:
        """The first field (creation attribute) where ``other`` differs, or ``None``.

        ``name`` is not compared (libbpf does not either); ``ncpus`` only for per-CPU
        types and only when both are known (nonzero).
        """
        names = ("type", "key_size", "value_size", "max_entries", "flags", "map_extra",
                 "spin_lock_offset")  # fmt: skip
        for name in names:
            if getattr(self, name) != getattr(other, name):
                return name
        if self.percpu and self.ncpus and other.ncpus and self.ncpus != other.ncpus:
            return "ncpus"
        if (self.inner is None) != (other.inner is None):
            return "inner"
        if self.inner is not None and other.inner is not None:
            inner = self.inner.mismatch(other.inner)
            if inner is not None:
                return f"inner.{inner}"
        return None


def check_common(d: MapDefinition) -> None:
    """The checks ``BPF_MAP_CREATE`` makes for every map type (raises MapError)."""
    name = d.name
    for field_name in ("key_size", "value_size", "max_entries", "flags"):
        value = getattr(d, field_name)
        if not isinstance(value, int) or not 0 <= value < 1 << 32:
            raise fail(errno.EINVAL, f"{field_name} must be a u32, not {value!r}", "create", name)
    if len(name.encode()) > 15 or not set(name) <= _NAME_CHARS:
        raise fail(errno.EINVAL, f"invalid map name {name!r}", "create", name)
    if d.map_extra and d.type not in (MapType.BLOOM_FILTER, MapType.ARENA):
        raise fail(errno.EINVAL, "map_extra is only for bloom filters and arenas", "create", name)
    if d.flags & MapFlag.RDONLY and d.flags & MapFlag.WRONLY:
        raise fail(errno.EINVAL, "BPF_F_RDONLY and BPF_F_WRONLY together", "create", name)
    both = MapFlag.RDONLY_PROG | MapFlag.WRONLY_PROG
    if d.flags & both == both:
        raise fail(errno.EINVAL, "BPF_F_RDONLY_PROG and BPF_F_WRONLY_PROG together", "create", name)
    if d.ncpus < 0:
        raise fail(errno.EINVAL, f"ncpus must be >= 0, not {d.ncpus}", "create", name)
    if d.special_fields or d.spin_lock_offset != -1:
        _check_fields(d)


def _check_fields(d: MapDefinition) -> None:
    """``map_check_btf``'s checks of the special fields (raises MapError)."""
    name = d.name
    lock = d.spin_lock_offset
    if lock < -1 or (lock >= 0 and (lock % 4 or lock + 4 > d.value_size)):
        raise fail(errno.EINVAL, f"bad bpf_spin_lock offset {lock}", "create", name)
    end = 0
    for kind, offset, size in d.special_fields:
        if offset < end or size <= 0 or offset + size > d.value_size:
            raise fail(errno.EINVAL, f"bad special field {kind} at {offset}", "create", name)
        end = offset + size
    kinds = [f[0] for f in d.special_fields]
    for kind in _SINGLE:
        if kinds.count(kind) > 1:
            raise fail(errno.E2BIG, f"more than one {kind}", "create", name)
    if d.flags & (MapFlag.RDONLY_PROG | MapFlag.WRONLY_PROG):
        raise fail(errno.EACCES, "special fields in a map programs cannot write", "create", name)
    for kind in kinds:
        allowed = _ALLOWED.get(_CLASS.get(kind, ""))
        if allowed is not None and d.type not in allowed:
            raise fail(
                _ENOTSUPP_FIELD, f"{d.type.type_name} cannot hold a {kind}", "create", name
            )


def copy_into(view: Any, offset: int, value: bytes, spans: tuple[tuple[int, int], ...]) -> None:
    """Copy ``value`` into ``view`` at ``offset``, leaving the special fields' bytes
    (``spans``, relative to the value) as they are (Linux's ``copy_map_value``)."""
    if not spans:
        view[offset : offset + len(value)] = value
        return
    start = 0
    for o, n in spans:
        if o > start:
            view[offset + start : offset + o] = value[start:o]
        start = max(start, o + n)
    if start < len(value):
        view[offset + start : offset + len(value)] = value[start:]


def clear_fields(value: bytes, spans: tuple[tuple[int, int], ...]) -> bytes:
    """``value`` with the special fields' bytes zeroed (``check_and_init_map_value``)."""
    if not spans:
        return value
    out = bytearray(value)
    for o, n in spans:
        out[o : o + n] = bytes(n)
    return bytes(out)
