"""Region: one native memory buffer a program may touch (stack, context, packet, map value).

A :class:`Region` is a range of real process memory with a 64-bit ``address``, a ``size``,
a ``kind`` (``"stack"``, ``"ctx"``, ``"packet"``, ``"input"``, ``"map_value"``, ...) and
read/write permissions. eBPF pointers are these real addresses (design.md, "Memory model").

Regions either own their memory (an anonymous ``mmap``, so a later map can be a shared file
mapping instead) or wrap an existing native range they do not own (:meth:`Region.wrap`).
The permissions are enforced by :class:`pybpf.memory.AddressSpace` for the program's own
loads and stores; :meth:`read` and :meth:`write` are the runtime's (trusted) accessors and
only check bounds.
"""

from __future__ import annotations

import ctypes
import mmap
from typing import Any

from pybpf.errors import InputError, InternalError

__all__ = ["Region"]


class Region:
    """A native memory buffer with an address, a size, a kind and permissions.

    Build one with ``Region(size, ...)`` (owned anonymous memory, zero-filled),
    :meth:`from_bytes` or :meth:`wrap`. ``view`` is a writable byte ``memoryview`` of the
    whole range. Close owned regions with :meth:`close` (or use the region as a context
    manager); remove a region from every :class:`~pybpf.memory.AddressSpace` before closing.
    """

    __slots__ = (
        "address",
        "size",
        "end",
        "name",
        "kind",
        "readable",
        "writable",
        "view",
        "_mmap",
        "_anchor",
        "_owner",
        "closed",
    )

    def __init__(
        self,
        size: int,
        *,
        name: str = "",
        kind: str = "data",
        readable: bool = True,
        writable: bool = True,
    ) -> None:
        if size < 0:
            raise InputError(f"region size must be >= 0, not {size}")
        # mmap cannot map 0 bytes: keep one byte of backing but expose size 0.
        self._mmap: mmap.mmap | None = mmap.mmap(-1, max(size, 1))
        self._anchor: Any = ctypes.c_char.from_buffer(self._mmap)
        self.address: int = ctypes.addressof(self._anchor)
        self._owner: Any = None
        self._setup(size, name, kind, readable, writable, memoryview(self._mmap)[:size])

    def _setup(
        self, size: int, name: str, kind: str, readable: bool, writable: bool, view: memoryview
    ) -> None:
        self.size = size
        self.end = self.address + size
        self.name = name or kind
        self.kind = kind
        self.readable = readable
        self.writable = writable
        self.view = view
        self.closed = False

    # ---- constructors --------------------------------------------------------------------
    @classmethod
    def from_bytes(
        cls,
        data: bytes | bytearray | memoryview,
        *,
        name: str = "",
        kind: str = "data",
        readable: bool = True,
        writable: bool = True,
    ) -> Region:
        """A new owned region holding a copy of ``data``."""
        data = memoryview(data).cast("B")
        region = cls(len(data), name=name, kind=kind, readable=readable, writable=writable)
        region.view[:] = data
        return region

    @classmethod
    def wrap(
        cls,
        address: int,
        size: int,
        *,
        name: str = "",
        kind: str = "data",
        readable: bool = True,
        writable: bool = True,
        owner: Any = None,
    ) -> Region:
        """A region over existing native memory ``[address, address + size)``; not owned.

        ``owner`` is kept alive as long as the region (for example the ctypes buffer or the
        map object the range belongs to). The caller guarantees the range stays valid.
        """
        if address <= 0 or size < 0 or address + size > 1 << 64:
            raise InputError(f"cannot wrap native range {address:#x}+{size}")
        region = cls.__new__(cls)
        region._mmap = None
        region._anchor = (ctypes.c_char * max(size, 1)).from_address(address)
        region._owner = owner
        region.address = address
        region._setup(
            size, name, kind, readable, writable, memoryview(region._anchor).cast("B")[:size]
        )
        return region

    @classmethod
    def from_mmap(
        cls,
        mm: mmap.mmap,
        offset: int = 0,
        size: int | None = None,
        *,
        owned: bool = False,
        name: str = "",
        kind: str = "data",
        readable: bool = True,
        writable: bool = True,
    ) -> Region:
        """A region over ``mm[offset:offset + size]`` (a shared file mapping, for example).

        With ``owned=True`` (whole mapping only) closing the region closes ``mm``. A region
        that does not own ``mm`` holds a view of it, so ``mm`` cannot be unmapped under it.
        """
        size = len(mm) - offset if size is None else size
        if offset < 0 or size < 0 or offset + size > len(mm):
            raise InputError(f"range {offset}+{size} is outside a mapping of {len(mm)} bytes")
        if owned and (offset or size != len(mm)):
            raise InputError("an owned region must cover the whole mapping")
        region = cls.__new__(cls)
        region._mmap = mm if owned else None
        region._anchor = ctypes.c_char.from_buffer(mm) if owned else None
        region._owner = None
        view = memoryview(mm)[offset : offset + size]
        region.address = ctypes.addressof(ctypes.c_char.from_buffer(mm)) + offset
        region._setup(size, name, kind, readable, writable, view)
        return region

    # ---- access (trusted: bounds only) ---------------------------------------------------
    def _check(self, offset: int, n: int) -> None:
        if self.closed:
            raise InternalError(f"region {self.name!r} is closed")
        if offset < 0 or n < 0 or offset + n > self.size:
            raise InputError(
                f"range {offset}+{n} is outside region {self.name!r} of {self.size} bytes",
                offset=offset,
            )

    def read(self, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset`` (bounds-checked; permissions are the program's rule)."""
        self._check(offset, n)
        return bytes(self.view[offset : offset + n])

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` to ``offset`` (bounds-checked)."""
        data = memoryview(data).cast("B")
        self._check(offset, len(data))
        self.view[offset : offset + len(data)] = data

    def fill(self, byte: int = 0) -> None:
        """Set every byte of the region to ``byte``."""
        self._check(0, 0)
        if self.size:
            self.view[:] = bytes([byte]) * self.size

    def contains(self, address: int, size: int = 1) -> bool:
        """True when ``[address, address + size)`` lies inside this region."""
        return self.address <= address and address + size <= self.end

    # ---- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Release the memory (owned regions) or the reference (wrapped ones). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.view.release()
        self._anchor = None
        self._owner = None
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                # Someone still holds a view of the mapping; the OS frees it with the last one.
                pass
            self._mmap = None

    def __enter__(self) -> Region:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        perms = ("r" if self.readable else "-") + ("w" if self.writable else "-")
        state = " closed" if self.closed else ""
        return f"<Region {self.name!r} {self.kind} {self.address:#x}+{self.size} {perms}{state}>"
