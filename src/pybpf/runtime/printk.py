"""printk: ``bpf_trace_printk`` formatting (Linux's bprintf rules) and the emulated trace pipe.

:func:`format_bprintf` renders a format string the way the kernel's
``bpf_bprintf_prepare`` + ``bstr_printf`` do: conversions ``%d %i %u %x %X %c %s %p``
with optional ``l``/``ll`` length, ``[0 +-]`` flags and a width, plus ``%%``;
``%p`` accepts the ``K``, ``x``, ``i4``/``I4``, ``i6``/``I6``, ``ks``/``us`` suffixes.
Anything else (precision, ``%n``, non-printable characters, too many arguments) is refused
with :class:`BprintfError`, which the helper turns into ``-EINVAL`` and prints nothing.

Without a length modifier integers are 32-bit (``%d`` of ``0xffffffff`` prints ``-1``);
with ``l`` or ``ll`` they are 64-bit. ``%s`` reads a NUL-terminated string from program
memory (an unreadable pointer prints as an empty string, as the kernel's fault handling
does); ``%p`` prints the raw address as 16 hex digits (pybpf does not hash pointers).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence

from pybpf.errors import MemoryAccessError
from pybpf.memory import AddressSpace

__all__ = ["BprintfError", "format_bprintf", "TracePipe", "TRACE_PIPE", "MAX_STRING"]

MAX_STRING = 512  # bytes read for one %s (the kernel's per-call buffer is MAX_BPRINTF_BUF)
_M32, _M64 = (1 << 32) - 1, (1 << 64) - 1
_log = logging.getLogger("pybpf.trace")


class BprintfError(ValueError):
    """A format string the kernel would refuse (the helper returns ``-EINVAL``)."""


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _ip(memory: AddressSpace, address: int, size: int, pc: int | None) -> bytes:
    try:
        return memory.read(address, size, pc)
    except MemoryAccessError:
        return b""


def format_bprintf(
    fmt: bytes, args: Sequence[int], memory: AddressSpace, pc: int | None = None
) -> str:
    """Render ``fmt`` with ``args`` (u64 values); raises :class:`BprintfError` when refused."""
    out: list[str] = []
    used = 0
    i, n = 0, len(fmt)
    while i < n:
        ch = fmt[i]
        if (ch < 0x20 and chr(ch) not in "\t\n\v\f\r") or ch >= 0x7F:
            raise BprintfError(f"non-printable character {ch:#x} in format")
        if ch != 0x25:  # '%'
            out.append(chr(ch))
            i += 1
            continue
        i += 1
        if i < n and fmt[i] == 0x25:
            out.append("%")
            i += 1
            continue
        if used >= len(args):
            raise BprintfError("more conversions than arguments")
        start = i
        while i < n and chr(fmt[i]) in "0+- ":
            i += 1
        if i < n and 0x31 <= fmt[i] <= 0x39:
            while i < n and 0x30 <= fmt[i] <= 0x39:
                i += 1
        spec = "%" + fmt[start:i].decode()
        if i >= n:
            raise BprintfError("format ends inside a conversion")
        conv = chr(fmt[i])
        value = args[used] & _M64
        used += 1
        if conv == "p":
            i += 1
            suffix = chr(fmt[i]) if i < n else ""
            if suffix in ("i", "I") and i + 1 < n and chr(fmt[i + 1]) in "46":
                family = chr(fmt[i + 1])
                i += 2
                raw = _ip(memory, value, 4 if family == "4" else 16, pc)
                if family == "4":
                    form = "{:03d}" if suffix == "i" else "{:d}"
                    text = ".".join(form.format(b) for b in raw)
                else:
                    groups = [raw[j : j + 2].hex() for j in range(0, len(raw), 2)]
                    text = ("".join if suffix == "i" else ":".join)(groups)
                out.append((spec + "s") % text)
                continue
            if suffix in ("k", "u") and i + 1 < n and chr(fmt[i + 1]) == "s":
                i += 2
                out.append((spec + "s") % _string(memory, value, pc))
                continue
            if suffix in ("K", "x", "B"):
                i += 1
            out.append((spec + "s") % f"{value:016x}")
            continue
        if conv == "s":
            i += 1
            out.append((spec + "s") % _string(memory, value, pc))
            continue
        if conv == "c":
            i += 1
            out.append((spec + "s") % chr(value & 0xFF))
            continue
        bits = 32
        if conv == "l":
            bits = 64
            i += 1
            if i < n and chr(fmt[i]) == "l":
                i += 1
            conv = chr(fmt[i]) if i < n else ""
        if conv in ("d", "i"):
            out.append((spec + "d") % _signed(value, bits))
        elif conv == "u":
            out.append((spec + "d") % (value & ((1 << bits) - 1)))
        elif conv in ("x", "X"):
            out.append((spec + conv) % (value & ((1 << bits) - 1)))
        else:
            raise BprintfError(f"unsupported conversion %{conv}")
        i += 1
    return "".join(out)


def _string(memory: AddressSpace, address: int, pc: int | None) -> str:
    try:
        raw = memory.read_cstring(address, MAX_STRING, pc)
    except MemoryAccessError:
        return ""
    return raw.decode("latin-1")


class TracePipe:
    """The emulated ``/sys/kernel/debug/tracing/trace_pipe``: a bounded, thread-safe buffer.

    ``bpf_trace_printk`` output goes here unless a run supplies its own sink; each message
    is also logged at DEBUG level on the ``pybpf.trace`` logger.
    """

    def __init__(self, maxlen: int = 10_000) -> None:
        self._lines: deque[str] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def write(self, message: str) -> None:
        """Append one message (as the helper formatted it)."""
        with self._lock:
            self._lines.append(message)
        _log.debug("%s", message.rstrip("\n"))

    def read(self) -> list[str]:
        """Remove and return every buffered message, oldest first."""
        with self._lock:
            lines = list(self._lines)
            self._lines.clear()
        return lines

    def __len__(self) -> int:
        return len(self._lines)


TRACE_PIPE = TracePipe()
