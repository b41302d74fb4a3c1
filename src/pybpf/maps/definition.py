"""Map definition: what a map is (type, sizes, flags), and the checks Linux makes at creation.

A :class:`MapDefinition` is the plain description every map family is created from (the
loader builds one from a ``MapSpec``). :func:`check_common` applies the checks that
``BPF_MAP_CREATE`` makes for every type (name characters, access flags, ``map_extra``);
each family module adds its own, returning Linux's errno through
:class:`~pybpf.errors.MapError` (``operation="create"``).

Also here: the update flags (``BPF_ANY``, ``BPF_NOEXIST``, ``BPF_EXIST``, ``BPF_F_LOCK``),
the limits the families share, and :func:`fail`, the one way map code raises an errno.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, replace

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

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


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
    - ``inner``: the template of a map-in-map's inner maps.
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

    def __post_init__(self) -> None:
        if not isinstance(self.type, MapType):
            try:
                object.__setattr__(self, "type", MapType(int(self.type)))
            except ValueError:
                raise fail(
                    errno.EINVAL, f"unknown map type {self.type!r}", "create", self.name
                ) from None

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
        for name in ("type", "key_size", "value_size", "max_entries", "flags", "map_extra"):
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
