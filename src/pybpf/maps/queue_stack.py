"""Queue and stack maps: QUEUE (FIFO) and STACK (LIFO) of fixed-size values in one buffer.

Linux semantics (``kernel/bpf/queue_stack_maps.c``): ``key_size`` is 0; push
(``update(None, value, flags)``, ``bpf_map_push_elem``) fails with E2BIG when full unless
``flags`` is ``BPF_EXIST``, which evicts the oldest element; ``BPF_NOEXIST`` or unknown
flags are EINVAL. Pop (``lookup_and_delete``, ``bpf_map_pop_elem``) and peek (``lookup``,
``bpf_map_peek_elem``) fail with ENOENT when empty. Delete and get_next_key are EINVAL.

Buffer layout (after the common 256-byte header)::

    128 head  u32   next slot to write
    132 tail  u32   oldest element (queue); head == tail means empty
    136 size  u32   max_entries + 1 (one slot stays free to tell full from empty)
    values (page aligned) size * value_size bytes, packed like Linux's

All operations take the map lock. A push writes the value, then moves ``head``; a pop
reads the value, then moves ``tail`` (queue) or ``head`` (stack): each step is one u32
store, so a process killed in the middle leaves either the old or the new state.
"""

from __future__ import annotations

import errno
import struct
from typing import Any

from pybpf.maps.base import Map
from pybpf.maps.buffer import FAMILY_OFFSET, HEADER_SIZE, page_align
from pybpf.maps.definition import (
    ACCESS_FLAGS,
    BPF_EXIST,
    BPF_NOEXIST,
    KMALLOC_MAX_SIZE,
    MapDefinition,
    fail,
)
from pybpf.maptypes import MapFlag, MapType

__all__ = ["QueueStack"]

_CREATE_MASK = MapFlag.NUMA_NODE | ACCESS_FLAGS
_FIELDS = struct.Struct("=III")


class QueueStack(Map):
    """QUEUE and STACK: ``push(value, flags)``, ``pop()``, ``peek()``, ``len``, iteration
    (oldest first, a snapshot)."""

    TYPES = (MapType.QUEUE, MapType.STACK)

    @classmethod
    def check(cls, d: MapDefinition, params: dict) -> None:
        """``queue_stack_map_alloc_check``."""
        if d.max_entries == 0 or d.key_size != 0 or d.value_size == 0 or d.flags & ~_CREATE_MASK:
            raise fail(errno.EINVAL, "invalid queue/stack attributes", "create", d.name)
        if d.value_size > KMALLOC_MAX_SIZE:
            raise fail(errno.E2BIG, "value too large", "create", d.name)

    @classmethod
    def buffer_size(cls, d: MapDefinition, params: dict) -> int:
        return page_align(page_align(HEADER_SIZE) + (d.max_entries + 1) * d.value_size)

    def _setup(self, params: dict) -> None:
        self._size = self.max_entries + 1
        off = page_align(HEADER_SIZE)
        self._values = self._buf.view[off : off + self._size * self.value_size]
        self._fields = self._buf.view[FAMILY_OFFSET : FAMILY_OFFSET + _FIELDS.size].cast("I")
        self._stack = self.type == MapType.STACK

    def _init_fresh(self, params: dict) -> None:
        self._fields[2] = self._size

    def _recover(self) -> None:
        f = self._fields
        if f[0] >= self._size or f[1] >= self._size:
            f[0] = f[1] = 0
        f[2] = self._size

    def _close_views(self) -> None:
        self._values.release()
        self._fields.release()

    # ---- core (lock held) ------------------------------------------------------------------
    def _ends(self) -> tuple[int, int]:
        """``head, tail`` (lock held); a corrupted pair (past the end) empties the map, as
        recovery from a dead holder does."""
        f = self._fields
        if f[0] >= self._size or f[1] >= self._size:
            self._recover()
        return f[0], f[1]

    def _count(self) -> int:
        head, tail = self._fields[0], self._fields[1]
        return (head - tail) % self._size

    def _push(self, value: bytes, flags: int) -> int:
        if flags & BPF_NOEXIST or flags > BPF_EXIST:
            return -errno.EINVAL
        f, size, n = self._fields, self._size, self.value_size
        with self.lock:
            head, tail = self._ends()
            if (head + 1) % size == tail:
                if not flags & BPF_EXIST:
                    return -errno.E2BIG
                f[1] = (tail + 1) % size  # evict the oldest
            self._values[head * n : head * n + n] = value
            if self._fault:
                self._fault("written")
            f[0] = (head + 1) % size
        return 0

    def _pop(self, delete: bool) -> bytes | None:
        f, size, n = self._fields, self._size, self.value_size
        with self.lock:
            head, tail = self._ends()
            if head == tail:
                return None
            if self._stack:
                index = (head - 1) % size
                value = bytes(self._values[index * n : index * n + n])
                if delete:
                    f[0] = index
            else:
                value = bytes(self._values[tail * n : tail * n + n])
                if delete:
                    f[1] = (tail + 1) % size
            return value

    # ---- user space ------------------------------------------------------------------------
    def update_raw(self, key: bytes | None, value: bytes, flags: int = 0) -> None:
        self._alive("update")
        self._can_write("update")
        if key:
            raise fail(errno.EINVAL, "queues and stacks take no key", "update", self.name)
        r = self._push(self._check_value(bytes(value)), flags)
        if r:
            raise fail(-r, "push failed", "update", self.name)

    def lookup_raw(self, key: bytes | None = None) -> bytes | None:
        self._alive("lookup")
        self._can_read("lookup")
        return self._pop(delete=False)

    def lookup_and_delete_raw(self, key: bytes | None = None, flags: int = 0) -> bytes | None:
        self._pop_checks(flags)
        if flags:  # (Linux: any flag on a queue or stack)
            raise fail(errno.EINVAL, "queues and stacks take no flags", "lookup_and_delete",
                       self.name)  # fmt: skip
        return self._pop(delete=True)

    def delete_raw(self, key: bytes | None = None) -> None:
        self._alive("delete")
        raise fail(errno.EINVAL, "queues and stacks have no delete", "delete", self.name)

    def get_next_key(self, key: bytes | None) -> bytes | None:
        self._alive("get_next_key")
        raise fail(errno.EINVAL, "queues and stacks have no keys", "get_next_key", self.name)

    def push(self, value: Any, flags: int = 0) -> None:
        """Push ``value`` (``BPF_EXIST``: evict the oldest when full)."""
        self.update_raw(None, self.value_codec.encode(value, self.value_size), flags)

    def pop(self, *default: Any) -> Any:
        """Remove and return the next value (oldest for a queue, newest for a stack)."""
        raw = self.lookup_and_delete_raw()
        if raw is None:
            if default:
                return default[0]
            raise fail(errno.ENOENT, "empty", "pop", self.name)
        return self.value_codec.decode(raw)

    def peek(self, *default: Any) -> Any:
        """The value :meth:`pop` would return, left in place."""
        raw = self.lookup_raw()
        if raw is None:
            if default:
                return default[0]
            raise fail(errno.ENOENT, "empty", "peek", self.name)
        return self.value_codec.decode(raw)

    def snapshot(self) -> list[bytes]:
        """The values, oldest first."""
        self._alive("lookup")
        n = self.value_size
        with self.lock:
            head, tail = self._fields[0], self._fields[1]
            out = []
            i = tail
            while i != head:
                out.append(bytes(self._values[i * n : i * n + n]))
                i = (i + 1) % self._size
        return out

    def __iter__(self):
        decode = self.value_codec.decode
        return iter([decode(v) for v in self.snapshot()])

    def values(self) -> list[Any]:
        """The values, oldest first."""
        return list(self)

    def __len__(self) -> int:
        self._alive("len")
        with self.lock:
            return self._count()

    def __contains__(self, key: Any) -> bool:
        raise fail(errno.EINVAL, "queues and stacks have no keys", "lookup", self.name)

    def __getitem__(self, key: Any) -> Any:
        raise fail(errno.EINVAL, "queues and stacks have no keys", "lookup", self.name)

    def keys_raw(self) -> list[bytes]:
        raise fail(errno.EINVAL, "queues and stacks have no keys", "get_next_key", self.name)

    def items(self) -> list:
        raise fail(errno.EINVAL, "queues and stacks have no keys", "get_next_key", self.name)

    def clear(self) -> None:
        """Remove every value."""
        self._alive("delete")
        self._can_write("delete")
        with self.lock:
            self._fields[1] = self._fields[0]

    # ---- programs --------------------------------------------------------------------------
    def elem_push(self, value: bytes, flags: int) -> int:
        """``bpf_map_push_elem``: 0 or -errno."""
        return self._push(value, flags)

    def elem_pop(self, delete: bool) -> bytes | None:
        """``bpf_map_pop_elem`` (delete) / ``bpf_map_peek_elem``: the value or ``None``."""
        return self._pop(delete)

    def elem_update(self, key: bytes, value: bytes, flags: int, cpu: int = 0) -> int:
        return self._push(value, flags)
