"""Engines: a sample object loaded in one engine, and its maps read as bytes on any backend.

``load(path, "interpreter" | "jit" | "kernel")`` loads an object on the portable backend
with that engine, or into Linux (``"kernel"``). The portable maps are dict-like with codecs,
the kernel's take bytes; :func:`get`, :func:`put`, :func:`delete` and :func:`items` speak
bytes to both, so a sample script and its kernel comparison read the same way.
:func:`set_program` fills a PROG_ARRAY slot with a loaded program on either backend.
:func:`ring_consume` reads either backend's RINGBUF with the library's
:class:`pybpf.RingBuffer` (a kernel ring's pages mapped as libbpf maps them).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

import pybpf

__all__ = [
    "ENGINES",
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


def ring_consume(m: Any, callback: Callable[[bytes], Any]) -> int:
    """Consume every committed record of the RINGBUF ``m`` (either backend) through
    :class:`pybpf.RingBuffer`, which maps a kernel ring's pages as libbpf does."""
    with pybpf.RingBuffer(m, callback) as ring:
        return ring.consume()
