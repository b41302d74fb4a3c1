"""info: what the kernel says about a program, map, link or BTF object (OBJ_GET_INFO_BY_FD).

Each ``*_info`` function returns a frozen dataclass with plain Python values; types are the
uapi enums where the number is known (else the raw ``int``). :func:`prog_xlated` and
:func:`prog_jited` fetch the program's translated and JIT-compiled code.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from enum import IntEnum

from pybpf.syscall.attr import (
    BtfInfoStruct,
    InfoAttr,
    LinkInfoStruct,
    MapInfoStruct,
    ProgInfoStruct,
    address,
    out_buffer,
)
from pybpf.syscall.call import bpf
from pybpf.syscall.fd import FdLike, fd_number
from pybpf.syscall.uapi import Cmd, LinkType, MapType, ProgType

__all__ = [
    "ProgInfo",
    "MapInfo",
    "BtfInfo",
    "LinkInfo",
    "prog_info",
    "map_info",
    "btf_info",
    "link_info",
    "prog_xlated",
    "prog_jited",
]


def _get_info(fd: FdLike, info: ctypes.Structure) -> None:
    attr = InfoAttr(bpf_fd=fd_number(fd), info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)


def _enum(kind: type[IntEnum], value: int) -> int:
    try:
        return kind(value)
    except ValueError:
        return value


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


@dataclass(frozen=True)
class ProgInfo:
    """``struct bpf_prog_info`` of a loaded program (``bpftool prog show``'s data)."""

    type: ProgType | int
    id: int
    tag: str  # 16 hex digits, as bpftool prints it
    name: str
    jited_prog_len: int
    xlated_prog_len: int
    load_time: int  # ns since boot
    created_by_uid: int
    map_ids: tuple[int, ...]
    ifindex: int
    gpl_compatible: bool
    netns_dev: int
    netns_ino: int
    btf_id: int
    nr_func_info: int
    nr_line_info: int
    run_time_ns: int
    run_cnt: int
    recursion_misses: int
    verified_insns: int
    attach_btf_obj_id: int
    attach_btf_id: int


def prog_info(fd: FdLike) -> ProgInfo:
    """The kernel's description of a program, with the ids of the maps it uses."""
    info = ProgInfoStruct()
    _get_info(fd, info)
    map_ids: tuple[int, ...] = ()
    if info.nr_map_ids:
        count = info.nr_map_ids
        ids = (ctypes.c_uint32 * count)()
        again = ProgInfoStruct(nr_map_ids=count, map_ids=ctypes.addressof(ids))
        _get_info(fd, again)
        map_ids = tuple(ids[: min(count, again.nr_map_ids)])
    return ProgInfo(
        type=_enum(ProgType, info.type),
        id=info.id,
        tag=bytes(info.tag).hex(),
        name=_name(info.name),
        jited_prog_len=info.jited_prog_len,
        xlated_prog_len=info.xlated_prog_len,
        load_time=info.load_time,
        created_by_uid=info.created_by_uid,
        map_ids=map_ids,
        ifindex=info.ifindex,
        gpl_compatible=bool(info.gpl_compatible),
        netns_dev=info.netns_dev,
        netns_ino=info.netns_ino,
        btf_id=info.btf_id,
        nr_func_info=info.nr_func_info,
        nr_line_info=info.nr_line_info,
        run_time_ns=info.run_time_ns,
        run_cnt=info.run_cnt,
        recursion_misses=info.recursion_misses,
        verified_insns=info.verified_insns,
        attach_btf_obj_id=info.attach_btf_obj_id,
        attach_btf_id=info.attach_btf_id,
    )


def _prog_code(fd: FdLike, which: str) -> bytes:
    info = ProgInfoStruct()
    _get_info(fd, info)
    size = getattr(info, f"{which}_prog_len")
    buffer = out_buffer(size)
    if buffer is None:
        return b""
    again = ProgInfoStruct()
    setattr(again, f"{which}_prog_len", size)
    setattr(again, f"{which}_prog_insns", address(buffer))
    _get_info(fd, again)
    return bytes(buffer)[: min(size, getattr(again, f"{which}_prog_len"))]


def prog_xlated(fd: FdLike) -> bytes:
    """The program as the verifier rewrote it (bytecode; empty without CAP_SYS_ADMIN)."""
    return _prog_code(fd, "xlated")


def prog_jited(fd: FdLike) -> bytes:
    """The program's native code from the JIT (empty when it is interpreted)."""
    return _prog_code(fd, "jited")


@dataclass(frozen=True)
class MapInfo:
    """``struct bpf_map_info`` of a map."""

    type: MapType | int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    name: str
    ifindex: int
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int
    btf_vmlinux_value_type_id: int
    map_extra: int


def map_info(fd: FdLike) -> MapInfo:
    """The kernel's description of a map."""
    info = MapInfoStruct()
    _get_info(fd, info)
    return MapInfo(
        type=_enum(MapType, info.type),
        id=info.id,
        key_size=info.key_size,
        value_size=info.value_size,
        max_entries=info.max_entries,
        map_flags=info.map_flags,
        name=_name(info.name),
        ifindex=info.ifindex,
        btf_id=info.btf_id,
        btf_key_type_id=info.btf_key_type_id,
        btf_value_type_id=info.btf_value_type_id,
        btf_vmlinux_value_type_id=info.btf_vmlinux_value_type_id,
        map_extra=info.map_extra,
    )


@dataclass(frozen=True)
class BtfInfo:
    """``struct bpf_btf_info`` of a BTF object (``name`` is set for kernel and module BTF)."""

    id: int
    size: int
    name: str
    kernel_btf: bool


def btf_info(fd: FdLike) -> BtfInfo:
    """The kernel's description of a BTF object."""
    name = out_buffer(256)
    info = BtfInfoStruct(name=address(name), name_len=256)
    _get_info(fd, info)
    text = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace") if name else ""
    return BtfInfo(id=info.id, size=info.btf_size, name=text, kernel_btf=bool(info.kernel_btf))


@dataclass(frozen=True)
class LinkInfo:
    """``struct bpf_link_info``: type, ids, and the type-specific union as raw bytes."""

    type: LinkType | int
    id: int
    prog_id: int
    details: bytes


def link_info(fd: FdLike) -> LinkInfo:
    """The kernel's description of a link."""
    info = LinkInfoStruct()
    _get_info(fd, info)
    return LinkInfo(
        type=_enum(LinkType, info.type),
        id=info.id,
        prog_id=info.prog_id,
        details=bytes(info.details),
    )
