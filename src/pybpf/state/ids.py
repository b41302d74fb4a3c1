"""Ids: object ids (maps, programs) allocated across processes through the state directory.

Linux gives every map and program an id unique for the machine's life; pybpf's portable
backend gives them one unique for the state directory's life, so ``pybpf map show id N``
in one process finds the map another made. Each kind of object has a counter file
``ids/<kind>`` (the last id given, 20 decimal digits). :func:`allocate_id` locks it
(``os.lockf``, a POSIX record lock the kernel drops when the process dies; ``msvcrt``'s
lock on Windows; elsewhere the file ``ids/<kind>.lock`` created exclusively, broken when
older than a few seconds or left by a dead process), rewrites it in place and unlocks.

When the state directory is unusable (read-only home, owned by another user) ids come
from a per-process counter instead, above :data:`LOCAL_BASE` so they never collide with
shared ones.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from pathlib import Path

from pybpf.errors import InputError
from pybpf.state.directory import StateDirectory

__all__ = ["allocate_id", "last_id", "LOCAL_BASE"]

LOCAL_BASE = 1 << 30
_STALE_SECONDS = 5.0
_LOCAL = itertools.count(LOCAL_BASE)
_THREAD_LOCK = threading.Lock()
_READY: set[Path] = set()


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _ids_dir(state: StateDirectory) -> Path:
    path = state.root / "ids"
    if path not in _READY:
        state.ensure()
        try:
            path.mkdir(mode=0o700, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot create the ids directory: {err}", path=str(path)) from None
        _READY.add(path)
    return path


def _acquire(lock: Path) -> None:
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                owner = int(lock.read_text() or "0")
                age = time.time() - lock.stat().st_mtime
            except (OSError, ValueError):
                owner, age = 0, 0.0  # being written or just removed: retry
            if age > _STALE_SECONDS or (owner and not _alive(owner)):
                try:
                    os.unlink(lock)
                except OSError:
                    pass
            time.sleep(0.0002)
            continue
        with os.fdopen(fd, "w") as out:
            out.write(str(os.getpid()))
        return


def _read_counter(path: Path) -> int:
    try:
        return int(path.read_text().strip() or "0")
    except (OSError, ValueError):
        return 0


def _locked_increment(counter: Path, lock: Path) -> int:
    fd = os.open(counter, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
    try:
        if hasattr(os, "lockf"):  # POSIX record lock: released when the process dies
            os.lockf(fd, os.F_LOCK, 0)
        elif sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
        else:
            _acquire(lock)
        try:
            raw = os.pread(fd, 32, 0) if hasattr(os, "pread") else os.read(fd, 32)
            new = int(raw.strip() or b"0") + 1
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, b"%020d" % new)  # fixed width: never a half-truncated counter
        finally:
            if hasattr(os, "lockf"):
                os.lseek(fd, 0, os.SEEK_SET)
                os.lockf(fd, os.F_ULOCK, 0)
            elif sys.platform != "win32":
                os.unlink(lock)
    finally:
        os.close(fd)
    return new


def allocate_id(kind: str, state: StateDirectory | None = None) -> int:
    """A new id for an object of ``kind`` (``"map"``, ``"prog"``), unique in the state
    directory (default: the configured one); a per-process id above :data:`LOCAL_BASE`
    when the directory is unusable."""
    state = state or StateDirectory()
    with _THREAD_LOCK:
        try:
            folder = _ids_dir(state)
            return _locked_increment(folder / kind, folder / f"{kind}.lock")
        except (InputError, OSError, ValueError):
            return next(_LOCAL)


def last_id(kind: str, state: StateDirectory | None = None) -> int:
    """The last id :func:`allocate_id` gave for ``kind`` in the state directory (0: none)."""
    state = state or StateDirectory()
    return _read_counter(state.root / "ids" / kind)
