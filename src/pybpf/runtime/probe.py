"""Probe helpers: ``bpf_probe_read*`` checked copies from any readable region of the run.

Linux's probe reads copy from arbitrary (kernel or user) addresses without faulting; in
pybpf the readable memory is the run's address space, so kernel, user and the old compat
variants behave alike (``kernel/trace/bpf_trace.c``):

- ``probe_read`` (4), ``probe_read_user`` (112), ``probe_read_kernel`` (113):
  ``(dst, size, unsafe_ptr)``: copy ``size`` bytes; 0, or ``-EFAULT`` when the source range
  is not readable, with ``dst`` zero-filled (``size`` bytes) as Linux does;
- ``probe_read_str`` (45), ``probe_read_user_str`` (114), ``probe_read_kernel_str`` (115):
  copy a NUL-terminated string of at most ``size - 1`` bytes plus a NUL; returns the bytes
  written including the NUL (``size`` when the string was truncated), 0 when ``size`` is 0,
  or ``-EFAULT`` (``dst`` zero-filled) when the string leaves readable memory before its
  NUL or before ``size`` bytes. Bytes of ``dst`` past the NUL are left as they were.

The destination is the program's memory (checked for writing: an invalid one stops the run
with :class:`~pybpf.errors.MemoryAccessError`, as Linux's verifier would have refused it).
"""

from __future__ import annotations

import errno

from pybpf.errors import MemoryAccessError
from pybpf.runtime.context import ExecutionContext
from pybpf.runtime.registry import HelperRegistry

__all__ = [
    "PROBE_HELPERS",
    "register_probe",
    "probe_read",
    "probe_read_str",
]

_M32 = (1 << 32) - 1
_EFAULT = -errno.EFAULT


def probe_read(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_probe_read*(void *dst, u32 size, const void *unsafe_ptr)``."""
    size = r2 & _M32
    if size == 0:
        return 0
    ctx.memory.resolve(r1, size, "write", ctx.pc)
    try:
        data = ctx.memory.read(r3, size, ctx.pc)
    except MemoryAccessError:
        ctx.memory.write(r1, bytes(size), ctx.pc)
        return _EFAULT
    ctx.memory.write(r1, data, ctx.pc)
    return 0


def probe_read_str(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_probe_read*_str(void *dst, u32 size, const void *unsafe_ptr)``."""
    size = r2 & _M32
    if size == 0:
        return 0
    ctx.memory.resolve(r1, size, "write", ctx.pc)
    region = ctx.memory.find(r3)
    window = b""
    if region is not None and region.readable:
        offset = r3 - region.address
        window = bytes(region.view[offset : offset + size])
    end = window.find(b"\0")
    if end >= 0:
        ctx.memory.write(r1, window[: end + 1], ctx.pc)
        return end + 1
    if len(window) == size:
        ctx.memory.write(r1, window[: size - 1] + b"\0", ctx.pc)
        return size
    ctx.memory.write(r1, bytes(size), ctx.pc)
    return _EFAULT


PROBE_HELPERS = {
    "probe_read": probe_read,
    "probe_read_str": probe_read_str,
    "probe_read_user": probe_read,
    "probe_read_kernel": probe_read,
    "probe_read_user_str": probe_read_str,
    "probe_read_kernel_str": probe_read_str,
}


def register_probe(registry: HelperRegistry) -> HelperRegistry:
    """Bind the probe-read helpers into ``registry``; returns it."""
    for name, fn in PROBE_HELPERS.items():
        registry.register(name, fn)
    return registry
