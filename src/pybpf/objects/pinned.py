"""Pinned programs: a program's verified instructions and metadata kept in the state directory.

Pinning a program (``bpftool prog pin``, ``Program.pin(path)``) writes a record file at
the pin path in the state directory's ``bpffs/``: one JSON document with ``"magic":
"pybpf-prog"``, the program's id (unique in the state directory, :mod:`pybpf.state.ids`),
``bpftool prog show``'s facts (type, name, tag, license, map ids, ...), the
instructions the engine runs (hex of their encoding: what ``prog dump xlated`` shows) and,
for JIT programs, the native listing (``prog dump jited``). The maps the program can reach
are *held*: hard links to their files under ``held/prog-<id>/`` keep them (and their data)
alive while the program is pinned, as a pinned Linux program holds its maps; holds of a
program with no pin left are removed when programs are listed.

:func:`list_programs` gives every pinned program (one :class:`ProgramRecord` per id, with
all its pins), :func:`read_pin` the one at a path. The record also keeps the object file
(compressed) and which held map is which of its maps, so :func:`load_pinned` can load the
program again *on its held maps* (``pybpf prog run pinned PATH`` updates the maps the
pinned program uses, as on Linux).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import secrets
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pybpf.errors import InputError, MapError, NotSupportedError, PybpfError
from pybpf.isa import Instruction, decode, encode
from pybpf.state import StateDirectory

__all__ = [
    "ProgramRecord",
    "pin_program",
    "list_programs",
    "read_pin",
    "load_pinned",
    "map_source",
    "MAGIC",
]

MAGIC = "pybpf-prog"


@dataclass(frozen=True)
class ProgramRecord:
    """A pinned program as its record says (see the module docstring)."""

    id: int
    type: str
    name: str
    tag: str
    license: str
    gpl_compatible: bool
    section: str
    engine: str
    map_ids: tuple[int, ...]
    instructions: tuple[Instruction, ...]
    loaded_at: int = 0
    pid: int = 0
    verified: bool = False
    run_cnt: int = 0
    run_time_ns: int = 0
    jited_text: str | None = None
    jited_json: Any = None
    pins: tuple[str, ...] = field(default=())

    @property
    def bytes_xlated(self) -> int:
        """Size of the instructions in bytes (bpftool's ``bytes_xlated``)."""
        return 8 * sum(i.slots for i in self.instructions)

    def xlated(self) -> tuple[Instruction, ...]:
        """The instructions the program runs (``bpftool prog dump xlated``)."""
        return self.instructions

    def jited(self, *, json: bool = False) -> Any:
        """The native listing recorded at pin time; :class:`NotSupportedError`
        (``feature="jited"``) for programs that ran on the interpreter."""
        if self.jited_text is None:
            raise NotSupportedError(
                f"program {self.name!r} runs on the {self.engine}: it has no native code",
                feature="jited",
                program=self.name,
            )
        return self.jited_json if json else self.jited_text

    def to_json(self) -> dict[str, Any]:
        """``bpftool prog show --json``'s keys, plus pybpf's ``section`` and ``engine``."""
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "name": self.name,
            "tag": self.tag,
            "gpl_compatible": self.gpl_compatible,
            "loaded_at": self.loaded_at,
            "bytes_xlated": self.bytes_xlated,
            "jited": self.jited_text is not None,
            "bytes_jited": 0,
            "map_ids": list(self.map_ids),
            "btf_id": 0,
        }
        if self.run_cnt:
            out["run_time_ns"] = self.run_time_ns
            out["run_cnt"] = self.run_cnt
        if self.pins:
            out["pinned"] = list(self.pins)
        out["section"] = self.section
        out["engine"] = self.engine
        out["pid"] = self.pid
        return out


def _document(prog: Any) -> dict[str, Any]:
    from pybpf.objects.loader import gpl_compatible

    xlated = getattr(prog, "xlated", None)
    insns = tuple(xlated()) if callable(xlated) else tuple(prog.instructions)
    doc: dict[str, Any] = {
        "magic": MAGIC,
        "id": prog.id,
        "type": prog.type.type_name if prog.type is not None else "unspec",
        "name": prog.name,
        "tag": prog.tag,
        "license": prog.license,
        "gpl_compatible": gpl_compatible(prog.license),
        "section": prog.section,
        "engine": prog.engine,
        "map_ids": list(prog.map_ids),
        "insns": encode(list(insns)).hex(),
        "loaded_at": int(time.time()),
        "pid": os.getpid(),
        "verified": bool(getattr(prog, "verified", False)),
        "run_cnt": prog.run_cnt,
        "run_time_ns": prog.run_time_ns,
    }
    from pybpf.objects.object import owner_of

    owner = owner_of(prog)
    if owner is not None and owner.file_bytes is not None:
        doc["object"] = base64.b64encode(zlib.compress(owner.file_bytes)).decode()
        doc["object_name"] = owner.name
        doc["held"] = {name: m.id for name, m in owner.maps.items()}
    if prog.engine == "jit" and callable(getattr(prog, "jited", None)):
        with contextlib.suppress(NotSupportedError):
            doc["jited_text"] = prog.jited()
            doc["jited_json"] = prog.jited(json=True)
    return doc


def _hold_maps(prog: Any, state: StateDirectory) -> None:
    folder = state.held / f"prog-{prog.id}"
    maps = list(getattr(prog, "_reachable", None) or prog.maps)
    for m in maps:
        path = getattr(getattr(m, "_buf", None), "path", None)
        if path is None:
            continue  # an anonymous map cannot outlive its process
        state._private_dir(state.held)
        state._private_dir(folder)
        with contextlib.suppress(FileExistsError, FileNotFoundError):
            os.link(path, folder / str(m.id))


def pin_program(prog: Any, path: str | os.PathLike, *, state: StateDirectory | None = None):
    """Pin a loaded portable-backend program at ``path`` (``/sys/fs/bpf/x`` or relative);
    returns its :class:`ProgramRecord`. :class:`~pybpf.errors.MapError` ``EEXIST`` when
    the path is taken, :class:`~pybpf.errors.InputError` for a closed program or a path
    outside the state directory, :class:`~pybpf.errors.NotSupportedError` for kernel
    programs (pin those with :mod:`pybpf.kernel`)."""
    if getattr(prog, "closed", False):
        raise InputError("the program is closed", program=getattr(prog, "name", None))
    if not hasattr(prog, "linked"):
        raise NotSupportedError(
            "only portable-backend programs pin into the state directory",
            feature="pin",
            program=getattr(prog, "name", None),
        )
    state = state or StateDirectory()
    target = state.prepare_pin(path)
    doc = _document(prog)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise MapError(
            f"{state.linux_path(path)} is already pinned",
            errno=errno.EEXIST,
            operation="pin",
            path=str(path),
        ) from None
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out)
    _hold_maps(prog, state)
    return _record(doc, (state.linux_path(path),))


def _record(doc: dict[str, Any], pins: tuple[str, ...]) -> ProgramRecord:
    return ProgramRecord(
        id=int(doc["id"]),
        type=str(doc["type"]),
        name=str(doc["name"]),
        tag=str(doc["tag"]),
        license=str(doc.get("license", "")),
        gpl_compatible=bool(doc.get("gpl_compatible", False)),
        section=str(doc.get("section", "")),
        engine=str(doc.get("engine", "")),
        map_ids=tuple(int(i) for i in doc.get("map_ids", ())),
        instructions=tuple(decode(bytes.fromhex(doc["insns"]))),
        loaded_at=int(doc.get("loaded_at", 0)),
        pid=int(doc.get("pid", 0)),
        verified=bool(doc.get("verified", False)),
        run_cnt=int(doc.get("run_cnt", 0)),
        run_time_ns=int(doc.get("run_time_ns", 0)),
        jited_text=doc.get("jited_text"),
        jited_json=doc.get("jited_json"),
        pins=pins,
    )


def _load(file: Path) -> dict[str, Any] | None:
    try:
        with open(file, "rb") as f:
            if f.read(1) != b"{":
                return None
            doc = json.loads(b"{" + f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("magic") != MAGIC:
        return None
    try:
        _record(doc, ())  # every field there, of the right kind
    except (KeyError, ValueError, TypeError, PybpfError):
        return None  # a damaged record: not a program
    return doc


def read_pin(path: str | os.PathLike, *, state: StateDirectory | None = None) -> ProgramRecord:
    """The program pinned at ``path``. :class:`~pybpf.errors.MapError` ``ENOENT`` when
    nothing is pinned there, :class:`~pybpf.errors.InputError` when the pin is not a
    program (a map, say)."""
    state = state or StateDirectory()
    file = state.pin_path(path)
    if not file.exists():
        raise MapError(
            f"nothing pinned at {state.linux_path(path)}",
            errno=errno.ENOENT,
            operation="get",
            path=str(path),
        )
    doc = _load(file)
    if doc is None:
        raise InputError("the pin is not a program", path=str(path))
    pins = tuple(r.pins for r in list_programs(state) if r.id == int(doc["id"]))
    return _record(doc, pins[0] if pins else (state.linux_path(path),))


def list_programs(state: StateDirectory | None = None) -> list[ProgramRecord]:
    """Every pinned program of the state directory, by id (all its pins in ``pins``)."""
    state = state or StateDirectory()
    docs: dict[int, dict[str, Any]] = {}
    pins: dict[int, list[str]] = {}
    for pin in state.pinned():
        doc = _load(state.pin_path(pin))
        if doc is None:
            continue
        prog_id = int(doc["id"])
        docs.setdefault(prog_id, doc)
        pins.setdefault(prog_id, []).append(pin)
    if state.held.is_dir():
        for entry in os.scandir(state.held):
            head, _, number = entry.name.partition("-")
            if head == "prog" and number.isdigit() and int(number) not in docs:
                shutil.rmtree(entry.path, ignore_errors=True)  # unpinned: release its maps
    return [_record(docs[i], tuple(sorted(pins[i]))) for i in sorted(docs)]


def load_pinned(
    record: ProgramRecord | str | os.PathLike,
    *,
    state: StateDirectory | None = None,
    engine: str | None = None,
) -> Any:
    """The pinned program's object loaded again on the maps the pin holds (only that
    program; ``engine``: default the one it was pinned from). Returns the loaded
    :class:`~pybpf.objects.Object` (close it). :class:`~pybpf.errors.NotSupportedError`
    for records written without their object (pinned from an object opened elsewhere)."""
    from pybpf.objects.object import Object
    from pybpf.spec import Pinning

    state = state or StateDirectory()
    if not isinstance(record, ProgramRecord):
        record = read_pin(record, state=state)
    doc = _load(state.pin_path(record.pins[0]))
    if doc is None or "object" not in doc:
        raise NotSupportedError(
            f"program {record.name!r} was pinned without its object: run the object file",
            feature="run pinned",
            program=record.name,
        )
    obj = Object.open(zlib.decompress(base64.b64decode(doc["object"])), name=doc["object_name"])
    root = f"/sys/fs/bpf/.pybpf-run/{os.getpid()}-{secrets.token_hex(4)}"
    links = []
    try:
        for name, map_id in doc.get("held", {}).items():
            source = state.held / f"prog-{record.id}" / str(map_id)
            spec = obj.spec.maps.get(name)
            if spec is None or not source.exists():
                continue
            target = state.prepare_pin(f"{root}/{name}")
            os.link(source, target)
            links.append(target)
            spec.pinning = Pinning.BY_NAME
        obj.load(engine=engine or doc.get("engine", "interpreter"), programs=[record.name],
                 pin_maps_dir=root, state=state)  # fmt: skip
    finally:
        for target in links:
            with contextlib.suppress(OSError):
                target.unlink()
        shutil.rmtree(state.pin_path(root), ignore_errors=True)
        with contextlib.suppress(OSError):
            state.pin_path("/sys/fs/bpf/.pybpf-run").rmdir()
    return obj


def map_source(map_id: int, *, state: StateDirectory | None = None) -> tuple[Any, str] | None:
    """The object spec and map name of a map a pinned program holds (its BTF types decode
    the map's keys and values), or ``None``."""
    from pybpf.objects.object import Object

    state = state or StateDirectory()
    for pin in state.pinned():
        doc = _load(state.pin_path(pin))
        if doc is None or "object" not in doc:
            continue
        for name, held_id in doc.get("held", {}).items():
            if held_id == map_id:
                data = zlib.decompress(base64.b64decode(doc["object"]))
                return Object.open(data, name=doc.get("object_name")).spec, name
    return None
