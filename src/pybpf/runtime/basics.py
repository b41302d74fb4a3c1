"""Basic helpers: clocks, randomness, cpu and numa ids, and ``bpf_trace_printk``.

These are the runtime's first helper implementations (what the bpf_conformance suite and
simple programs call). Each follows the Linux helper of the same id:

- ``ktime_get_ns`` (5): ``CLOCK_MONOTONIC`` nanoseconds; ``ktime_get_boot_ns`` (125):
  ``CLOCK_BOOTTIME`` where the OS has it, else monotonic; ``ktime_get_coarse_ns`` (160):
  ``CLOCK_MONOTONIC_COARSE`` where available, else monotonic;
- ``get_prandom_u32`` (7): 32 random bits from ``ctx.random``;
- ``get_smp_processor_id`` (8): ``ctx.cpu``; ``get_numa_node_id`` (42): 0;
- ``trace_printk`` (6): formats ``fmt`` (``fmt_size`` bytes read from program memory,
  which must end with a NUL) with up to three arguments and sends the text to
  ``ctx.trace``; returns the number of characters written, or ``-EINVAL`` (printing
  nothing) for a format the kernel refuses.
"""

from __future__ import annotations

import errno
import time

from pybpf.runtime.context import ExecutionContext
from pybpf.runtime.printk import BprintfError, format_bprintf
from pybpf.runtime.registry import HelperRegistry

__all__ = ["BASIC_HELPERS", "register_basics"]

_EINVAL = -errno.EINVAL
_M32 = (1 << 32) - 1


def _clock(name: str):
    clock_id = getattr(time, name, None)
    if clock_id is not None and hasattr(time, "clock_gettime_ns"):
        try:
            time.clock_gettime_ns(clock_id)
        except OSError:
            return time.monotonic_ns
        return lambda: time.clock_gettime_ns(clock_id)
    return time.monotonic_ns


_monotonic = time.monotonic_ns
_boottime = _clock("CLOCK_BOOTTIME")
_coarse = _clock("CLOCK_MONOTONIC_COARSE")


def ktime_get_ns(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``u64 bpf_ktime_get_ns(void)``: monotonic time in nanoseconds."""
    return _monotonic()


def ktime_get_boot_ns(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``u64 bpf_ktime_get_boot_ns(void)``: time since boot, suspend included."""
    return _boottime()


def ktime_get_coarse_ns(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``u64 bpf_ktime_get_coarse_ns(void)``: coarse monotonic time."""
    return _coarse()


def get_prandom_u32(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``u32 bpf_get_prandom_u32(void)``: a pseudo-random 32-bit value."""
    return ctx.random.getrandbits(32)


def get_smp_processor_id(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``u32 bpf_get_smp_processor_id(void)``: the (emulated) cpu running the program."""
    return ctx.cpu


def get_numa_node_id(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_get_numa_node_id(void)``: always node 0."""
    return 0


def trace_printk(ctx: ExecutionContext, fmt: int, fmt_size: int, a1: int, a2: int, a3: int) -> int:
    """``long bpf_trace_printk(const char *fmt, u32 fmt_size, ...)``."""
    fmt_size &= _M32
    if fmt_size == 0:
        return _EINVAL
    raw = ctx.memory.read(fmt, fmt_size, ctx.pc)  # MemoryAccessError stops the run
    end = raw.find(b"\0")
    if end < 0:
        return _EINVAL  # the kernel requires fmt[fmt_size - 1] == 0
    try:
        text = format_bprintf(raw[:end], (a1, a2, a3), ctx.memory, ctx.pc)
    except BprintfError:
        return _EINVAL
    ctx.trace(text)
    return len(text)


BASIC_HELPERS = {
    "ktime_get_ns": ktime_get_ns,
    "trace_printk": trace_printk,
    "get_prandom_u32": get_prandom_u32,
    "get_smp_processor_id": get_smp_processor_id,
    "get_numa_node_id": get_numa_node_id,
    "ktime_get_boot_ns": ktime_get_boot_ns,
    "ktime_get_coarse_ns": ktime_get_coarse_ns,
}


def register_basics(registry: HelperRegistry) -> HelperRegistry:
    """Bind every basic helper into ``registry``; returns it."""
    for name, fn in BASIC_HELPERS.items():
        registry.register(name, fn)
    return registry
