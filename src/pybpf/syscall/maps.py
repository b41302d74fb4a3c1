"""maps: the kernel map commands: create, look up, update, delete and walk the keys.

Keys and values are ``bytes`` of the map's key and value sizes (for per-CPU maps a value is
``round_up(value_size, 8) * ncpus`` bytes, as in the kernel's ABI).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

from pybpf.errors import InputError, SyscallError
from pybpf.syscall.attr import MapCreateAttr, MapElemAttr, address, in_buffer, out_buffer
from pybpf.syscall.call import bpf
from pybpf.syscall.fd import Fd, FdLike, fd_number
from pybpf.syscall.uapi import OBJ_NAME_LEN, Cmd, MapType

__all__ = [
    "map_create",
    "map_lookup",
    "map_update",
    "map_delete",
    "map_get_next_key",
    "map_keys",
    "object_name",
]


def object_name(name: str) -> bytes:
    """``name`` as the kernel's NUL-terminated ``char[16]`` (at most 15 bytes kept)."""
    raw = name.encode()
    if b"\0" in raw:
        raise InputError(f"object name {name!r} contains a NUL byte")
    return raw[: OBJ_NAME_LEN - 1]


def map_create(
    map_type: MapType | int,
    key_size: int,
    value_size: int,
    max_entries: int,
    flags: int = 0,
    name: str = "",
    *,
    inner_map_fd: FdLike | None = None,
    numa_node: int = 0,
    map_ifindex: int = 0,
    btf_fd: FdLike | None = None,
    btf_key_type_id: int = 0,
    btf_value_type_id: int = 0,
    btf_vmlinux_value_type_id: int = 0,
    map_extra: int = 0,
) -> Fd:
    """``BPF_MAP_CREATE``: a new map; its :class:`Fd` owns it."""
    attr = MapCreateAttr(
        map_type=int(map_type),
        key_size=key_size,
        value_size=value_size,
        max_entries=max_entries,
        map_flags=int(flags),
        inner_map_fd=0 if inner_map_fd is None else fd_number(inner_map_fd),
        numa_node=numa_node,
        map_name=object_name(name),
        map_ifindex=map_ifindex,
        btf_fd=0 if btf_fd is None else fd_number(btf_fd),
        btf_key_type_id=btf_key_type_id,
        btf_value_type_id=btf_value_type_id,
        btf_vmlinux_value_type_id=btf_vmlinux_value_type_id,
        map_extra=map_extra,
    )
    return Fd(bpf(Cmd.MAP_CREATE, attr), "map")


def map_lookup(fd: FdLike, key: bytes, value_size: int, flags: int = 0) -> bytes | None:
    """``BPF_MAP_LOOKUP_ELEM``: the value stored under ``key``, or ``None`` (ENOENT)."""
    key_buf = in_buffer(key)
    value_buf = out_buffer(value_size)
    attr = MapElemAttr(
        map_fd=fd_number(fd), key=address(key_buf), value=address(value_buf), flags=flags
    )
    try:
        bpf(Cmd.MAP_LOOKUP_ELEM, attr)
    except SyscallError as err:
        if err.errno == errno.ENOENT:
            return None
        raise
    return bytes(value_buf) if value_buf is not None else b""


def map_update(fd: FdLike, key: bytes, value: bytes, flags: int = 0) -> None:
    """``BPF_MAP_UPDATE_ELEM`` with ``flags`` (:class:`~pybpf.syscall.uapi.UpdateFlag`)."""
    key_buf = in_buffer(key)
    value_buf = in_buffer(value)
    attr = MapElemAttr(
        map_fd=fd_number(fd), key=address(key_buf), value=address(value_buf), flags=int(flags)
    )
    bpf(Cmd.MAP_UPDATE_ELEM, attr)


def map_delete(fd: FdLike, key: bytes) -> None:
    """``BPF_MAP_DELETE_ELEM``; a missing key is ``SyscallError`` with errno ENOENT."""
    key_buf = in_buffer(key)
    attr = MapElemAttr(map_fd=fd_number(fd), key=address(key_buf))
    bpf(Cmd.MAP_DELETE_ELEM, attr)


def map_get_next_key(fd: FdLike, key: bytes | None, key_size: int) -> bytes | None:
    """``BPF_MAP_GET_NEXT_KEY``: the key after ``key`` (the first for ``None``), or ``None``."""
    key_buf = None if key is None else in_buffer(key)
    next_buf = out_buffer(key_size)
    attr = MapElemAttr(map_fd=fd_number(fd), key=address(key_buf), value=address(next_buf))
    try:
        bpf(Cmd.MAP_GET_NEXT_KEY, attr)
    except SyscallError as err:
        if err.errno == errno.ENOENT:
            return None
        raise
    return bytes(next_buf) if next_buf is not None else b""


def map_keys(fd: FdLike, key_size: int) -> Iterator[bytes]:
    """Every key of the map, in the kernel's iteration order."""
    key = map_get_next_key(fd, None, key_size)
    while key is not None:
        yield key
        key = map_get_next_key(fd, key, key_size)
