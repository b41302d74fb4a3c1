"""programs: loading a program into the kernel (with its verifier log) and test-running it.

:func:`prog_load` is ``BPF_PROG_LOAD``: it returns the program's :class:`~pybpf.syscall.fd.Fd`
and the verifier log, grows the log buffer when the kernel says it was too small, and on
failure raises :class:`~pybpf.errors.SyscallError` whose ``log`` holds the verifier's
reasons (loading again with ``log_level=1`` when the first attempt asked for no log).
:func:`prog_test_run` is ``BPF_PROG_TEST_RUN``.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass

from pybpf.errors import InputError, SyscallError
from pybpf.syscall.attr import ProgLoadAttr, TestRunAttr, address, in_buffer, out_buffer
from pybpf.syscall.call import bpf
from pybpf.syscall.fd import Fd, FdLike, fd_number
from pybpf.syscall.maps import object_name
from pybpf.syscall.uapi import FUNC_INFO_REC_SIZE, LINE_INFO_REC_SIZE, Cmd, ProgType

__all__ = ["prog_load", "prog_test_run", "TestRunResult", "DEFAULT_LOG_SIZE", "MAX_LOG_SIZE"]

INSN_SIZE = 8
DEFAULT_LOG_SIZE = 256 * 1024
MAX_LOG_SIZE = 64 * 1024 * 1024  # the kernel's own limit is UINT_MAX >> 2
_EAGAIN_ATTEMPTS = 5  # the verifier may fail transiently with EAGAIN, as libbpf knows


def _log_text(buffer) -> str:
    if buffer is None:
        return ""
    raw = bytes(buffer)
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def prog_load(
    prog_type: ProgType | int,
    insns: bytes,
    license: str = "GPL",
    *,
    log_level: int = 1,
    log_size: int = DEFAULT_LOG_SIZE,
    name: str = "",
    expected_attach_type: int = 0,
    prog_flags: int = 0,
    kern_version: int = 0,
    prog_ifindex: int = 0,
    prog_btf_fd: FdLike | None = None,
    func_info: bytes = b"",
    func_info_rec_size: int = FUNC_INFO_REC_SIZE,
    line_info: bytes = b"",
    line_info_rec_size: int = LINE_INFO_REC_SIZE,
    attach_btf_id: int = 0,
    attach_prog_fd: FdLike | None = None,
    attach_btf_obj_fd: FdLike | None = None,
    fd_array: Sequence[int] = (),
) -> tuple[Fd, str]:
    """``BPF_PROG_LOAD``: load ``insns`` (raw bytecode); return ``(fd, verifier log)``.

    ``func_info``/``line_info`` are packed ``struct bpf_func_info``/``bpf_line_info``
    records (from ``.BTF.ext``). ``attach_prog_fd`` and ``attach_btf_obj_fd`` share one
    field: give at most one. Raises :class:`~pybpf.errors.SyscallError` with the log.
    """
    if len(insns) % INSN_SIZE or not insns:
        raise InputError(f"program of {len(insns)} bytes is not a whole number of instructions")
    if attach_prog_fd is not None and attach_btf_obj_fd is not None:
        raise InputError("give attach_prog_fd or attach_btf_obj_fd, not both")
    if func_info and len(func_info) % func_info_rec_size:
        raise InputError("func_info is not a whole number of records")
    if line_info and len(line_info) % line_info_rec_size:
        raise InputError("line_info is not a whole number of records")
    attach_fd = attach_prog_fd if attach_prog_fd is not None else attach_btf_obj_fd
    insn_buf = in_buffer(insns)
    license_buf = in_buffer(license.encode() + b"\0")
    func_buf = in_buffer(func_info)
    line_buf = in_buffer(line_info)
    fds_buf = in_buffer(b"".join(int(fd).to_bytes(4, "little", signed=True) for fd in fd_array))

    def attempt(level: int, size: int) -> tuple[int, str, int]:
        log_buf = out_buffer(size) if level else None
        attr = ProgLoadAttr(
            prog_type=int(prog_type),
            insn_cnt=len(insns) // INSN_SIZE,
            insns=address(insn_buf),
            license=address(license_buf),
            log_level=level,
            log_size=size if level else 0,
            log_buf=address(log_buf),
            kern_version=kern_version,
            prog_flags=int(prog_flags),
            prog_name=object_name(name),
            prog_ifindex=prog_ifindex,
            expected_attach_type=int(expected_attach_type),
            prog_btf_fd=0 if prog_btf_fd is None else fd_number(prog_btf_fd),
            func_info_rec_size=func_info_rec_size if func_info else 0,
            func_info=address(func_buf),
            func_info_cnt=len(func_info) // func_info_rec_size if func_info else 0,
            line_info_rec_size=line_info_rec_size if line_info else 0,
            line_info=address(line_buf),
            line_info_cnt=len(line_info) // line_info_rec_size if line_info else 0,
            attach_btf_id=attach_btf_id,
            attach_prog_fd=0 if attach_fd is None else fd_number(attach_fd),
            fd_array=address(fds_buf),
        )
        for tries in range(_EAGAIN_ATTEMPTS):
            try:
                return bpf(Cmd.PROG_LOAD, attr), _log_text(log_buf), 0
            except SyscallError as err:
                if err.errno != errno.EAGAIN or tries == _EAGAIN_ATTEMPTS - 1:
                    return -err.errno, _log_text(log_buf), attr.log_true_size
        raise AssertionError("unreachable")

    level, size = log_level, max(log_size, 128)
    while True:
        ret, log, true_size = attempt(level, size)
        if ret >= 0:
            return Fd(ret, "prog"), log
        err = -ret
        if err == errno.ENOSPC and level and size < MAX_LOG_SIZE:
            # The log did not fit: the kernel (6.4+) reports the size it needed.
            size = min(MAX_LOG_SIZE, max(true_size, size * 4))
            continue
        if not level:
            # Load again with a log, so the error says why.
            level = 1
            continue
        raise SyscallError(Cmd.PROG_LOAD.command_name, err, log=log)


@dataclass(frozen=True)
class TestRunResult:
    """What ``BPF_PROG_TEST_RUN`` reports: the program's return value (32 bits), the mean
    duration of one run in nanoseconds, and the output packet and context."""

    __test__ = False  # not a pytest test class

    retval: int
    duration: int
    data_out: bytes
    ctx_out: bytes | None


def prog_test_run(
    fd: FdLike,
    data_in: bytes = b"",
    *,
    data_size_out: int | None = None,
    ctx_in: bytes | None = None,
    ctx_size_out: int | None = None,
    repeat: int = 1,
    flags: int = 0,
    cpu: int = 0,
    batch_size: int = 0,
) -> TestRunResult:
    """``BPF_PROG_TEST_RUN``: run the program ``repeat`` times on ``data_in`` (and ``ctx_in``).

    ``data_size_out`` defaults to ``len(data_in) + 4096`` (room for a program that grows the
    packet), or 0 when there is no packet; ``ctx_size_out`` defaults to ``len(ctx_in)``. An
    output larger than its buffer fails with errno ENOSPC.
    """
    if data_size_out is None:
        data_size_out = len(data_in) + 4096 if data_in else 0
    if ctx_size_out is None:
        ctx_size_out = len(ctx_in) if ctx_in else 0
    data_buf = in_buffer(data_in)
    out_buf = out_buffer(data_size_out)
    ctx_buf = in_buffer(ctx_in) if ctx_in else None
    ctx_out_buf = out_buffer(ctx_size_out)
    attr = TestRunAttr(
        prog_fd=fd_number(fd),
        data_size_in=len(data_in),
        data_size_out=data_size_out,
        data_in=address(data_buf),
        data_out=address(out_buf),
        repeat=repeat,
        ctx_size_in=len(ctx_in) if ctx_in else 0,
        ctx_size_out=ctx_size_out,
        ctx_in=address(ctx_buf),
        ctx_out=address(ctx_out_buf),
        flags=int(flags),
        cpu=cpu,
        batch_size=batch_size,
    )
    bpf(Cmd.PROG_TEST_RUN, attr)
    data_out = bytes(out_buf)[: attr.data_size_out] if out_buf is not None else b""
    ctx_out = bytes(ctx_out_buf)[: attr.ctx_size_out] if ctx_out_buf is not None else None
    return TestRunResult(attr.retval, attr.duration, data_out, ctx_out)
