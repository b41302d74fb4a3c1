"""perfbuf: a kernel perf event array's per-CPU perf rings, read as libbpf's perf_buffer reads them.

:class:`KernelPerfBuffer` is libbpf's ``perf_buffer__new`` on a kernel
``BPF_MAP_TYPE_PERF_EVENT_ARRAY``: for every online CPU (below the map's ``max_entries``) a
``PERF_TYPE_SOFTWARE``/``PERF_COUNT_SW_BPF_OUTPUT`` event is opened on that CPU
(``sample_type = PERF_SAMPLE_RAW``, ``sample_period = wakeup_events = 1``), its ring
mmap'd (one control page, ``struct perf_event_mmap_page``, then ``2**n`` data pages),
enabled, and its fd stored in the map at the CPU's index, so ``bpf_perf_event_output(...,
BPF_F_CURRENT_CPU, ...)`` writes there. :meth:`~KernelPerfBuffer.consume` walks each ring
from ``data_tail`` to ``data_head``: ``PERF_RECORD_SAMPLE`` records go to
``callback(cpu, data)`` (the raw data as the kernel sized it: ``round_up(n + 4, 8) - 4``
bytes, libbpf's rule), ``PERF_RECORD_LOST`` records to ``lost(cpu, count)``; records that
wrap around the ring's end are joined. :meth:`~KernelPerfBuffer.poll` waits on the events'
fds with epoll (readable after each wakeup). Closing removes the map slots, unmaps and
closes the events (``perf_buffer__free``).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pybpf.errors import InputError, SyscallError
from pybpf.maptypes import MapType
from pybpf.syscall import Fd, map_delete, map_update
from pybpf.syscall.perf import (
    PERF_COUNT_SW_BPF_OUTPUT,
    PERF_SAMPLE_RAW,
    PERF_TYPE_SOFTWARE,
    PerfEventAttr,
    perf_enable,
    perf_event_open,
)

__all__ = ["KernelPerfBuffer", "PERF_RECORD_SAMPLE", "PERF_RECORD_LOST", "online_cpus"]

PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
_HEAD, _TAIL, _DATA_OFFSET, _DATA_SIZE = 1024, 1032, 1040, 1048
_HEADER = struct.Struct("<IHH")
_ONLINE = Path("/sys/devices/system/cpu/online")

SampleCallback = Callable[[int, bytes], Any]
LostCallback = Callable[[int, int], Any]


def online_cpus() -> list[int]:
    """The online CPUs (``/sys/devices/system/cpu/online``; every CPU when unreadable)."""
    try:
        text = _ONLINE.read_text().strip()
    except OSError:
        return list(range(os.cpu_count() or 1))
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


class _CpuRing:
    """One CPU's perf event and its mmap'd ring."""

    def __init__(self, cpu: int, pages: int) -> None:
        self.cpu = cpu
        attr = PerfEventAttr(
            type=PERF_TYPE_SOFTWARE,
            config=PERF_COUNT_SW_BPF_OUTPUT,
            sample_type=PERF_SAMPLE_RAW,
            sample_period=1,
            wakeup_events=1,
        )
        self.fd: Fd = perf_event_open(attr, pid=-1, cpu=cpu)
        try:
            page = mmap.PAGESIZE
            self._mem = mmap.mmap(
                self.fd.fileno(),
                (1 + pages) * page,
                mmap.MAP_SHARED,
                mmap.PROT_READ | mmap.PROT_WRITE,
            )
            (offset,) = struct.unpack_from("<Q", self._mem, _DATA_OFFSET)
            (size,) = struct.unpack_from("<Q", self._mem, _DATA_SIZE)
            self.base = offset or page  # kernels before 4.1 leave these 0
            self.size = size or pages * page
            perf_enable(self.fd)
        except BaseException:
            with contextlib.suppress(Exception):
                self._mem.close()
            self.fd.close()
            raise

    def _read(self, position: int, length: int) -> bytes:
        at = position % self.size
        first = min(length, self.size - at)
        out = self._mem[self.base + at : self.base + at + first]
        if first < length:
            out += self._mem[self.base : self.base + length - first]
        return out

    def consume(self, callback: SampleCallback, lost: LostCallback | None) -> int:
        (head,) = struct.unpack_from("<Q", self._mem, _HEAD)
        (tail,) = struct.unpack_from("<Q", self._mem, _TAIL)
        count = 0
        while tail < head:
            kind, _misc, size = _HEADER.unpack(self._read(tail, _HEADER.size))
            if size < _HEADER.size:  # never written by a sane kernel: drop the rest
                tail = head
                break
            record = self._read(tail, size)
            tail += size
            struct.pack_into("<Q", self._mem, _TAIL, tail)
            if kind == PERF_RECORD_SAMPLE:
                (raw,) = struct.unpack_from("<I", record, 8)
                callback(self.cpu, record[12 : 12 + raw])
                count += 1
            elif kind == PERF_RECORD_LOST:
                _id, dropped = struct.unpack_from("<QQ", record, 8)
                if lost is not None:
                    lost(self.cpu, dropped)
                count += 1
        struct.pack_into("<Q", self._mem, _TAIL, tail)
        return count

    def close(self) -> None:
        with contextlib.suppress(BufferError):
            self._mem.close()
        self.fd.close()


class KernelPerfBuffer:
    """Per-CPU perf rings of a kernel perf event array (see the module docstring).

    ``kmap`` is a :class:`pybpf.kernel.KernelMap` (or anything with ``fd`` and ``spec``) of
    type ``PERF_EVENT_ARRAY``; ``pages`` is each ring's data page count (a power of two,
    libbpf's ``page_cnt``). Raises :class:`InputError` for another map or a bad page count,
    :class:`SyscallError` when the kernel refuses an event, mmap or map update.
    """

    def __init__(self, kmap: Any, pages: int = 8, cpus: list[int] | None = None) -> None:
        spec = getattr(kmap, "spec", None)
        if spec is None or spec.type != MapType.PERF_EVENT_ARRAY or not hasattr(kmap, "fd"):
            raise InputError(f"{getattr(kmap, 'name', kmap)!r} is not a kernel perf event array")
        if pages < 1 or pages & (pages - 1):
            raise InputError(f"perf buffer pages must be a power of two, not {pages}")
        self.map = kmap
        self.pages = pages
        self.rings: list[_CpuRing] = []
        self.closed = False
        self._epoll = select.epoll()
        wanted = online_cpus() if cpus is None else list(cpus)
        try:
            for cpu in wanted:
                if cpu >= spec.max_entries:
                    continue
                ring = _CpuRing(cpu, pages)
                self.rings.append(ring)
                map_update(kmap.fd, struct.pack("<I", cpu), struct.pack("<I", ring.fd.fileno()))
                self._epoll.register(ring.fd.fileno(), select.EPOLLIN)
        except BaseException:
            self.close()
            raise

    @property
    def fds(self) -> list[int]:
        """The perf events' fds, one per CPU (``perf_buffer__buffer_fd``)."""
        return [ring.fd.fileno() for ring in self.rings]

    def consume(self, callback: SampleCallback, lost: LostCallback | None = None) -> int:
        """Hand every record of every CPU's ring to ``callback(cpu, data)`` or
        ``lost(cpu, count)`` now; returns how many records."""
        if self.closed:
            raise InputError("the perf buffer is closed")
        return sum(ring.consume(callback, lost) for ring in self.rings)

    def poll(
        self,
        callback: SampleCallback,
        lost: LostCallback | None = None,
        timeout: float | None = 0.0,
    ) -> int:
        """Consume what is there; if nothing, wait up to ``timeout`` seconds (``None``:
        forever) for a ring's wakeup (epoll over the events' fds) and consume again."""
        n = self.consume(callback, lost)
        if n or timeout == 0:
            return n
        try:
            self._epoll.poll(-1 if timeout is None else timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            pass
        return self.consume(callback, lost)

    def close(self) -> None:
        """Empty the map's slots, unmap the rings, close the events (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for ring in self.rings:
            with contextlib.suppress(SyscallError):
                map_delete(self.map.fd, struct.pack("<I", ring.cpu))
            ring.close()
        self.rings = []
        self._epoll.close()

    def __enter__(self) -> KernelPerfBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
