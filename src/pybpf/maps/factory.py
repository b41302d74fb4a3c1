"""Map factory: creating a map of any supported type, and opening pinned ones.

:func:`create_map` checks a definition the way ``BPF_MAP_CREATE`` does (Linux's errno in
:class:`~pybpf.errors.MapError`), allocates its buffer and returns the family's class.
Types pybpf does not implement raise :class:`~pybpf.errors.NotSupportedError` whose
``feature`` is the type's name. ``backing`` chooses the buffer: ``"file"`` (in the state
directory: pinnable and shareable), ``"anonymous"`` (private memory, cannot be pinned) or
``"auto"`` (file when the state directory is usable, else anonymous).

:func:`open_pinned` maps a pinned map; given a ``definition`` it must match the pin's
(``MapError`` EINVAL with ``field`` naming the first difference, as libbpf refuses to
reuse a mismatched pin). :func:`open_or_create` is libbpf's pin-by-name: reuse the pin if
it exists and matches, else create and pin.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
from pathlib import Path
from typing import Any

from pybpf.errors import InputError, MapError, NotSupportedError
from pybpf.maps.array import ArrayMap, ArrayOfMaps, ProgArray
from pybpf.maps.base import Map
from pybpf.maps.buffer import FAMILY_OFFSET, MapBuffer
from pybpf.maps.definition import MapDefinition, check_common, fail
from pybpf.maps.devmap import DevMap, DevMapHash, XskMap
from pybpf.maps.hash import HashMap, HashOfMaps
from pybpf.maps.lpm_trie import LpmTrie
from pybpf.maps.perf_event_array import PerfEventArray
from pybpf.maps.queue_stack import QueueStack
from pybpf.maps.ringbuf import RingBuf
from pybpf.maptypes import MapType
from pybpf.memory.lock import process_alive
from pybpf.state import StateDirectory

__all__ = ["FAMILIES", "create_map", "open_pinned", "open_or_create", "family_of"]

FAMILIES: dict[MapType, type[Map]] = {
    t: cls
    for cls in (
        ArrayMap,
        ProgArray,
        ArrayOfMaps,
        HashMap,
        HashOfMaps,
        LpmTrie,
        QueueStack,
        RingBuf,
        PerfEventArray,
        DevMap,
        DevMapHash,
        XskMap,
    )
    for t in cls.TYPES
}

_COLLECTED: set[Path] = set()
_COLLECT_LOCK = threading.Lock()


def family_of(map_type: MapType | int) -> type[Map]:
    """The class implementing ``map_type`` (NotSupportedError names unsupported types)."""
    try:
        t = MapType(int(map_type))
    except ValueError:
        raise fail(errno.EINVAL, f"unknown map type {map_type!r}", "create") from None
    cls = FAMILIES.get(t)
    if cls is None:
        raise NotSupportedError(
            f"map type {t.type_name} is not supported by the portable backend",
            feature=t.type_name,
        )
    return cls


def _collect(state: StateDirectory) -> None:
    with _COLLECT_LOCK:
        if state.root in _COLLECTED:
            return
        _COLLECTED.add(state.root)
    state.collect_garbage(process_alive)


def _state_for(backing: str, state: StateDirectory | None) -> StateDirectory | None:
    if backing not in ("auto", "file", "anonymous"):
        raise InputError(f"backing must be 'auto', 'file' or 'anonymous', not {backing!r}")
    if backing == "anonymous":
        return None
    state = state or StateDirectory()
    try:
        state.ensure()
    except InputError:
        if backing == "file":
            raise
        return None
    _collect(state)
    return state


def create_map(
    definition: MapDefinition | None = None,
    *,
    backing: str = "auto",
    pin: str | os.PathLike | None = None,
    state: StateDirectory | None = None,
    key_codec: Any = None,
    value_codec: Any = None,
    **params: Any,
) -> Map:
    """A new map.

    ``definition`` or keyword attributes (``type``, ``key_size``, ``value_size``,
    ``max_entries``, ``flags``, ``name``, ``ncpus``, ``inner``); family parameters go in
    ``params`` (``page_count`` for PERF_EVENT_ARRAY). ``pin``: pin it there at once
    (implies a file backing; EEXIST when taken).
    """
    fields = {k: params.pop(k) for k in list(params) if k in MapDefinition.__dataclass_fields__}
    if definition is None:
        try:
            definition = MapDefinition(**fields)
        except TypeError as err:
            raise InputError(f"incomplete map definition: {err}") from None
    elif fields:
        raise InputError(f"give a definition or attributes, not both ({sorted(fields)})")
    cls = family_of(definition.type)
    check_common(definition)
    d = definition.resolved()
    cls.check(d, params)
    if pin is not None:
        backing = "file"
    store = _state_for(backing, state)
    buffer = MapBuffer.create(d, cls.buffer_size(d, params), store, name=d.name or "map")
    try:
        m = cls(buffer, d, fresh=True, params=params)
    except BaseException:
        buffer.close()
        raise
    buffer.publish()
    if key_codec is not None or value_codec is not None:
        m.set_codecs(key_codec, value_codec)
    if pin is not None:
        try:
            m.pin(pin, state=store)
        except BaseException:
            m.close()
            raise
    return m


def open_pinned(
    path: str | os.PathLike,
    definition: MapDefinition | None = None,
    *,
    state: StateDirectory | None = None,
) -> Map:
    """The map pinned at ``path`` (``/sys/fs/bpf/...`` or relative), sharing its data live.

    MapError ENOENT when nothing is pinned there; InputError when the file is not a map, is
    a symbolic link, or the state directory is not this user's own; MapError EPERM when the
    pin is another user's file (a pin others could write is made owner-only again);
    MapError EINVAL (``field`` set) when ``definition`` does not match the pin.
    """
    state = state or StateDirectory()
    state.ensure()  # a state directory (or part) another user owns, or a symlink: refused
    try:
        file = state.pin_path(path)
    except OSError as err:  # a directory on the way we may not enter
        raise fail(err.errno or errno.EACCES, f"cannot reach pin: {err}", "open_pinned") from None
    buffer = MapBuffer.open(file)
    try:
        d, cls = _pinned_family(buffer, str(path))
        if definition is not None:
            field = definition.mismatch(d)
            if field is not None:
                raise MapError(
                    f"pinned map differs from the definition in {field}",
                    errno=errno.EINVAL,
                    operation="open_pinned",
                    map_name=d.name,
                    field=field,
                    path=str(path),
                )
        m = cls(buffer, d, fresh=False, params={})
    except BaseException:
        buffer.close()
        raise
    return m


def _pinned_family(buffer: MapBuffer, where: str) -> tuple[MapDefinition, type[Map]]:
    """The pin's definition and family, refusing (InputError) a header no :func:`create_map`
    could have written: an unknown or unsupported type, a definition ``create_map`` refuses,
    or a size that is not the definition's layout (a corrupted or foreign file)."""
    try:
        d = buffer.definition()
        cls = FAMILIES.get(d.type)
        if cls is None:
            raise ValueError(f"map type {d.type.type_name} has no portable family")
        params = {}
        if cls is PerfEventArray:
            params["page_count"] = struct.unpack_from("=I", buffer.view, FAMILY_OFFSET)[0]
        check_common(d)
        cls.check(d, params)
        expected = cls.buffer_size(d, params)
    except (ValueError, MapError, InputError, NotSupportedError) as err:
        message = getattr(err, "message", str(err))
        raise InputError(f"corrupted map header: {message}", path=where) from None
    if expected != buffer.size:
        raise InputError(
            f"corrupted map header: {d.type.type_name} of {d.max_entries} entries needs "
            f"{expected} bytes, the file has {buffer.size}",
            path=where,
        )
    return d, cls


def open_or_create(
    definition: MapDefinition, pin: str | os.PathLike, *, state: StateDirectory | None = None
) -> Map:
    """libbpf's pin-by-name: the pinned map if present (and matching), else a new one
    pinned there."""
    state = state or StateDirectory()
    for _ in range(3):
        try:
            return open_pinned(pin, definition, state=state)
        except OSError as err:
            if err.errno != errno.ENOENT:
                raise
        try:
            return create_map(definition, pin=pin, state=state)
        except OSError as err:
            if err.errno != errno.EEXIST:
                raise  # someone else pinned it meanwhile: open theirs
    return open_pinned(pin, definition, state=state)
