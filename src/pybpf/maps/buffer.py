"""Map buffer: one map's flat shared-memory buffer and the header every family starts with.

A map's whole state lives in one buffer from creation (design.md): an anonymous mapping,
or a file in the state directory's ``objects/`` (shareable: pinning hard-links it into
``bpffs/``, and another process that maps the file sees the same bytes live).

Common header (256 bytes, native byte order, all families)::

    0   magic        8s   b"PYBPFMAP" (written last: a half-made file has none)
    8   version      u32  layout version (1)
    12  header_size  u32  256
    16  map_type     u32  Linux's BPF_MAP_TYPE_*
    20  key_size     u32
    24  value_size   u32
    28  max_entries  u32
    32  flags        u32  BPF_F_* creation flags
    36  ncpus        u32  CPUs of per-CPU values (1 for the other types)
    40  size         u64  the buffer's total size in bytes
    48  lock         u64  the map lock (pybpf.memory.lock: 0 or pid << 32 | serial)
    56  inner        5 x u32: type, key_size, value_size, max_entries, flags of a
                     map-in-map's inner template (zeros otherwise)
    76  creator      u32  pid of the creating process
    80  name         16s  NUL-padded
    96  map_extra    u64
    104 frozen       u32  1 after freeze(): user-space writes fail with EPERM
    108 inner_ncpus  u32
    112 id           u32  the map's id, unique in the state directory (pybpf.maps.registry)
    116 spin_lock    u32  the value's bpf_spin_lock offset + 1 (0: none); the other
                     special fields are not recorded (a reopened pin knows its lock only)
    120 (reserved)
    128 family area  128 bytes; each family module documents its own fields

Families place their data after the header at offsets they compute from the definition,
so every process that opens the buffer finds the same layout.
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
from pathlib import Path

from pybpf.errors import InputError
from pybpf.maps.definition import MAX_MAP_BYTES, MapDefinition, fail
from pybpf.maptypes import MapType
from pybpf.memory import Region
from pybpf.state import StateDirectory

__all__ = [
    "MapBuffer",
    "HEADER_SIZE",
    "FAMILY_OFFSET",
    "LOCK_OFFSET",
    "MAGIC",
    "PAGE_SIZE",
    "page_align",
    "align8",
]

MAGIC = b"PYBPFMAP"
VERSION = 1
HEADER_SIZE = 256
LOCK_OFFSET = 48
FAMILY_OFFSET = 128
FROZEN_OFFSET = 104
SPIN_LOCK_OFFSET = 116
PAGE_SIZE = mmap.PAGESIZE

_HEAD = struct.Struct("=8sIIIIIIIIQQIIIIIi16sQII")  # up to offset 112
assert _HEAD.size == 112


def page_align(n: int) -> int:
    """``n`` rounded up to a multiple of the page size."""
    return (n + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE


def align8(n: int) -> int:
    """``n`` rounded up to a multiple of 8."""
    return (n + 7) & ~7


def _pack_header(d: MapDefinition, size: int) -> bytes:
    inner = d.inner or MapDefinition(MapType.UNSPEC, 0, 0, 0)
    return _HEAD.pack(
        b"\0" * 8,  # magic: published last
        VERSION,
        HEADER_SIZE,
        int(d.type),
        d.key_size,
        d.value_size,
        d.max_entries,
        d.flags,
        d.ncpus,
        size,
        0,
        int(inner.type),
        inner.key_size,
        inner.value_size,
        inner.max_entries,
        inner.flags,
        os.getpid(),
        d.name.encode()[:15],
        d.map_extra,
        0,
        inner.ncpus,
    )


def _check_owner(fd: int, info: os.stat_result, path: Path) -> None:
    """A pin must be ours and private: another user's file is refused (EPERM), as it could
    change the map's bytes under us; one of ours others could write is made 0600 again."""
    if not hasattr(os, "getuid"):
        return
    if info.st_uid != os.getuid():
        raise fail(
            errno.EPERM, f"pin is owned by uid {info.st_uid}, not {os.getuid()}", "open"
        )
    if info.st_mode & 0o077:
        os.fchmod(fd, 0o600)


class MapBuffer:
    """The buffer of one map: ``mm`` (the mapping), ``region`` (owned, the whole buffer),
    and its backing ``path``.

    ``path`` is ``None`` for anonymous buffers. ``temporary`` is true when ``path`` is the
    creator's file in ``objects/`` (unlinked on close; pins are other links to it).
    """

    def __init__(self, mm: mmap.mmap, region: Region, path: Path | None, temporary: bool) -> None:
        self.mm = mm
        self.region = region
        self.view = region.view
        self.address = region.address
        self.size = region.size
        self.path = path
        self.temporary = temporary

    # ---- creation ------------------------------------------------------------------------
    @classmethod
    def create(
        cls, d: MapDefinition, size: int, state: StateDirectory | None, name: str = "map"
    ) -> MapBuffer:
        """A zeroed buffer of ``size`` bytes with the header of ``d`` (magic not yet set).

        ``state`` given: a file in its ``objects/``; ``None``: anonymous memory.
        """
        if size > MAX_MAP_BYTES:
            raise fail(
                errno.ENOMEM,
                f"map needs {size} bytes, more than the {MAX_MAP_BYTES} pybpf allows",
                "create",
                d.name,
            )
        path = None
        try:
            if state is None:
                mm = mmap.mmap(-1, size)
            else:
                path, fd = state.new_object("map")
                try:
                    os.ftruncate(fd, size)
                    mm = mmap.mmap(fd, size)
                finally:
                    os.close(fd)
        except OSError as err:
            if path is not None:
                _unlink(path)
            raise fail(
                err.errno or errno.ENOMEM, f"cannot allocate the map: {err}", "create", d.name
            ) from None
        region = Region.from_mmap(mm, owned=True, kind="map", name=name)
        buf = cls(mm, region, path, temporary=path is not None)
        buf.view[: _HEAD.size] = _pack_header(d, size)
        struct.pack_into("=I", buf.view, SPIN_LOCK_OFFSET, d.spin_lock_offset + 1)
        return buf

    def publish(self) -> None:
        """Write the magic: the buffer is complete and may be opened by others."""
        self.view[0:8] = MAGIC

    @classmethod
    def open(cls, path: Path, name: str = "map") -> MapBuffer:
        """Map an existing map file (a pin); its header must be complete and consistent."""
        flags = os.O_RDWR | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise fail(errno.ENOENT, "no pinned object there", "open", "") from None
        except OSError as err:
            if err.errno == errno.ELOOP:  # O_NOFOLLOW: a symbolic link put in its place
                raise InputError("pin is a symbolic link", path=str(path)) from None
            raise fail(err.errno or errno.EACCES, f"cannot open pin: {err}", "open") from None
        try:
            info = os.fstat(fd)
            _check_owner(fd, info, path)
            size = info.st_size
            if size < HEADER_SIZE:
                raise InputError("not a pybpf map (too short)", path=str(path))
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        head = _HEAD.unpack_from(mm, 0)
        if head[0] != MAGIC or head[1] != VERSION or head[2] != HEADER_SIZE or head[9] != size:
            mm.close()
            raise InputError("not a pybpf map, or one of another layout version", path=str(path))
        region = Region.from_mmap(mm, owned=True, kind="map", name=name)
        return cls(mm, region, path, temporary=False)

    # ---- header fields -------------------------------------------------------------------
    def definition(self) -> MapDefinition:
        """The definition recorded in the header."""
        h = _HEAD.unpack_from(self.view, 0)
        inner = None
        if h[11]:
            inner = MapDefinition(MapType(h[11]), h[12], h[13], h[14], h[15], ncpus=h[20])
        return MapDefinition(
            MapType(h[3]),
            h[4],
            h[5],
            h[6],
            h[7],
            name=h[17].rstrip(b"\0").decode(errors="replace"),
            ncpus=h[8],
            inner=inner,
            map_extra=h[18],
            spin_lock_offset=struct.unpack_from("=I", self.view, SPIN_LOCK_OFFSET)[0] - 1,
        )

    @property
    def frozen(self) -> bool:
        """True after the map was frozen."""
        return bool(struct.unpack_from("=I", self.view, FROZEN_OFFSET)[0])

    def freeze(self) -> None:
        """Mark the map frozen (user-space writes fail from now on)."""
        struct.pack_into("=I", self.view, FROZEN_OFFSET, 1)

    # ---- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Unmap the buffer (once nothing views it) and drop the creator's temporary file."""
        self.view = None
        self.mm = None
        self.region.close()
        if self.temporary and self.path is not None:
            _unlink(self.path)
            self.temporary = False


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # already gone, or (Windows) still mapped: garbage collection removes it later
