"""Atomics: read-modify-write, compare-and-exchange and ordered loads/stores on native memory.

Every eBPF atomic, and every lock pybpf keeps in shared memory, goes through this module.
Two backends give the same results:

- ``"native"`` (the default where llvmlite is installed): hardware atomic instructions
  compiled once per process (:mod:`pybpf.memory.native`). They are atomic with respect to
  every other thread and process that maps the same memory, so maps shared between
  processes stay exact.
- ``"python"``: one process-wide Python lock (:data:`ATOMIC_LOCK`) serialises the
  operations: atomic with respect to other pybpf atomics of this process only, so pybpf is
  then single-process.

A misaligned access (the address not a multiple of the size) always takes the Python path,
since hardware atomics may fault on it; Linux's verifier refuses such programs anyway.

Values are unsigned little-endian integers of ``size`` bytes (1, 2, 4 or 8); operands are
truncated to the size. Results (the old value) are unsigned, i.e. zero-extended. The
``*_at`` functions take a raw address and trust the caller that it is live, writable
memory; the region functions check bounds first.
"""

from __future__ import annotations

import ctypes
import threading

from pybpf.errors import InputError, InternalError
from pybpf.memory.native import native_atomics
from pybpf.memory.region import Region

__all__ = [
    "atomic_rmw",
    "cmpxchg",
    "load_acquire",
    "store_release",
    "rmw_at",
    "cmpxchg_at",
    "load_at",
    "store_at",
    "backend",
    "set_backend",
    "native_available",
    "word_primitives",
    "RMW_OPS",
    "ATOMIC_LOCK",
]

ATOMIC_LOCK = threading.Lock()

_CTYPES = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 4: ctypes.c_uint32, 8: ctypes.c_uint64}

RMW_OPS = {
    "add": lambda old, v: old + v,
    "or": lambda old, v: old | v,
    "and": lambda old, v: old & v,
    "xor": lambda old, v: old ^ v,
    "xchg": lambda old, v: v,
}

_MASKS = {n: (1 << (8 * n)) - 1 for n in _CTYPES}


# ---- the Python backend (one process-wide lock) ------------------------------------------
def _py_cas(address: int, size: int, expected: int, new: int) -> int:
    cell = _CTYPES[size].from_address(address)
    mask = _MASKS[size]
    with ATOMIC_LOCK:
        old = cell.value
        if old == expected & mask:
            cell.value = new & mask
    return old


def _py_rmw(address: int, size: int, op: str, operand: int) -> int:
    cell = _CTYPES[size].from_address(address)
    mask = _MASKS[size]
    fn = RMW_OPS[op]
    with ATOMIC_LOCK:
        old = cell.value
        cell.value = fn(old, operand & mask) & mask
    return old


def _py_load(address: int, size: int) -> int:
    with ATOMIC_LOCK:
        return _CTYPES[size].from_address(address).value


def _py_store(address: int, size: int, value: int) -> None:
    cell = _CTYPES[size].from_address(address)
    with ATOMIC_LOCK:
        cell.value = value & _MASKS[size]


# ---- backend selection -------------------------------------------------------------------
_state: dict = {"name": None, "native": None, "word": None}


def native_available() -> bool:
    """True when the native primitives compile here (llvmlite installed and working)."""
    return native_atomics() is not None


def set_backend(name: str = "auto") -> str:
    """Choose ``"native"``, ``"python"`` or ``"auto"`` (native when available); returns it.

    Switch only while no other thread or process relies on the current one (tests).
    ``"native"`` without llvmlite raises :class:`~pybpf.errors.InputError`.
    """
    if name not in ("auto", "native", "python"):
        raise InputError(f"atomics backend must be 'auto', 'native' or 'python', not {name!r}")
    native = native_atomics() if name in ("auto", "native") else None
    if name == "native" and native is None:
        raise InputError("native atomics need llvmlite (pip install 'pybpf[jit]')")
    _state["native"] = native
    _state["name"] = "native" if native is not None else "python"
    if native is not None:
        _state["word"] = (native.cas[8], native.store[8])
    else:
        _state["word"] = (_py_cas64, _py_store64)
    return _state["name"]


def _py_cas64(address: int, expected: int, new: int) -> int:
    return _py_cas(address, 8, expected, new)


def _py_store64(address: int, value: int) -> int:
    _py_store(address, 8, value)
    return 0


def word_primitives() -> tuple:
    """``(cas, store)`` on aligned 64-bit words for the current backend, the fastest way to
    call them: ``cas(address, expected, new) -> old``, ``store(address, value)``
    (a store-release). Values must already fit in 64 bits."""
    if _state["name"] is None:
        set_backend("auto")
    return _state["word"]


def backend() -> str:
    """The backend in use: ``"native"`` or ``"python"`` (chosen on first use)."""
    if _state["name"] is None:
        set_backend("auto")
    return _state["name"]


def _native():
    if _state["name"] is None:
        set_backend("auto")
    return _state["native"]


# ---- address-based operations (trusted addresses) ----------------------------------------
def _size_ok(size: int) -> None:
    if size not in _CTYPES:
        raise InputError(f"atomic access size must be 1, 2, 4 or 8, not {size}")


def cmpxchg_at(address: int, size: int, expected: int, new: int) -> int:
    """Atomically store ``new`` at ``address`` if it holds ``expected``; returns the old value."""
    _size_ok(size)
    native = _native()
    if native is not None and address % size == 0:
        mask = _MASKS[size]
        return native.cas[size](address, expected & mask, new & mask)
    return _py_cas(address, size, expected, new)


def rmw_at(address: int, size: int, op: str, operand: int) -> int:
    """Atomically ``*address = *address <op> operand``; returns the old value."""
    _size_ok(size)
    if op not in RMW_OPS:
        raise InputError(f"unknown atomic operation {op!r}")
    native = _native()
    if native is not None and address % size == 0:
        return native.rmw[op][size](address, operand & _MASKS[size])
    return _py_rmw(address, size, op, operand)


def load_at(address: int, size: int) -> int:
    """A load-acquire of ``size`` bytes at ``address``; zero-extended."""
    _size_ok(size)
    native = _native()
    if native is not None and address % size == 0:
        return native.load[size](address)
    return _py_load(address, size)


def store_at(address: int, size: int, value: int) -> None:
    """A store-release of the low ``size`` bytes of ``value`` at ``address``."""
    _size_ok(size)
    native = _native()
    if native is not None and address % size == 0:
        native.store[size](address, value & _MASKS[size])
        return
    _py_store(address, size, value)


# ---- region-based operations (bounds-checked) --------------------------------------------
def _address(region: Region, offset: int, size: int) -> int:
    _size_ok(size)
    if region.closed:
        raise InternalError(f"region {region.name!r} is closed")
    if offset < 0 or offset + size > region.size:
        raise InputError(
            f"atomic access {offset}+{size} is outside region {region.name!r}", offset=offset
        )
    return region.address + offset


def atomic_rmw(region: Region, offset: int, size: int, op: str, operand: int) -> int:
    """Atomically ``mem = mem <op> operand`` (``op`` in :data:`RMW_OPS`); returns the old value."""
    return rmw_at(_address(region, offset, size), size, op, operand)


def cmpxchg(region: Region, offset: int, size: int, expected: int, new: int) -> int:
    """Atomically store ``new`` if memory equals ``expected``; returns the old value."""
    return cmpxchg_at(_address(region, offset, size), size, expected, new)


def load_acquire(region: Region, offset: int, size: int) -> int:
    """An ordered load (``smp_load_acquire``); zero-extended."""
    return load_at(_address(region, offset, size), size)


def store_release(region: Region, offset: int, size: int, value: int) -> None:
    """An ordered store (``smp_store_release``) of the low ``size`` bytes of ``value``."""
    store_at(_address(region, offset, size), size, value)
