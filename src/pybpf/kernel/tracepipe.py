"""tracepipe: the kernel's trace_pipe, where kernel programs' bpf_printk lines arrive.

:class:`TracePipe` opens ``trace_pipe`` of a tracefs (the one given, else the mounted one:
:func:`pybpf.kernel.probes.tracefs_root`, which looks at ``/proc/self/mounts``, then
``/sys/kernel/tracing`` and ``/sys/kernel/debug/tracing``) without blocking, and hands
whole lines to a callback as they come (``poll``; ``select`` on the pipe). Reading
consumes: the kernel hands each line to one reader, as with ``cat trace_pipe``. Raises
:class:`~pybpf.errors.NotSupportedError` when no tracefs is mounted.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pybpf.errors import InputError, NotSupportedError
from pybpf.kernel.probes import tracefs_root

__all__ = ["TracePipe"]

_CHUNK = 65536


class TracePipe:
    """``<tracefs>/trace_pipe``, read line by line (``close()`` or ``with`` to release it)."""

    def __init__(self, tracefs: str | os.PathLike[str] | None = None) -> None:
        root = Path(tracefs) if tracefs is not None else tracefs_root()
        self.path = root / "trace_pipe"
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotSupportedError(f"{root} has no trace_pipe", feature="tracefs") from None
        except OSError as exc:
            raise InputError(
                f"cannot open {self.path}: {exc.strerror}", path=str(self.path)
            ) from None
        self._partial = b""
        self.closed = False

    def _drain(self) -> list[str]:
        while True:
            try:
                chunk = os.read(self._fd, _CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._partial += chunk
        *lines, self._partial = self._partial.split(b"\n")
        return [line.decode(errors="replace") for line in lines]

    def read(self) -> list[str]:
        """The whole lines waiting now (no trailing newline); never blocks."""
        if self.closed:
            raise InputError("the trace pipe is closed")
        return self._drain()

    def poll(self, callback: Callable[[str], Any], timeout: float | None = 0.0) -> int:
        """Hand waiting lines to ``callback``; when none wait, wait up to ``timeout``
        seconds (``None``: forever) for some. Returns how many lines."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            lines = self.read()
            for line in lines:
                callback(line)
            if lines:
                return len(lines)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return 0
            select.select([self._fd], [], [], left)

    def stream(self, timeout: float | None = None) -> Iterator[str]:
        """Lines as they come, until ``timeout`` seconds pass without one."""
        while True:
            lines: list[str] = []
            if not self.poll(lines.append, timeout):
                return
            yield from lines

    def close(self) -> None:
        """Close the pipe (idempotent)."""
        if not self.closed:
            self.closed = True
            os.close(self._fd)

    def __enter__(self) -> TracePipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
