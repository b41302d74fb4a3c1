"""Ring buffer: RINGBUF maps with Linux's record format, positions and consumer protocol.

Buffer layout (``P`` = the page size, ``S`` = max_entries, a power-of-two multiple of P;
the same page structure as Linux's ``struct bpf_ringbuf``)::

    page 0     common header (256 bytes)
    page 1     consumer page: consumer_pos u64 at offset 0 (written by the consumer)
    page 2     producer page: producer_pos u64 at 0, pending_pos u64 at 8
    page 3..   data: 2 * S bytes. Linux maps the S data pages twice in a row so a record
               that wraps is contiguous; here the second S bytes are a mirror: a record
               written past S is copied to the start when it is committed.

Records are Linux's: an 8-byte header ``u32 len`` (bit 31 BUSY while reserved, bit 30
DISCARD when discarded) and ``u32 pg_off`` (pages from the map's start to the header,
how Linux's submit finds its ring buffer; here :func:`ringbuf_of_record` compares the
address with the live ring buffers' data areas instead, never reading a wild pointer),
then the data, the whole padded to 8 bytes. Positions only grow; ``pos & (S - 1)`` is
the offset in the data area.

Producers (programs: :meth:`RingBuf.reserve`, :meth:`RingBuf.commit`,
:meth:`RingBuf.output`, :meth:`RingBuf.query`) serialise on the map lock, like Linux's
spinlock; a commit is a lock-free exchange of the header word. The consumer
(:meth:`RingBuf.consume`, :meth:`RingBuf.poll`) follows libbpf's ``ringbuf_process_ring``;
it may run in another process that opened the pinned map.

The same producer operations exist as native code (:mod:`pybpf.maps.ringnative`,
:meth:`RingBuf.descriptor`), on the same lock and the same words: the JIT calls them
(:mod:`pybpf.jit.ringcalls`) and so do :meth:`RingBuf.reserve` and :meth:`RingBuf.commit`
(one ctypes call instead of a dozen atomics) where the atomics are native; whenever the
native code cannot decide, the Python code below runs.

A producer process killed between reserve and commit leaves its record BUSY, and the
consumer stops there (Linux programs cannot die holding a reservation; processes can):
the lock itself is recovered like every map lock.
"""

from __future__ import annotations

import ctypes
import errno
import time
import weakref
from collections.abc import Callable

from pybpf.maps.base import Map
from pybpf.maps.buffer import LOCK_OFFSET, PAGE_SIZE
from pybpf.maps.definition import MapDefinition, fail, round8
from pybpf.maps.ringnative import PYTHON_PATH, native_ring_ops
from pybpf.maptypes import MapFlag, MapType
from pybpf.memory import Region, atomics

__all__ = [
    "RingBuf",
    "BUSY_BIT",
    "DISCARD_BIT",
    "HEADER_SIZE",
    "RB_NO_WAKEUP",
    "RB_FORCE_WAKEUP",
    "RB_AVAIL_DATA",
    "RB_RING_SIZE",
    "RB_CONS_POS",
    "RB_PROD_POS",
    "ringbuf_of_record",
]

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8
MAX_RECORD = 0xFFFFFFFF // 4
RB_NO_WAKEUP = 1
RB_FORCE_WAKEUP = 2
RB_AVAIL_DATA, RB_RING_SIZE, RB_CONS_POS, RB_PROD_POS = 0, 1, 2, 3

_CONSUMER = PAGE_SIZE
_PRODUCER = 2 * PAGE_SIZE
_DATA = 3 * PAGE_SIZE

SampleCallback = Callable[[bytes], "int | None"]


def ringbuf_of_record(address: int) -> RingBuf | None:
    """The live ring buffer of this process whose data area holds a record starting at
    ``address`` (what ``bpf_ringbuf_submit`` receives), or ``None``. Only addresses are
    compared: nothing is read at a wild pointer."""
    for ref in list(_LIVE.values()):
        rb = ref()
        if rb is None:
            continue
        offset = address - HEADER_SIZE - rb._data_addr
        if not rb.closed and 0 <= offset <= rb._mask:
            return rb
    return None


# every ring buffer of this process, by id (a dict of weak references: listing a WeakSet
# cost about 3 us per bpf_ringbuf_submit, this 0.6)
_LIVE: dict[int, weakref.ref] = {}


def _forget(key: int) -> Callable[[weakref.ref], None]:
    return lambda _ref: _LIVE.pop(key, None)


class RingBuf(Map):
    """RINGBUF (see the module docstring)."""

    TYPES = (MapType.RINGBUF,)

    @classmethod
    def check(cls, d: MapDefinition, params: dict) -> None:
        """``ringbuf_map_alloc``'s checks."""
        n = d.max_entries
        if (
            d.flags & ~MapFlag.NUMA_NODE
            or d.key_size
            or d.value_size
            or n <= 0
            or n & (n - 1)
            or n % PAGE_SIZE
        ):
            raise fail(errno.EINVAL, "invalid ring buffer attributes", "create", d.name)

    @classmethod
    def buffer_size(cls, d: MapDefinition, params: dict) -> int:
        return _DATA + 2 * d.max_entries

    def _setup(self, params: dict) -> None:
        base = self._buf.address
        self._cons_addr = base + _CONSUMER
        self._prod_addr = base + _PRODUCER
        self._pend_addr = base + _PRODUCER + 8
        self._data_addr = base + _DATA
        self._mask = self.max_entries - 1
        self._data = self._buf.view[_DATA : _DATA + 2 * self.max_entries]
        self._nat: tuple | bool | None = None  # the native producers: None until first asked
        _LIVE[id(self)] = weakref.ref(self, _forget(id(self)))

    def descriptor(self) -> ctypes.Array:
        """The map's descriptor for the native producers (:mod:`pybpf.maps.ringnative`'s
        ``DESCRIPTOR_FIELDS``): a ctypes array of u64, valid while the map is open."""
        self._alive("descriptor")
        base = self._buf.address
        return (ctypes.c_uint64 * 8)(
            base + LOCK_OFFSET,
            self._cons_addr,
            self._prod_addr,
            self._pend_addr,
            self._data_addr,
            self._mask,
            _DATA,
            PAGE_SIZE,
        )

    def _make_regions(self) -> list[Region]:
        return [
            Region.from_mmap(
                self._buf.mm,
                _DATA,
                2 * self.max_entries,
                kind="ringbuf",
                name=f"{self.name or 'ringbuf'}.data",
            )
        ]

    def _close_views(self) -> None:
        self._data.release()

    def __len__(self) -> int:
        return 0

    def keys_raw(self) -> list[bytes]:
        return []

    def lookup_raw(self, key: bytes) -> bytes | None:
        raise fail(524, "ring buffers have no elements", "lookup", self.name)

    def update_raw(self, key: bytes, value: bytes, flags: int = 0) -> None:
        raise fail(524, "ring buffers have no elements", "update", self.name)

    def delete_raw(self, key: bytes) -> None:
        raise fail(524, "ring buffers have no elements", "delete", self.name)

    def get_next_key(self, key: bytes | None) -> bytes | None:
        raise fail(524, "ring buffers have no keys", "get_next_key", self.name)

    # ---- positions ---------------------------------------------------------------------------
    @property
    def consumer_pos(self) -> int:
        """How far the consumer has read."""
        self._alive("query")
        return atomics.load_at(self._cons_addr, 8)

    @property
    def producer_pos(self) -> int:
        """How far producers have reserved."""
        self._alive("query")
        return atomics.load_at(self._prod_addr, 8)

    @property
    def size(self) -> int:
        """The data area's size (max_entries)."""
        return self.max_entries

    # ---- producers (programs) ----------------------------------------------------------------
    def _native(self) -> tuple | None:
        """(ops, descriptor address, address of a one-descriptor table, ...) of the native
        producers, or ``None`` (no llvmlite, atomics not native, or ``_nat`` set False)."""
        nat = self._nat
        if nat is None:
            ops = native_ring_ops() if atomics.backend() == "native" else None
            nat = False
            if ops is not None:
                desc = self.descriptor()
                table = (ctypes.c_uint64 * 1)(ctypes.addressof(desc))
                nat = (ops, ctypes.addressof(desc), ctypes.addressof(table), desc, table)
            self._nat = nat
        return nat or None

    def reserve(self, size: int) -> int:
        """``bpf_ringbuf_reserve``: the address of ``size`` writable bytes, or 0 (no room)."""
        self._alive("reserve")
        nat = self._native() if 0 <= size <= MAX_RECORD else None
        if nat is not None:
            address = nat[0].reserve(nat[1], size, 0, self.lock.current_token())
            if address != PYTHON_PATH:
                return address
        if size > MAX_RECORD:
            return 0
        length = round8(size + HEADER_SIZE)
        if length > self.max_entries:
            return 0
        load, mask = atomics.load_at, self._mask
        with self.lock:
            cons = load(self._cons_addr, 8)
            pend = load(self._pend_addr, 8)
            prod = load(self._prod_addr, 8)
            new_prod = prod + length
            while pend < prod:
                hdr_len = load(self._data_addr + (pend & mask), 4)
                if hdr_len & BUSY_BIT:
                    break
                pend += round8((hdr_len & ~DISCARD_BIT) + HEADER_SIZE)
            atomics.store_at(self._pend_addr, 8, pend)
            if new_prod - cons > mask or new_prod - pend > mask:
                return 0
            offset = prod & mask
            header = self._data_addr + offset
            atomics.store_at(header, 4, size | BUSY_BIT)
            atomics.store_at(header + 4, 4, (_DATA + offset) // PAGE_SIZE)
            atomics.store_at(self._prod_addr, 8, new_prod)
        return header + HEADER_SIZE

    def commit(self, address: int, discard: bool = False) -> bool:
        """``bpf_ringbuf_submit`` / ``bpf_ringbuf_discard`` of the record at ``address``;
        False when no reserved record starts there."""
        header = address - HEADER_SIZE
        offset = header - self._data_addr
        if self.closed or not 0 <= offset <= self._mask or offset % 8:
            return False
        nat = self._native()
        if nat is not None and nat[0].commit(nat[2], 1, address, 1 if discard else 0) == 0:
            return True
        hdr_len = atomics.load_at(header, 4)
        if not hdr_len & BUSY_BIT:
            return False
        size = hdr_len & ~(BUSY_BIT | DISCARD_BIT)
        end = offset + HEADER_SIZE + size
        if end > self.max_entries:  # the record wrapped into the mirror: copy it home
            over = end - self.max_entries
            self._data[0:over] = self._data[self.max_entries : self.max_entries + over]
        new_len = hdr_len ^ BUSY_BIT
        if discard:
            new_len |= DISCARD_BIT
        atomics.rmw_at(header, 4, "xchg", new_len)
        return True

    def output(self, data: bytes, flags: int = 0) -> int:
        """``bpf_ringbuf_output``: copy ``data`` as one record; 0, -EINVAL or -EAGAIN."""
        if flags & ~(RB_NO_WAKEUP | RB_FORCE_WAKEUP):
            return -errno.EINVAL
        address = self.reserve(len(data))
        if not address:
            return -errno.EAGAIN
        offset = address - self._data_addr  # contiguous: the mirror takes any overflow
        self._data[offset : offset + len(data)] = data
        self.commit(address)
        return 0

    def query(self, flags: int) -> int:
        """``bpf_ringbuf_query``: available bytes, size, consumer or producer position."""
        self._alive("query")
        if flags == RB_AVAIL_DATA:
            return self.producer_pos - self.consumer_pos
        if flags == RB_RING_SIZE:
            return self.max_entries
        if flags == RB_CONS_POS:
            return self.consumer_pos
        if flags == RB_PROD_POS:
            return self.producer_pos
        return 0

    # ---- the consumer (user space) -----------------------------------------------------------
    def _read(self, offset: int, n: int) -> bytes:
        o = offset & self._mask
        first = min(n, self.max_entries - o)
        data = bytes(self._data[o : o + first])
        if first < n:
            data += bytes(self._data[0 : n - first])
        return data

    def consume(self, callback: SampleCallback, limit: int | None = None) -> int:
        """Hand every committed record to ``callback(data)`` in order; returns how many.

        Discarded records are skipped; a record still reserved stops the walk. A callback
        returning a negative int stops early and that value is returned (libbpf's rule).
        """
        self._alive("consume")
        load, store, mask = atomics.load_at, atomics.store_at, self._mask
        cons = load(self._cons_addr, 8)
        count = 0
        while True:
            got = False
            prod = load(self._prod_addr, 8)
            while cons < prod:
                hdr_len = load(self._data_addr + (cons & mask), 4)
                if hdr_len & BUSY_BIT:
                    return count
                got = True
                size = hdr_len & ~DISCARD_BIT
                start = cons
                cons += round8(size + HEADER_SIZE)
                if not hdr_len & DISCARD_BIT:
                    r = callback(self._read(start + HEADER_SIZE, size))
                    if isinstance(r, int) and r < 0:
                        store(self._cons_addr, 8, cons)
                        return r
                    count += 1
                store(self._cons_addr, 8, cons)
                if limit is not None and count >= limit:
                    return count
            if not got:
                return count

    def poll(self, callback: SampleCallback, timeout: float | None = 0.0) -> int:
        """Wait up to ``timeout`` seconds (``None``: forever) for records, then consume them.

        Returns how many were handled (0 on timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0001
        while True:
            n = self.consume(callback)
            if n:
                return n
            if deadline is not None and time.monotonic() >= deadline:
                return 0
            pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            delay = min(delay * 2, 0.01)
