"""Perf event array: PERF_EVENT_ARRAY maps, each slot a perf ring that programs write samples to.

On Linux each slot holds a perf event (one per CPU, opened by the consumer) whose mmap'ed
ring receives ``bpf_perf_event_output`` samples. Here the rings are part of the map's
buffer from creation (``page_count`` data pages each, a power of two, default 8), and a
slot is *open* once a consumer opened it (:meth:`PerfEventArray.open_buffer`, or a user
update of the slot): output to a closed slot fails with ENOENT, as output to an empty slot
does on Linux.

Buffer layout (``P`` = the page size, ``R`` = page_count * P)::

    page 0          common header; family fields at 128: page_count u32
    then per slot i, at P * (1 + i * (1 + page_count)):
      control page  open u32 at 0, lost u64 at 8 (samples dropped for lack of room),
                    data_head u64 at 1024, data_tail u64 at 1032 (as in Linux's
                    perf_event_mmap_page), data_offset u64 at 1040, data_size u64 at 1048
      data          R bytes; records wrap around

Records are Linux's ``PERF_RECORD_SAMPLE`` with ``PERF_SAMPLE_RAW``: ``struct
perf_event_header {u32 type = 9; u16 misc = 0; u16 size}``, ``u32 raw_size``, the data,
zero padding; ``raw_size = round_up(size + 4, 8) - 4`` (libbpf hands that padded size to
the callback). When a ring is full the sample is dropped, ``lost`` counts it and the
helper returns -ENOSPC; the consumer reports lost counts through its ``lost`` callback.
"""

from __future__ import annotations

import errno
import struct
import time
from collections.abc import Callable

from pybpf.maps.array import check_array
from pybpf.maps.base import Map
from pybpf.maps.buffer import FAMILY_OFFSET, PAGE_SIZE
from pybpf.maps.definition import BPF_ANY, MapDefinition, fail, round8
from pybpf.maptypes import MapFlag, MapType
from pybpf.memory import atomics

__all__ = ["PerfEventArray", "PERF_RECORD_SAMPLE", "F_CURRENT_CPU", "F_INDEX_MASK"]

PERF_RECORD_SAMPLE = 9
F_INDEX_MASK = 0xFFFFFFFF
F_CURRENT_CPU = F_INDEX_MASK
F_CTXLEN_MASK = 0xFFFFF << 32
DEFAULT_PAGE_COUNT = 8
_HEAD = 1024
_TAIL = 1032
_SAMPLE_HEADER = struct.Struct("=IHHI")

SampleCallback = Callable[[int, bytes], object]
LostCallback = Callable[[int, int], object]


class PerfEventArray(Map):
    """PERF_EVENT_ARRAY (see the module docstring); family parameter ``page_count``."""

    TYPES = (MapType.PERF_EVENT_ARRAY,)

    @classmethod
    def check(cls, d: MapDefinition, params: dict) -> None:
        if d.value_size != 4:
            raise fail(errno.EINVAL, "perf event array values are 4 bytes", "create", d.name)
        if d.flags & (MapFlag.RDONLY_PROG | MapFlag.WRONLY_PROG):
            raise fail(errno.EINVAL, "program access flags on an fd array", "create", d.name)
        check_array(d)
        pages = params.get("page_count", DEFAULT_PAGE_COUNT)
        if not isinstance(pages, int) or pages <= 0 or pages & (pages - 1):
            raise fail(errno.EINVAL, "page_count must be a power of two", "create", d.name)

    @classmethod
    def buffer_size(cls, d: MapDefinition, params: dict) -> int:
        pages = params.get("page_count", DEFAULT_PAGE_COUNT)
        return PAGE_SIZE * (1 + d.max_entries * (1 + pages))

    def _setup(self, params: dict) -> None:
        view = self._buf.view
        if "page_count" in params or not struct.unpack_from("=I", view, FAMILY_OFFSET)[0]:
            struct.pack_into(
                "=I", view, FAMILY_OFFSET, params.get("page_count", DEFAULT_PAGE_COUNT)
            )
        self.page_count = struct.unpack_from("=I", view, FAMILY_OFFSET)[0]
        self.ring_size = self.page_count * PAGE_SIZE
        self._control = [
            self._buf.address + PAGE_SIZE * (1 + i * (1 + self.page_count))
            for i in range(self.max_entries)
        ]
        self._data_off = [
            PAGE_SIZE * (2 + i * (1 + self.page_count)) for i in range(self.max_entries)
        ]

    def _init_fresh(self, params: dict) -> None:
        for i, control in enumerate(self._control):
            offset = control - self._buf.address
            struct.pack_into(
                "=QQ", self._buf.view, offset + 1040, self._data_off[i] - offset, self.ring_size
            )

    # ---- slots -------------------------------------------------------------------------------
    def is_open(self, index: int) -> bool:
        """True when slot ``index`` has a consumer (outputs land in its ring)."""
        self._alive("query")
        return bool(atomics.load_at(self._control[index], 4))

    def open_buffer(self, index: int | None = None) -> None:
        """Open slot ``index`` (all slots for ``None``) for output, emptying its ring."""
        self._alive("open")
        for i in range(self.max_entries) if index is None else [index]:
            if not 0 <= i < self.max_entries:
                raise fail(errno.E2BIG, f"no slot {i}", "open", self.name)
            control = self._control[i]
            with self.lock:
                head = atomics.load_at(control + _HEAD, 8)
                atomics.store_at(control + _TAIL, 8, head)
                atomics.store_at(control + 8, 8, 0)
                atomics.store_at(control, 4, 1)

    def close_buffer(self, index: int | None = None) -> None:
        """Close slot ``index`` (all for ``None``): later outputs fail with ENOENT."""
        self._alive("close")
        for i in range(self.max_entries) if index is None else [index]:
            atomics.store_at(self._control[i], 4, 0)

    def _index(self, key: bytes) -> int:
        return int.from_bytes(self._check_key(bytes(key)), "little")

    def update_raw(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        """Opening slot ``key`` (Linux stores a perf event fd there)."""
        self._alive("update")
        self._can_write("update")
        i = self._index(key)
        self._check_value(bytes(value))
        if flags != BPF_ANY:
            raise fail(errno.EINVAL, "fd arrays take BPF_ANY only", "update", self.name)
        if i >= self.max_entries:
            raise fail(errno.E2BIG, "index out of range", "update", self.name)
        self.open_buffer(i)

    def delete_raw(self, key: bytes) -> None:
        self._alive("delete")
        self._can_write("delete")
        i = self._index(key)
        if i >= self.max_entries:
            raise fail(errno.E2BIG, "index out of range", "delete", self.name)
        if not self.is_open(i):
            raise fail(errno.ENOENT, "slot is empty", "delete", self.name)
        self.close_buffer(i)

    def lookup_raw(self, key: bytes) -> bytes | None:
        raise fail(524, "perf event arrays cannot be read from user space", "lookup", self.name)

    def get_next_key(self, key: bytes | None) -> bytes | None:
        i = 0xFFFFFFFF if key is None else self._index(key)
        if i >= self.max_entries:
            return bytes(4)
        if i == self.max_entries - 1:
            return None
        return (i + 1).to_bytes(4, "little")

    def keys_raw(self) -> list[bytes]:
        return [i.to_bytes(4, "little") for i in range(self.max_entries) if self.is_open(i)]

    def __len__(self) -> int:
        return len(self.keys_raw())

    # ---- producers (programs) ----------------------------------------------------------------
    def output(self, flags: int, data: bytes, cpu: int = 0) -> int:
        """``bpf_perf_event_output`` of ``data`` to slot ``flags & F_INDEX_MASK`` (the
        current CPU for ``F_CURRENT_CPU``); 0 or -EINVAL/-E2BIG/-ENOENT/-ENOSPC."""
        self._alive("output")
        if flags & ~(F_INDEX_MASK | F_CTXLEN_MASK):
            return -errno.EINVAL
        if flags & F_CTXLEN_MASK:
            return -errno.EOPNOTSUPP  # appending the context's packet needs a hook
        index = flags & F_INDEX_MASK
        if index == F_CURRENT_CPU:
            index = cpu
        if index >= self.max_entries:
            return -errno.E2BIG
        control = self._control[index]
        if not atomics.load_at(control, 4):
            return -errno.ENOENT
        raw_size = round8(len(data) + 4) - 4
        record = 8 + 4 + raw_size
        if record > self.ring_size or record > 0xFFFF:
            return -errno.E2BIG if record > 0xFFFF else -errno.ENOSPC
        payload = (
            _SAMPLE_HEADER.pack(PERF_RECORD_SAMPLE, 0, record, raw_size)
            + data
            + bytes(raw_size - len(data))
        )
        with self.lock:
            head = atomics.load_at(control + _HEAD, 8)
            tail = atomics.load_at(control + _TAIL, 8)
            if head + record - tail > self.ring_size:
                atomics.rmw_at(control + 8, 8, "add", 1)
                return -errno.ENOSPC
            self._write(index, head, payload)
            atomics.store_at(control + _HEAD, 8, head + record)
        return 0

    def _ring(self, index: int) -> memoryview:
        o = self._data_off[index]
        return self._buf.view[o : o + self.ring_size]

    def _write(self, index: int, position: int, data: bytes) -> None:
        ring = self._ring(index)
        o = position % self.ring_size
        first = min(len(data), self.ring_size - o)
        ring[o : o + first] = data[:first]
        if first < len(data):
            ring[0 : len(data) - first] = data[first:]

    def _read(self, index: int, position: int, n: int) -> bytes:
        ring = self._ring(index)
        o = position % self.ring_size
        first = min(n, self.ring_size - o)
        out = bytes(ring[o : o + first])
        if first < n:
            out += bytes(ring[0 : n - first])
        return out

    # ---- the consumer --------------------------------------------------------------------------
    def consume(self, callback: SampleCallback, lost: LostCallback | None = None) -> int:
        """Hand every sample of every open slot to ``callback(index, data)``; dropped
        samples are reported to ``lost(index, count)``. Returns how many samples."""
        self._alive("consume")
        count = 0
        for i, control in enumerate(self._control):
            if not atomics.load_at(control, 4):
                continue
            dropped = atomics.rmw_at(control + 8, 8, "xchg", 0)
            if dropped and lost is not None:
                lost(i, dropped)
            head = atomics.load_at(control + _HEAD, 8)
            tail = atomics.load_at(control + _TAIL, 8)
            while tail < head:
                kind, _misc, size, raw_size = _SAMPLE_HEADER.unpack(self._read(i, tail, 12))
                if kind == PERF_RECORD_SAMPLE:
                    callback(i, self._read(i, tail + 12, raw_size))
                    count += 1
                tail += size
                atomics.store_at(control + _TAIL, 8, tail)
        return count

    def poll(
        self,
        callback: SampleCallback,
        lost: LostCallback | None = None,
        timeout: float | None = 0.0,
    ) -> int:
        """Wait up to ``timeout`` seconds (``None``: forever) for samples, then consume."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0001
        while True:
            n = self.consume(callback, lost)
            if n:
                return n
            if deadline is not None and time.monotonic() >= deadline:
                return 0
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
