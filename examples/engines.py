"""Engines: a sample object loaded in one engine, and its maps read as bytes on any backend.

``load(path, "interpreter" | "jit" | "kernel")`` loads an object on the portable backend
with that engine, or into Linux (``"kernel"``). The portable maps are dict-like with codecs,
the kernel's take bytes; :func:`get`, :func:`put`, :func:`delete` and :func:`items` speak
bytes to both, so a sample script and its kernel comparison read the same way.
:func:`set_program` fills a PROG_ARRAY slot with a loaded program on either backend.
:class:`KernelRingReader` consumes a kernel RINGBUF the way libbpf does (the consumer page
mapped read-write, the producer page and the data twice over read-only), since the kernel
backend has no consumer of its own; :func:`ring_consume` reads either backend's ring.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable
from typing import Any

import pybpf

__all__ = [
    "ENGINES",
    "KernelRingReader",
    "delete",
    "get",
    "items",
    "load",
    "put",
    "ring_consume",
    "set_program",
    "u32",
    "u64",
]

ENGINES = ("interpreter", "jit", "kernel")


def load(path: str | os.PathLike[str], engine: str) -> Any:
    """The object at ``path`` loaded in ``engine`` (a :data:`ENGINES` name)."""
    if engine not in ENGINES:
        raise SystemExit(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    options = {"backend": "kernel"} if engine == "kernel" else {"engine": engine}
    return pybpf.Object.open(path).load(**options)


def _portable(m: Any) -> bool:
    return hasattr(m, "lookup_raw")


def get(m: Any, key: bytes) -> bytes | None:
    """The value bytes of ``key``, or ``None``."""
    return m.lookup_raw(key) if _portable(m) else m.lookup(key)


def put(m: Any, key: bytes, value: bytes) -> None:
    """Set ``key`` to ``value`` (both bytes)."""
    if _portable(m):
        m.update_raw(key, value)
    else:
        m.update(key, value)


def delete(m: Any, key: bytes) -> None:
    """Delete ``key``."""
    if _portable(m):
        m.delete_raw(key)
    else:
        m.delete(key)


def items(m: Any) -> dict[bytes, bytes]:
    """Every ``key: value`` of the map, as bytes."""
    keys = m.keys_raw() if _portable(m) else list(m.keys())
    out = {}
    for key in keys:
        value = get(m, key)
        if value is not None:
            out[bytes(key)] = bytes(value)
    return out


def u32(value: int) -> bytes:
    """``value`` as a little-endian u32 (map keys and values)."""
    return struct.pack("<I", value)


def u64(value: int) -> bytes:
    """``value`` as a little-endian u64."""
    return struct.pack("<Q", value)


def set_program(m: Any, index: int, program: Any) -> None:
    """``m[index] = program`` for a PROG_ARRAY ``m`` (the kernel's takes the program's fd)."""
    if _portable(m):
        m[index] = program
    else:
        m.update(u32(index), u32(program.kernel.fd.fileno()))


_BUSY, _DISCARD, _HEADER = 1 << 31, 1 << 30, 8


class KernelRingReader:
    """libbpf's ring buffer consumer over a kernel RINGBUF map (``close()`` unmaps)."""

    def __init__(self, m: Any) -> None:
        fd, self.size = m.fd.fileno(), m.spec.max_entries
        page = mmap.PAGESIZE
        self._cons = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._prod = mmap.mmap(
            fd, page + 2 * self.size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
        )
        self._page = page

    def consume(self, callback: Callable[[bytes], Any]) -> int:
        """Hand each committed record to ``callback(data)`` in order; returns how many."""
        (cons,) = struct.unpack_from("<Q", self._cons, 0)
        (prod,) = struct.unpack_from("<Q", self._prod, 0)
        count = 0
        while cons < prod:
            at = self._page + (cons & (self.size - 1))
            (length,) = struct.unpack_from("<I", self._prod, at)
            if length & _BUSY:
                break
            size = length & ~_DISCARD
            if not length & _DISCARD:
                callback(bytes(self._prod[at + _HEADER : at + _HEADER + size]))
                count += 1
            cons += (size + _HEADER + 7) & ~7
            struct.pack_into("<Q", self._cons, 0, cons)
        return count

    def close(self) -> None:
        """Unmap the pages."""
        self._cons.close()
        self._prod.close()


def ring_consume(m: Any, callback: Callable[[bytes], Any]) -> int:
    """Consume every committed record of the RINGBUF ``m`` (either backend)."""
    if _portable(m):
        return m.consume(callback)
    reader = KernelRingReader(m)
    try:
        return reader.consume(callback)
    finally:
        reader.close()
