"""Events: ring buffer, perf buffer and trace output consumers for loader programs, libbpf's way.

- :class:`RingBuffer` is libbpf's ``ring_buffer__new/add/poll/consume``: one or more
  ``BPF_MAP_TYPE_RINGBUF`` maps, each with a ``callback(data: bytes)``; a negative int
  returned by a callback stops the walk and is returned (libbpf's rule).
- :class:`PerfBuffer` is ``perf_buffer__new/poll/consume`` on a
  ``BPF_MAP_TYPE_PERF_EVENT_ARRAY``: every CPU's buffer opened, ``callback(cpu, data)``
  per sample and ``lost(cpu, count)`` for dropped ones; on a kernel array one perf event
  per online CPU, as libbpf opens them (:mod:`pybpf.kernel.perfbuf`).
- :class:`TraceLog` is ``bpf_printk`` output (``bpftool prog tracelog``): this process's
  trace pipe as lines, a callback or an iterator, and the state directory's trace log
  (``trace.log``, what ``pybpf prog tracelog`` prints in another process); ``TraceLog.kernel()``
  is the kernel's ``trace_pipe`` for kernel-backend programs.

Timeouts are in seconds (``None``: wait forever; 0: do not wait). These wrap the map
families' own consumers (:meth:`pybpf.maps.RingBuf.consume`,
:meth:`pybpf.maps.PerfEventArray.consume`); :class:`RingBuffer` also reads a kernel
ring buffer (``Object.load(backend="kernel")``) through its mmap'd pages, as libbpf does.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

from pybpf.errors import InputError
from pybpf.maps import PerfEventArray, RingBuf
from pybpf.maptypes import MapType
from pybpf.runtime import TRACE_PIPE
from pybpf.state import StateDirectory

__all__ = ["RingBuffer", "PerfBuffer", "TraceLog"]


def _wait(step: Callable[[], int], timeout: float | None) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.0001
    while True:
        n = step()
        if n:
            return n
        if deadline is not None and time.monotonic() >= deadline:
            return 0
        pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
        time.sleep(pause)
        delay = min(delay * 2, 0.01)


_BUSY, _DISCARD, _RECORD_HEADER = 1 << 31, 1 << 30, 8


class _KernelRing:
    """A kernel RINGBUF map's consumer page (read-write) and data pages (read-only)."""

    def __init__(self, kmap: Any) -> None:
        fd = kmap.fd.fileno()
        self.size = kmap.spec.max_entries
        self.page = mmap.PAGESIZE
        self._cons = mmap.mmap(fd, self.page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._data = mmap.mmap(
            fd, self.page + 2 * self.size, mmap.MAP_SHARED, mmap.PROT_READ, offset=self.page
        )
        self.closed = False

    def consume(self, callback: Callable[[bytes], Any]) -> int:
        (cons,) = struct.unpack_from("<Q", self._cons, 0)
        count = 0
        while True:
            (prod,) = struct.unpack_from("<Q", self._data, 0)
            if cons >= prod:
                return count
            at = self.page + (cons & (self.size - 1))
            (length,) = struct.unpack_from("<I", self._data, at)
            if length & _BUSY:
                return count
            size = length & ~_DISCARD
            cons += (size + _RECORD_HEADER + 7) & ~7
            if not length & _DISCARD:
                data = bytes(self._data[at + _RECORD_HEADER : at + _RECORD_HEADER + size])
                r = callback(data)
                struct.pack_into("<Q", self._cons, 0, cons)
                if isinstance(r, int) and r < 0:
                    return r
                count += 1
            else:
                struct.pack_into("<Q", self._cons, 0, cons)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._cons.close()
            self._data.close()


def _ring_of(map: Any) -> Any:
    if isinstance(map, RingBuf):
        return map
    spec = getattr(map, "spec", None)
    if spec is not None and getattr(spec.type, "type_name", "") == "ringbuf" and hasattr(map, "fd"):
        return _KernelRing(map)
    raise InputError(f"{getattr(map, 'name', map)!r} is not a ring buffer map")


class RingBuffer:
    """libbpf's ``struct ring_buffer``: ring buffer maps and their sample callbacks.

    >>> rb = RingBuffer(obj.maps["events"], lambda data: print(data.hex()))  # doctest: +SKIP
    >>> rb.poll(timeout=0.1)                                                 # doctest: +SKIP
    """

    def __init__(self, map: Any = None, callback: Callable[[bytes], Any] | None = None) -> None:
        self._rings: list[tuple[Any, Callable[[bytes], Any]]] = []
        self.closed = False
        if map is not None:
            self.add(map, callback)

    def add(self, map: Any, callback: Callable[[bytes], Any] | None) -> None:
        """Add a ring buffer map, portable or kernel (``ring_buffer__add``);
        :class:`InputError` for another map type or a missing callback."""
        if not callable(callback):
            raise InputError("a ring buffer needs a callback(data)")
        self._rings.append((_ring_of(map), callback))

    def consume(self) -> int:
        """Hand every available record to its callback now; returns how many (or a
        callback's negative return value)."""
        if self.closed:
            raise InputError("the ring buffer manager is closed")
        total = 0
        for ring, callback in self._rings:
            n = ring.consume(callback)
            if n < 0:
                return n
            total += n
        return total

    def poll(self, timeout: float | None = 0.0) -> int:
        """Wait up to ``timeout`` seconds for records, then consume them; returns how many
        (0 on timeout)."""
        return _wait(self.consume, timeout)

    def close(self) -> None:
        """Forget the maps (they stay open: they belong to their object; a kernel ring's
        pages are unmapped)."""
        self.closed = True
        for ring, _callback in self._rings:
            if isinstance(ring, _KernelRing):
                ring.close()
        self._rings = []

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kernel_perf_array(map: Any) -> bool:
    kind = getattr(getattr(map, "spec", None), "type", None)
    return kind is not None and int(kind) == MapType.PERF_EVENT_ARRAY and hasattr(map, "fd")


class PerfBuffer:
    """libbpf's ``struct perf_buffer`` over a perf event array (every CPU's buffer).

    A portable :class:`~pybpf.maps.PerfEventArray` opens its slots' rings; a kernel one
    (``Object.load(backend="kernel")``) gets a ``PERF_COUNT_SW_BPF_OUTPUT`` perf event per
    online CPU with a ring of ``pages`` data pages (a power of two, libbpf's ``page_cnt``),
    stored in the map at the CPU's index (:class:`pybpf.kernel.perfbuf.KernelPerfBuffer`).

    >>> pb = PerfBuffer(obj.maps["events"], lambda cpu, data: print(cpu, data))  # doctest: +SKIP
    >>> pb.poll(timeout=0.1)                                                     # doctest: +SKIP
    """

    def __init__(
        self,
        map: Any,
        callback: Callable[[int, bytes], Any],
        lost: Callable[[int, int], Any] | None = None,
        *,
        pages: int = 8,
    ) -> None:
        if not isinstance(map, PerfEventArray) and not _kernel_perf_array(map):
            raise InputError(f"{getattr(map, 'name', map)!r} is not a perf event array")
        if not callable(callback):
            raise InputError("a perf buffer needs a callback(cpu, data)")
        self.map = map
        self._callback = callback
        self._lost = lost
        self.closed = False
        self._kernel: Any = None
        if isinstance(map, PerfEventArray):
            map.open_buffer()
        else:
            from pybpf.kernel.perfbuf import KernelPerfBuffer

            self._kernel = KernelPerfBuffer(map, pages=pages)

    def consume(self) -> int:
        """Hand every available sample to the callback now (and lost counts to ``lost``);
        returns how many records."""
        if self.closed:
            raise InputError("the perf buffer is closed")
        if self._kernel is not None:
            return self._kernel.consume(self._callback, self._lost)
        return self.map.consume(self._callback, self._lost)

    def poll(self, timeout: float | None = 0.0) -> int:
        """Wait up to ``timeout`` seconds for samples, then consume them (a kernel perf
        array waits with epoll on its events' fds)."""
        if self._kernel is None:
            return _wait(self.consume, timeout)
        if self.closed:
            raise InputError("the perf buffer is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            n = self._kernel.poll(self._callback, self._lost, left)
            if n or (deadline is not None and time.monotonic() >= deadline):
                return n

    def close(self) -> None:
        """Close the per-CPU buffers (``perf_buffer__free``; a kernel array's slots are
        emptied and its perf events closed)."""
        if not self.closed:
            self.closed = True
            if self._kernel is not None:
                self._kernel.close()
            elif not self.map.closed:
                self.map.close_buffer()

    def __enter__(self) -> PerfBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TraceLog:
    """``bpf_printk`` output: this process's trace pipe and the state directory's log."""

    def __init__(self, state: StateDirectory | None = None) -> None:
        self.state = state or StateDirectory()

    @property
    def path(self) -> Any:
        """The state directory's trace log file."""
        return self.state.root / "trace.log"

    # ---- this process ------------------------------------------------------------------------
    def read(self) -> list[str]:
        """Remove and return this process's buffered messages (no trailing newline)."""
        return [line.rstrip("\n") for line in TRACE_PIPE.read()]

    def poll(self, callback: Callable[[str], Any], timeout: float | None = 0.0) -> int:
        """Wait up to ``timeout`` seconds for messages; hand each to ``callback``."""

        def step() -> int:
            lines = self.read()
            for line in lines:
                callback(line)
            return len(lines)

        return _wait(step, timeout)

    def stream(self, timeout: float | None = None) -> Iterator[str]:
        """Messages as they come, until ``timeout`` seconds pass without one."""
        while True:
            lines: list[str] = []
            if not self.poll(lines.append, timeout):
                return
            yield from lines

    # ---- the kernel ---------------------------------------------------------------------------
    @staticmethod
    def kernel(tracefs: str | os.PathLike[str] | None = None) -> Any:
        """The kernel's ``trace_pipe`` (``bpf_printk`` of kernel-backend programs): a
        :class:`pybpf.kernel.tracepipe.TracePipe` with ``read``/``poll``/``stream``/
        ``close``. Raises :class:`~pybpf.errors.NotSupportedError` when no tracefs is
        mounted (``mount -t tracefs nodev /sys/kernel/tracing``)."""
        from pybpf.kernel.tracepipe import TracePipe

        return TracePipe(tracefs)

    # ---- the state directory -----------------------------------------------------------------
    def save(self) -> int:
        """Move this process's messages to the state directory's log (for ``pybpf prog
        tracelog``); returns how many."""
        lines = self.read()
        if lines:
            self.state.ensure()
            pid = os.getpid()
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as out:
                out.write("".join(f"pybpf-{pid} bpf_trace_printk: {line}\n" for line in lines))
        return len(lines)

    def saved(self, *, clear: bool = False) -> list[str]:
        """The lines of the state directory's log (removed with ``clear``)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        if clear:
            self.path.unlink(missing_ok=True)
        return text.splitlines()

    def follow(self, callback: Callable[[str], Any], timeout: float | None = None) -> int:
        """Hand lines appended to the state directory's log to ``callback`` as they come,
        until ``timeout`` seconds pass without one; returns how many."""
        try:
            position = self.path.stat().st_size
        except FileNotFoundError:
            position = 0
        total = 0

        def step() -> int:
            nonlocal position
            try:
                with open(self.path) as f:
                    f.seek(position)
                    text = f.read()
                    if not text.endswith("\n"):
                        text = text[: text.rfind("\n") + 1]
                    position += len(text.encode())
            except FileNotFoundError:
                return 0
            lines = text.splitlines()
            for line in lines:
                callback(line)
            return len(lines)

        while True:
            n = _wait(step, timeout)
            if not n:
                return total
            total += n
