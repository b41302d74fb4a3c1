"""Errors: the one hierarchy every pybpf layer raises, each error carrying its location as data.

Every error derives from :class:`PybpfError` and keeps the place it refers to as attributes
(``section``, ``program``, ``pc``, ``offset``, ``line``, ...), so callers and tests look at
data rather than parse messages. ``str(err)`` is one readable line that already names the
location.

Families (as in ``docs/architecture.md``):

- :class:`InputError`: bad bytes or text handed to pybpf (bytecode, assembly, ELF, BTF,
  captures, command-line arguments).
- :class:`VerifierError`: a program was proven unsafe (or could not be proven safe).
- :class:`ExecutionError`: a running program did something the runtime stopped
  (a memory violation, a runaway loop, too deep a call chain).
- :class:`SyscallError`: the Linux ``bpf()`` call failed; carries ``errno``.
- :class:`NotSupportedError`: valid input that this build or platform cannot handle.
- :class:`InternalError`: a pybpf bug.
"""

from __future__ import annotations

import errno as _errno
import os
import re as _re
from typing import Any

__all__ = [
    "PybpfError",
    "InputError",
    "DecodeError",
    "AssemblyError",
    "ConformanceFileError",
    "VerifierError",
    "ExecutionError",
    "MemoryAccessError",
    "BudgetExceededError",
    "CallDepthError",
    "UninitializedRegisterError",
    "HelperError",
    "SyscallError",
    "NotSupportedError",
    "InternalError",
    "BTFError",
    "ElfError",
    "MapError",
    "CaptureError",
]

# Attributes that describe where an error happened, in the order they are printed.
_LOCATION_KEYS = ("path", "section", "program", "line", "column", "pc", "offset")


class PybpfError(Exception):
    """Base class of every error pybpf raises on purpose.

    ``message`` is the reason alone; location attributes are stored separately and
    prefixed to ``str(err)``.
    """

    def __init__(self, message: str, **location: Any) -> None:
        super().__init__(message)
        self.message = message
        self.path: str | None = None
        self.section: str | None = None
        self.program: str | None = None
        self.line: int | None = None
        self.column: int | None = None
        self.pc: int | None = None
        self.offset: int | None = None
        for key, value in location.items():
            setattr(self, key, value)

    def location(self) -> str:
        """The location part of the message (``"file.o: section xdp: pc 4"``), or ``""``."""
        parts = []
        for key in _LOCATION_KEYS:
            value = getattr(self, key, None)
            if value is None:
                continue
            if key == "path":
                parts.append(str(value))
            elif key == "offset":
                parts.append(f"offset {value:#x}" if isinstance(value, int) else f"offset {value}")
            else:
                parts.append(f"{key} {value}")
        return ": ".join(parts)

    def __str__(self) -> str:
        where = self.location()
        return f"{where}: {self.message}" if where else self.message


class InputError(PybpfError):
    """Input given to pybpf is malformed (bytecode, assembly, object files, arguments)."""


class DecodeError(InputError):
    """Raw eBPF bytecode could not be decoded.

    ``offset`` is the byte offset of the bad instruction, ``pc`` its slot index, ``field``
    the field at fault (``"opcode"``, ``"dst"``, ``"src"``, ``"off"``, ``"imm"``, ``"length"``)
    and ``value`` its value.
    """

    def __init__(self, message: str, *, field: str, value: int | None = None, **location: Any):
        super().__init__(message, **location)
        self.field = field
        self.value = value


class AssemblyError(InputError):
    """Assembly text could not be assembled; ``line`` (1-based) and ``text`` say where."""

    def __init__(self, message: str, *, text: str | None = None, **location: Any) -> None:
        super().__init__(message, **location)
        self.text = text


class ConformanceFileError(InputError):
    """A bpf_conformance ``.data`` file is malformed (unknown directive, bad hex, no result)."""


class VerifierError(PybpfError):
    """A program was not proven safe: ``str()`` is one line, ``report`` the full log."""

    def __init__(self, message: str, *, report: str = "", **location: Any) -> None:
        super().__init__(message, **location)
        self.report = report


class ExecutionError(PybpfError):
    """A running program was stopped by the runtime; ``pc`` is the instruction at fault."""


class MemoryAccessError(ExecutionError):
    """A load or store touched memory the program was not given.

    ``address`` and ``size`` describe the access, ``access`` is ``"read"`` or ``"write"``.
    """

    def __init__(self, message: str, *, address: int, size: int, access: str, **location: Any):
        super().__init__(message, **location)
        self.address = address
        self.size = size
        self.access = access


class BudgetExceededError(ExecutionError):
    """The instruction budget ran out (a runaway loop in an unverified program)."""

    def __init__(self, message: str, *, budget: int, **location: Any) -> None:
        super().__init__(message, **location)
        self.budget = budget


class CallDepthError(ExecutionError):
    """A chain of bpf-to-bpf calls went deeper than the kernel's limit."""

    def __init__(self, message: str, *, depth: int, **location: Any) -> None:
        super().__init__(message, **location)
        self.depth = depth


class UninitializedRegisterError(InputError):
    """A program reads a register before any path writes it (refused at load)."""

    def __init__(self, message: str, *, register: int, **location: Any) -> None:
        super().__init__(message, **location)
        self.register = register


class HelperError(ExecutionError):
    """A helper call could not be made (unknown id, no implementation bound)."""

    def __init__(self, message: str, *, helper_id: int, **location: Any) -> None:
        super().__init__(message, **location)
        self.helper_id = helper_id


class SyscallError(PybpfError, OSError):
    """The Linux ``bpf()`` system call failed.

    ``errno`` is the error number, ``command`` the bpf command name (``"BPF_PROG_LOAD"``),
    ``log`` the verifier log for program loads (may be empty).
    """

    def __init__(self, command: str, err: int, *, log: str = "", **location: Any) -> None:
        name = _errno.errorcode.get(err, str(err))
        message = f"{command} failed: {name}: {os.strerror(err)}"
        if log:
            # The kernel may end its reason without a newline before "processed N insns".
            text = _re.sub(r"processed \d+ insns.*", "", log)
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            if lines:
                message += f": {lines[-1]}"
        PybpfError.__init__(self, message, **location)
        self.errno = err
        self.strerror = os.strerror(err)
        self.command = command
        self.log = log

    def __str__(self) -> str:
        return PybpfError.__str__(self)


class NotSupportedError(PybpfError):
    """Valid input that this build, platform or backend cannot handle; ``feature`` names it."""

    def __init__(self, message: str, *, feature: str | None = None, **location: Any) -> None:
        super().__init__(message, **location)
        self.feature = feature


class InternalError(PybpfError):
    """A pybpf bug: an invariant that should always hold did not."""


class BTFError(InputError):
    """A .BTF or .BTF.ext section is malformed.

    ``section`` is ``".BTF"`` or ``".BTF.ext"``, ``offset`` the byte offset in that section
    of the bad header, record or string, and ``type_id`` the BTF type at fault when there is one.
    """

    def __init__(self, message: str, *, type_id: int | None = None, **location: Any) -> None:
        super().__init__(message, **location)
        self.type_id = type_id


class ElfError(InputError):
    """An ELF object file is malformed, or is not an eBPF object pybpf can read.

    ``section`` names the ELF section at fault when there is one and ``offset`` is the byte
    offset (in that section when ``section`` is set, else in the file); ``symbol`` names
    the symbol at fault when there is one.
    """

    def __init__(self, message: str, *, symbol: str | None = None, **location: Any) -> None:
        super().__init__(message, **location)
        self.symbol = symbol


class MapError(PybpfError, OSError):
    """A map operation failed the way Linux fails it.

    ``errno`` is Linux's error number (``ENOENT``, ``EEXIST``, ``E2BIG``, ``EINVAL``,
    ``EPERM``, ...), ``operation`` the operation (``"create"``, ``"update"``, ``"delete"``,
    ``"pin"``, ...) and ``map_name`` the map's name.
    """

    def __init__(
        self, message: str, *, errno: int, operation: str, map_name: str = "", **location: Any
    ) -> None:
        PybpfError.__init__(self, message, **location)
        self.errno = errno
        self.strerror = os.strerror(errno)
        self.operation = operation
        self.map_name = map_name

    def __str__(self) -> str:
        return PybpfError.__str__(self)


class CaptureError(InputError):
    """A packet capture (pcap or pcapng) is truncated, corrupted or not a capture at all.

    ``path`` names the file (when there is one), ``packet`` is the 1-based number of the
    broken record (the next packet after the last complete one; ``None`` when the file
    header itself is bad) and ``offset`` the byte offset of the broken record or block.
    """

    def __init__(self, message: str, *, packet: int | None = None, **location: Any) -> None:
        super().__init__(message, **location)
        self.packet = packet

    def location(self) -> str:
        """The location part of the message (``"in.pcap: packet 3: offset 0x58"``), or ``""``."""
        where = super().location()
        if self.packet is None:
            return where
        parts = [where] if where else []
        if self.path is not None and parts:
            head, _, rest = where.partition(": ")
            return ": ".join(p for p in (head, f"packet {self.packet}", rest) if p)
        return ": ".join([f"packet {self.packet}", *parts])
