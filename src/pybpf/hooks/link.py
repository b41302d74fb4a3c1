"""Links: a program attached to a hook, recorded in the state directory until detached.

A :class:`Link` is what every ``attach`` returns (libbpf's ``struct bpf_link``, cilium's
``link.Link``): ``detach()`` (or ``close()``, or leaving a ``with`` block) ends the
attachment. Each live link has a record ``links/<id>.json`` in the state directory, so
``pybpf link show`` and ``pybpf net show`` list links made by any process; ids are
allocated across processes (exclusive creation of the record file, lowest free id above
the highest used). A record whose process has died is stale: :func:`list_links` drops and
removes it. :func:`detach_remote` ends another process's link by signalling its owner
(``SIGTERM``; the owner's attach loop detaches and removes the record).

Subclasses implement ``_detach()`` and pass what ``bpftool link show`` would print about
the target (``ifindex``, ``devname``, ``attach_type``, ``cgroup``, ...) as ``target``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from pybpf.errors import InputError
from pybpf.state import StateDirectory, state_directory

__all__ = ["Link", "LinkRecord", "list_links", "find_link", "detach_remote", "pid_alive"]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (any user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return sys.platform == "win32"
    return True


@dataclass(frozen=True)
class LinkRecord:
    """One link as recorded in the state directory (bpftool ``link show`` fields)."""

    id: int
    type: str
    prog_name: str
    prog_tag: str
    pid: int
    target: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """bpftool-like JSON: id, type, prog_name, prog_tag, pid and the target's keys."""
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "prog_name": self.prog_name,
            "prog_tag": self.prog_tag,
            "pid": self.pid,
        }
        out.update(self.target)
        return out


def _record_path(state: StateDirectory, link_id: int):
    return state.links / f"{link_id}.json"


def _read(path) -> LinkRecord | None:
    try:
        data = json.loads(path.read_text())
        return LinkRecord(
            id=int(data["id"]),
            type=str(data["type"]),
            prog_name=str(data.get("prog_name", "")),
            prog_tag=str(data.get("prog_tag", "")),
            pid=int(data["pid"]),
            target=dict(data.get("target", {})),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def list_links(state: StateDirectory | None = None) -> list[LinkRecord]:
    """Every live link in the state directory, by id; stale records are removed."""
    state = state or state_directory()
    if not state.links.is_dir():
        return []
    found = []
    for entry in sorted(state.links.glob("*.json")):
        rec = _read(entry)
        if rec is None or not pid_alive(rec.pid):
            try:
                entry.unlink()
            except OSError:
                pass
            continue
        found.append(rec)
    return sorted(found, key=lambda r: r.id)


def find_link(link_id: int, state: StateDirectory | None = None) -> LinkRecord:
    """The live link ``link_id``; :class:`InputError` when there is none."""
    for rec in list_links(state):
        if rec.id == link_id:
            return rec
    raise InputError(f"no link with id {link_id}", path=f"id {link_id}")


def detach_remote(link_id: int, state: StateDirectory | None = None) -> LinkRecord:
    """End link ``link_id``: here by detaching it, in another process by signalling it."""
    rec = find_link(link_id, state)
    local = _LOCAL.get(rec.id)
    if local is not None and rec.pid == os.getpid():
        local.detach()
        return rec
    os.kill(rec.pid, signal.SIGTERM)
    return rec


_LOCAL: dict[int, Link] = {}


class Link:
    """A program attached to a hook. ``detach()`` ends it; also a context manager."""

    def __init__(
        self,
        program: Any,
        link_type: str,
        target: dict[str, Any] | None = None,
        *,
        state: StateDirectory | None = None,
    ) -> None:
        self.program = program
        self.type = link_type
        self.target = dict(target or {})
        self._state = state or state_directory()
        self.id = self._allocate()
        self.attached = True
        _LOCAL[self.id] = self

    def _allocate(self) -> int:
        state = self._state
        state.ensure()
        used = [int(p.stem) for p in state.links.glob("*.json") if p.stem.isdigit()]
        link_id = max(used, default=0) + 1
        record = {
            "id": 0,
            "type": self.type,
            "prog_name": getattr(self.program, "name", ""),
            "prog_tag": getattr(self.program, "tag", ""),
            "pid": os.getpid(),
            "target": self.target,
        }
        while True:
            path = _record_path(state, link_id)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                link_id += 1
                continue
            record["id"] = link_id
            with os.fdopen(fd, "w") as out:
                json.dump(record, out)
            return link_id

    @property
    def record(self) -> LinkRecord:
        """This link as :func:`list_links` shows it."""
        return LinkRecord(
            self.id,
            self.type,
            getattr(self.program, "name", ""),
            getattr(self.program, "tag", ""),
            os.getpid(),
            dict(self.target),
        )

    def _detach(self) -> None:
        """Undo the attachment (subclasses)."""

    def detach(self) -> None:
        """End the attachment and remove its record (idempotent)."""
        if not self.attached:
            return
        self.attached = False
        _LOCAL.pop(self.id, None)
        try:
            self._detach()
        finally:
            try:
                _record_path(self._state, self.id).unlink()
            except OSError:
                pass

    def close(self) -> None:
        """Same as :meth:`detach`."""
        self.detach()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"<{type(self).__name__} id={self.id} {self.type} {state}>"
