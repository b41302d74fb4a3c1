"""Map types: the ONE table of map type ids and names (Linux's ``enum bpf_map_type``).

Ids are Linux's, names bpftool's (the member name in lower case: ``hash``, ``array``,
``prog_array``, ...). eBPF for Windows numbers its map types differently:
:data:`WINDOWS_MAP_TYPES` translates its ids to these. Key/value rules join the rows with
the maps issue.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

from pybpf.errors import InputError

__all__ = ["MapType", "MapFlag", "WINDOWS_MAP_TYPES", "map_type_from_windows"]


class MapType(IntEnum):
    """Linux ``BPF_MAP_TYPE_*`` values."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33

    @property
    def type_name(self) -> str:
        """bpftool's name of the type (``"percpu_hash"``)."""
        return self.name.lower()

    @property
    def is_map_in_map(self) -> bool:
        """True for ARRAY_OF_MAPS and HASH_OF_MAPS (values are inner maps)."""
        return self in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)

    @classmethod
    def from_name(cls, name: str) -> MapType:
        """The type named ``name`` (bpftool's name, any case, ``BPF_MAP_TYPE_`` allowed)."""
        key = name.strip().upper().removeprefix("BPF_MAP_TYPE_")
        try:
            return cls[key]
        except KeyError:
            raise InputError(f"unknown map type {name!r}", field="map_type") from None


class MapFlag(IntFlag):
    """``BPF_F_*`` map creation flags that the loader sets or reads."""

    NO_PREALLOC = 0x1
    NO_COMMON_LRU = 0x2
    NUMA_NODE = 0x4
    RDONLY = 0x8
    WRONLY = 0x10
    STACK_BUILD_ID = 0x20
    ZERO_SEED = 0x40
    RDONLY_PROG = 0x80
    WRONLY_PROG = 0x100
    CLONE = 0x200
    MMAPABLE = 0x400
    PRESERVE_ELEMS = 0x800
    INNER_MAP = 0x1000
    LINK = 0x2000
    PATH_FD = 0x4000
    VTYPE_BTF_OBJ_FD = 0x8000
    TOKEN_FD = 0x10000
    SEGV_ON_FAULT = 0x20000
    NO_USER_CONV = 0x40000


# eBPF for Windows' ebpf_map_type_t (include/ebpf_structs.h) to Linux's ids.
WINDOWS_MAP_TYPES: dict[int, MapType] = {
    0: MapType.UNSPEC,
    1: MapType.HASH,
    2: MapType.ARRAY,
    3: MapType.PROG_ARRAY,
    4: MapType.PERCPU_HASH,
    5: MapType.PERCPU_ARRAY,
    6: MapType.HASH_OF_MAPS,
    7: MapType.ARRAY_OF_MAPS,
    8: MapType.LRU_HASH,
    9: MapType.LPM_TRIE,
    10: MapType.QUEUE,
    11: MapType.LRU_PERCPU_HASH,
    12: MapType.STACK,
    13: MapType.RINGBUF,
    14: MapType.PERF_EVENT_ARRAY,
}


def map_type_from_windows(windows_id: int) -> MapType | None:
    """The Linux map type for eBPF for Windows' map type id, or ``None`` if it has none."""
    return WINDOWS_MAP_TYPES.get(windows_id)
