"""LPM trie: LPM_TRIE longest-prefix-match maps, with Linux's key layout, in one flat buffer.

Keys are Linux's ``struct bpf_lpm_trie_key_u8``: a little-endian (host order) ``u32
prefixlen`` followed by ``key_size - 4`` data bytes whose bits count from the most
significant bit of the first byte (network order). A lookup finds the element with the
longest prefix ``L <= key.prefixlen`` whose first ``L`` bits equal the key's; update and
delete address the element with exactly the key's prefix length and first ``prefixlen``
bits. Full maps refuse new prefixes with ENOSPC (as Linux).

Storage reuses the hash family's buffer (:mod:`pybpf.maps.hash`): each element is indexed
by its *masked* key (prefixlen + data with the bits past the prefix cleared). Layout
differences::

    keys     N slots of round8(key_size) + key_size bytes: the masked (index) key, then
             the key as last stored (Linux keeps and reports the unmasked data bytes)
    extra    u32[max_prefixlen + 1]: elements per prefix length
    header   148 generation u32: bumped whenever a prefix length appears or disappears

A lookup probes the hash once per prefix length present, longest first (the lengths are
cached per generation), so its cost grows with the number of distinct lengths, not with
the number of elements. Iteration is in slot order (Linux walks the trie).
"""

from __future__ import annotations

import errno
import zlib

from pybpf.maps.definition import (
    ACCESS_FLAGS,
    BPF_EXIST,
    BPF_F_LOCK,
    KMALLOC_MAX_SIZE,
    MapDefinition,
    fail,
    round8,
)
from pybpf.maps.hash import HashMap
from pybpf.maptypes import MapFlag, MapType

__all__ = ["LpmTrie"]

_CREATE_MASK = MapFlag.NO_PREALLOC | MapFlag.NUMA_NODE | ACCESS_FLAGS
_DATA_MIN, _DATA_MAX = 1, 256
_NODE = 40  # sizeof(struct lpm_trie_node) on 64-bit Linux, without data


class LpmTrie(HashMap):
    """LPM_TRIE (see the module docstring)."""

    TYPES = (MapType.LPM_TRIE,)
    FULL_ERRNO = errno.ENOSPC

    @classmethod
    def stored_key_size(cls, d: MapDefinition) -> int:
        return round8(d.key_size) + d.key_size

    @classmethod
    def extra_size(cls, d: MapDefinition) -> int:
        return 4 * (8 * max(0, d.key_size - 4) + 1)

    @classmethod
    def check(cls, d: MapDefinition, params: dict) -> None:
        """``trie_alloc``'s checks."""
        if (
            d.max_entries == 0
            or not d.flags & MapFlag.NO_PREALLOC
            or d.flags & ~_CREATE_MASK
            or not 4 + _DATA_MIN <= d.key_size <= 4 + _DATA_MAX
            or not 1 <= d.value_size <= KMALLOC_MAX_SIZE - _DATA_MAX - _NODE
        ):
            raise fail(errno.EINVAL, "invalid LPM trie attributes", "create", d.name)

    def _setup(self, params: dict) -> None:
        super()._setup(params)
        L = self._layout
        self._data_size = self.key_size - 4
        self._max_prefixlen = 8 * self._data_size
        n = self._max_prefixlen + 1
        self._counts = self._buf.view[L.extra_off : L.extra_off + 4 * n].cast("I")
        self._raw_off = round8(self.key_size)
        self._lengths_gen = -1
        self._lengths: list[int] = []
        self._masks = {}

    def _close_views(self) -> None:
        self._counts.release()
        super()._close_views()

    # ---- keys ------------------------------------------------------------------------------
    def _mask(self, length: int) -> int:
        mask = self._masks.get(length)
        if mask is None:
            bits = self._max_prefixlen
            mask = self._masks[length] = ((1 << length) - 1) << (bits - length)
        return mask

    def _masked(self, prefixlen: int, data: int) -> bytes:
        return prefixlen.to_bytes(4, "little") + (data & self._mask(prefixlen)).to_bytes(
            self._data_size, "big"
        )

    def _index_key(self, key: bytes) -> bytes:
        prefixlen = int.from_bytes(key[:4], "little")
        if prefixlen > self._max_prefixlen:
            return key  # matches nothing: index keys have valid prefix lengths
        return self._masked(prefixlen, int.from_bytes(key[4:], "big"))

    def _store_key(self, s: int, skey: bytes) -> None:
        o = s * self._kstride + self._raw_off
        self._keys[o : o + self.key_size] = skey

    def _reported_key(self, s: int) -> bytes:
        o = s * self._kstride + self._raw_off
        return bytes(self._keys[o : o + self.key_size])

    def _prefixlen(self, s: int) -> int:
        o = s * self._kstride
        return int.from_bytes(self._keys[o : o + 4], "little")

    # ---- prefix-length bookkeeping (lock held) --------------------------------------------
    def _added(self, s: int) -> None:
        pl = self._prefixlen(s)
        self._counts[pl] += 1
        if self._counts[pl] == 1:
            self._fields[5] = (self._fields[5] + 1) & 0xFFFFFFFF

    def _removed(self, s: int) -> None:
        pl = self._prefixlen(s)
        if self._counts[pl]:
            self._counts[pl] -= 1
        if self._counts[pl] == 0:
            self._fields[5] = (self._fields[5] + 1) & 0xFFFFFFFF

    def _rebuilt(self) -> None:
        counts = self._counts
        for i in range(len(counts)):
            counts[i] = 0
        mm, base = self._mm, self._layout.state_off
        end = base + self.max_entries
        pos = mm.find(b"\x01", base, end)
        while pos >= 0:
            pl = self._prefixlen(pos - base)
            if pl <= self._max_prefixlen:
                counts[pl] += 1
            pos = mm.find(b"\x01", pos + 1, end)
        self._fields[5] = (self._fields[5] + 1) & 0xFFFFFFFF

    def _present(self) -> list[int]:
        gen = self._fields[5]
        if gen != self._lengths_gen:
            counts = self._counts
            self._lengths = [n for n in range(self._max_prefixlen, -1, -1) if counts[n]]
            self._lengths_gen = gen
        return self._lengths

    def _match(self, key: bytes) -> int:
        """The slot of the longest prefix matching ``key``, or -1 (lock held)."""
        prefixlen = int.from_bytes(key[:4], "little")
        if prefixlen > self._max_prefixlen:
            return -1
        data = int.from_bytes(key[4:], "big")
        seed = self._seed
        for length in self._present():
            if length > prefixlen:
                continue
            ikey = self._masked(length, data)
            s = self._find(ikey, zlib.crc32(ikey, seed))
            if s >= 0:
                return s
        return -1

    # ---- user space ------------------------------------------------------------------------
    def lookup_raw(self, key: bytes) -> bytes | None:
        self._alive("lookup")
        self._can_read("lookup")
        key = self._check_key(bytes(key))
        with self.lock:
            s = self._match(key)
            return None if s < 0 else self._read_value(s)

    def _update(self, key: bytes, value: bytes, flags: int) -> int:
        if flags & BPF_F_LOCK or flags > BPF_EXIST:
            return -errno.EINVAL
        if int.from_bytes(key[:4], "little") > self._max_prefixlen:
            return -errno.EINVAL
        ikey = self._index_key(key)
        h = zlib.crc32(ikey, self._seed)
        with self.lock:
            return self._upsert(ikey, h, value, flags, None, key)

    def update_raw(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self._alive("update")
        self._can_write("update")
        r = self._update(self._check_key(bytes(key)), self._check_value(bytes(value)), flags)
        if r:
            raise fail(-r, "update failed", "update", self.name)

    def _delete(self, key: bytes) -> int:
        if int.from_bytes(key[:4], "little") > self._max_prefixlen:
            return -errno.EINVAL
        ikey = self._index_key(key)
        with self.lock:
            s = self._find(ikey, zlib.crc32(ikey, self._seed))
            if s < 0:
                return -errno.ENOENT
            self._unlink(s)
        return 0

    def delete_raw(self, key: bytes) -> None:
        self._alive("delete")
        self._can_write("delete")
        r = self._delete(self._check_key(bytes(key)))
        if r:
            raise fail(-r, "delete failed", "delete", self.name)

    def lookup_and_delete_raw(self, key: bytes, flags: int = 0) -> bytes | None:
        self._pop_checks(flags)
        raise fail(524, "LPM tries have no lookup-and-delete", "lookup_and_delete", self.name)

    # ---- programs --------------------------------------------------------------------------
    def elem_lookup(self, key: bytes, cpu: int = 0) -> int:
        with self.lock:
            s = self._match(key)
        return 0 if s < 0 else self._values_address + s * self._vslot

    def elem_lookup_quiet(self, key: bytes, cpu: int = 0) -> int:
        return self.elem_lookup(key, cpu)

    def elem_update(self, key: bytes, value: bytes, flags: int, cpu: int = 0) -> int:
        return self._update(key, value, flags)

    def elem_delete(self, key: bytes) -> int:
        return self._delete(key)

    def elem_slots(self) -> list[int] | None:
        return None  # Linux has no for_each for LPM tries
