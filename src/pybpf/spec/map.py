"""MapSpec: how to create one map (type, sizes, flags, pinning, initial contents).

Maps come from three places in an object file, told apart by ``kind``: a record in the
legacy ``maps`` section (:attr:`MapKind.LEGACY`), a BTF-defined map in ``.maps``
(:attr:`MapKind.BTF`), or a global data section (``.data``, ``.rodata``, ``.bss``,
``.kconfig``, ...) that becomes a one-element array (:attr:`MapKind.DATA`).
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field
from enum import Enum

from pybpf.maptypes import MapType

__all__ = ["MapKind", "Pinning", "MapSpec"]


class MapKind(Enum):
    """Where a map was defined."""

    LEGACY = "legacy"  # a record in the ``maps`` (or ``maps/NAME``) section
    BTF = "btf"  # a variable of the ``.maps`` section, described by BTF
    DATA = "data"  # a global data section (.data, .rodata, .bss, .kconfig, ...)


class Pinning(Enum):
    """Where a map is pinned, in the convention that defined it."""

    NONE = "none"
    BY_NAME = "by_name"  # libbpf's LIBBPF_PIN_BY_NAME (BTF ``pinning = 1``)
    OBJECT_NS = "object_ns"  # iproute2's PIN_OBJECT_NS
    GLOBAL_NS = "global_ns"  # iproute2's PIN_GLOBAL_NS, eBPF for Windows' PIN_GLOBAL_NS
    CUSTOM_NS = "custom_ns"  # iproute2's PIN_CUSTOM_NS


@dataclass(slots=True)
class MapSpec:
    """One map to create.

    - ``name``: the symbol name, or the section name for global data (``.rodata``).
    - ``type`` (Linux's ids; eBPF-for-Windows ids are translated, the original kept in
      ``windows_type``), ``key_size``, ``value_size``, ``max_entries``, ``flags``.
    - ``inner``: the template of a map-in-map's inner maps; ``inner_index`` is a legacy
      record's ``inner_map_idx`` (an index into the legacy records) when that is how the
      object named it.
    - ``contents``: a global data map's initial value (``None``: all zeros, as ``.bss``);
      ``values``: initial ``(index, name)`` slots of a prog array (program names) or
      map-in-map (map names), from ``__array(values, ...)`` initialisers.
    - ``key_type_id`` / ``value_type_id``: BTF types of key and value (0 when unknown).
    - ``frozen``: frozen after creation (``.rodata``, ``.kconfig``).
    - ``record``: the raw u32 words of a legacy map record.
    """

    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    kind: MapKind = MapKind.LEGACY
    section: str = ""
    pinning: Pinning = Pinning.NONE
    numa_node: int = 0
    map_extra: int = 0
    inner: MapSpec | None = None
    inner_index: int | None = None
    key_type_id: int = 0
    value_type_id: int = 0
    contents: bytes | None = None
    values: tuple[tuple[int, str], ...] = ()
    frozen: bool = False
    windows_type: int | None = None
    record: tuple[int, ...] = field(default=())

    @property
    def is_global_data(self) -> bool:
        """True for maps made from a global data section."""
        return self.kind == MapKind.DATA

    def initial_value(self) -> bytes:
        """The initial value of a global data map: ``contents`` padded with zeros."""
        data = self.contents or b""
        if len(data) >= self.value_size:
            return data[: self.value_size]
        return data + bytes(self.value_size - len(data))

    def copy(self) -> MapSpec:
        """A deep copy that can be edited independently."""
        return _copy.deepcopy(self)
