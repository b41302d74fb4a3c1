"""Inner maps: the values of map-in-maps (and prog arrays), stored as u32 ids of live objects.

ARRAY_OF_MAPS and HASH_OF_MAPS store, in their 4-byte values, the id
(:func:`pybpf.maps.registry.by_id`) of an inner map; 0 means empty. Linux stores a pointer
and takes a file descriptor from user space; pybpf takes a map object or its id, and
checks it against the outer map's template like ``bpf_map_meta_equal`` (same type, key and
value sizes, flags, and max_entries unless the template has ``BPF_F_INNER_MAP``), failing
with ``EINVAL`` otherwise and ``EBADF`` for an id that names no live map. Ids are this
process's: a pinned map-in-map is only meaningful to the process that filled it.

A program's lookup in a map-in-map gets the inner map's handle (what ``lddw`` of a map
gives), which it passes to further map helpers.
"""

from __future__ import annotations

import errno
from typing import Any

from pybpf.errors import InputError
from pybpf.maps import registry
from pybpf.maps.definition import MapDefinition, fail
from pybpf.maptypes import MapFlag

__all__ = ["check_template", "inner_error", "InnerMapCodec", "INNER_MAP_CODEC"]


def check_template(d: MapDefinition) -> None:
    """Creation checks of a map-in-map's ``inner`` template (raises MapError)."""
    if d.value_size != 4:
        raise fail(errno.EINVAL, "map-in-map values are 4-byte map ids", "create", d.name)
    if d.inner is None:
        raise fail(errno.EINVAL, "a map-in-map needs an inner map template", "create", d.name)
    if d.inner.type.is_map_in_map:
        raise fail(errno.EINVAL, "map-in-map nesting is one level deep", "create", d.name)


def inner_error(template: MapDefinition, map_id: int) -> int:
    """0 when live map ``map_id`` fits ``template``, else a negative errno."""
    inner = registry.by_id(map_id)
    if inner is None or inner.closed:
        return -errno.EBADF
    d = inner.definition
    if (
        d.type != template.type
        or d.key_size != template.key_size
        or d.value_size != template.value_size
        or d.flags != template.flags
    ):
        return -errno.EINVAL
    if not template.flags & MapFlag.INNER_MAP and d.max_entries != template.max_entries:
        return -errno.EINVAL
    return 0


class InnerMapCodec:
    """Values as map objects: encodes a map (or an id), decodes to the live map or the id."""

    def encode(self, obj: Any, size: int) -> bytes:
        """A map object or id as 4 little-endian bytes."""
        map_id = getattr(obj, "id", obj)
        if not isinstance(map_id, int) or not 0 <= map_id < 1 << 32:
            raise InputError(f"{obj!r} is not a map or a map id", field="value")
        return map_id.to_bytes(size, "little")

    def decode(self, data: bytes) -> Any:
        """The live map with that id, or the id itself when it names none here."""
        map_id = int.from_bytes(data, "little")
        return registry.by_id(map_id) or map_id


INNER_MAP_CODEC = InnerMapCodec()
