"""call: the one place that invokes Linux's ``bpf(2)`` system call, through libc's ``syscall()``.

libc is bound lazily on the first call, so importing this module works on every OS; on a
platform without ``bpf()`` the call raises :class:`~pybpf.errors.NotSupportedError`. A
failed call raises :class:`~pybpf.errors.SyscallError` carrying the command name and errno;
``EINTR`` is retried.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct
import sys
from collections.abc import Callable

from pybpf.errors import NotSupportedError, SyscallError
from pybpf.syscall.uapi import Cmd

__all__ = ["bpf", "syscall_number", "SYSCALL_NUMBERS", "available"]

# __NR_bpf by machine (as ``uname -m`` spells it), from each architecture's syscall table.
SYSCALL_NUMBERS: dict[str, int] = {
    "x86_64": 321,
    "amd64": 321,
    "i386": 357,
    "i486": 357,
    "i586": 357,
    "i686": 357,
    "aarch64": 280,  # asm-generic/unistd.h
    "arm64": 280,
    "riscv64": 280,
    "loongarch64": 280,
    "armv6l": 386,  # arm EABI
    "armv7l": 386,
    "armv8l": 386,
    "ppc": 361,
    "ppc64": 361,
    "ppc64le": 361,
    "s390x": 351,
    "sparc64": 349,
}

# A 32-bit userland on a 64-bit kernel uses the 32-bit table.
_COMPAT = {"x86_64": "i686", "amd64": "i686", "aarch64": "armv7l", "arm64": "armv7l"}

_entry: Callable[..., int] | None = None


def syscall_number(machine: str | None = None, pointer_size: int | None = None) -> int:
    """``__NR_bpf`` for ``machine`` (default: this one); NotSupportedError when unknown."""
    machine = (machine or platform.machine()).lower()
    pointer_size = pointer_size or struct.calcsize("P")
    if pointer_size == 4 and machine in _COMPAT:
        machine = _COMPAT[machine]
    try:
        return SYSCALL_NUMBERS[machine]
    except KeyError:
        raise NotSupportedError(
            f"no bpf() syscall number known for machine {machine!r}", feature="bpf"
        ) from None


def _bind() -> Callable[..., int]:
    global _entry
    if _entry is None:
        if not sys.platform.startswith("linux"):
            raise NotSupportedError(
                f"the bpf() system call exists only on Linux, not {sys.platform}", feature="bpf"
            )
        number = syscall_number()
        libc = ctypes.CDLL(None, use_errno=True)
        raw = libc.syscall
        raw.restype = ctypes.c_long
        raw.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]

        def entry(cmd: int, attr: ctypes.c_void_p, size: int) -> int:
            return raw(number, cmd, attr, size)

        _entry = entry
    return _entry


def available() -> bool:
    """True where a ``bpf()`` call can be attempted (Linux on a known machine)."""
    try:
        _bind()
    except NotSupportedError:
        return False
    return True


def bpf(cmd: Cmd, attr: ctypes.Structure) -> int:
    """Run ``bpf(cmd, &attr, sizeof(attr))`` and return its result (an fd, or 0).

    The kernel may write into ``attr`` (test-run results, next ids, log sizes). Raises
    :class:`~pybpf.errors.SyscallError` with ``command`` and ``errno`` on failure.
    """
    entry = _bind()
    size = ctypes.sizeof(attr)
    while True:
        ret = entry(int(cmd), ctypes.addressof(attr), size)
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise SyscallError(Cmd(cmd).command_name, err)
