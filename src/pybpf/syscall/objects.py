"""objects: finding kernel BPF objects: pinning and getting by path, walking ids, fds by id, BTF.

Ids are the kernel's global object numbers (what ``bpftool prog show`` lists); the
``*_get_next_id`` functions return ``None`` past the last one. :func:`btf_load` hands a
``.BTF`` blob to the kernel (needed for maps and programs that carry type information).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

from pybpf.errors import SyscallError
from pybpf.syscall.attr import BtfLoadAttr, GetIdAttr, ObjAttr, address, in_buffer, out_buffer
from pybpf.syscall.call import bpf
from pybpf.syscall.fd import Fd, FdLike, fd_number
from pybpf.syscall.uapi import Cmd

__all__ = [
    "obj_pin",
    "obj_get",
    "prog_get_next_id",
    "map_get_next_id",
    "link_get_next_id",
    "btf_get_next_id",
    "prog_ids",
    "map_ids",
    "link_ids",
    "btf_ids",
    "prog_get_fd_by_id",
    "map_get_fd_by_id",
    "link_get_fd_by_id",
    "btf_get_fd_by_id",
    "btf_load",
]


def _path(path: str | os.PathLike[str]) -> object:
    return in_buffer(os.fsencode(path) + b"\0")


def obj_pin(fd: FdLike, path: str | os.PathLike[str]) -> None:
    """``BPF_OBJ_PIN``: pin the object at ``path`` in a bpffs (it outlives every fd)."""
    path_buf = _path(path)
    bpf(Cmd.OBJ_PIN, ObjAttr(pathname=address(path_buf), bpf_fd=fd_number(fd)))


def obj_get(path: str | os.PathLike[str], flags: int = 0) -> Fd:
    """``BPF_OBJ_GET``: a new fd for the object pinned at ``path`` (``flags``: RDONLY/WRONLY)."""
    path_buf = _path(path)
    return Fd(bpf(Cmd.OBJ_GET, ObjAttr(pathname=address(path_buf), file_flags=flags)))


def _next_id(cmd: Cmd, start_id: int) -> int | None:
    attr = GetIdAttr(start_id=start_id)
    try:
        bpf(cmd, attr)
    except SyscallError as err:
        if err.errno == errno.ENOENT:
            return None
        raise
    return attr.next_id


def prog_get_next_id(start_id: int = 0) -> int | None:
    """``BPF_PROG_GET_NEXT_ID``: the smallest program id above ``start_id``, or ``None``."""
    return _next_id(Cmd.PROG_GET_NEXT_ID, start_id)


def map_get_next_id(start_id: int = 0) -> int | None:
    """``BPF_MAP_GET_NEXT_ID``: the smallest map id above ``start_id``, or ``None``."""
    return _next_id(Cmd.MAP_GET_NEXT_ID, start_id)


def link_get_next_id(start_id: int = 0) -> int | None:
    """``BPF_LINK_GET_NEXT_ID``: the smallest link id above ``start_id``, or ``None``."""
    return _next_id(Cmd.LINK_GET_NEXT_ID, start_id)


def btf_get_next_id(start_id: int = 0) -> int | None:
    """``BPF_BTF_GET_NEXT_ID``: the smallest BTF id above ``start_id``, or ``None``."""
    return _next_id(Cmd.BTF_GET_NEXT_ID, start_id)


def _ids(cmd: Cmd) -> Iterator[int]:
    current = _next_id(cmd, 0)
    while current is not None:
        yield current
        current = _next_id(cmd, current)


def prog_ids() -> Iterator[int]:
    """Every loaded program's id, ascending."""
    return _ids(Cmd.PROG_GET_NEXT_ID)


def map_ids() -> Iterator[int]:
    """Every map's id, ascending."""
    return _ids(Cmd.MAP_GET_NEXT_ID)


def link_ids() -> Iterator[int]:
    """Every link's id, ascending."""
    return _ids(Cmd.LINK_GET_NEXT_ID)


def btf_ids() -> Iterator[int]:
    """Every loaded BTF object's id, ascending."""
    return _ids(Cmd.BTF_GET_NEXT_ID)


def _fd_by_id(cmd: Cmd, object_id: int, kind: str, open_flags: int = 0) -> Fd:
    return Fd(bpf(cmd, GetIdAttr(start_id=object_id, open_flags=open_flags)), kind)


def prog_get_fd_by_id(prog_id: int) -> Fd:
    """``BPF_PROG_GET_FD_BY_ID``: an fd for the program with that id (ENOENT if none)."""
    return _fd_by_id(Cmd.PROG_GET_FD_BY_ID, prog_id, "prog")


def map_get_fd_by_id(map_id: int, open_flags: int = 0) -> Fd:
    """``BPF_MAP_GET_FD_BY_ID``: an fd for the map with that id (ENOENT if none)."""
    return _fd_by_id(Cmd.MAP_GET_FD_BY_ID, map_id, "map", open_flags)


def link_get_fd_by_id(link_id: int) -> Fd:
    """``BPF_LINK_GET_FD_BY_ID``: an fd for the link with that id (ENOENT if none)."""
    return _fd_by_id(Cmd.LINK_GET_FD_BY_ID, link_id, "link")


def btf_get_fd_by_id(btf_id: int) -> Fd:
    """``BPF_BTF_GET_FD_BY_ID``: an fd for the BTF object with that id (ENOENT if none)."""
    return _fd_by_id(Cmd.BTF_GET_FD_BY_ID, btf_id, "btf")


def btf_load(data: bytes, *, log_level: int = 0, log_size: int = 64 * 1024) -> tuple[Fd, str]:
    """``BPF_BTF_LOAD``: load a raw ``.BTF`` blob; return ``(fd, log)``.

    On failure the load is repeated with a log, and :class:`~pybpf.errors.SyscallError`
    carries it.
    """
    data_buf = in_buffer(data)

    def attempt(level: int) -> tuple[int, str]:
        log_buf = out_buffer(log_size) if level else None
        attr = BtfLoadAttr(
            btf=address(data_buf),
            btf_size=len(data),
            btf_log_buf=address(log_buf),
            btf_log_size=log_size if level else 0,
            btf_log_level=level,
        )
        log = ""
        try:
            fd = bpf(Cmd.BTF_LOAD, attr)
        except SyscallError as err:
            fd = -err.errno
        if log_buf is not None:
            log = bytes(log_buf).split(b"\0", 1)[0].decode("utf-8", "replace")
        return fd, log

    ret, log = attempt(log_level)
    if ret < 0 and not log_level:
        ret, log = attempt(1)
    if ret < 0:
        raise SyscallError(Cmd.BTF_LOAD.command_name, -ret, log=log)
    return Fd(ret, "btf"), log
