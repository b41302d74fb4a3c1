"""pybpf.syscall: bpf_attr layouts, uapi ids, Fd ownership and, where bpf() works, each command."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import struct
import sys
from pathlib import Path

import pytest

from kernel import BPF_UNAVAILABLE, open_fds, private_bpffs, private_cgroup, requires_bpf
from pybpf import syscall as sc
from pybpf.errors import InputError, NotSupportedError, SyscallError
from pybpf.isa import Instruction, encode
from pybpf.isa.asm import assemble
from pybpf.syscall import attr as attrs
from pybpf.syscall import call, uapi

UAPI_HEADER = Path("/usr/include/linux/bpf.h")
ETH_HLEN = 14


def program(text: str) -> bytes:
    return encode(assemble(text))


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def u64(value: int) -> bytes:
    return struct.pack("<Q", value)


# ---- layouts and ids (everywhere) ------------------------------------------------------


@pytest.mark.parametrize("cls", list(attrs.OFFSETS), ids=lambda c: c.__name__)
def test_struct_offsets_match_uapi(cls):
    got = {name: getattr(cls, name).offset for name in attrs.OFFSETS[cls]}
    assert got == attrs.OFFSETS[cls]
    for name, ctype in ((f[0], f[1]) for f in cls._fields_):
        if ctype is ctypes.c_uint64:  # __aligned_u64
            assert getattr(cls, name).offset % 8 == 0, name


def _header_enum(text: str, name: str) -> dict[str, int]:
    body = re.search(r"enum " + name + r" \{(.*?)\};", text, re.S)
    assert body, name
    values: dict[str, int] = {}
    current = -1
    cleaned = re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.S)
    for item in cleaned.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" in item:
            key, _, value = (part.strip() for part in item.partition("="))
            current = values[value] if value in values else int(value, 0)
        else:
            key = item
            current += 1
        values[key] = current
    return values


@pytest.mark.parametrize(
    ("enum", "c_name", "prefix"),
    [
        (uapi.Cmd, "bpf_cmd", "BPF_"),
        (uapi.MapType, "bpf_map_type", "BPF_MAP_TYPE_"),
        (uapi.ProgType, "bpf_prog_type", "BPF_PROG_TYPE_"),
        (uapi.AttachType, "bpf_attach_type", "BPF_"),
        (uapi.LinkType, "bpf_link_type", "BPF_LINK_TYPE_"),
    ],
)
def test_enums_agree_with_the_installed_uapi_header(enum, c_name, prefix):
    if not UAPI_HEADER.exists():
        pytest.skip(f"{UAPI_HEADER} is not installed (linux-libc-dev)")
    header = _header_enum(UAPI_HEADER.read_text(), c_name)
    compared = 0
    for member in enum:
        key = prefix + member.name
        if key in header:
            assert header[key] == member.value, key
            compared += 1
    assert compared >= 10  # an old header knows fewer ids, never none


def test_syscall_numbers():
    assert call.syscall_number("x86_64", 8) == 321
    assert call.syscall_number("aarch64", 8) == 280
    assert call.syscall_number("x86_64", 4) == 357  # 32-bit userland on a 64-bit kernel
    assert call.syscall_number("armv7l", 4) == 386
    with pytest.raises(NotSupportedError) as info:
        call.syscall_number("pdp11", 2)
    assert info.value.feature == "bpf"


def test_calls_fail_cleanly_off_linux(monkeypatch):
    monkeypatch.setattr(call, "_entry", None)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert not sc.available()
    with pytest.raises(NotSupportedError) as info:
        sc.map_create(sc.MapType.ARRAY, 4, 4, 1)
    assert info.value.feature == "bpf"


def test_fd_ownership():
    read, write = os.pipe()
    os.close(write)
    fd = sc.Fd(read, "map")
    assert int(fd) == read and fd.fileno() == read and not fd.closed
    copy = fd.dup()
    with fd:
        pass
    assert fd.closed
    fd.close()  # twice is fine
    with pytest.raises(ValueError):
        fd.fileno()
    with pytest.raises(OSError):
        os.fstat(read)
    raw = copy.detach()
    assert copy.closed
    os.close(raw)


def test_bad_arguments_are_input_errors():
    with pytest.raises(InputError):
        sc.prog_load(sc.ProgType.XDP, b"\x95\x00\x00\x00")  # half an instruction
    with pytest.raises(InputError):
        sc.map_create(sc.MapType.ARRAY, 4, 4, 1, name="a\0b")


# ---- the kernel (where bpf() works) -----------------------------------------------------


@requires_bpf
def test_array_map_update_lookup_next_key():
    with sc.map_create(sc.MapType.ARRAY, 4, 8, 3, name="pybpf_arr") as fd:
        assert fd.kind == "map"
        sc.map_update(fd, u32(1), u64(0x1122334455667788))
        assert sc.map_lookup(fd, u32(1), 8) == u64(0x1122334455667788)
        assert sc.map_lookup(fd, u32(0), 8) == u64(0)  # arrays are preallocated zeros
        assert sc.map_lookup(fd, u32(3), 8) is None  # out of range: ENOENT
        assert sc.map_get_next_key(fd, None, 4) == u32(0)
        assert sc.map_get_next_key(fd, u32(1), 4) == u32(2)
        assert sc.map_get_next_key(fd, u32(2), 4) is None
        assert list(sc.map_keys(fd, 4)) == [u32(0), u32(1), u32(2)]
        info = sc.map_info(fd)
        assert (info.type, info.key_size, info.value_size, info.max_entries, info.name) == (
            sc.MapType.ARRAY,
            4,
            8,
            3,
            "pybpf_arr",
        )
        assert info.id in set(sc.map_ids())
        with sc.map_get_fd_by_id(info.id) as again:
            assert sc.map_lookup(again, u32(1), 8) == u64(0x1122334455667788)


@requires_bpf
def test_hash_map_errors_carry_errno():
    with sc.map_create(sc.MapType.HASH, 8, 4, 16) as fd:
        keys = {u64(k * 0x9E3779B97F4A7C15 & (2**64 - 1)) for k in range(1, 6)}
        for i, key in enumerate(sorted(keys)):
            sc.map_update(fd, key, u32(i), sc.UpdateFlag.NOEXIST)
        assert set(sc.map_keys(fd, 8)) == keys
        key = sorted(keys)[0]
        with pytest.raises(SyscallError) as info:
            sc.map_update(fd, key, u32(9), sc.UpdateFlag.NOEXIST)
        assert info.value.errno == errno.EEXIST
        assert info.value.command == "BPF_MAP_UPDATE_ELEM"
        sc.map_delete(fd, key)
        assert sc.map_lookup(fd, key, 4) is None
        with pytest.raises(SyscallError) as info:
            sc.map_delete(fd, key)
        err = info.value
        assert isinstance(err, OSError)
        assert (err.errno, err.command, err.log) == (errno.ENOENT, "BPF_MAP_DELETE_ELEM", "")
        with pytest.raises(SyscallError) as info:
            sc.map_update(fd, u64(1), u32(1), sc.UpdateFlag.EXIST)
        assert info.value.errno == errno.ENOENT


STRINGS = b"\0int\0xdp_main\0prog.c\0r0 = 2;\0"


def string_offset(text: str) -> int:
    return STRINGS.index(text.encode() + b"\0")


def btf_blob() -> bytes:
    """[1] int (4 bytes), [2] FUNC_PROTO int(void), [3] FUNC xdp_main (global)."""
    types = struct.pack("<IIII", string_offset("int"), 1 << 24, 4, 32)
    types += struct.pack("<III", 0, 13 << 24, 1)
    types += struct.pack("<III", string_offset("xdp_main"), (12 << 24) | 1, 2)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(STRINGS))
    return header + types + STRINGS


@requires_bpf
def test_map_in_map_and_btf_typed_map():
    btf, _log = sc.btf_load(btf_blob())
    with btf:
        assert btf.kind == "btf"
        assert sc.btf_info(btf).id in set(sc.btf_ids())
        with sc.map_create(
            sc.MapType.ARRAY, 4, 4, 1, btf_fd=btf, btf_key_type_id=1, btf_value_type_id=1
        ) as typed:
            assert sc.map_info(typed).btf_id == sc.btf_info(btf).id
    with pytest.raises(SyscallError) as info:
        sc.btf_load(b"\0" * 24)
    assert info.value.command == "BPF_BTF_LOAD" and info.value.log
    with sc.map_create(sc.MapType.ARRAY, 4, 4, 1) as inner:
        with sc.map_create(sc.MapType.ARRAY_OF_MAPS, 4, 4, 2, inner_map_fd=inner) as outer:
            sc.map_update(outer, u32(0), u32(inner.fileno()))
            assert sc.map_lookup(outer, u32(0), 4) == u32(sc.map_info(inner).id)


@requires_bpf
def test_program_with_btf_func_and_line_info():
    func_info = struct.pack("<II", 0, 3)  # insn 0 is [3] xdp_main
    line_info = struct.pack(
        "<IIII", 0, string_offset("prog.c"), string_offset("r0 = 2;"), (7 << 10) | 5
    )
    btf, _ = sc.btf_load(btf_blob())
    with btf:
        fd, _ = sc.prog_load(
            sc.ProgType.XDP,
            program("r0 = 2\nexit"),
            name="xdp_main",
            prog_btf_fd=btf,
            func_info=func_info,
            line_info=line_info,
        )
        with fd:
            info = sc.prog_info(fd)
            assert (info.btf_id, info.nr_func_info, info.nr_line_info) == (
                sc.btf_info(btf).id,
                1,
                1,
            )
    with pytest.raises(InputError):
        sc.prog_load(sc.ProgType.XDP, program("r0 = 2\nexit"), func_info=b"\0" * 5)


@requires_bpf
def test_rejected_program_reports_the_verifier_log():
    bad = program("r0 = r5\nexit")  # r5 is never written
    for level in (0, 1):
        with pytest.raises(SyscallError) as info:
            sc.prog_load(sc.ProgType.XDP, bad, log_level=level)
        err = info.value
        assert err.errno == errno.EACCES
        assert err.command == "BPF_PROG_LOAD"
        assert "R5" in err.log  # the kernel's own words, kept whole


@requires_bpf
def test_small_log_buffer_grows():
    text = "\n".join(f"r{i % 6} = {i}" for i in range(200)) + "\nr0 = 0\nexit"
    fd, log = sc.prog_load(sc.ProgType.XDP, program(text), log_level=2, log_size=128)
    with fd:
        assert len(log) > 128 and "processed" in log


@requires_bpf
def test_loaded_program_info():
    insns = program("r0 = 2\nexit")
    fd, log = sc.prog_load(sc.ProgType.XDP, insns, name="pybpf_info")
    with fd:
        assert isinstance(log, str)
        info = sc.prog_info(fd)
        assert (info.type, info.name, info.gpl_compatible) == (sc.ProgType.XDP, "pybpf_info", True)
        assert len(info.tag) == 16 and info.xlated_prog_len == len(insns)
        assert sc.prog_xlated(fd) == insns
        assert info.id in set(sc.prog_ids())
        with sc.prog_get_fd_by_id(info.id) as again:
            assert sc.prog_info(again).tag == info.tag


@requires_bpf
def test_program_using_a_map_lists_it():
    with sc.map_create(sc.MapType.ARRAY, 4, 8, 1) as m:
        lddw = Instruction(0x18, dst=1, src=1, imm=m.fileno())  # r1 = map[fd] ll
        body = [
            lddw,
            *assemble("*(u32 *)(r10 - 4) = 0\nr2 = r10\nr2 += -4\ncall 1\nr0 = 2\nexit"),
        ]
        fd, _ = sc.prog_load(sc.ProgType.XDP, encode(body))
        with fd:
            assert sc.prog_info(fd).map_ids == (sc.map_info(m).id,)


XDP_STAMP = """
r2 = *(u32 *)(r1 + 0)
r3 = *(u32 *)(r1 + 4)
r4 = r2
r4 += 8
if r4 > r3 goto +5
r5 = 0x0123456789abcdef ll
*(u64 *)(r2 + 0) = r5
r0 = 3
exit
r0 = 1
exit
"""


@requires_bpf
def test_xdp_test_run_returns_packet_and_retval():
    fd, _ = sc.prog_load(sc.ProgType.XDP, program(XDP_STAMP))
    with fd:
        packet = bytes(range(64))
        result = sc.prog_test_run(fd, packet, repeat=3)
        assert result.retval == 3  # XDP_TX
        assert result.data_out == u64(0x0123456789ABCDEF) + packet[8:]
        assert result.duration >= 0 and result.ctx_out is None
        ctx = struct.pack("<6I", 0, len(packet), 0, 0, 0, 0)  # struct xdp_md
        result = sc.prog_test_run(fd, packet, ctx_in=ctx)
        assert result.ctx_out is not None and len(result.ctx_out) == len(ctx)
        with pytest.raises(SyscallError) as info:
            sc.prog_test_run(fd, packet, data_size_out=8)
        assert info.value.errno == errno.ENOSPC


@requires_bpf
def test_socket_filter_test_run():
    fd, _ = sc.prog_load(sc.ProgType.SOCKET_FILTER, program("r0 = *(u32 *)(r1 + 0)\nexit"))
    with fd:
        for size in (ETH_HLEN + 1, 60, 200):
            result = sc.prog_test_run(fd, b"\xab" * size)
            assert result.retval == size - ETH_HLEN  # skb->len counts from the network header


@requires_bpf
def test_pin_and_get():
    with private_bpffs() as root, sc.map_create(sc.MapType.HASH, 4, 4, 4) as m:
        sc.map_update(m, u32(7), u32(70))
        sc.obj_pin(m, root / "map")
        with pytest.raises(SyscallError) as info:
            sc.obj_pin(m, root / "map")
        assert info.value.errno == errno.EEXIST and info.value.command == "BPF_OBJ_PIN"
        with sc.obj_get(root / "map") as again:
            assert sc.map_info(again).id == sc.map_info(m).id
            assert sc.map_lookup(again, u32(7), 4) == u32(70)
        prog, _ = sc.prog_load(sc.ProgType.XDP, program("r0 = 2\nexit"))
        with prog:
            sc.obj_pin(prog, str(root / "prog"))
        with sc.obj_get(root / "prog") as again:
            assert sc.prog_test_run(again, bytes(64)).retval == 2
        with pytest.raises(SyscallError) as info:
            sc.obj_get(root / "missing")
        assert info.value.errno == errno.ENOENT


@requires_bpf
def test_cgroup_attach_detach_and_link():
    insns = program("r0 = 1\nexit")
    ingress = sc.AttachType.CGROUP_INET_INGRESS
    with private_cgroup() as path:
        fd, _ = sc.prog_load(sc.ProgType.CGROUP_SKB, insns, expected_attach_type=ingress)
        cgroup = sc.Fd(os.open(path, os.O_RDONLY | os.O_DIRECTORY), "cgroup")
        with fd, cgroup:
            prog_id = sc.prog_info(fd).id
            sc.prog_attach(fd, cgroup, ingress, sc.AttachFlag.ALLOW_MULTI)
            assert sc.prog_query(cgroup, ingress)[1] == [prog_id]
            sc.prog_detach(cgroup, ingress, fd)
            assert sc.prog_query(cgroup, ingress)[1] == []
            with sc.link_create(fd, cgroup, ingress) as link:
                info = sc.link_info(link)
                assert (info.type, info.prog_id) == (sc.LinkType.CGROUP, prog_id)
                assert info.id in set(sc.link_ids())
                assert sc.prog_query(cgroup, ingress)[1] == [prog_id]
            assert sc.prog_query(cgroup, ingress)[1] == []


@requires_bpf
def test_no_fd_leaks():
    before = open_fds()
    xdp = program(XDP_STAMP)
    for _ in range(20):
        with sc.map_create(sc.MapType.ARRAY, 4, 4, 1) as m:
            sc.map_lookup(m, u32(5), 4)
        fd, _ = sc.prog_load(sc.ProgType.XDP, xdp)
        sc.prog_test_run(fd, bytes(32))
        fd.close()
        with pytest.raises(SyscallError):
            sc.prog_load(sc.ProgType.XDP, program("exit"))  # r0 unset
        with pytest.raises(SyscallError):
            sc.map_create(sc.MapType.ARRAY, 0, 4, 1)
        sc.Fd(os.open(os.devnull, os.O_RDONLY))  # dropped without close: collected
    assert open_fds() == before


def test_kernel_probe_reason_is_explained():
    assert BPF_UNAVAILABLE is None or BPF_UNAVAILABLE.startswith("bpf()")
