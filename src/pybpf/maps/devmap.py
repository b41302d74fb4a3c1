"""Redirect-target maps: DEVMAP, DEVMAP_HASH and XSKMAP with Linux's rules.

These maps name where ``bpf_redirect_map`` sends a packet; a hook gives the target its
meaning (the capture runner writes ``redirect:IFINDEX`` outputs, a live link transmits on
that interface). Layouts are the array's (:mod:`pybpf.maps.array`) and the hash's
(:mod:`pybpf.maps.hash`); what differs is what a value is and which operations Linux
allows (``kernel/bpf/devmap.c``, ``net/xdp/xskmap.c``):

- DEVMAP: key ``u32`` index, value ``struct bpf_devmap_val`` (``ifindex``, and with an
  8-byte value a program fd in, its id out). An entry exists while its ``ifindex`` is
  non-zero; updating with ``ifindex`` 0 empties the slot, ``BPF_NOEXIST`` always fails
  with EEXIST, delete of an index past the end is EINVAL and of an empty slot succeeds.
- DEVMAP_HASH: the same values in a hash (``ifindex`` 0 is EINVAL, ``BPF_EXIST`` on a
  missing key inserts, as Linux's does).
- XSKMAP: key ``u32`` index, value an AF_XDP socket. The portable backend has no AF_XDP
  sockets: a value is any non-zero ``u32`` the hook treats as a queue id. User-space
  lookups fail with EOPNOTSUPP as on Linux.

Programs (XDP) may look entries up (read-only values) and redirect to them; they cannot
update or delete them (EOPNOTSUPP, and the verifier refuses the calls). Programs attached
to devmap entries (``bpf_devmap_val.bpf_prog.fd`` > 0) are not supported: EOPNOTSUPP.
"""

from __future__ import annotations

import errno

from pybpf.maps.array import IdSlotArray
from pybpf.maps.definition import BPF_ANY, BPF_EXIST, BPF_NOEXIST, MapDefinition, fail
from pybpf.maps.hash import HashMap
from pybpf.maptypes import MapFlag, MapType
from pybpf.memory import Region

__all__ = ["DevMap", "DevMapHash", "XskMap"]

_CREATE_MASK = MapFlag.NUMA_NODE | MapFlag.RDONLY | MapFlag.WRONLY


def _check(d: MapDefinition, value_sizes: tuple[int, ...]) -> None:
    if (
        d.max_entries == 0
        or d.key_size != 4
        or d.value_size not in value_sizes
        or d.flags & ~_CREATE_MASK
    ):
        raise fail(errno.EINVAL, "invalid attributes for a redirect map", "create", d.name)


def _devmap_value(value: bytes, name: str | None, *, empty_ok: bool) -> bytes:
    """Check a ``bpf_devmap_val`` from user space; returns what is stored (prog id 0)."""
    ifindex = int.from_bytes(value[:4], "little")
    prog_fd = int.from_bytes(value[4:8], "little", signed=True) if len(value) >= 8 else 0
    if ifindex == 0 and (not empty_ok or prog_fd > 0):
        raise fail(errno.EINVAL, "ifindex 0 is not a device", "update", name)
    if prog_fd > 0:
        raise fail(
            errno.EOPNOTSUPP,
            "programs attached to devmap entries are not supported",
            "update",
            name,
        )
    return value[:4] + bytes(len(value) - 4)


def _read_only(regions: list[Region]) -> list[Region]:
    for region in regions:
        region.writable = False
    return regions


class _TargetArray(IdSlotArray):
    """DEVMAP and XSKMAP: an array whose slot ``i`` holds an entry while its first ``u32``
    (the ifindex, the queue id) is non-zero; programs read entries (read-only) and never
    change them."""

    def _make_regions(self) -> list[Region]:
        return _read_only(super()._make_regions())

    def delete_raw(self, key: bytes) -> None:
        self._alive("delete")
        self._can_write("delete")
        i = self._index(key)
        if i >= self.max_entries:
            raise fail(errno.EINVAL, "index out of range", "delete", self.name)
        o = i * self._slot  # an empty slot deletes fine, as on Linux
        self._values[o : o + self.value_size] = bytes(self.value_size)

    def elem_lookup(self, key: bytes, cpu: int = 0) -> int:
        i = int.from_bytes(key, "little")
        if i >= self.max_entries or not self._id(i):
            return 0
        return self._values_address + i * self._slot

    def elem_slots(self) -> list[int]:
        return self._present()


class DevMap(_TargetArray):
    """DEVMAP (see the module docstring)."""

    TYPES = (MapType.DEVMAP,)

    @classmethod
    def check(cls, d: MapDefinition, params: dict) -> None:
        _check(d, (4, 8))

    def lookup_raw(self, key: bytes) -> bytes | None:
        self._alive("lookup")
        self._can_read("lookup")
        i = self._index(key)
        if i >= self.max_entries or not self._id(i):
            return None
        o = i * self._slot
        return bytes(self._values[o : o + self.value_size])

    def update_raw(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._alive("update")
        self._can_write("update")
        i = self._index(key)
        value = self._check_value(bytes(value))
        if flags > BPF_EXIST:
            raise fail(errno.EINVAL, f"bad update flags {flags:#x}", "update", self.name)
        if i >= self.max_entries:
            raise fail(errno.E2BIG, "index out of range", "update", self.name)
        if flags == BPF_NOEXIST:
            raise fail(errno.EEXIST, "devmap slots always exist", "update", self.name)
        stored = _devmap_value(value, self.name, empty_ok=True)
        o = i * self._slot
        self._values[o : o + len(stored)] = stored


class DevMapHash(HashMap):
    """DEVMAP_HASH (see the module docstring)."""

    TYPES = (MapType.DEVMAP_HASH,)

    @classmethod
    def check(cls, d: MapDefinition, params: dict) -> None:
        _check(d, (4, 8))

    def _make_regions(self) -> list[Region]:
        return _read_only(super()._make_regions())

    def update_raw(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._alive("update")
        if flags > BPF_EXIST:
            raise fail(errno.EINVAL, f"bad update flags {flags:#x}", "update", self.name)
        value = self._check_value(bytes(value))
        stored = _devmap_value(value, self.name, empty_ok=False)
        # Linux's dev_map_hash_update_elem checks BPF_NOEXIST only.
        super().update_raw(key, stored, BPF_NOEXIST if flags == BPF_NOEXIST else BPF_ANY)

    def elem_update(self, key: bytes, value: bytes, flags: int, cpu: int = 0) -> int:
        return -errno.EOPNOTSUPP

    def elem_delete(self, key: bytes) -> int:
        return -errno.EOPNOTSUPP


class XskMap(_TargetArray):
    """XSKMAP (see the module docstring)."""

    TYPES = (MapType.XSKMAP,)

    @classmethod
    def check(cls, d: MapDefinition, params: dict) -> None:
        _check(d, (4,))

    def queue_id(self, index: int) -> int:
        """The queue id in slot ``index`` (0 when empty or out of range)."""
        if self.closed or not 0 <= index < self.max_entries:
            return 0
        return self._id(index)

    def lookup_raw(self, key: bytes) -> bytes | None:
        self._alive("lookup")
        self._index(key)
        raise fail(errno.EOPNOTSUPP, "XSKMAP entries cannot be read", "lookup", self.name)

    def update_raw(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._alive("update")
        self._can_write("update")
        i = self._index(key)
        value = self._check_value(bytes(value))
        if flags > BPF_EXIST:
            raise fail(errno.EINVAL, f"bad update flags {flags:#x}", "update", self.name)
        if i >= self.max_entries:
            raise fail(errno.E2BIG, "index out of range", "update", self.name)
        if not int.from_bytes(value, "little"):
            raise fail(errno.EINVAL, "queue id 0 is not a socket", "update", self.name)
        present = bool(self._id(i))
        if flags == BPF_NOEXIST and present:
            raise fail(errno.EEXIST, "slot is in use", "update", self.name)
        if flags == BPF_EXIST and not present:
            raise fail(errno.ENOENT, "slot is empty", "update", self.name)
        o = i * self._slot
        self._values[o : o + 4] = value
