"""String helpers: ``strncmp``, ``strtol``/``strtoul``, ``snprintf`` and ``trace_vprintk``.

Semantics of ``kernel/bpf/helpers.c`` and ``kernel/trace/bpf_trace.c``:

- ``strncmp`` (182): ``strncmp(s1, s1_sz, s2)``: the kernel's ``strncmp`` over at most
  ``s1_sz`` bytes: -1, 0 or 1 (bytes compared unsigned). ``s2`` must be NUL-terminated.
- ``strtol`` (105) / ``strtoul`` (106): ``(buf, buf_len, flags, res)``. ``flags`` is the
  base (0 = autodetect ``0x``/``0``/decimal, 8, 10 or 16) and nothing else. Leading
  whitespace and one ``-`` are skipped, at most 63 further characters are parsed. Returns
  the number of characters consumed (whitespace and sign included) and stores the value at
  ``res``; ``-EINVAL`` (no digits, bad base or flags, a negative ``strtoul``) or
  ``-ERANGE`` (overflow), with ``*res`` set to 0.
- ``snprintf`` (165): ``(str, str_size, fmt, data, data_len)``: ``data`` holds
  ``data_len / 8`` u64 arguments (``data_len`` a multiple of 8, at most 96); the output is
  truncated to ``str_size`` bytes including a NUL (nothing is written when ``str_size`` is
  0); returns the untruncated length plus one, or ``-EINVAL`` for a format the kernel
  refuses (:func:`pybpf.runtime.printk.format_bprintf`).
- ``trace_vprintk`` (177): ``(fmt, fmt_size, data, data_len)``: ``bpf_trace_printk`` with
  arguments from an array (same rules as ``snprintf``); the message (at most 1023 bytes) goes
  to ``ctx.trace``; returns the untruncated length.
"""

from __future__ import annotations

import errno
import struct

from pybpf.runtime.context import ExecutionContext
from pybpf.runtime.printk import BprintfError, format_bprintf
from pybpf.runtime.registry import HelperRegistry

__all__ = [
    "STRING_HELPERS",
    "register_strings",
    "parse_strtox",
    "strncmp",
    "strtol",
    "strtoul",
    "snprintf",
    "trace_vprintk",
]

_M32, _M64 = (1 << 32) - 1, (1 << 64) - 1
_EINVAL, _ERANGE = -errno.EINVAL, -errno.ERANGE
BASE_MASK = 0x1F
MAX_BPRINTF_VARARGS = 12
MAX_BPRINTF_BUF = 1024
_SPACE = frozenset(b" \t\n\v\f\r\xa0")  # the kernel's isspace (latin-1 NBSP included)


# ---- strncmp ------------------------------------------------------------------------------
def strncmp(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_strncmp(const char *s1, u32 s1_sz, const char *s2)``."""
    size = r2 & _M32
    if size == 0:
        return 0
    s1 = ctx.memory.read(r1, size, ctx.pc)
    s2 = ctx.memory.read_cstring(r3, size, ctx.pc)
    for i in range(size):
        c1 = s1[i]
        c2 = s2[i] if i < len(s2) else 0
        if c1 != c2:
            return -1 if c1 < c2 else 1
        if not c1:
            break
    return 0


# ---- strtol / strtoul ---------------------------------------------------------------------
def parse_strtox(buf: bytes, flags: int) -> tuple[int, int, bool]:
    """The kernel's ``__bpf_strtoull``: ``(consumed or -errno, magnitude, negative)``."""
    base = flags & BASE_MASK
    if not buf or base not in (0, 8, 10, 16) or flags & ~BASE_MASK:
        return _EINVAL, 0, False
    i, n = 0, len(buf)
    while i < n and buf[i] in _SPACE:
        i += 1
    negative = i < n and buf[i] == 0x2D  # '-'
    if negative:
        i += 1
    consumed = i
    if consumed == n:
        return _EINVAL, 0, negative
    s = buf[i : i + 63] + b"\0\0\0"
    j = 0
    if base == 0:
        if s[0] == 0x30:
            hexdigit = s[2] in b"0123456789abcdefABCDEF"
            base = 16 if (s[1] | 0x20) == ord("x") and hexdigit else 8
        else:
            base = 10
    if base == 16 and s[0] == 0x30 and (s[1] | 0x20) == ord("x"):
        j = 2
    res, digits, overflow = 0, 0, False
    limit = min(len(s) - 3, 63)
    while j < limit:
        c = s[j]
        if 0x30 <= c <= 0x39:
            val = c - 0x30
        elif 0x61 <= (c | 0x20) <= 0x66:
            val = (c | 0x20) - 0x61 + 10
        else:
            break
        if val >= base:
            break
        res = res * base + val
        if res > _M64:
            overflow = True
            res &= _M64
        digits += 1
        j += 1
    if overflow:
        return _ERANGE, 0, negative
    if digits == 0:
        return _EINVAL, 0, negative
    return consumed + j, res, negative


def _strtox(ctx: ExecutionContext, buf: int, size: int, flags: int, out: int, signed: bool) -> int:
    size &= _M64
    ctx.memory.resolve(out, 8, "write", ctx.pc)
    ctx.memory.write(out, bytes(8), ctx.pc)
    raw = ctx.memory.read(buf, size, ctx.pc) if size else b""
    consumed, value, negative = parse_strtox(raw, flags)
    if consumed < 0:
        return consumed
    if signed:
        if negative:
            if value > 1 << 63:
                return _ERANGE
            value = -value & _M64
        elif value >> 63:
            return _ERANGE
    elif negative:
        return _EINVAL
    ctx.memory.write(out, struct.pack("<Q", value), ctx.pc)
    return consumed


def strtol(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_strtol(const char *buf, size_t buf_len, u64 flags, long *res)``."""
    return _strtox(ctx, r1, r2, r3, r4, signed=True)


def strtoul(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_strtoul(const char *buf, size_t buf_len, u64 flags, unsigned long *res)``."""
    return _strtox(ctx, r1, r2, r3, r4, signed=False)


# ---- snprintf / trace_vprintk -------------------------------------------------------------
def _varargs(ctx: ExecutionContext, data: int, data_len: int) -> list[int] | None:
    if data_len % 8 or data_len > MAX_BPRINTF_VARARGS * 8 or (data_len and not data):
        return None
    raw = ctx.memory.read(data, data_len, ctx.pc) if data_len else b""
    return list(struct.unpack(f"<{data_len // 8}Q", raw))


def snprintf(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_snprintf(char *str, u32 str_size, const char *fmt, u64 *data, u32 data_len)``."""
    size = r2 & _M32
    args = _varargs(ctx, r4, r5 & _M32)
    if args is None:
        return _EINVAL
    fmt = ctx.memory.read_cstring(r3, 1 << 16, ctx.pc)
    try:
        text = format_bprintf(fmt, args, ctx.memory, ctx.pc).encode("latin-1")
    except BprintfError:
        return _EINVAL
    if size:
        ctx.memory.write(r1, text[: size - 1] + b"\0", ctx.pc)
    return len(text) + 1


def trace_vprintk(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_trace_vprintk(const char *fmt, u32 fmt_size, const void *data, u32 data_len)``."""
    fmt_size = r2 & _M32
    args = _varargs(ctx, r3, r4 & _M32)
    if args is None or fmt_size == 0:
        return _EINVAL
    raw = ctx.memory.read(r1, fmt_size, ctx.pc)
    end = raw.find(b"\0")
    if end < 0:
        return _EINVAL
    try:
        text = format_bprintf(raw[:end], args, ctx.memory, ctx.pc)
    except BprintfError:
        return _EINVAL
    ctx.trace(text[: MAX_BPRINTF_BUF - 1])
    return len(text)


STRING_HELPERS = {
    "strtol": strtol,
    "strtoul": strtoul,
    "snprintf": snprintf,
    "trace_vprintk": trace_vprintk,
    "strncmp": strncmp,
}


def register_strings(registry: HelperRegistry) -> HelperRegistry:
    """Bind the string helpers into ``registry``; returns it."""
    for name, fn in STRING_HELPERS.items():
        registry.register(name, fn)
    return registry
