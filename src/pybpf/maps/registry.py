"""Map registry: this process's live maps, by id and by handle (the address programs hold).

A program refers to a map by the 64-bit value its ``lddw`` loads (Linux: the address of
``struct bpf_map``). Here it is the map's *handle*: the address of its buffer's header,
which programs cannot read or write (it is in no address space). Helpers find the map
behind a handle with :func:`by_handle`; map-in-map values and prog-array-like slots store
the :func:`by_id` ids. Entries are weak: a map that is garbage collected leaves the
registry.

Ids are the state directory's (:func:`pybpf.state.ids.allocate_id`), so they are unique
across processes like Linux's: a new map gets the next id, recorded in its buffer's header
(u32 at offset :data:`ID_OFFSET`, reserved bytes of :mod:`pybpf.maps.buffer`'s layout);
a process that opens a pinned or shared map reads the id from there. Two views of the same
buffer in one process share the id; :func:`by_id` gives the latest one opened.
"""

from __future__ import annotations

import struct
import threading
import weakref
from pathlib import Path
from typing import Any

from pybpf.memory import atomics
from pybpf.state import StateDirectory
from pybpf.state.ids import allocate_id

__all__ = ["register", "unregister", "by_handle", "by_id", "live_maps", "read_id", "ID_OFFSET"]

ID_OFFSET = 112  # u32 in the map buffer header's reserved bytes
_LOCK = threading.Lock()
_BY_HANDLE: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_BY_ID: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def _state_of(path: Path | None) -> StateDirectory:
    if path is not None and path.parent.name == "objects":
        return StateDirectory(path.parent.parent)
    return StateDirectory()


def read_id(header: bytes | memoryview) -> int:
    """The id recorded in a map buffer's header bytes (0: none yet)."""
    return struct.unpack_from("=I", header, ID_OFFSET)[0]


def _id_of(map_: Any) -> int:
    buf = map_._buf
    recorded = read_id(buf.view)
    if recorded:
        return recorded
    new = allocate_id("map", _state_of(buf.path))
    old = atomics.cmpxchg_at(buf.address + ID_OFFSET, 4, 0, new)
    return old or new


def register(map_: Any) -> int:
    """Record a map (its ``handle`` and buffer set); returns its id, the one its buffer
    records or a new one written there."""
    map_id = _id_of(map_)
    with _LOCK:
        _BY_HANDLE[map_.handle] = map_
        _BY_ID[map_id] = map_
    return map_id


def unregister(map_: Any) -> None:
    """Forget a map (closing it does this)."""
    with _LOCK:
        if _BY_HANDLE.get(map_.handle) is map_:
            del _BY_HANDLE[map_.handle]
        if _BY_ID.get(map_.id) is map_:
            del _BY_ID[map_.id]


def by_handle(handle: int) -> Any | None:
    """The live map whose handle is ``handle``, or ``None``."""
    return _BY_HANDLE.get(handle)


def by_id(map_id: int) -> Any | None:
    """The live map with id ``map_id``, or ``None``."""
    return _BY_ID.get(map_id)


def live_maps() -> list[Any]:
    """Every live map of this process, by id."""
    with _LOCK:
        return [_BY_ID[i] for i in sorted(_BY_ID.keys())]
