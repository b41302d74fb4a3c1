"""Map registry: this process's live maps, by id and by handle (the address programs hold).

A program refers to a map by the 64-bit value its ``lddw`` loads (Linux: the address of
``struct bpf_map``). Here it is the map's *handle*: the address of its buffer's header,
which programs cannot read or write (it is in no address space). Helpers find the map
behind a handle with :func:`by_handle`; map-in-map values and prog-array-like slots store
the process-local :func:`by_id` ids. Entries are weak: a map that is garbage collected
leaves the registry.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any

__all__ = ["register", "unregister", "by_handle", "by_id", "live_maps"]

_LOCK = threading.Lock()
_IDS = itertools.count(1)
_BY_HANDLE: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_BY_ID: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def register(map_: Any) -> int:
    """Record a new map (its ``handle`` must be set); returns its new id."""
    with _LOCK:
        map_id = next(_IDS)
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
