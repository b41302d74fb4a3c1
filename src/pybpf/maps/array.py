"""Array maps: ARRAY, PERCPU_ARRAY, PROG_ARRAY and ARRAY_OF_MAPS in one flat buffer.

Buffer layout (after the common 256-byte header, no family fields)::

    values  (page aligned, at PAGE_SIZE) max_entries * slot
            slot = round8(value_size) for ARRAY, PROG_ARRAY, ARRAY_OF_MAPS;
            ncpus * round8(value_size) for PERCPU_ARRAY (CPU c's copy at c * round8(...))

Element ``i`` lives at ``values + i * slot`` for the map's whole life, zero-filled at
creation; there is no index and no lock (Linux's arrays take none either: an update is a
plain copy). Program global data (``.data``, ``.bss``, ``.rodata``) are one-element ARRAYs
whose value the program addresses directly.

Values with special fields (a ``struct bpf_spin_lock``, ...: :mod:`pybpf.maps.definition`)
are copied around them, and ``BPF_F_LOCK`` copies under the value's lock; the JIT inlines
programs' lookups of such values (their address) and plain updates (copies around the
fields: :mod:`pybpf.jit.mapcalls`) as for any ARRAY.

PROG_ARRAY slots hold program ids and ARRAY_OF_MAPS slots inner map ids
(:mod:`pybpf.maps.inner`), 0 meaning empty; they follow Linux's fd-array rules
(``BPF_ANY`` only, delete empties a slot, ENOENT when it was empty).
"""

from __future__ import annotations

import errno
from typing import Any

from pybpf.errors import InputError
from pybpf.maps import registry
from pybpf.maps.base import Map
from pybpf.maps.buffer import PAGE_SIZE, page_align
from pybpf.maps.definition import (
    ACCESS_FLAGS,
    BPF_ANY,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_NOEXIST,
    PCPU_MIN_UNIT_SIZE,
    MapDefinition,
    clear_fields,
    copy_into,
    fail,
    round8,
)
from pybpf.maps.inner import INNER_MAP_CODEC, check_template, inner_error
from pybpf.maptypes import MapFlag, MapType
from pybpf.memory import Region

__all__ = [
    "ArrayMap",
    "IdSlotArray",
    "ProgArray",
    "ArrayOfMaps",
    "check_array",
]

_CREATE_MASK = (
    MapFlag.NUMA_NODE | MapFlag.MMAPABLE | ACCESS_FLAGS | MapFlag.PRESERVE_ELEMS | MapFlag.INNER_MAP
)
_INT_MAX = (1 << 31) - 1


def check_array(d: MapDefinition) -> None:
    """``array_map_alloc_check`` (shared by the fd arrays)."""
    name = d.name
    if d.max_entries == 0 or d.key_size != 4 or d.value_size == 0 or d.flags & ~_CREATE_MASK:
        raise fail(errno.EINVAL, "invalid array attributes", "create", name)
    if d.type != MapType.ARRAY and d.flags & (MapFlag.MMAPABLE | MapFlag.INNER_MAP):
        raise fail(errno.EINVAL, "BPF_F_MMAPABLE/INNER_MAP are for ARRAY", "create", name)
    if d.type != MapType.PERF_EVENT_ARRAY and d.flags & MapFlag.PRESERVE_ELEMS:
        raise fail(errno.EINVAL, "BPF_F_PRESERVE_ELEMS is for PERF_EVENT_ARRAY", "create", name)
    if d.value_size > _INT_MAX:
        raise fail(errno.E2BIG, "value too large", "create", name)
    if d.percpu and round8(d.value_size) > PCPU_MIN_UNIT_SIZE:
        raise fail(errno.E2BIG, "per-CPU value too large", "create", name)


def _check_fd_array(d: MapDefinition) -> None:
    if d.value_size != 4:
        raise fail(errno.EINVAL, "fd-array values are 4 bytes", "create", d.name)
    if d.flags & (MapFlag.RDONLY_PROG | MapFlag.WRONLY_PROG):
        raise fail(errno.EINVAL, "program access flags on an fd array", "create", d.name)
    check_array(d)


class ArrayMap(Map):
    """ARRAY and PERCPU_ARRAY (see the module docstring)."""

    TYPES = (MapType.ARRAY, MapType.PERCPU_ARRAY)

    @classmethod
    def check(cls, d: MapDefinition, params: dict) -> None:
        check_array(d)

    @classmethod
    def buffer_size(cls, d: MapDefinition, params: dict) -> int:
        slot = round8(d.value_size) * (d.ncpus if d.percpu else 1)
        return page_align(PAGE_SIZE + d.max_entries * slot)

    def _setup(self, params: dict) -> None:
        self._slot = round8(self.value_size) * self.ncpus
        self._values = self._buf.view[PAGE_SIZE : PAGE_SIZE + self.max_entries * self._slot]
        self._values_address = self._buf.address + PAGE_SIZE
        self._stride = round8(self.value_size)

    def _make_regions(self) -> list[Region]:
        return [
            Region.from_mmap(
                self._buf.mm,
                PAGE_SIZE,
                self.max_entries * self._slot,
                kind="map_value",
                name=f"{self.name or 'map'}.values",
                readable=not self.flags & MapFlag.WRONLY_PROG,
                writable=not self.flags & MapFlag.RDONLY_PROG,
            )
        ]

    def _close_views(self) -> None:
        self._values.release()

    def memory(self) -> memoryview:
        """The values area as one writable memoryview (element ``i`` at ``i * slot``), like
        mmap()ing a ``BPF_F_MMAPABLE`` array; release it before closing the map."""
        self._alive("mmap")
        return self._values[:]

    # ---- helpers -------------------------------------------------------------------------
    def _index(self, key: bytes) -> int:
        return int.from_bytes(self._check_key(bytes(key)), "little")

    def _flags_ok(self, flags: int) -> bool:
        if self.percpu:
            return flags <= BPF_EXIST
        return (flags & ~BPF_F_LOCK) <= BPF_EXIST

    # ---- user space ----------------------------------------------------------------------
    def lookup_raw(self, key: bytes, flags: int = 0) -> bytes | None:
        if flags & ~BPF_F_LOCK:
            raise fail(errno.EINVAL, f"bad lookup flags {flags:#x}", "lookup", self.name)
        self._alive("lookup")
        self._can_read("lookup")
        self._check_lock_flag(flags, "lookup")
        i = self._index(key)
        if i >= self.max_entries:
            return None
        o = i * self._slot
        if flags & BPF_F_LOCK:
            with self._value_lock(self._values_address + o):
                raw = bytes(self._values[o : o + self.user_value_size])
        else:
            raw = bytes(self._values[o : o + self.user_value_size])
        return clear_fields(raw, self._user_spans)

    def update_raw(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._alive("update")
        self._can_write("update")
        self._check_lock_flag(flags, "update")
        i = self._index(key)
        value = self._check_value(bytes(value))
        r = self._store(i, value, flags, None)
        if r:
            raise fail(-r, "update failed", "update", self.name)

    def _store(self, i: int, value: bytes, flags: int, cpu: int | None) -> int:
        if not self._flags_ok(flags):
            return -errno.EINVAL
        if i >= self.max_entries:
            return -errno.E2BIG
        if flags & ~BPF_F_LOCK == BPF_NOEXIST:
            return -errno.EEXIST
        if flags & BPF_F_LOCK and self.spin_lock_offset < 0:
            return -errno.EINVAL
        o = i * self._slot
        if cpu is not None:
            o += cpu * self._stride
            copy_into(self._values, o, value[: self.value_size], self._spans)
        elif flags & BPF_F_LOCK:
            with self._value_lock(self._values_address + o):
                copy_into(self._values, o, value, self._spans)
        else:
            copy_into(self._values, o, value, self._user_spans)
        return 0

    def delete_raw(self, key: bytes) -> None:
        self._alive("delete")
        self._can_write("delete")
        self._index(key)
        raise fail(errno.EINVAL, "array elements cannot be deleted", "delete", self.name)

    def get_next_key(self, key: bytes | None) -> bytes | None:
        self._alive("get_next_key")
        self._can_read("get_next_key")
        i = 0xFFFFFFFF if key is None else self._index(key)
        if i >= self.max_entries:
            return (0).to_bytes(4, "little")
        if i == self.max_entries - 1:
            return None
        return (i + 1).to_bytes(4, "little")

    def keys_raw(self) -> list[bytes]:
        self._alive("get_next_key")
        return [i.to_bytes(4, "little") for i in range(self.max_entries)]

    def __len__(self) -> int:
        return self.max_entries

    def __contains__(self, key: Any) -> bool:
        return self._index(self._key(key)) < self.max_entries

    def clear(self) -> None:
        """Zero every element (array elements always exist; special fields stay)."""
        self._alive("update")
        self._can_write("update")
        if not self._user_spans:
            self._values[:] = bytes(len(self._values))
            return
        zero = bytes(self.user_value_size)
        for i in range(self.max_entries):
            copy_into(self._values, i * self._slot, zero, self._user_spans)

    # ---- programs ------------------------------------------------------------------------
    def elem_lookup(self, key: bytes, cpu: int = 0) -> int:
        cpu = cpu if self.percpu else 0  # only per-CPU maps have a value per CPU
        i = int.from_bytes(key, "little")
        if i >= self.max_entries:
            return 0
        return self._values_address + i * self._slot + cpu * self._stride

    def elem_update(self, key: bytes, value: bytes, flags: int, cpu: int = 0) -> int:
        return self._store(
            int.from_bytes(key, "little"), value, flags, cpu if self.percpu else None
        )

    def elem_delete(self, key: bytes) -> int:
        return -errno.EINVAL

    def elem_slots(self) -> list[int]:
        """Every index (for ``bpf_for_each_map_elem``)."""
        return list(range(self.max_entries))

    def slot_addresses(self, i: int, cpu: int = 0) -> tuple[int, int] | None:
        """``(None-key, value address)`` of element ``i``: arrays have no stored keys, so
        the key address is 0 and the caller supplies the index."""
        cpu = cpu if self.percpu else 0  # only per-CPU maps have a value per CPU
        if not 0 <= i < self.max_entries:
            return None
        return 0, self._values_address + i * self._slot + cpu * self._stride


class IdSlotArray(ArrayMap):
    """An array whose slot ``i`` holds an entry while its first ``u32`` (an id: an fd
    array's object id, a redirect map's ifindex or queue id) is non-zero: keys, length and
    ``in`` count those slots. Programs never change these maps (EOPNOTSUPP)."""

    def _id(self, i: int) -> int:
        """The first ``u32`` of slot ``i`` (``0 <= i < max_entries``; 0: empty)."""
        o = i * self._slot
        return int.from_bytes(self._values[o : o + 4], "little")

    def _present(self) -> list[int]:
        """The indices of the slots that hold an entry."""
        return [i for i in range(self.max_entries) if self._id(i)]

    def keys_raw(self) -> list[bytes]:
        self._alive("get_next_key")
        return [i.to_bytes(4, "little") for i in self._present()]

    def __len__(self) -> int:
        return len(self.keys_raw())

    def __contains__(self, key: Any) -> bool:
        i = self._index(self._key(key))
        return i < self.max_entries and bool(self._id(i))

    def elem_update(self, key: bytes, value: bytes, flags: int, cpu: int = 0) -> int:
        return -errno.EOPNOTSUPP

    def elem_delete(self, key: bytes) -> int:
        return -errno.EOPNOTSUPP


class _FdArray(IdSlotArray):
    """Arrays whose slots hold object ids (0: empty) with Linux's fd-array rules."""

    @classmethod
    def check(cls, d: MapDefinition, params: dict) -> None:
        _check_fd_array(d)

    def _make_regions(self) -> list[Region]:
        return []

    def _valid(self, object_id: int) -> int:
        return 0 if object_id else -errno.EINVAL

    def lookup_raw(self, key: bytes) -> bytes | None:
        self._alive("lookup")
        self._can_read("lookup")
        i = self._index(key)
        if i >= self.max_entries or not self._id(i):
            return None
        return self._id(i).to_bytes(4, "little")

    def update_raw(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._alive("update")
        self._can_write("update")
        i = self._index(key)
        value = self._check_value(bytes(value))
        if flags != BPF_ANY:
            raise fail(errno.EINVAL, "fd arrays take BPF_ANY only", "update", self.name)
        if i >= self.max_entries:
            raise fail(errno.E2BIG, "index out of range", "update", self.name)
        r = self._valid(int.from_bytes(value, "little"))
        if r:
            raise fail(-r, "not a valid object for this map", "update", self.name)
        o = i * self._slot
        self._values[o : o + 4] = value

    def delete_raw(self, key: bytes) -> None:
        self._alive("delete")
        self._can_write("delete")
        i = self._index(key)
        if i >= self.max_entries:
            raise fail(errno.E2BIG, "index out of range", "delete", self.name)
        if not self._id(i):
            raise fail(errno.ENOENT, "slot is empty", "delete", self.name)
        o = i * self._slot
        self._values[o : o + 4] = bytes(4)

    def clear(self) -> None:
        """Empty every slot."""
        self._alive("delete")
        self._values[:] = bytes(len(self._values))

    def elem_lookup(self, key: bytes, cpu: int = 0) -> int:
        return 0  # programs cannot look up prog arrays (the verifier refuses it)

    def elem_slots(self) -> list[int] | None:
        return None


class ProgArray(_FdArray):
    """PROG_ARRAY: slot ``i`` holds a program id (0: empty) for ``bpf_tail_call``.

    ``m[i] = prog`` takes an id or an object with an ``id``; :meth:`program_id` is what
    the engine's tail call reads.
    """

    TYPES = (MapType.PROG_ARRAY,)

    def _setup(self, params: dict) -> None:
        super()._setup(params)
        self.value_codec = _PROG_ID_CODEC

    def set_codecs(self, key: Any = None, value: Any = None) -> Map:
        super().set_codecs(key, value)
        if value is None:
            self.value_codec = _PROG_ID_CODEC
        return self

    def program_id(self, index: int) -> int:
        """The program id in slot ``index`` (0 when empty or out of range)."""
        if self.closed or not 0 <= index < self.max_entries:
            return 0
        return self._id(index)


class _ProgIdCodec:
    """Program ids: an int or an object with ``id`` in, the int out."""

    def encode(self, obj: Any, size: int) -> bytes:
        prog_id = getattr(obj, "id", obj)
        if not isinstance(prog_id, int) or not 0 <= prog_id < 1 << 32:
            raise InputError(f"{obj!r} is not a program or a program id", field="value")
        return prog_id.to_bytes(size, "little")

    def decode(self, data: bytes) -> int:
        return int.from_bytes(data, "little")


_PROG_ID_CODEC = _ProgIdCodec()


class ArrayOfMaps(_FdArray):
    """ARRAY_OF_MAPS: slot ``i`` holds an inner map id (see :mod:`pybpf.maps.inner`)."""

    TYPES = (MapType.ARRAY_OF_MAPS,)

    @classmethod
    def check(cls, d: MapDefinition, params: dict) -> None:
        check_template(d)
        _check_fd_array(d)

    def _setup(self, params: dict) -> None:
        super()._setup(params)
        self.value_codec = INNER_MAP_CODEC

    def set_codecs(self, key: Any = None, value: Any = None) -> Map:
        super().set_codecs(key, value)
        if value is None:
            self.value_codec = INNER_MAP_CODEC
        return self

    def _valid(self, object_id: int) -> int:
        return inner_error(self.definition.inner, object_id)

    def elem_lookup(self, key: bytes, cpu: int = 0) -> int:
        i = int.from_bytes(key, "little")
        if i >= self.max_entries:
            return 0
        inner = registry.by_id(self._id(i))
        return 0 if inner is None or inner.closed else inner.handle
