"""State directory: where pinned objects live (the portable backend's emulated bpffs).

The directory is per user: ``pybpf.config.settings().state_dir`` (``$PYBPF_STATE``, else
``$XDG_STATE_HOME/pybpf`` or ``~/.local/state/pybpf``). Inside it:

- ``bpffs/``: the pins. A Linux path ``/sys/fs/bpf/a/b`` (or the relative ``a/b``) is the
  file ``bpffs/a/b``; a pin is a hard link to the object's backing file, so it keeps the
  object alive after every process has exited, as bpffs does.
- ``objects/``: the backing files of live shareable objects (maps), named
  ``<pid>-<random>.<kind>``. Their creator unlinks them on close; :meth:`collect_garbage`
  removes those left by dead processes that no pin links to.
- ``ids/``: the id counters of maps and programs (:mod:`pybpf.state.ids`);
- ``held/``: ``prog-<id>/`` directories of hard links to the maps a pinned program uses,
  which keep them alive while the program is pinned (:mod:`pybpf.objects.pinned`);
- ``links/``: one JSON record per live attachment (``<id>.json``, ids allocated across
  processes by exclusive creation), written by :mod:`pybpf.hooks.link`.

Every directory is created owner-only (``0700``) and files ``0600``; a state directory
owned by another user is refused. Pin paths never leave ``bpffs/``: ``..`` components,
NUL bytes, absolute paths elsewhere and symbolic links inside the tree are refused with
:class:`~pybpf.errors.InputError` (``path`` set).
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from pybpf.config import settings
from pybpf.errors import InputError

__all__ = ["StateDirectory", "BPFFS_ROOT", "state_directory"]

BPFFS_ROOT = "/sys/fs/bpf"
_POSIX = sys.platform != "win32"


class StateDirectory:
    """One state directory (``root``; default: the configured one)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root if root is not None else settings().state_dir).expanduser()
        self._ready = False

    @property
    def pins(self) -> Path:
        """The emulated bpffs: pins live under it."""
        return self.root / "bpffs"

    @property
    def objects(self) -> Path:
        """Backing files of live shareable objects."""
        return self.root / "objects"

    @property
    def links(self) -> Path:
        """Records of live links (attachments), one ``<id>.json`` each."""
        return self.root / "links"

    @property
    def held(self) -> Path:
        """Maps held by pinned programs: ``held/prog-<id>/<map id>``, links to their files."""
        return self.root / "held"

    # ---- creation and permissions --------------------------------------------------------
    def _private_dir(self, path: Path) -> None:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot create state directory: {err}", path=str(path)) from None
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode) and path != self.root:
            raise InputError("state directory entry is a symbolic link", path=str(path))
        if not _POSIX:
            return
        if info.st_uid != os.getuid():
            raise InputError(
                f"state directory is owned by uid {info.st_uid}, not {os.getuid()}",
                path=str(path),
            )
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, 0o700)

    def ensure(self) -> Path:
        """Create (owner-only) and check the directory; returns ``root``."""
        if not self._ready:
            self._private_dir(self.root)
            self._private_dir(self.pins)
            self._private_dir(self.objects)
            self._private_dir(self.links)
            self._ready = True
        return self.root

    # ---- pin paths -----------------------------------------------------------------------
    def _parts(self, path: str | os.PathLike) -> tuple[str, ...]:
        text = os.fspath(path)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        if "\0" in text:
            raise InputError("pin path contains a NUL byte", path=repr(text))
        posix = text.replace("\\", "/") if not _POSIX else text
        if posix == BPFFS_ROOT or posix.startswith(BPFFS_ROOT + "/"):
            rel = posix[len(BPFFS_ROOT) :]
        elif PurePosixPath(posix).is_absolute() or Path(text).is_absolute():
            host = Path(text)
            try:
                rel = host.relative_to(self.pins).as_posix()
            except ValueError:
                raise InputError(
                    f"pin path is outside the state directory ({BPFFS_ROOT}/... or "
                    f"{self.pins}/...)",
                    path=text,
                ) from None
        else:
            rel = posix
        parts = tuple(p for p in rel.split("/") if p not in ("", "."))
        if not parts:
            raise InputError("pin path names the bpffs root itself", path=text)
        if ".." in parts:
            raise InputError("pin path may not contain '..'", path=text)
        return parts

    def pin_path(self, path: str | os.PathLike) -> Path:
        """The file under ``bpffs/`` for a pin path (``/sys/fs/bpf/x``, ``x``, or host path).

        Directories on the way that exist must be real directories (no symbolic links).
        """
        parts = self._parts(path)
        current = self.pins
        for part in parts[:-1]:
            current = current / part
            if current.is_symlink():
                raise InputError("pin path goes through a symbolic link", path=str(path))
        target = current / parts[-1]
        if target.is_symlink():
            raise InputError("pin path is a symbolic link", path=str(path))
        return target

    def linux_path(self, pin: str | os.PathLike) -> str:
        """The Linux-style path (``/sys/fs/bpf/...``) of a pin."""
        return BPFFS_ROOT + "/" + "/".join(self._parts(pin))

    def prepare_pin(self, path: str | os.PathLike) -> Path:
        """:meth:`pin_path`, with the state directory and the pin's parents created."""
        target = self.pin_path(path)
        self.ensure()
        current = self.pins
        for part in target.relative_to(self.pins).parts[:-1]:
            current = current / part
            self._private_dir(current)
        return target

    def pinned(self) -> Iterator[str]:
        """The Linux-style paths of every pin, sorted."""
        if not self.pins.is_dir():
            return iter(())
        found = []
        for dirpath, _dirnames, filenames in os.walk(self.pins):
            for name in filenames:
                found.append(self.linux_path(Path(dirpath, name)))
        return iter(sorted(found))

    def unpin(self, path: str | os.PathLike) -> None:
        """Remove a pin (the object lives on while a process or another pin holds it).

        A missing pin raises :class:`FileNotFoundError`.
        """
        os.unlink(self.pin_path(path))

    # ---- backing files -------------------------------------------------------------------
    def new_object(self, kind: str = "map") -> tuple[Path, int]:
        """Create a new private backing file; returns its path and an open read-write fd."""
        self.ensure()
        while True:
            path = self.objects / f"{os.getpid()}-{secrets.token_hex(6)}.{kind}"
            try:
                fd = os.open(
                    path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600
                )
            except FileExistsError:
                continue
            return path, fd

    def collect_garbage(self, alive: Callable[[int], bool]) -> int:
        """Unlink backing files of dead processes (``alive(pid)`` false) that no pin links.

        Returns how many files were removed.
        """
        removed = 0
        if not self.objects.is_dir():
            return 0
        for entry in os.scandir(self.objects):
            head = entry.name.split("-", 1)[0]
            if not head.isdigit() or alive(int(head)):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_nlink <= 1:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue
        return removed

    def __repr__(self) -> str:
        return f"<StateDirectory {self.root}>"


def state_directory() -> StateDirectory:
    """The state directory configured now (``$PYBPF_STATE`` or the per-user default)."""
    return StateDirectory()
