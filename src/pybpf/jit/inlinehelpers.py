"""Inline helpers: clock and cpu-id helpers as native code where the registry holds the runtime's.

A helper call costs a trip through ctypes into Python (:mod:`pybpf.jit.calls`, about a
microsecond); these helpers need nothing Python has, so when the program's registry maps
their ids to the runtime's own functions (:mod:`pybpf.runtime.basics`) the JIT emits them
inline, with the same results:

- ``bpf_ktime_get_ns`` (5), ``bpf_ktime_get_boot_ns`` (125), ``bpf_ktime_get_coarse_ns``
  (160): libc's ``clock_gettime`` on ``CLOCK_MONOTONIC``, ``CLOCK_BOOTTIME`` and
  ``CLOCK_MONOTONIC_COARSE`` (what the runtime reads through :mod:`time`), called through
  the module's :data:`CLOCK_GLOBAL` (libc's address, written after loading, so cached code
  does not depend on it); only where :mod:`time` has the clock and libc the function;
- ``bpf_get_smp_processor_id`` (8): the run's CPU (``Slot.CPU``).

A registry that replaces any of them (tests, tracing) keeps the Python call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import time
from typing import Any

from pybpf.jit.layout import Slot

try:  # the JIT is optional
    from llvmlite import ir
except ImportError:  # pragma: no cover - exercised only where llvmlite is missing
    ir = None  # type: ignore[assignment]

__all__ = ["CLOCK_GLOBAL", "inline_helper_ids", "clock_gettime_address", "lower_inline_helper"]

CLOCK_GLOBAL = "pybpf_clock_gettime"
KTIME, CPU_ID, KTIME_BOOT, KTIME_COARSE = 5, 8, 125, 160
_CLOCKS = {
    KTIME: "CLOCK_MONOTONIC",
    KTIME_BOOT: "CLOCK_BOOTTIME",
    KTIME_COARSE: "CLOCK_MONOTONIC_COARSE",
}
_address: int | None = None


def clock_gettime_address() -> int:
    """libc's ``clock_gettime``, or 0 where it cannot be found (clocks then stay in Python)."""
    global _address
    if _address is None:
        _address = 0
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _address = ctypes.cast(libc.clock_gettime, ctypes.c_void_p).value or 0
            except (OSError, AttributeError):
                _address = 0
    return _address


def _runtime_helpers() -> dict[int, Any]:
    from pybpf.runtime import basics

    return {
        KTIME: basics.ktime_get_ns,
        KTIME_BOOT: basics.ktime_get_boot_ns,
        KTIME_COARSE: basics.ktime_get_coarse_ns,
        CPU_ID: basics.get_smp_processor_id,
    }


def inline_helper_ids(registry: Any) -> frozenset[int]:
    """The helper ids the JIT may emit inline for ``registry`` (see the module docstring)."""
    out = set()
    clock = clock_gettime_address()
    for helper_id, fn in _runtime_helpers().items():
        if registry.get(helper_id) is not fn:
            continue
        if helper_id in _CLOCKS and (not clock or not hasattr(time, _CLOCKS[helper_id])):
            continue
        if helper_id == KTIME and time.get_clock_info("monotonic").implementation != (
            "clock_gettime(CLOCK_MONOTONIC)"
        ):
            continue  # time.monotonic_ns reads another clock here
        out.add(helper_id)
    return frozenset(out)


def lower_inline_helper(fl: Any, helper_id: int) -> None:
    """Emit helper ``helper_id`` (one of :func:`inline_helper_ids`) into the function being
    lowered (``fl``: a :class:`pybpf.jit.lower._FunctionLowering`); sets r0."""
    b = fl.b
    i64, i32 = ir.IntType(64), ir.IntType(32)
    if helper_id == CPU_ID:
        fl.set(0, b.and_(fl.load_slot(Slot.CPU), ir.Constant(i64, 0xFFFFFFFF)))
        return
    timespec = fl.timespec()
    clock_type = ir.FunctionType(i32, [i32, i64.as_pointer()])
    clock = b.inttoptr(b.load(fl.mod.clock_global), clock_type.as_pointer())
    clock_id = ir.Constant(i32, getattr(time, _CLOCKS[helper_id]))
    b.call(clock, [clock_id, b.gep(timespec, [ir.Constant(i32, 0), ir.Constant(i32, 0)])])
    sec = b.load(b.gep(timespec, [ir.Constant(i32, 0), ir.Constant(i32, 0)]))
    nsec = b.load(b.gep(timespec, [ir.Constant(i32, 0), ir.Constant(i32, 1)]))
    fl.set(0, b.add(b.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec))
