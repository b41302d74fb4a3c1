"""perf: the perf events programs attach to: ``perf_event_open(2)``, its ioctls, raw tracepoints.

Tracing programs reach the kernel through perf events (libbpf's way): a kprobe, uprobe or
tracepoint event is opened with :func:`perf_event_open` (``struct perf_event_attr`` below)
and the program is tied to it by ``BPF_LINK_CREATE`` with ``BPF_PERF_EVENT`` or the older
``PERF_EVENT_IOC_SET_BPF`` ioctl (:func:`perf_set_bpf`). :func:`raw_tracepoint_open` is
``BPF_RAW_TRACEPOINT_OPEN``. Importing works everywhere; calling needs Linux.
"""

from __future__ import annotations

import ctypes
import os
import platform
from ctypes import c_int32, c_uint16, c_uint32, c_uint64

from pybpf.errors import NotSupportedError, SyscallError
from pybpf.syscall.attr import address, in_buffer
from pybpf.syscall.call import bpf
from pybpf.syscall.fd import Fd, FdLike, fd_number
from pybpf.syscall.uapi import Cmd

__all__ = [
    "PerfEventAttr",
    "PERF_TYPE_TRACEPOINT",
    "PERF_TYPE_SOFTWARE",
    "PERF_COUNT_SW_BPF_OUTPUT",
    "PERF_SAMPLE_RAW",
    "PERF_FLAG_FD_CLOEXEC",
    "perf_event_open",
    "perf_set_bpf",
    "perf_enable",
    "raw_tracepoint_open",
]

PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
_IOC_ENABLE = 0x2400  # _IO('$', 0)
_IOC_SET_BPF = 0x40042408  # _IOW('$', 8, __u32)
# __NR_perf_event_open by machine.
_NUMBERS = {
    "x86_64": 298,
    "amd64": 298,
    "aarch64": 241,
    "arm64": 241,
    "riscv64": 241,
    "ppc64le": 319,
    "s390x": 331,
    "i686": 336,
    "i386": 336,
    "armv7l": 364,
}


class PerfEventAttr(ctypes.Structure):
    """``struct perf_event_attr`` (``PERF_ATTR_SIZE_VER8``, 136 bytes). ``flags`` holds the
    bitfield word (bit 0 ``disabled``...); ``config1``/``config2`` are ``kprobe_func``/
    ``uprobe_path`` and ``probe_offset`` for the kprobe and uprobe PMUs."""

    _fields_ = [
        ("type", c_uint32),
        ("size", c_uint32),
        ("config", c_uint64),
        ("sample_period", c_uint64),
        ("sample_type", c_uint64),
        ("read_format", c_uint64),
        ("flags", c_uint64),
        ("wakeup_events", c_uint32),
        ("bp_type", c_uint32),
        ("config1", c_uint64),
        ("config2", c_uint64),
        ("branch_sample_type", c_uint64),
        ("sample_regs_user", c_uint64),
        ("sample_stack_user", c_uint32),
        ("clockid", c_int32),
        ("sample_regs_intr", c_uint64),
        ("aux_watermark", c_uint32),
        ("sample_max_stack", c_uint16),
        ("_reserved2", c_uint16),
        ("aux_sample_size", c_uint32),
        ("_reserved3", c_uint32),
        ("sig_data", c_uint64),
        ("config3", c_uint64),
    ]


_libc = None


def _call():
    global _libc
    if _libc is None:
        if not platform.system() == "Linux":
            raise NotSupportedError("perf_event_open exists only on Linux", feature="perf")
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def perf_event_open(
    attr: PerfEventAttr,
    pid: int = -1,
    cpu: int = 0,
    group_fd: int = -1,
    flags: int = PERF_FLAG_FD_CLOEXEC,
    *,
    keep: tuple = (),
) -> Fd:
    """``perf_event_open(2)``: the event's fd. ``keep`` holds buffers ``attr`` points at
    (a probe's function name or path) alive for the call."""
    libc = _call()
    number = _NUMBERS.get(platform.machine().lower())
    if number is None:
        raise NotSupportedError(
            f"no perf_event_open number known for {platform.machine()}", feature="perf"
        )
    attr.size = ctypes.sizeof(PerfEventAttr)
    ret = libc.syscall(
        ctypes.c_long(number),
        ctypes.byref(attr),
        ctypes.c_int(pid),
        ctypes.c_int(cpu),
        ctypes.c_int(group_fd),
        ctypes.c_ulong(flags),
    )
    del keep
    if ret < 0:
        raise SyscallError("perf_event_open", ctypes.get_errno())
    return Fd(ret, "perf_event")


def _ioctl(fd: FdLike, request: int, arg: int) -> None:
    libc = _call()
    if libc.ioctl(ctypes.c_int(fd_number(fd)), ctypes.c_ulong(request), ctypes.c_ulong(arg)) < 0:
        raise SyscallError("ioctl", ctypes.get_errno())


def perf_set_bpf(perf_fd: FdLike, prog_fd: FdLike) -> None:
    """``PERF_EVENT_IOC_SET_BPF``: run the program on each event (pre-link kernels)."""
    _ioctl(perf_fd, _IOC_SET_BPF, fd_number(prog_fd))


def perf_enable(perf_fd: FdLike) -> None:
    """``PERF_EVENT_IOC_ENABLE``."""
    _ioctl(perf_fd, _IOC_ENABLE, 0)


class _RawTracepointAttr(ctypes.Structure):
    _fields_ = [
        ("name", c_uint64),
        ("prog_fd", c_uint32),
        ("_pad0", c_uint32),
        ("cookie", c_uint64),
    ]


def raw_tracepoint_open(name: str | None, prog_fd: FdLike, cookie: int = 0) -> Fd:
    """``BPF_RAW_TRACEPOINT_OPEN``: attach to raw tracepoint ``name`` (``None`` for BTF
    ``tp_btf`` programs, whose target was given at load); returns the link fd."""
    buf = in_buffer(os.fsencode(name) + b"\0") if name else None
    attr = _RawTracepointAttr(name=address(buf), prog_fd=fd_number(prog_fd), cookie=cookie)
    return Fd(bpf(Cmd.RAW_TRACEPOINT_OPEN, attr), "link")
