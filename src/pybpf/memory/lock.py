"""Shared lock: a spin lock in one 64-bit word of shared memory, recovered when its holder died.

Maps keep their lock inside their buffer (design.md), so threads and processes that map
the same buffer exclude each other. The word holds 0 when free, else the holder's token:
``pid << 32 | serial`` (``serial`` tells apart the lock objects of one process). Acquiring
is a compare-and-exchange from 0 to the token (:mod:`pybpf.memory.atomics`), so the lock
spans processes exactly when the native atomics backend is in use; with the Python backend
it spans the threads of one process.

While waiting, :meth:`SharedLock.acquire` yields the CPU and, every so often, checks that
the holder's process still exists. When it does not (the process was killed in the middle
of an update), the waiter takes the word over with one more compare-and-exchange and calls
``recover()`` before returning: the map then rebuilds whatever the dead holder left half
done. A token naming this process that none of its lock objects was given (a corrupted
word), held for over a second, is taken over the same way. A pid reused by an unrelated
process, or a corrupted word naming another live process, hides a dead holder
(documented limitation).

Not re-entrant: a holder that acquires again waits for itself forever; callers never call
out (to programs or user callbacks) while holding the lock.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Callable

from pybpf.errors import InputError
from pybpf.memory import atomics

__all__ = ["SharedLock", "process_alive"]

_SERIALS = itertools.count(1)
_PID = [os.getpid()]  # this process's pid, refreshed in forked children
_TOKENS: set[int] = set()  # every token a lock object of this process was given


def _forked() -> None:
    _PID[0] = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
_CHECK_EVERY = 256  # failed attempts between two looks at the holder's process
_STALE_OWN_SECONDS = 1.0


def _stale(token: int, waited: float) -> bool:
    """True when no one can hold ``token``: its process is gone, or it names this process,
    no lock object here was given it and it has been held for over a second (holders never
    call out while holding; a corrupted word would otherwise be waited on forever)."""
    pid = token >> 32
    if pid == _PID[0]:
        return token not in _TOKENS and waited > _STALE_OWN_SECONDS
    return not process_alive(pid)


def process_alive(pid: int) -> bool:
    """True unless process ``pid`` certainly no longer runs (zombies count as dead)."""
    if pid <= 0 or pid > 0x7FFFFFFF:  # (no such pid: a corrupted lock word)
        return False
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return _windows_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    try:  # Linux: a killed child its parent has not reaped yet is a zombie
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
        return state not in (b"Z", b"X")
    except (OSError, ValueError):
        return True


def _windows_alive(pid: int) -> bool:  # pragma: no cover - exercised on Windows only
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


class SharedLock:
    """The lock word at ``address`` (8-byte aligned, in memory shared by its users).

    ``recover`` is called, with the lock held, after taking the lock over from a dead
    holder. ``recovered`` counts those takeovers (by this object).
    """

    __slots__ = ("address", "recover", "token", "recovered", "_pid")

    def __init__(self, address: int, recover: Callable[[], None] | None = None) -> None:
        if address % 8:
            raise InputError(f"lock word at {address:#x} is not 8-byte aligned")
        self.address = address
        self.recover = recover
        self._pid = os.getpid()
        self.token = (self._pid << 32) | (next(_SERIALS) & 0xFFFFFFFF)
        _TOKENS.add(self.token)
        self.recovered = 0

    def _refresh_token(self) -> None:
        # After fork() the child is another process: its token must name it.
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self.token = (pid << 32) | (next(_SERIALS) & 0xFFFFFFFF)
            _TOKENS.add(self.token)

    def current_token(self) -> int:
        """The token this process writes into the word (native code taking the lock uses it)."""
        if self._pid != _PID[0]:
            self._refresh_token()
        return self.token

    def acquire(self) -> None:
        """Take the lock, waiting (and recovering it from a dead holder) as needed."""
        if self._pid != _PID[0]:
            self._refresh_token()
        cas, _store = atomics.word_primitives()
        address, token = self.address, self.token
        if cas(address, 0, token) == 0:
            return
        self._wait(cas, address, token)

    def _wait(self, cas, address: int, token: int) -> None:
        attempts = 0
        started = time.monotonic()
        old = cas(address, 0, token)
        while old:
            attempts += 1
            if attempts % _CHECK_EVERY == 0 and _stale(old, time.monotonic() - started):
                if cas(address, old, token) == old:
                    self.recovered += 1
                    if self.recover is not None:
                        try:
                            self.recover()
                        except BaseException:
                            self.release()
                            raise
                    return
            time.sleep(0 if attempts < 64 else 0.0001)
            old = cas(address, 0, token)

    def release(self) -> None:
        """Give the lock back (a store-release of 0)."""
        atomics.word_primitives()[1](self.address, 0)

    def holder(self) -> int:
        """The token of the current holder (0 when free)."""
        return atomics.load_at(self.address, 8)

    def __enter__(self) -> SharedLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<SharedLock {self.address:#x} holder={self.holder():#x}>"
