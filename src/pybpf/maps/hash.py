"""Hash maps: HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH and HASH_OF_MAPS in one flat buffer.

Buffer layout (after the common 256-byte header; ``N`` = max_entries, ``B`` = buckets,
the power of two >= N; every array 8-byte aligned; native byte order)::

    family header (offset 128)
      128 count      u32  elements in the map
      132 free_head  u32  first free slot + 1 (0: none); free slots chain through next[]
      136 hand       u32  LRU clock hand (next slot the eviction sweep looks at)
      140 buckets    u32  B
      144 seed       u32  hash seed (0 with BPF_F_ZERO_SEED, else random)
      148 generation u32  (LPM trie: bumped when the set of prefix lengths changes)
    buckets  u32[B]      first slot + 1 of each bucket's chain (0: empty)
    next     u32[N]      next slot + 1 in the chain (or in the free list)
    hashes   u32[N]      each slot's key hash: zlib.crc32(key, seed)
    state    u8[N]       1: the slot holds an element, 0: free
    ref      u8[N]       LRU reference bit (set by program lookups and updates)
    keys     N * round8(stored key size)
    (family extra area: the LPM trie's prefix-length counts)
    values   (page aligned) N * value slot; value slot = round8(value_size), times ncpus
             for per-CPU maps (CPU c's copy at c * round8(value_size))

Every operation takes the map lock (the header's lock word, :mod:`pybpf.memory.lock`).
An element's ``state`` byte is its truth: an insert writes key, hash and value, then sets
state to 1 and links the slot; a delete unlinks, then clears state. When a process dies
holding the lock, the next user rebuilds buckets, chains, free list and count from the
state bytes, so the map reopens consistent: the interrupted insert or delete either
happened or did not (an in-place overwrite of an existing value may be left torn, as a
concurrent write to a Linux array value can be). An index a corrupted file left
inconsistent (a slot past the end, a chain cycle, a free list naming a slot in use) is
rebuilt the same way when an operation meets it.

Values stay at their slot while the element exists: an update of an existing key writes
in place (as Linux does for per-CPU hashes and ``BPF_F_LOCK``), so pointers a program
holds stay valid. LRU maps evict with a CLOCK sweep over the ref bits when full (Linux's
LRU is approximate too): an element used since the sweep last passed it survives.
Iteration (``get_next_key``) follows slot order; Linux's order differs (bucket order).

Lookups run natively when :mod:`pybpf.maps.native` is compiled and the native atomics
backend is in use, and so do updates and deletes (program-side and user-space) of
:class:`HashMap` itself, not of the families built on it: the same lock, the same steps
in the same order (the JIT calls the same functions). What the native code cannot decide
(a busy lock, an index to rebuild, fault injection in tests) falls back to the Python code
here.

Values with special fields (a ``struct bpf_spin_lock``, ...: :mod:`pybpf.maps.definition`):
updates are the Python path's (the native update answers ``PYTHON`` for them:
:data:`~pybpf.maps.native.OPTION_FIELDS`), which copies around the fields (a new element's
fields start zeroed); lookups return them zeroed. ``BPF_F_LOCK`` (user space or programs)
copies an existing element's value in place under its ``bpf_spin_lock`` and inserts a
missing one as a plain update would, as Linux's ``htab_map_update_elem`` does; as there,
the element is found first and its value copied under its own lock only, not the map's
(a value's slot stays mapped, so a concurrent delete leaves a copy into a free slot).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import threading
import zlib
from array import array
from typing import Any

from pybpf.maps import registry
from pybpf.maps.base import Map
from pybpf.maps.buffer import FAMILY_OFFSET, HEADER_SIZE, LOCK_OFFSET, align8, page_align
from pybpf.maps.definition import (
    ACCESS_FLAGS,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_NOEXIST,
    KMALLOC_MAX_SIZE,
    PCPU_MIN_UNIT_SIZE,
    MapDefinition,
    clear_fields,
    copy_into,
    fail,
    round8,
)
from pybpf.maps.inner import INNER_MAP_CODEC, check_template, inner_error
from pybpf.maps.native import (
    ALL_CPUS,
    BUSY,
    DESCRIPTOR_FIELDS,
    OPTION_FIELDS,
    OPTION_LRU,
    OPTION_PERCPU,
    PYTHON,
    native_map_ops,
    signed,
)
from pybpf.maptypes import MapFlag, MapType
from pybpf.memory import Region, atomics

__all__ = ["HashMap", "HashOfMaps", "HashLayout"]

_ENOTSUPP = 524
_POPPABLE = (MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH)
_FIELDS = struct.Struct("=IIIIII")  # count, free_head, hand, buckets, seed, generation
_CREATE_MASK = (
    MapFlag.NO_PREALLOC
    | MapFlag.NO_COMMON_LRU
    | MapFlag.NUMA_NODE
    | ACCESS_FLAGS
    | MapFlag.ZERO_SEED
)
_HTAB_ELEM = 48  # sizeof(struct htab_elem) on 64-bit Linux


class HashLayout:
    """Offsets of a hash-family buffer, computed from the definition alone."""

    def __init__(self, d: MapDefinition, stored_key: int, extra: int) -> None:
        n = d.max_entries
        self.buckets = 1 << max(0, (n - 1).bit_length())
        self.bucket_off = HEADER_SIZE
        self.next_off = align8(self.bucket_off + 4 * self.buckets)
        self.hash_off = align8(self.next_off + 4 * n)
        self.state_off = align8(self.hash_off + 4 * n)
        self.ref_off = align8(self.state_off + n)
        self.key_off = align8(self.ref_off + n)
        self.key_stride = round8(stored_key)
        self.extra_off = self.key_off + n * self.key_stride
        self.value_off = page_align(self.extra_off + extra)
        self.value_slot = round8(d.value_size) * (d.ncpus if d.percpu else 1)
        self.size = page_align(self.value_off + n * self.value_slot)


class HashMap(Map):
    """HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH (see the module docstring)."""

    TYPES = (MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH)
    FULL_ERRNO = errno.E2BIG

    # ---- geometry --------------------------------------------------------------------------
    @classmethod
    def stored_key_size(cls, d: MapDefinition) -> int:
        """Bytes a slot keeps for its key."""
        return d.key_size

    @classmethod
    def extra_size(cls, d: MapDefinition) -> int:
        """Bytes of the family's extra area."""
        return 0

    @classmethod
    def layout(cls, d: MapDefinition) -> HashLayout:
        """The buffer layout of ``d``."""
        return HashLayout(d, cls.stored_key_size(d), cls.extra_size(d))

    @classmethod
    def buffer_size(cls, d: MapDefinition, params: dict) -> int:
        return cls.layout(d).size

    @classmethod
    def check(cls, d: MapDefinition, params: dict) -> None:
        """``htab_map_alloc_check``."""
        lru = d.type in (MapType.LRU_HASH, MapType.LRU_PERCPU_HASH)
        percpu = d.percpu
        name = d.name
        if d.flags & ~_CREATE_MASK:
            raise fail(errno.EINVAL, f"unsupported flags {d.flags:#x}", "create", name)
        if not lru and d.flags & MapFlag.NO_COMMON_LRU:
            raise fail(errno.EINVAL, "BPF_F_NO_COMMON_LRU needs an LRU map", "create", name)
        if lru and d.flags & MapFlag.NO_PREALLOC:
            raise fail(_ENOTSUPP, "LRU maps are always preallocated", "create", name)
        if d.max_entries == 0 or d.key_size == 0 or d.value_size == 0:
            raise fail(errno.EINVAL, "sizes and max_entries must be nonzero", "create", name)
        if d.key_size + d.value_size >= KMALLOC_MAX_SIZE - _HTAB_ELEM:
            raise fail(errno.E2BIG, "key and value too large", "create", name)
        if percpu and round8(d.value_size) > PCPU_MIN_UNIT_SIZE:
            raise fail(errno.E2BIG, "per-CPU value too large", "create", name)
        if d.max_entries > 1 << 31:
            raise fail(errno.E2BIG, "max_entries above 2^31", "create", name)

    # ---- setup -----------------------------------------------------------------------------
    def _setup(self, params: dict) -> None:
        d = self.definition
        L = self._layout = self.layout(d)
        view = self._buf.view
        n = d.max_entries
        self._mm = self._buf.mm
        self._buckets = view[L.bucket_off : L.bucket_off + 4 * L.buckets].cast("I")
        self._next = view[L.next_off : L.next_off + 4 * n].cast("I")
        self._hashes = view[L.hash_off : L.hash_off + 4 * n].cast("I")
        self._state = view[L.state_off : L.state_off + n]
        self._ref = view[L.ref_off : L.ref_off + n]
        self._keys = view[L.key_off : L.key_off + n * L.key_stride]
        self._values = view[L.value_off : L.value_off + n * L.value_slot]
        self._fields = view[FAMILY_OFFSET : FAMILY_OFFSET + _FIELDS.size].cast("I")
        self._bmask = L.buckets - 1
        self._kstride = L.key_stride
        self._vslot = L.value_slot
        self._values_address = self._buf.address + L.value_off
        self._lru = d.type in (MapType.LRU_HASH, MapType.LRU_PERCPU_HASH)
        self._seed = self._fields[4]
        self._empty_slot = bytes(L.value_slot)
        self._tls = threading.local()
        self._nops = native_map_ops()
        self._desc: Any = None
        self._desc_addr = 0
        self._nwrite = False  # native updates and deletes (HashMap's own, not a family's)
        if self._nops is not None:
            self._desc = self.descriptor()
            self._desc_addr = ctypes.addressof(self._desc)
            self._nwrite = (
                type(self) is HashMap and self._nops.hash_update is not None and not self._spans
            )

    def _init_fresh(self, params: dict) -> None:
        seed = 0 if self.flags & MapFlag.ZERO_SEED else int.from_bytes(os.urandom(4), "little")
        self._fields[4] = seed
        self._fields[3] = self._layout.buckets
        self._seed = seed
        if self._desc is not None:
            self._desc[12] = seed
        # A new buffer is all zeros: empty buckets, free slots; chain the free list 0, 1, ...
        n = self.max_entries
        self._next[: n - 1] = array("I", range(2, n + 1))
        self._fields[1] = 1
        self._rebuilt()

    def descriptor(self) -> Any:
        """The map's descriptor for the native operations (:mod:`pybpf.maps.native`): a
        ctypes array of u64 (``DESCRIPTOR_FIELDS``), valid while the map is open."""
        L, base = self._layout, self._buf.address
        options = (OPTION_LRU if self._lru else 0) | (OPTION_PERCPU if self.percpu else 0)
        options |= OPTION_FIELDS if self._spans else 0
        return (ctypes.c_uint64 * len(DESCRIPTOR_FIELDS))(
            base + LOCK_OFFSET,
            base + L.bucket_off,
            base + L.next_off,
            base + L.hash_off,
            base + L.key_off,
            base + L.ref_off,
            base + L.value_off,
            L.key_stride,
            self._index_key_size,
            L.buckets - 1,
            self.max_entries,
            L.value_slot,
            self._seed,
            base + L.state_off,
            base + FAMILY_OFFSET,
            self.value_size,
            round8(self.value_size),
            self.ncpus,
            options,
        )

    def _native_lookup(self, key: bytes, mark: int, out: int = 0, size: int = 0) -> int:
        """The native lookup: the value's address, 0 when missing, or -1 when the Python
        path must run instead (no native code, busy lock, suspect index)."""
        if self._nops is None or len(key) != self.key_size or atomics.backend() != "native":
            return -1
        r = self._nops.hash_lookup(self._desc_addr, key, self.lock.current_token(), mark, out, size)
        return -1 if r in (1, 2) else r

    def _native_update(self, key: bytes, value: bytes, flags: int, cpu: int) -> int | None:
        """The native update (``cpu``: ``ALL_CPUS`` for a whole user-space value): 0 or
        -errno, or ``None`` when the Python path must run instead (as for lookups; also
        while a test injects faults)."""
        if self._fault or atomics.backend() != "native" or len(key) != self.key_size:
            return None
        if len(value) != (self.user_value_size if cpu == ALL_CPUS else self.value_size):
            return None
        if type(key) is not bytes or type(value) is not bytes:  # (what ctypes passes)
            return None
        token = self.lock.current_token()
        r = self._nops.hash_update(self._desc_addr, key, value, flags, token, cpu)
        return None if r in (BUSY, PYTHON) else signed(r)

    def _native_delete(self, key: bytes) -> int | None:
        """The native delete: 0, -ENOENT, or ``None`` (take the Python path)."""
        if self._fault or atomics.backend() != "native" or len(key) != self.key_size:
            return None
        if type(key) is not bytes:
            return None
        r = self._nops.hash_delete(self._desc_addr, key, self.lock.current_token())
        return None if r in (BUSY, PYTHON) else signed(r)

    def _make_regions(self) -> list[Region]:
        L = self._layout
        n = self.max_entries
        mm = self._buf.mm
        return [
            Region.from_mmap(
                mm,
                L.value_off,
                n * L.value_slot,
                kind="map_value",
                name=f"{self.name or 'map'}.values",
                readable=not self.flags & MapFlag.WRONLY_PROG,
                writable=not self.flags & MapFlag.RDONLY_PROG,
            ),
            Region.from_mmap(
                mm,
                L.key_off,
                n * L.key_stride,
                kind="map_key",
                name=f"{self.name or 'map'}.keys",
                writable=False,
            ),
        ]

    def _close_views(self) -> None:
        self._desc = None  # the native path must not see the unmapped buffer
        self._nwrite = False
        for name in ("_buckets", "_next", "_hashes", "_state", "_ref", "_keys", "_values"):
            getattr(self, name).release()
        self._fields.release()
        self._mm = None

    # ---- the index -------------------------------------------------------------------------
    def _rebuild(self) -> None:
        """Rebuild buckets, chains, free list and count from the state bytes (lock held)."""
        n = self.max_entries
        buckets, nxt, hashes, state, ref = (
            self._buckets,
            self._next,
            self._hashes,
            self._state,
            self._ref,
        )
        for b in range(len(buckets)):
            buckets[b] = 0
        seen: set[bytes] = set()
        free = 0
        count = 0
        seed, mask, ks, klen = self._seed, self._bmask, self._kstride, self._index_key_size
        keys = self._keys
        for s in range(n - 1, -1, -1):
            if state[s] == 1:
                key = bytes(keys[s * ks : s * ks + klen])
                if key not in seen:
                    seen.add(key)
                    h = zlib.crc32(key, seed)
                    hashes[s] = h
                    nxt[s] = buckets[h & mask]
                    buckets[h & mask] = s + 1
                    count += 1
                    continue
            state[s] = 0
            ref[s] = 0
            nxt[s] = free
            free = s + 1
        self._fields[0] = count
        self._fields[1] = free
        self._fields[2] = self._fields[2] % n
        self._rebuilt()

    def _rebuilt(self) -> None:
        """Family hook after :meth:`_rebuild` (lock held)."""

    def _recover(self) -> None:
        self._rebuild()

    @property
    def _index_key_size(self) -> int:
        return self.key_size

    def _find(self, key: bytes, h: int) -> int:
        """The slot holding ``key`` (hash ``h``), or -1 (lock held)."""
        i = self._buckets[h & self._bmask]
        if not i:
            return -1
        hashes, nxt, keys, ks, kl = self._hashes, self._next, self._keys, self._kstride, len(key)
        n = steps = self.max_entries
        while i:
            if i > n:  # a slot past the end: only a corrupted index has one
                self._rebuild()
                return self._find(key, h)
            s = i - 1
            if hashes[s] == h and keys[s * ks : s * ks + kl] == key:
                return s
            i = nxt[s]
            steps -= 1
            if steps < 0:  # a cycle: only a corrupted index has one
                self._rebuild()
                return self._find(key, h)
        return -1

    def _unlink(self, s: int) -> None:
        """Take slot ``s`` out of its chain and free it (lock held)."""
        b = self._hashes[s] & self._bmask
        buckets, nxt = self._buckets, self._next
        n = steps = self.max_entries
        i = buckets[b]
        if i == s + 1:
            buckets[b] = nxt[s]
        else:
            while i:
                steps -= 1
                if i > n or steps < 0:  # a corrupted chain: rebuild it, then unlink again
                    self._rebuild()
                    return self._unlink(s)
                if nxt[i - 1] == s + 1:
                    nxt[i - 1] = nxt[s]
                    break
                i = nxt[i - 1]
        if self._fault:
            self._fault("unlinked")
        self._state[s] = 0
        self._ref[s] = 0
        fields = self._fields
        nxt[s] = fields[1]
        fields[1] = s + 1
        fields[0] = (fields[0] - 1) & 0xFFFFFFFF  # (a corrupted count must not raise)
        self._removed(s)

    def _removed(self, s: int) -> None:
        """Family hook: slot ``s`` was freed (lock held)."""

    def _added(self, s: int) -> None:
        """Family hook: slot ``s`` was filled (lock held)."""

    def _alloc(self) -> int:
        """A free slot (LRU maps evict when full), or -1 (lock held)."""
        fields = self._fields
        i = fields[1]
        if i and (i > self.max_entries or self._state[i - 1]):
            self._rebuild()  # the free list names a slot past the end, or one in use
            i = fields[1]
        if i:
            fields[1] = self._next[i - 1]
            return i - 1
        if not self._lru:
            return -1
        self._unlink(self._victim())
        i = fields[1]
        fields[1] = self._next[i - 1]
        return i - 1

    def _victim(self) -> int:
        """The CLOCK sweep: the first slot from the hand whose ref bit is clear; the bits
        it passes are cleared (second chance)."""
        n = self.max_entries
        mm, base, ref = self._mm, self._layout.ref_off, self._ref
        hand = self._fields[2] % n
        pos = mm.find(b"\0", base + hand, base + n)
        if pos >= 0:
            pos -= base
            ref[hand:pos] = bytes(pos - hand)
        else:
            ref[hand:n] = bytes(n - hand)
            pos = mm.find(b"\0", base, base + hand)
            if pos >= 0:
                pos -= base
                ref[0:pos] = bytes(pos)
            else:
                pos = hand
        self._fields[2] = (pos + 1) % n
        return pos

    # ---- value copies ------------------------------------------------------------------------
    def _write_value(
        self, s: int, value: bytes, cpu: int | None, fresh: bool, locked: bool = False
    ) -> None:
        """Copy ``value`` into slot ``s`` (``cpu``'s copy, or all for ``None``); special
        fields are skipped (a ``fresh`` slot's are zeroed); ``locked``: under the value's
        ``bpf_spin_lock``."""
        o = s * self._vslot
        values = self._values
        if not self.percpu:
            if fresh:
                values[o : o + self.value_size] = clear_fields(value, self._spans)
            elif locked:
                with self._value_lock(self._values_address + o):
                    copy_into(values, o, value, self._spans)
            else:
                copy_into(values, o, value, self._spans)
        elif cpu is None:
            if fresh:
                values[o : o + self._vslot] = clear_fields(value, self._user_spans)
            else:
                copy_into(values, o, value, self._user_spans)
        else:
            if fresh:
                values[o : o + self._vslot] = self._empty_slot
            o += cpu * round8(self.value_size)
            copy_into(values, o, value, self._spans)

    def _locked_update(self, key: bytes, value: bytes, flags: int, cpu: int | None) -> int | None:
        """``BPF_F_LOCK`` on an existing element: 0 or -EEXIST, or ``None`` when the key is
        missing (the caller inserts, rechecking under the map lock)."""
        h = zlib.crc32(key, self._seed)
        with self.lock:
            s = self._find(key, h)
        if s < 0:
            return None
        if flags & ~BPF_F_LOCK == BPF_NOEXIST:
            return -errno.EEXIST
        o = s * self._vslot
        with self._value_lock(self._values_address + o):
            copy_into(self._values, o, value, self._spans)
        return 0

    def _read_value(self, s: int, locked: bool = False) -> bytes:
        """Slot ``s``'s value, special fields zeroed (``locked``: copied under its lock)."""
        o = s * self._vslot
        if locked:
            with self._value_lock(self._values_address + o):
                raw = bytes(self._values[o : o + self.user_value_size])
        else:
            raw = bytes(self._values[o : o + self.user_value_size])
        return clear_fields(raw, self._user_spans)

    # ---- the core operations (lock held by the callers) --------------------------------------
    def _upsert(
        self, ikey: bytes, h: int, value: bytes, flags: int, cpu: int | None, skey: bytes
    ) -> int:
        """Insert or overwrite; ``ikey`` indexes, ``skey`` is stored. 0 or -errno."""
        s = self._find(ikey, h)
        locked = bool(flags & BPF_F_LOCK)
        flags &= ~BPF_F_LOCK
        if s >= 0:
            if flags == BPF_NOEXIST:
                return -errno.EEXIST
            if skey is not ikey:
                self._store_key(s, skey)
            self._write_value(s, value, cpu, fresh=False, locked=locked)
            if self._lru:
                self._ref[s] = 1
            return 0
        if flags == BPF_EXIST:
            return -errno.ENOENT
        s = self._alloc()
        if s < 0:
            return -self.FULL_ERRNO
        if self._fault:
            self._fault("allocated")
        ks = self._kstride
        self._keys[s * ks : s * ks + len(ikey)] = ikey
        if skey is not ikey:
            self._store_key(s, skey)
        self._hashes[s] = h
        self._write_value(s, value, cpu, fresh=True)
        if self._fault:
            self._fault("written")
        self._ref[s] = 0
        self._state[s] = 1
        if self._fault:
            self._fault("published")
        b = h & self._bmask
        self._next[s] = self._buckets[b]
        self._buckets[b] = s + 1
        self._fields[0] = (self._fields[0] + 1) & 0xFFFFFFFF
        self._added(s)
        return 0

    def _store_key(self, s: int, skey: bytes) -> None:
        """Family hook: store the reported key beside the index key."""

    def _reported_key(self, s: int) -> bytes:
        o = s * self._kstride
        return bytes(self._keys[o : o + self.key_size])

    # ---- user space ------------------------------------------------------------------------
    def _update_flags_ok(self, flags: int) -> bool:
        if self.percpu or self._lru:
            return flags <= BPF_EXIST
        return (flags & ~BPF_F_LOCK) <= BPF_EXIST

    def lookup_raw(self, key: bytes, flags: int = 0) -> bytes | None:
        if flags & ~BPF_F_LOCK:
            raise fail(errno.EINVAL, f"bad lookup flags {flags:#x}", "lookup", self.name)
        self._alive("lookup")
        self._can_read("lookup")
        self._check_lock_flag(flags, "lookup")
        key = self._check_key(bytes(key))
        if self._desc is not None and not flags:
            size = self.user_value_size
            buf = getattr(self._tls, "buf", None)
            if buf is None:
                buf = self._tls.buf = ctypes.create_string_buffer(size)
            r = self._native_lookup(key, 0, ctypes.addressof(buf), size)
            if r >= 0:
                return clear_fields(buf.raw, self._user_spans) if r else None
        h = zlib.crc32(key, self._seed)
        with self.lock:
            s = self._find(key, h)
            if s < 0 or not flags:
                return None if s < 0 else self._read_value(s)
        return self._read_value(s, locked=True)  # under the value's lock, not the map's

    def update_raw(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self._alive("update")
        self._can_write("update")
        self._check_lock_flag(flags, "update")
        key = self._check_key(bytes(key))
        value = self._check_value(bytes(value))
        if not self._update_flags_ok(flags):
            raise fail(errno.EINVAL, f"bad update flags {flags:#x}", "update", self.name)
        value = self._user_value(key, value)
        r = self._native_update(key, value, flags, ALL_CPUS) if self._nwrite else None
        if r is None and flags & BPF_F_LOCK:
            r = self._locked_update(key, value, flags, None)
        if r is None:
            h = zlib.crc32(key, self._seed)
            with self.lock:
                r = self._upsert(key, h, value, flags, None, key)
        if r:
            raise fail(-r, "update failed", "update", self.name)

    def _user_value(self, key: bytes, value: bytes) -> bytes:
        """Family hook: check/convert a user-space value (map-in-map ids)."""
        return value

    def delete_raw(self, key: bytes) -> None:
        self._alive("delete")
        self._can_write("delete")
        key = self._check_key(bytes(key))
        r = self._native_delete(key) if self._nwrite else None
        if r is None:
            h = zlib.crc32(key, self._seed)
            with self.lock:
                s = self._find(key, h)
                if s >= 0:
                    self._unlink(s)
            r = 0 if s >= 0 else -errno.ENOENT
        if r:
            raise fail(errno.ENOENT, "no such key", "delete", self.name)

    def lookup_and_delete_raw(self, key: bytes, flags: int = 0) -> bytes | None:
        """``BPF_MAP_LOOKUP_AND_DELETE_ELEM`` (HASH, PERCPU_HASH and the LRU hashes; the
        other hash-based types answer ENOTSUPP as in Linux): ``BPF_F_LOCK`` copies the
        value under its ``bpf_spin_lock`` while the map's lock is held, as Linux copies
        it under the bucket lock, and the lock reads as zero."""
        self._pop_checks(flags)
        if self.type not in _POPPABLE:
            raise fail(
                _ENOTSUPP, f"{self.type.type_name} has no lookup-and-delete",
                "lookup_and_delete", self.name,
            )  # fmt: skip
        key = self._check_key(bytes(key))
        h = zlib.crc32(key, self._seed)
        with self.lock:
            s = self._find(key, h)
            if s < 0:
                return None
            value = self._read_value(s, locked=bool(flags & BPF_F_LOCK))
            self._unlink(s)
            return value

    def get_next_key(self, key: bytes | None) -> bytes | None:
        self._alive("get_next_key")
        self._can_read("get_next_key")
        start = 0
        with self.lock:
            if key is not None:
                key = self._index_key(self._check_key(bytes(key)))
                s = self._find(key, zlib.crc32(key, self._seed))
                if s >= 0:
                    start = s + 1
            base = self._layout.state_off
            pos = self._mm.find(b"\x01", base + start, base + self.max_entries)
            return None if pos < 0 else self._reported_key(pos - base)

    def _index_key(self, key: bytes) -> bytes:
        """Family hook: the index key for a user key."""
        return key

    def keys_raw(self) -> list[bytes]:
        self._alive("get_next_key")
        self._can_read("get_next_key")
        out = []
        with self.lock:
            mm, base, end = self._mm, self._layout.state_off, self._layout.state_off
            end += self.max_entries
            pos = mm.find(b"\x01", base, end)
            while pos >= 0:
                out.append(self._reported_key(pos - base))
                pos = mm.find(b"\x01", pos + 1, end)
        return out

    def __len__(self) -> int:
        self._alive("len")
        return self._fields[0]

    def clear(self) -> None:
        """Remove every element."""
        self._alive("delete")
        self._can_write("delete")
        with self.lock:
            self._state[:] = bytes(self.max_entries)
            self._rebuild()

    # ---- programs --------------------------------------------------------------------------
    def elem_lookup(self, key: bytes, cpu: int = 0) -> int:
        cpu = cpu if self.percpu else 0  # only per-CPU maps have a value per CPU
        if self._desc is not None:
            r = self._native_lookup(key, self._lru)
            if r >= 0:
                return r + cpu * round8(self.value_size) if r else 0
        h = zlib.crc32(key, self._seed)
        with self.lock:
            s = self._find(key, h)
            if s < 0:
                return 0
            if self._lru:
                self._ref[s] = 1
        return self._values_address + s * self._vslot + cpu * round8(self.value_size)

    def elem_lookup_quiet(self, key: bytes, cpu: int = 0) -> int:
        cpu = cpu if self.percpu else 0  # only per-CPU maps have a value per CPU
        if self._desc is not None:
            r = self._native_lookup(key, 0)
            if r >= 0:
                return r + cpu * round8(self.value_size) if r else 0
        h = zlib.crc32(key, self._seed)
        with self.lock:
            s = self._find(key, h)
        if s < 0:
            return 0
        return self._values_address + s * self._vslot + cpu * round8(self.value_size)

    def elem_update(self, key: bytes, value: bytes, flags: int, cpu: int = 0) -> int:
        if not self._update_flags_ok(flags):
            return -errno.EINVAL
        if flags & BPF_F_LOCK:
            if self.spin_lock_offset < 0:
                return -errno.EINVAL
            r = self._locked_update(key, value, flags, None)
            if r is not None:
                return r
        if self._nwrite:
            r = self._native_update(key, value, flags, cpu if self.percpu else 0)
            if r is not None:
                return r
        h = zlib.crc32(key, self._seed)
        with self.lock:
            return self._upsert(key, h, value, flags, cpu if self.percpu else None, key)

    def elem_delete(self, key: bytes) -> int:
        if self._nwrite:
            r = self._native_delete(key)
            if r is not None:
                return r
        h = zlib.crc32(key, self._seed)
        with self.lock:
            s = self._find(key, h)
            if s < 0:
                return -errno.ENOENT
            self._unlink(s)
        return 0

    def elem_slots(self) -> list[int]:
        """The used slots now (for ``bpf_for_each_map_elem``)."""
        with self.lock:
            mm, base = self._mm, self._layout.state_off
            end = base + self.max_entries
            out = []
            pos = mm.find(b"\x01", base, end)
            while pos >= 0:
                out.append(pos - base)
                pos = mm.find(b"\x01", pos + 1, end)
        return out

    def slot_addresses(self, s: int, cpu: int = 0) -> tuple[int, int] | None:
        """``(key address, value address)`` of slot ``s`` if it holds an element."""
        if self._state[s] != 1:
            return None
        key_address = self._buf.address + self._layout.key_off + s * self._kstride
        value = self._values_address + s * self._vslot + cpu * round8(self.value_size)
        return key_address, value


class HashOfMaps(HashMap):
    """HASH_OF_MAPS: values are ids of inner maps (see :mod:`pybpf.maps.inner`)."""

    TYPES = (MapType.HASH_OF_MAPS,)

    @classmethod
    def check(cls, d: MapDefinition, params: dict) -> None:
        check_template(d)
        if d.flags & (MapFlag.RDONLY_PROG | MapFlag.WRONLY_PROG):
            raise fail(errno.EINVAL, "program access flags on a map-in-map", "create", d.name)
        super().check(d, params)

    def _setup(self, params: dict) -> None:
        super()._setup(params)
        self.value_codec = INNER_MAP_CODEC

    def _make_regions(self) -> list[Region]:
        return []

    def set_codecs(self, key: Any = None, value: Any = None) -> Map:
        super().set_codecs(key, value)
        if value is None:
            self.value_codec = INNER_MAP_CODEC
        return self

    def _user_value(self, key: bytes, value: bytes) -> bytes:
        r = inner_error(self.definition.inner, int.from_bytes(value, "little"))
        if r:
            raise fail(-r, "inner map does not fit the template", "update", self.name)
        return value

    def elem_lookup(self, key: bytes, cpu: int = 0) -> int:
        cpu = cpu if self.percpu else 0  # only per-CPU maps have a value per CPU
        h = zlib.crc32(key, self._seed)
        with self.lock:
            s = self._find(key, h)
            if s < 0:
                return 0
            o = s * self._vslot
            map_id = int.from_bytes(self._values[o : o + 4], "little")
        inner = registry.by_id(map_id)
        return 0 if inner is None or inner.closed else inner.handle

    def elem_update(self, key: bytes, value: bytes, flags: int, cpu: int = 0) -> int:
        return -errno.EOPNOTSUPP  # programs cannot store maps (the verifier refuses it)

    def elem_delete(self, key: bytes) -> int:
        return -errno.EOPNOTSUPP

    def elem_slots(self) -> list[int] | None:
        return None
