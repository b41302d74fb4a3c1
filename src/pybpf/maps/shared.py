"""Shared maps: every map of the state directory (any process's, live or pinned), by id.

The kernel lists every map of the machine; the portable backend's equivalent is every map
file in the state directory: the backing files of maps that live processes hold
(``objects/*.map``), pins (``bpffs/``) and maps held by pinned programs (``held/``). A file
linked in several places is one map. :func:`list_maps` describes them (:class:`MapFile`:
id, definition, frozen, pins) without keeping them open; :func:`open_by_id` and
:func:`open_file` open one, sharing its data live with every other process that has it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from pybpf.errors import InputError, MapError, PybpfError
from pybpf.maps.base import Map
from pybpf.maps.buffer import MapBuffer
from pybpf.maps.definition import MapDefinition
from pybpf.maps.factory import family_of
from pybpf.maps.registry import read_id
from pybpf.state import StateDirectory

__all__ = ["MapFile", "list_maps", "find_map", "open_file", "open_by_id"]


@dataclass(frozen=True)
class MapFile:
    """One map of the state directory: ``id``, ``definition``, ``frozen``, the ``file`` to
    open it by and its ``pins`` (Linux-style paths, sorted)."""

    id: int
    definition: MapDefinition
    frozen: bool
    file: Path
    pins: tuple[str, ...] = field(default=())


def _candidates(state: StateDirectory) -> list[tuple[Path, str | None]]:
    found: list[tuple[Path, str | None]] = []
    if state.objects.is_dir():
        found += [
            (Path(e.path), None) for e in os.scandir(state.objects) if e.name.endswith(".map")
        ]
    for folder in (state.pins, state.held):
        if not folder.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                path = Path(dirpath, name)
                pin = state.linux_path(path) if folder == state.pins else None
                found.append((path, pin))
    return found


def _describe(path: Path) -> tuple[int, MapDefinition, bool] | None:
    try:
        buffer = MapBuffer.open(path)
    except (PybpfError, OSError, ValueError):
        return None  # not a map (a program record), half made, or gone meanwhile
    try:
        return read_id(buffer.view), buffer.definition(), buffer.frozen
    except (PybpfError, ValueError):
        return None
    finally:
        buffer.close()


def list_maps(state: StateDirectory | None = None) -> list[MapFile]:
    """Every map in the state directory (default: the configured one), by id."""
    state = state or StateDirectory()
    by_inode: dict[tuple[int, int], list[tuple[Path, str | None]]] = {}
    for path, pin in _candidates(state):
        try:
            info = path.stat()
        except OSError:
            continue
        by_inode.setdefault((info.st_dev, info.st_ino), []).append((path, pin))
    out = []
    for entries in by_inode.values():
        entries.sort(key=lambda e: (e[1] is None, str(e[0])))
        described = _describe(entries[0][0])
        if described is None:
            continue
        map_id, definition, frozen = described
        pins = tuple(sorted(pin for _path, pin in entries if pin is not None))
        out.append(MapFile(map_id, definition, frozen, entries[0][0], pins))
    return sorted(out, key=lambda m: m.id)


def find_map(map_id: int, state: StateDirectory | None = None) -> MapFile:
    """The map ``map_id`` of the state directory; :class:`~pybpf.errors.MapError` ENOENT
    when there is none (bpftool: "get map by id: No such file or directory")."""
    for found in list_maps(state):
        if found.id == map_id:
            return found
    raise MapError(
        f"get map by id ({map_id}): No such file or directory",
        errno=errno.ENOENT,
        operation="get_fd_by_id",
    )


def open_file(path: str | os.PathLike) -> Map:
    """Open the map whose buffer is the file ``path`` (any map file of the state
    directory); :class:`~pybpf.errors.InputError` when it is not a map."""
    buffer = MapBuffer.open(Path(path))
    try:
        d = buffer.definition()
        return family_of(d.type)(buffer, d, fresh=False, params={})
    except ValueError as err:  # a header no map was created with
        buffer.close()
        raise InputError(f"not a usable map file: {err}", path=str(path)) from None
    except BaseException:
        buffer.close()
        raise


def open_by_id(map_id: int, state: StateDirectory | None = None) -> Map:
    """Open map ``map_id`` of the state directory (``BPF_MAP_GET_FD_BY_ID``)."""
    for _ in range(3):  # the file may vanish between listing and opening: look again
        found = find_map(map_id, state)
        with contextlib.suppress(MapError):
            return open_file(found.file)
    return open_file(find_map(map_id, state).file)
