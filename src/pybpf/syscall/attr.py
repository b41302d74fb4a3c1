"""attr: ctypes layouts of ``union bpf_attr``'s per-command structs and the object-info structs.

Each class mirrors one anonymous member of ``union bpf_attr`` (or one ``struct bpf_*_info``)
in ``include/uapi/linux/bpf.h``, field for field. ``__aligned_u64`` fields sit on 8-byte
offsets through explicit ``_pad`` fields, so the layout is the kernel's on 32-bit hosts too;
:data:`OFFSETS` records the uapi offsets that ``tests/test_syscall.py`` checks. The kernel
accepts a shorter struct than its own (missing fields read as zero) and a longer one whose
extra bytes are zero, so each struct stops at the last field pybpf fills.

Pointers travel as integers: :func:`address` gives the address of a ctypes buffer.
"""

from __future__ import annotations

import ctypes
from ctypes import c_char, c_int32, c_uint8, c_uint32, c_uint64

from pybpf.syscall.uapi import OBJ_NAME_LEN, TAG_SIZE

__all__ = [
    "MapCreateAttr",
    "MapElemAttr",
    "ProgLoadAttr",
    "ObjAttr",
    "ProgAttachAttr",
    "TestRunAttr",
    "GetIdAttr",
    "InfoAttr",
    "ProgQueryAttr",
    "BtfLoadAttr",
    "LinkCreateAttr",
    "LinkDetachAttr",
    "ProgInfoStruct",
    "MapInfoStruct",
    "BtfInfoStruct",
    "LinkInfoStruct",
    "OFFSETS",
    "address",
    "in_buffer",
    "out_buffer",
]


class MapCreateAttr(ctypes.Structure):
    """``BPF_MAP_CREATE``."""

    _fields_ = [
        ("map_type", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("inner_map_fd", c_uint32),
        ("numa_node", c_uint32),
        ("map_name", c_char * OBJ_NAME_LEN),
        ("map_ifindex", c_uint32),
        ("btf_fd", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("map_extra", c_uint64),
        ("value_type_btf_obj_fd", c_int32),
        ("map_token_fd", c_int32),
    ]


class MapElemAttr(ctypes.Structure):
    """``BPF_MAP_LOOKUP_ELEM``, ``BPF_MAP_UPDATE_ELEM``, ``BPF_MAP_DELETE_ELEM``,
    ``BPF_MAP_GET_NEXT_KEY`` (``value`` doubles as ``next_key``)."""

    _fields_ = [
        ("map_fd", c_uint32),
        ("_pad0", c_uint32),
        ("key", c_uint64),
        ("value", c_uint64),
        ("flags", c_uint64),
    ]


class ProgLoadAttr(ctypes.Structure):
    """``BPF_PROG_LOAD`` (``attach_prog_fd`` shares its slot with ``attach_btf_obj_fd``)."""

    _fields_ = [
        ("prog_type", c_uint32),
        ("insn_cnt", c_uint32),
        ("insns", c_uint64),
        ("license", c_uint64),
        ("log_level", c_uint32),
        ("log_size", c_uint32),
        ("log_buf", c_uint64),
        ("kern_version", c_uint32),
        ("prog_flags", c_uint32),
        ("prog_name", c_char * OBJ_NAME_LEN),
        ("prog_ifindex", c_uint32),
        ("expected_attach_type", c_uint32),
        ("prog_btf_fd", c_uint32),
        ("func_info_rec_size", c_uint32),
        ("func_info", c_uint64),
        ("func_info_cnt", c_uint32),
        ("line_info_rec_size", c_uint32),
        ("line_info", c_uint64),
        ("line_info_cnt", c_uint32),
        ("attach_btf_id", c_uint32),
        ("attach_prog_fd", c_uint32),
        ("core_relo_cnt", c_uint32),
        ("fd_array", c_uint64),
        ("core_relos", c_uint64),
        ("core_relo_rec_size", c_uint32),
        ("log_true_size", c_uint32),
        ("prog_token_fd", c_int32),
        ("fd_array_cnt", c_uint32),
    ]


class ObjAttr(ctypes.Structure):
    """``BPF_OBJ_PIN`` and ``BPF_OBJ_GET``."""

    _fields_ = [
        ("pathname", c_uint64),
        ("bpf_fd", c_uint32),
        ("file_flags", c_uint32),
        ("path_fd", c_int32),
        ("_pad0", c_uint32),
    ]


class ProgAttachAttr(ctypes.Structure):
    """``BPF_PROG_ATTACH`` and ``BPF_PROG_DETACH`` (``target_fd`` or ``target_ifindex``)."""

    _fields_ = [
        ("target_fd", c_uint32),
        ("attach_bpf_fd", c_uint32),
        ("attach_type", c_uint32),
        ("attach_flags", c_uint32),
        ("replace_bpf_fd", c_uint32),
        ("relative_fd", c_uint32),
        ("expected_revision", c_uint64),
    ]


class TestRunAttr(ctypes.Structure):
    """``BPF_PROG_TEST_RUN`` (the ``test`` member)."""

    __test__ = False  # not a pytest test class

    _fields_ = [
        ("prog_fd", c_uint32),
        ("retval", c_uint32),
        ("data_size_in", c_uint32),
        ("data_size_out", c_uint32),
        ("data_in", c_uint64),
        ("data_out", c_uint64),
        ("repeat", c_uint32),
        ("duration", c_uint32),
        ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32),
        ("ctx_in", c_uint64),
        ("ctx_out", c_uint64),
        ("flags", c_uint32),
        ("cpu", c_uint32),
        ("batch_size", c_uint32),
        ("_pad0", c_uint32),
    ]


class GetIdAttr(ctypes.Structure):
    """``BPF_*_GET_NEXT_ID`` and ``BPF_*_GET_FD_BY_ID`` (``start_id`` is also ``prog_id``,
    ``map_id``, ``btf_id``, ``link_id``)."""

    _fields_ = [
        ("start_id", c_uint32),
        ("next_id", c_uint32),
        ("open_flags", c_uint32),
        ("fd_by_id_token_fd", c_int32),
    ]


class InfoAttr(ctypes.Structure):
    """``BPF_OBJ_GET_INFO_BY_FD`` (the ``info`` member)."""

    _fields_ = [
        ("bpf_fd", c_uint32),
        ("info_len", c_uint32),
        ("info", c_uint64),
    ]


class ProgQueryAttr(ctypes.Structure):
    """``BPF_PROG_QUERY`` (the ``query`` member, up to ``prog_attach_flags``)."""

    _fields_ = [
        ("target_fd", c_uint32),
        ("attach_type", c_uint32),
        ("query_flags", c_uint32),
        ("attach_flags", c_uint32),
        ("prog_ids", c_uint64),
        ("prog_cnt", c_uint32),
        ("_pad0", c_uint32),
        ("prog_attach_flags", c_uint64),
    ]


class BtfLoadAttr(ctypes.Structure):
    """``BPF_BTF_LOAD``."""

    _fields_ = [
        ("btf", c_uint64),
        ("btf_log_buf", c_uint64),
        ("btf_size", c_uint32),
        ("btf_log_size", c_uint32),
        ("btf_log_level", c_uint32),
        ("btf_log_true_size", c_uint32),
        ("btf_flags", c_uint32),
        ("btf_token_fd", c_int32),
    ]


class _LinkIter(ctypes.Structure):
    _fields_ = [("iter_info", c_uint64), ("iter_info_len", c_uint32), ("_pad0", c_uint32)]


class _LinkPerfEvent(ctypes.Structure):
    _fields_ = [("bpf_cookie", c_uint64)]


class _LinkTracing(ctypes.Structure):
    _fields_ = [("target_btf_id", c_uint32), ("_pad0", c_uint32), ("cookie", c_uint64)]


class _LinkNetfilter(ctypes.Structure):
    _fields_ = [
        ("pf", c_uint32),
        ("hooknum", c_uint32),
        ("priority", c_int32),
        ("flags", c_uint32),
    ]


class _LinkRelative(ctypes.Structure):
    """``tcx``, ``netkit`` and ``cgroup`` members: where to insert, and the expected revision."""

    _fields_ = [("relative_fd", c_uint32), ("_pad0", c_uint32), ("expected_revision", c_uint64)]


class _LinkCreateTail(ctypes.Union):
    # 48 bytes: the largest member (uprobe_multi) is 4 pointers and 4 u32s.
    _fields_ = [
        ("target_btf_id", c_uint32),
        ("iter", _LinkIter),
        ("perf_event", _LinkPerfEvent),
        ("tracing", _LinkTracing),
        ("netfilter", _LinkNetfilter),
        ("relative", _LinkRelative),
        ("_raw", c_uint64 * 6),
    ]


class LinkCreateAttr(ctypes.Structure):
    """``BPF_LINK_CREATE`` (``prog_fd`` is ``map_fd`` for struct_ops; ``target_fd`` is
    ``target_ifindex`` for XDP/tcx)."""

    _fields_ = [
        ("prog_fd", c_uint32),
        ("target_fd", c_uint32),
        ("attach_type", c_uint32),
        ("flags", c_uint32),
        ("tail", _LinkCreateTail),
    ]


class LinkDetachAttr(ctypes.Structure):
    """``BPF_LINK_DETACH``."""

    _fields_ = [("link_fd", c_uint32), ("_pad0", c_uint32)]


class ProgInfoStruct(ctypes.Structure):
    """``struct bpf_prog_info``."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("tag", c_uint8 * TAG_SIZE),
        ("jited_prog_len", c_uint32),
        ("xlated_prog_len", c_uint32),
        ("jited_prog_insns", c_uint64),
        ("xlated_prog_insns", c_uint64),
        ("load_time", c_uint64),
        ("created_by_uid", c_uint32),
        ("nr_map_ids", c_uint32),
        ("map_ids", c_uint64),
        ("name", c_char * OBJ_NAME_LEN),
        ("ifindex", c_uint32),
        ("gpl_compatible", c_uint32, 1),
        ("_pad_bits", c_uint32, 31),
        ("netns_dev", c_uint64),
        ("netns_ino", c_uint64),
        ("nr_jited_ksyms", c_uint32),
        ("nr_jited_func_lens", c_uint32),
        ("jited_ksyms", c_uint64),
        ("jited_func_lens", c_uint64),
        ("btf_id", c_uint32),
        ("func_info_rec_size", c_uint32),
        ("func_info", c_uint64),
        ("nr_func_info", c_uint32),
        ("nr_line_info", c_uint32),
        ("line_info", c_uint64),
        ("jited_line_info", c_uint64),
        ("nr_jited_line_info", c_uint32),
        ("line_info_rec_size", c_uint32),
        ("jited_line_info_rec_size", c_uint32),
        ("nr_prog_tags", c_uint32),
        ("prog_tags", c_uint64),
        ("run_time_ns", c_uint64),
        ("run_cnt", c_uint64),
        ("recursion_misses", c_uint64),
        ("verified_insns", c_uint32),
        ("attach_btf_obj_id", c_uint32),
        ("attach_btf_id", c_uint32),
        ("_pad0", c_uint32),
    ]


class MapInfoStruct(ctypes.Structure):
    """``struct bpf_map_info`` (up to ``map_extra``)."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("name", c_char * OBJ_NAME_LEN),
        ("ifindex", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("netns_dev", c_uint64),
        ("netns_ino", c_uint64),
        ("btf_id", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("btf_vmlinux_id", c_uint32),
        ("map_extra", c_uint64),
    ]


class BtfInfoStruct(ctypes.Structure):
    """``struct bpf_btf_info``."""

    _fields_ = [
        ("btf", c_uint64),
        ("btf_size", c_uint32),
        ("id", c_uint32),
        ("name", c_uint64),
        ("name_len", c_uint32),
        ("kernel_btf", c_uint32),
    ]


class LinkInfoStruct(ctypes.Structure):
    """``struct bpf_link_info``: the common head and the type-specific union as raw bytes."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("prog_id", c_uint32),
        ("_pad0", c_uint32),
        ("details", c_uint8 * 48),
    ]


# uapi offsets (offsetof in include/uapi/linux/bpf.h) of the fields whose place matters most.
OFFSETS: dict[type[ctypes.Structure], dict[str, int]] = {
    MapCreateAttr: {
        "map_flags": 16,
        "map_name": 28,
        "map_ifindex": 44,
        "btf_vmlinux_value_type_id": 60,
        "map_extra": 64,
        "value_type_btf_obj_fd": 72,
        "map_token_fd": 76,
    },
    MapElemAttr: {"key": 8, "value": 16, "flags": 24},
    ProgLoadAttr: {
        "insns": 8,
        "license": 16,
        "log_level": 24,
        "log_buf": 32,
        "kern_version": 40,
        "prog_name": 48,
        "prog_ifindex": 64,
        "expected_attach_type": 68,
        "prog_btf_fd": 72,
        "func_info": 80,
        "line_info": 96,
        "attach_btf_id": 108,
        "attach_prog_fd": 112,
        "fd_array": 120,
        "core_relos": 128,
        "core_relo_rec_size": 136,
        "log_true_size": 140,
        "prog_token_fd": 144,
        "fd_array_cnt": 148,
    },
    ObjAttr: {"pathname": 0, "bpf_fd": 8, "file_flags": 12, "path_fd": 16},
    ProgAttachAttr: {"attach_type": 8, "replace_bpf_fd": 16, "expected_revision": 24},
    TestRunAttr: {
        "data_in": 16,
        "data_out": 24,
        "repeat": 32,
        "ctx_size_in": 40,
        "ctx_in": 48,
        "ctx_out": 56,
        "flags": 64,
        "cpu": 68,
        "batch_size": 72,
    },
    GetIdAttr: {"next_id": 4, "open_flags": 8},
    InfoAttr: {"info_len": 4, "info": 8},
    ProgQueryAttr: {"prog_ids": 16, "prog_cnt": 24, "prog_attach_flags": 32},
    BtfLoadAttr: {"btf_size": 16, "btf_log_level": 24, "btf_log_true_size": 28},
    LinkCreateAttr: {"attach_type": 8, "flags": 12, "tail": 16},
    ProgInfoStruct: {
        "tag": 8,
        "load_time": 40,
        "map_ids": 56,
        "name": 64,
        "netns_dev": 88,
        "btf_id": 128,
        "line_info": 152,
        "prog_tags": 184,
        "run_time_ns": 192,
        "verified_insns": 216,
        "attach_btf_id": 224,
    },
    MapInfoStruct: {"name": 24, "ifindex": 40, "netns_dev": 48, "btf_id": 64, "map_extra": 80},
    BtfInfoStruct: {"id": 12, "name": 16, "kernel_btf": 28},
    LinkInfoStruct: {"details": 16},
}


def address(buffer: ctypes.Array | None) -> int:
    """The address of a ctypes buffer as the ``__u64`` the kernel expects (0 for ``None``)."""
    return 0 if buffer is None else ctypes.addressof(buffer)


def in_buffer(data: bytes | bytearray | memoryview) -> ctypes.Array | None:
    """A private copy of ``data`` the kernel may read, or ``None`` when it is empty."""
    raw = bytes(data)
    if not raw:
        return None
    return (c_uint8 * len(raw)).from_buffer_copy(raw)


def out_buffer(size: int) -> ctypes.Array | None:
    """A zeroed buffer of ``size`` bytes the kernel may write, or ``None`` for size 0."""
    return (c_uint8 * size)() if size > 0 else None
