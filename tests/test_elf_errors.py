"""Malformed objects: each defect gives one clean error naming where it is."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import pybpf
from pybpf.elf import ElfFile, read_object
from pybpf.errors import BTFError, ElfError, InputError, NotSupportedError

ROOT = Path(__file__).resolve().parents[1]
XDP = (ROOT / "examples" / "c" / "xdp_counter.o").read_bytes()
LEGACY = (ROOT / "examples" / "c" / "legacy_maps.o").read_bytes()
WINDOWS = (ROOT / "tests" / "fixtures" / "elf" / "windows_bind.o").read_bytes()
_SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym


def _header_offset(data: bytes, name: str) -> int:
    """File offset of section ``name``'s header."""
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    index = next(s.index for s in ElfFile(data).sections if s.name == name)
    return shoff + index * _SHDR.size


def _section_offset(data: bytes, name: str) -> int:
    """File offset of section ``name``'s bytes."""
    return _SHDR.unpack_from(data, _header_offset(data, name))[4]


def _patch(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def _symbol_offset(data: bytes, name: str) -> int:
    sym = next(s for s in ElfFile(data).symbols if s.name == name)
    return _section_offset(data, ".symtab") + sym.index * _SYM.size


@pytest.mark.parametrize("data", [b"", b"hello", b"\x7fELF", XDP[:64], XDP[: len(XDP) // 2]])
def test_not_an_object(data):
    with pytest.raises(ElfError):
        read_object(data)


def test_32_bit_class():
    with pytest.raises(ElfError) as err:
        read_object(_patch(XDP, 4, "B", 1))
    assert err.value.offset == 4


def test_big_endian_is_not_supported():
    with pytest.raises(NotSupportedError) as err:
        read_object(_patch(XDP, 5, "B", 2))
    assert err.value.feature == "bpfeb"


def test_other_machine():
    with pytest.raises(ElfError) as err:
        read_object(_patch(XDP, 18, "<H", 62))  # EM_X86_64
    assert err.value.offset == 18


def test_em_none_objects_are_accepted():
    spec = read_object(_patch(XDP, 18, "<H", 0))
    assert spec == read_object(XDP)


def test_section_past_end_of_file():
    bad = _patch(XDP, _header_offset(XDP, "xdp") + 32, "<Q", 1 << 40)  # sh_size
    with pytest.raises(ElfError) as err:
        read_object(bad)
    assert err.value.section == "xdp"


def test_code_size_not_a_multiple_of_8():
    bad = _patch(XDP, _header_offset(XDP, "xdp") + 32, "<Q", 12)
    with pytest.raises(ElfError) as err:
        read_object(bad)
    assert err.value.section == "xdp"


def test_bad_symbol_table_entry_size():
    bad = _patch(XDP, _header_offset(XDP, ".symtab") + 56, "<Q", 8)
    with pytest.raises(ElfError) as err:
        read_object(bad)
    assert err.value.section == ".symtab"


def test_symbol_in_missing_section():
    bad = _patch(XDP, _symbol_offset(XDP, "xdp_count") + 6, "<H", 999)
    with pytest.raises(ElfError) as err:
        read_object(bad)
    assert err.value.section == ".symtab" and err.value.symbol == "xdp_count"


def test_function_symbol_not_on_an_instruction():
    bad = _patch(XDP, _symbol_offset(XDP, "xdp_count") + 8, "<Q", 4)
    with pytest.raises(ElfError) as err:
        read_object(bad)
    assert err.value.symbol == "xdp_count" and err.value.section == "xdp"


def _first_reloc(data: bytes, name: str) -> int:
    return _section_offset(data, name)


def test_relocation_names_missing_symbol():
    rel = _first_reloc(XDP, ".relxdp")
    bad = _patch(XDP, rel + 8, "<Q", (5000 << 32) | 1)
    with pytest.raises(ElfError) as err:
        read_object(bad)
    assert err.value.section == ".relxdp"


def test_relocation_not_on_an_instruction():
    rel = _first_reloc(XDP, ".relxdp")
    offset = struct.unpack_from("<Q", XDP, rel)[0]
    with pytest.raises(ElfError) as err:
        read_object(_patch(XDP, rel, "<Q", offset + 3))
    assert err.value.section == "xdp"


def test_relocation_type_that_cannot_patch_code():
    rel = _first_reloc(XDP, ".relxdp")
    info = struct.unpack_from("<Q", XDP, rel + 8)[0]
    bad = _patch(XDP, rel + 8, "<Q", (info & ~0xFFFFFFFF) | 3)  # R_BPF_64_ABS32
    with pytest.raises(ElfError) as err:
        read_object(bad)
    assert err.value.section == "xdp" and err.value.program == "xdp_count"
    assert err.value.pc is not None


def test_relocation_on_an_instruction_that_is_not_lddw_or_call():
    rel = _first_reloc(XDP, ".relxdp")
    bad = _patch(XDP, rel, "<Q", 0)  # pc 0 of xdp_count is a plain load
    with pytest.raises(ElfError) as err:
        read_object(bad)
    assert err.value.pc == 0


def test_legacy_maps_that_do_not_split_into_records():
    no_btf = _patch(LEGACY, _header_offset(LEGACY, ".BTF"), "<I", 0)  # a nameless section
    assert read_object(no_btf).btf is None
    bad = _patch(no_btf, _header_offset(LEGACY, "maps") + 32, "<Q", 36)
    with pytest.raises(ElfError) as err:
        read_object(bad)
    assert err.value.section == "maps"


def test_legacy_map_of_unknown_type():
    bad = _patch(LEGACY, _section_offset(LEGACY, "maps"), "<I", 999)
    with pytest.raises(ElfError) as err:
        read_object(bad)
    assert err.value.section == "maps" and err.value.offset == 0


def test_corrupt_btf():
    bad = _patch(XDP, _section_offset(XDP, ".BTF"), "<H", 0x1234)
    with pytest.raises(BTFError) as err:
        read_object(bad)
    assert err.value.section == ".BTF"


def test_windows_helper_without_linux_counterpart():
    spec = read_object(WINDOWS)
    code = _section_offset(WINDOWS, "bind")
    pc = next(
        pc
        for pc, insn in _slots(spec.programs["BindMonitor"].instructions)
        if insn.is_call and insn.imm == 14  # translated get_current_pid_tgid (efW 19)
    )
    bad = _patch(WINDOWS, code + pc * 8 + 4, "<i", 20)  # efW get_current_logon_id
    with pytest.raises(NotSupportedError) as err:
        read_object(bad)
    assert err.value.program == "BindMonitor" and "logon" in err.value.feature


def test_windows_map_type_without_linux_counterpart():
    bad = _patch(WINDOWS, _section_offset(WINDOWS, "maps"), "<I", 15)
    with pytest.raises(NotSupportedError) as err:
        read_object(bad)
    assert err.value.section == "maps"


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.o"
    with pytest.raises(InputError) as err:
        pybpf.Object.open(path)
    assert err.value.path == str(path)
    bad = tmp_path / "bad.o"
    bad.write_bytes(b"not an object")
    with pytest.raises(ElfError) as err:
        pybpf.Object.open(bad)
    assert err.value.path == str(bad)


def _slots(insns):
    pc = 0
    for insn in insns:
        yield pc, insn
        pc += insn.slots
