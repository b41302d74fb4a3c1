"""Address space: the set of live regions one execution may touch, and the access check.

:meth:`AddressSpace.resolve` is the interpreter's memory check: an access of ``size`` bytes
at ``address`` is allowed only when it lies fully inside ONE live region that grants the
access (``"read"`` or ``"write"``); otherwise it raises
:class:`~pybpf.errors.MemoryAccessError` with ``pc``, ``address``, ``size`` and ``access``.

Lookups are a bisect over the sorted region bases behind a last-hit cache. Engines may also
*bind* their own inline caches (``[base, size, view]`` lists) with :meth:`bind_cache`: the
space fills them on every successful resolve and resets them whenever a region leaves, so a
cached range is always a live one. An access of ``n`` bytes at ``address`` hits a cache
when ``0 <= address - base`` and ``address - base + n <= size``; the empty cache
(:data:`EMPTY_CACHE`) matches nothing.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator

from pybpf.errors import InputError, MemoryAccessError
from pybpf.memory.region import Region

__all__ = ["AddressSpace", "EMPTY_CACHE"]

# An inline cache that matches no access: offset >= 0 and offset + n <= -1 is impossible.
EMPTY_CACHE = (0, -1, None)

_ACCESSES = ("read", "write")


class AddressSpace:
    """The live regions of one execution, with permission-checked address resolution.

    Regions may not overlap. ``with AddressSpace(regions) as space`` closes nothing: regions
    belong to whoever created them; :meth:`close_all` closes every region still in the space.
    """

    def __init__(self, regions: Iterable[Region] = ()) -> None:
        self._bases: list[int] = []
        self._regions: list[Region] = []
        self._last: Region | None = None
        self._read_caches: list[list] = []
        self._write_caches: list[list] = []
        for region in regions:
            self.add(region)

    # ---- membership ----------------------------------------------------------------------
    def add(self, region: Region) -> Region:
        """Make ``region`` reachable; it must not overlap a live region. Returns it."""
        if region.closed:
            raise InputError(f"cannot add closed region {region.name!r}")
        i = bisect_right(self._bases, region.address)
        if i and self._regions[i - 1] is region:
            raise InputError(f"region {region.name!r} is already in the address space")
        prev = self._regions[i - 1] if i else None
        nxt = self._regions[i] if i < len(self._regions) else None
        if (prev is not None and prev.end > region.address) or (
            nxt is not None and region.end > nxt.address
        ):
            raise InputError(
                f"region {region.name!r} at {region.address:#x}+{region.size} "
                "overlaps a live region"
            )
        self._bases.insert(i, region.address)
        self._regions.insert(i, region)
        return region

    def remove(self, region: Region) -> None:
        """Make ``region`` unreachable (bound caches are reset). Absent regions are ignored."""
        i = bisect_right(self._bases, region.address) - 1
        if i < 0 or self._regions[i] is not region:
            return
        del self._bases[i]
        del self._regions[i]
        if self._last is region:
            self._last = None
        for cache in self._read_caches:
            cache[:] = EMPTY_CACHE
        for cache in self._write_caches:
            cache[:] = EMPTY_CACHE

    def __contains__(self, region: object) -> bool:
        return any(r is region for r in self._regions)

    def __iter__(self) -> Iterator[Region]:
        return iter(list(self._regions))

    def __len__(self) -> int:
        return len(self._regions)

    def find(self, address: int) -> Region | None:
        """The live region containing ``address``, or ``None``."""
        i = bisect_right(self._bases, address) - 1
        if i >= 0:
            region = self._regions[i]
            if address < region.end:
                return region
        return None

    # ---- the access check ----------------------------------------------------------------
    def resolve(
        self, address: int, size: int, access: str = "read", pc: int | None = None
    ) -> tuple[Region, int]:
        """``(region, offset)`` for an access, or :class:`MemoryAccessError`.

        ``access`` is ``"read"`` or ``"write"``; the whole range ``[address, address + size)``
        must lie inside one live region granting it.
        """
        region = self._last
        if region is None or not (region.address <= address and address + size <= region.end):
            region = self.find(address)
            if region is None or address + size > region.end:
                raise self._error(address, size, access, pc, region)
            self._last = region
        if access == "read":
            if not region.readable:
                raise self._error(address, size, access, pc, region)
            for cache in self._read_caches:
                cache[0], cache[1], cache[2] = region.address, region.size, region.view
        elif access == "write":
            if not region.writable:
                raise self._error(address, size, access, pc, region)
            for cache in self._write_caches:
                cache[0], cache[1], cache[2] = region.address, region.size, region.view
        else:
            raise InputError(f"access must be 'read' or 'write', not {access!r}")
        return region, address - region.address

    def _error(
        self, address: int, size: int, access: str, pc: int | None, region: Region | None
    ) -> MemoryAccessError:
        if region is None:
            why = "no region"
        elif address + size > region.end:
            why = f"past the end of {region.name!r} ({region.address:#x}+{region.size})"
        else:
            why = f"{region.name!r} is not {'readable' if access == 'read' else 'writable'}"
        return MemoryAccessError(
            f"invalid {access} of {size} bytes at {address:#x}: {why}",
            address=address,
            size=size,
            access=access,
            pc=pc,
        )

    # ---- convenience accessors (checked) ---------------------------------------------------
    def read(self, address: int, size: int, pc: int | None = None) -> bytes:
        """Bytes at ``address`` after a read check (helpers use this to read program memory)."""
        region, offset = self.resolve(address, size, "read", pc)
        return bytes(region.view[offset : offset + size])

    def write(self, address: int, data: bytes | bytearray, pc: int | None = None) -> None:
        """Store ``data`` at ``address`` after a write check."""
        region, offset = self.resolve(address, len(data), "write", pc)
        region.view[offset : offset + len(data)] = data

    def read_cstring(self, address: int, limit: int, pc: int | None = None) -> bytes:
        """A NUL-terminated string (without the NUL), at most ``limit`` bytes are examined.

        Raises :class:`MemoryAccessError` when the string leaves its region before a NUL.
        """
        region = self.find(address)
        if region is None or not region.readable:
            raise self._error(address, 1, "read", pc, region)
        offset = address - region.address
        window = bytes(region.view[offset : offset + limit])
        end = window.find(b"\0")
        if end < 0:
            if len(window) < limit:
                raise self._error(address, len(window) + 1, "read", pc, region)
            return window
        return window[:end]

    # ---- engine caches ---------------------------------------------------------------------
    def bind_cache(self, read_cache: list, write_cache: list) -> None:
        """Register ``[base, size, view]`` caches: :meth:`resolve` fills them, ``remove`` resets."""
        read_cache[:] = EMPTY_CACHE
        write_cache[:] = EMPTY_CACHE
        self._read_caches.append(read_cache)
        self._write_caches.append(write_cache)

    def unbind_cache(self, read_cache: list, write_cache: list) -> None:
        """Forget caches registered with :meth:`bind_cache` (they are reset)."""
        for caches, cache in ((self._read_caches, read_cache), (self._write_caches, write_cache)):
            for i, c in enumerate(caches):
                if c is cache:
                    del caches[i]
                    break
            cache[:] = EMPTY_CACHE

    # ---- lifetime --------------------------------------------------------------------------
    def close_all(self) -> None:
        """Remove and close every region still in the space."""
        for region in list(self._regions):
            self.remove(region)
            region.close()

    def __enter__(self) -> AddressSpace:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __repr__(self) -> str:
        return f"<AddressSpace {len(self._regions)} regions>"
