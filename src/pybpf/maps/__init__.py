"""maps: Linux's map types in flat shared-memory buffers, one module per map family.

Create a map with :func:`create_map` (a :class:`MapDefinition` or its attributes), open a
pinned one with :func:`open_pinned`. Every map is one buffer (:mod:`pybpf.maps.buffer`)
whose layout its family module documents; it has a dict-like Python API, Linux's raw
``bpf()`` semantics (errno in :class:`~pybpf.errors.MapError`) and the entries program
helpers call (:mod:`pybpf.maps.base`).

>>> from pybpf.maps import create_map, MapDefinition
>>> from pybpf.maptypes import MapType
>>> with create_map(type=MapType.HASH, key_size=4, value_size=8, max_entries=16,
...                 backing="anonymous") as m:
...     m[1] = 42
...     m.set_codecs("uint", "uint")[1]
42
"""

from pybpf.maps.array import ArrayMap, ArrayOfMaps, ProgArray
from pybpf.maps.base import Map
from pybpf.maps.codec import BYTES, INT, UINT, Codec
from pybpf.maps.definition import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_NOEXIST,
    MAX_MAP_BYTES,
    MapDefinition,
)
from pybpf.maps.factory import FAMILIES, create_map, family_of, open_or_create, open_pinned
from pybpf.maps.hash import HashMap, HashOfMaps
from pybpf.maps.lpm_trie import LpmTrie
from pybpf.maps.perf_event_array import PerfEventArray
from pybpf.maps.queue_stack import QueueStack
from pybpf.maps.registry import by_handle, by_id, live_maps
from pybpf.maps.ringbuf import RingBuf

__all__ = [
    "ArrayMap",
    "ArrayOfMaps",
    "BPF_ANY",
    "BPF_EXIST",
    "BPF_F_LOCK",
    "BPF_NOEXIST",
    "BYTES",
    "Codec",
    "FAMILIES",
    "HashMap",
    "HashOfMaps",
    "INT",
    "LpmTrie",
    "MAX_MAP_BYTES",
    "Map",
    "MapDefinition",
    "PerfEventArray",
    "ProgArray",
    "QueueStack",
    "RingBuf",
    "UINT",
    "by_handle",
    "by_id",
    "create_map",
    "family_of",
    "live_maps",
    "open_or_create",
    "open_pinned",
]
