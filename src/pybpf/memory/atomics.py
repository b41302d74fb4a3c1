"""Atomics: read-modify-write, compare-and-exchange and ordered loads/stores on native memory.

Every eBPF atomic goes through this module so the primitive can be swapped for native code
later (design.md: atomics compiled once with llvmlite). Today one process-wide Python lock
serialises them: atomic with respect to every other pybpf atomic in this process, not to
foreign native code.

Values are unsigned little-endian integers of ``size`` bytes (1, 2, 4 or 8); operands are
truncated to the size. Results (the old value) are unsigned, i.e. zero-extended.
"""

from __future__ import annotations

import struct
import threading

from pybpf.errors import InputError
from pybpf.memory.region import Region

__all__ = ["atomic_rmw", "cmpxchg", "load_acquire", "store_release", "RMW_OPS", "ATOMIC_LOCK"]

ATOMIC_LOCK = threading.Lock()

_STRUCTS = {
    1: struct.Struct("<B"),
    2: struct.Struct("<H"),
    4: struct.Struct("<I"),
    8: struct.Struct("<Q"),
}

RMW_OPS = {
    "add": lambda old, v: old + v,
    "or": lambda old, v: old | v,
    "and": lambda old, v: old & v,
    "xor": lambda old, v: old ^ v,
    "xchg": lambda old, v: v,
}


def _codec(region: Region, offset: int, size: int) -> struct.Struct:
    codec = _STRUCTS.get(size)
    if codec is None:
        raise InputError(f"atomic access size must be 1, 2, 4 or 8, not {size}")
    if offset < 0 or offset + size > region.size:
        raise InputError(
            f"atomic access {offset}+{size} is outside region {region.name!r}", offset=offset
        )
    return codec


def atomic_rmw(region: Region, offset: int, size: int, op: str, operand: int) -> int:
    """Atomically ``mem = mem <op> operand`` (``op`` in :data:`RMW_OPS`); returns the old value."""
    codec = _codec(region, offset, size)
    fn = RMW_OPS.get(op)
    if fn is None:
        raise InputError(f"unknown atomic operation {op!r}")
    mask = (1 << (8 * size)) - 1
    view = region.view
    with ATOMIC_LOCK:
        (old,) = codec.unpack_from(view, offset)
        codec.pack_into(view, offset, fn(old, operand & mask) & mask)
    return old


def cmpxchg(region: Region, offset: int, size: int, expected: int, new: int) -> int:
    """Atomically store ``new`` if memory equals ``expected``; returns the old value."""
    codec = _codec(region, offset, size)
    mask = (1 << (8 * size)) - 1
    view = region.view
    with ATOMIC_LOCK:
        (old,) = codec.unpack_from(view, offset)
        if old == expected & mask:
            codec.pack_into(view, offset, new & mask)
    return old


def load_acquire(region: Region, offset: int, size: int) -> int:
    """An ordered load (``smp_load_acquire``); zero-extended."""
    codec = _codec(region, offset, size)
    with ATOMIC_LOCK:
        return codec.unpack_from(region.view, offset)[0]


def store_release(region: Region, offset: int, size: int, value: int) -> None:
    """An ordered store (``smp_store_release``) of the low ``size`` bytes of ``value``."""
    codec = _codec(region, offset, size)
    with ATOMIC_LOCK:
        codec.pack_into(region.view, offset, value & ((1 << (8 * size)) - 1))
