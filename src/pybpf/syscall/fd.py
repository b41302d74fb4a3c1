"""fd: the owned file descriptor of a kernel BPF object (map, program, link, BTF).

An :class:`Fd` closes its descriptor exactly once: through :meth:`Fd.close`, the ``with``
statement, or, as a last resort, when it is garbage collected. Functions of
:mod:`pybpf.syscall` accept an :class:`Fd` or a plain ``int`` wherever a descriptor is needed.
"""

from __future__ import annotations

import os
from typing import Protocol

__all__ = ["Fd", "FdLike", "fd_number"]


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


FdLike = int | _HasFileno


class Fd:
    """An owned file descriptor; ``kind`` says what it refers to (``"map"``, ``"prog"``, ...)."""

    __slots__ = ("_fd", "kind")

    def __init__(self, fd: int, kind: str = "") -> None:
        self._fd: int | None = int(fd)
        self.kind = kind

    @property
    def closed(self) -> bool:
        """True once the descriptor has been closed or detached."""
        return self._fd is None

    def fileno(self) -> int:
        """The descriptor number; ``ValueError`` once closed."""
        if self._fd is None:
            raise ValueError(f"{self.kind or 'bpf'} fd is closed")
        return self._fd

    def __int__(self) -> int:
        return self.fileno()

    def __index__(self) -> int:
        return self.fileno()

    def close(self) -> None:
        """Close the descriptor (again is a no-op)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def detach(self) -> int:
        """Give up ownership: return the number, which the caller must close."""
        fd = self.fileno()
        self._fd = None
        return fd

    def dup(self) -> Fd:
        """A new, independently owned descriptor for the same object."""
        return Fd(os.dup(self.fileno()), self.kind)

    def __enter__(self) -> Fd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else str(self._fd)
        return f"Fd({state}{', ' + self.kind if self.kind else ''})"


def fd_number(fd: FdLike) -> int:
    """The descriptor number of an :class:`Fd`, an object with ``fileno()``, or an ``int``."""
    if isinstance(fd, int):
        return fd
    return fd.fileno()
