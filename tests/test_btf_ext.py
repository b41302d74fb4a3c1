""".BTF.ext parsing: func_info, line_info (source text per instruction) and CO-RE relocations
from a clang-built fixture, header variants, both byte orders and malformed sections."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pybpf.btf import (
    CoreReloKind,
    Enum,
    Ext,
    Func,
    FuncLinkage,
    FuncProto,
    Int,
    IntEncoding,
    Kind,
    Member,
    Param,
    Spec,
    Struct,
    Void,
    encode,
    parse,
    parse_ext,
)
from pybpf.errors import BTFError, InputError

FIXTURES = Path(__file__).parent / "fixtures" / "btf"
KINDS_O = FIXTURES / "kinds.o"
KINDS_C = FIXTURES / "kinds.c"


def elf_section(path: Path, name: str) -> bytes:
    with open(path, "rb") as f:
        return ELFFile(f).get_section_by_name(name).data()


@pytest.fixture(scope="module")
def spec() -> Spec:
    return parse(elf_section(KINDS_O, ".BTF"))


@pytest.fixture(scope="module")
def ext(spec: Spec) -> Ext:
    return parse_ext(elf_section(KINDS_O, ".BTF.ext"), spec)


# ---- the clang-built fixture ---------------------------------------------------------------
def test_func_info_per_section(spec: Spec, ext: Ext) -> None:
    assert set(ext.func_info) == {".text", "xdp"}
    assert ext.func_info_rec_size == 8
    xdp = ext.func_info["xdp"]
    assert len(xdp) == 1 and xdp[0].insn_off == 0 and spec.type(xdp[0].type_id).name == "prog"
    text = ext.func_info[".text"]
    names = [spec.type(r.type_id).name for r in text]
    assert sorted(names) == ["global_fn", "helper"]
    assert text[0].insn_off == 0 and text[1].insn_off > 0
    assert all(r.insn_index * 8 == r.insn_off for r in text)
    assert all(isinstance(spec.type(r.type_id), Func) for r in text)


def test_line_info_gives_the_source_line_of_each_instruction(ext: Ext) -> None:
    source = KINDS_C.read_text().splitlines()
    records = [r for recs in ext.line_info.values() for r in recs]
    assert ext.line_info_rec_size == 16 and len(records) > 20
    for r in records:
        assert r.file_name == "./kinds.c"
        assert r.line == source[r.line_number - 1], r
        assert 0 <= r.column <= len(r.line) + 1
    first = ext.line_info["xdp"][0]
    assert (first.insn_off, first.line, first.column) == (0, "int prog(struct xdp_md *ctx)", 0)
    offsets = [r.insn_off for r in ext.line_info["xdp"]]
    assert offsets == sorted(offsets)


def test_line_at_finds_the_record_in_effect(ext: Ext) -> None:
    records = ext.line_info["xdp"]
    second = records[1]
    assert ext.line_at("xdp", second.insn_off) == second
    gap = [
        (a, b) for a, b in zip(records, records[1:], strict=False) if b.insn_off - a.insn_off > 8
    ]
    a, b = gap[0]
    assert ext.line_at("xdp", a.insn_off + 8) == a
    assert ext.line_at("xdp", 10**6) == records[-1]
    assert ext.line_at("nope", 0) is None


def test_core_relocations_of_every_kind(spec: Spec, ext: Ext) -> None:
    relos = ext.core_relos["xdp"]
    assert {r.kind for r in relos} == set(CoreReloKind)
    by_kind = {r.kind: r for r in relos}
    nested = spec.find("nested", Kind.STRUCT)
    exists = by_kind[CoreReloKind.FIELD_EXISTS]
    assert exists.type_id == nested.id and exists.access == "0:7" and exists.accessors == (0, 7)
    assert nested.members[exists.accessors[1]].name == "ratio"
    assert by_kind[CoreReloKind.TYPE_ID_LOCAL].type_id == nested.id
    enumval = by_kind[CoreReloKind.ENUMVAL_EXISTS]
    color = spec.type(enumval.type_id)
    assert isinstance(color, Enum) and color.values[enumval.accessors[0]].name == "BLUE"
    bitfield = by_kind[CoreReloKind.FIELD_LSHIFT_U64]
    assert spec.type(bitfield.type_id).name == "bits" and bitfield.accessors == (0, 2)
    assert all(r.insn_off % 8 == 0 and r.insn_index == r.insn_off // 8 for r in relos)


# ---- hand-made sections --------------------------------------------------------------------
STRINGS = b"\0int\0f\0prog\0file.c\0int x = 1;\0" + b"0:1\0"
S_INT, S_F, S_PROG, S_FILE, S_LINE = 1, 5, 7, 12, 19
S_ACCESS = STRINGS.index(b"0:1")


def small_spec(order: str = "little") -> Spec:
    types = (
        Void(),
        Int(1, "int", 4, IntEncoding.SIGNED, 0, 32),
        FuncProto(2, "", 1, (Param("", 1),)),
        Func(3, "f", 2, FuncLinkage.GLOBAL),
        Struct(4, "", 8, (Member("", 1, 0), Member("", 1, 32))),
    )
    return parse(encode(Spec(types, STRINGS), byte_order=order))


def block(rec_size: int, sections: list[tuple[int, list[bytes]]], e: str = "<") -> bytes:
    out = struct.pack(e + "I", rec_size)
    for name_off, records in sections:
        out += struct.pack(e + "II", name_off, len(records)) + b"".join(records)
    return out


def ext_bytes(
    func: bytes = b"",
    line: bytes = b"",
    core: bytes = b"",
    *,
    hdr_len: int = 32,
    e: str = "<",
    **override: int,
) -> bytes:
    fields = dict(
        magic=0xEB9F,
        version=1,
        flags=0,
        hdr_len=hdr_len,
        func_off=0,
        func_len=len(func),
        line_off=len(func),
        line_len=len(line),
        core_off=len(func) + len(line),
        core_len=len(core),
    )
    fields.update(override)
    head = struct.pack(e + "HBBIIIIIII", *fields.values())[: max(hdr_len, 8)]
    head += b"\0" * (hdr_len - len(head))
    return head + func + line + core


def sample(e: str = "<", line_rec: int = 16) -> bytes:
    func = block(8, [(S_PROG, [struct.pack(e + "II", 0, 3)])], e)
    pad = b"\0" * (line_rec - 16)
    lines = [
        struct.pack(e + "IIII", 0, S_FILE, S_LINE, (7 << 10) | 5) + pad,
        struct.pack(e + "IIII", 16, S_FILE, S_INT, (9 << 10) | 1) + pad,
    ]
    line = block(line_rec, [(S_PROG, lines)], e)
    core = block(16, [(S_PROG, [struct.pack(e + "IIII", 8, 4, S_ACCESS, 0)])], e)
    return ext_bytes(func, line, core, e=e)


def test_hand_made_section() -> None:
    ext = parse_ext(sample(), small_spec())
    assert ext.func_info["prog"][0].type_id == 3
    first, second = ext.line_info["prog"]
    assert (first.file_name, first.line, first.line_number, first.column) == (
        "file.c",
        "int x = 1;",
        7,
        5,
    )
    assert (second.insn_index, second.line, second.line_number) == (2, "int", 9)
    relo = ext.core_relos["prog"][0]
    assert (relo.insn_index, relo.type_id, relo.accessors, relo.kind) == (
        1,
        4,
        (0, 1),
        CoreReloKind.FIELD_BYTE_OFFSET,
    )


def test_big_endian_sections_read_the_same() -> None:
    little = parse_ext(sample("<"), small_spec("little"))
    big = parse_ext(sample(">"), small_spec("big"))
    assert big == little


def test_longer_records_are_skipped_over() -> None:
    ext = parse_ext(sample(line_rec=24), small_spec())
    assert ext.line_info_rec_size == 24
    assert ext.line_info == parse_ext(sample(), small_spec()).line_info


def test_older_shorter_header_has_no_core_relos(spec: Spec, ext: Ext) -> None:
    data = elf_section(KINDS_O, ".BTF.ext")
    (hdr_len,) = struct.unpack_from("<I", data, 4)
    assert hdr_len == 32
    old = data[:4] + struct.pack("<I", 24) + data[8:24] + data[32:]
    parsed = parse_ext(old, spec)
    assert parsed.core_relos == {}
    assert parsed.func_info == ext.func_info and parsed.line_info == ext.line_info


def test_newer_longer_header_is_honoured(spec: Spec, ext: Ext) -> None:
    data = elf_section(KINDS_O, ".BTF.ext")
    new = data[:4] + struct.pack("<I", 40) + data[8:32] + b"\0" * 8 + data[32:]
    assert parse_ext(new, spec) == ext


def test_empty_blocks_are_allowed() -> None:
    ext = parse_ext(ext_bytes(), small_spec())
    assert ext == Ext()


# ---- malformed input -----------------------------------------------------------------------
GOOD = sample()
FUNC_REC = struct.pack("<II", 0, 3)

MALFORMED = {
    "empty": (b"", 0),
    "short": (GOOD[:6], 0),
    "bad magic": (b"\x12\x34" + GOOD[2:], 0),
    "version": (GOOD[:2] + b"\x02" + GOOD[3:], 2),
    "flags": (GOOD[:3] + b"\x01" + GOOD[4:], 3),
    "hdr_len small": (GOOD[:4] + struct.pack("<I", 16) + GOOD[8:], 4),
    "hdr_len past end": (GOOD[:4] + struct.pack("<I", 4096) + GOOD[8:], 4),
    "block past end": (ext_bytes(block(8, [(S_PROG, [FUNC_REC])]), func_len=999), 32),
    "block unaligned": (ext_bytes(b"\0\0" + block(8, [(S_PROG, [FUNC_REC])]), func_off=2), 34),
    "no record size": (ext_bytes(b"\x08\0", func_len=2), 32),
    "record size small": (ext_bytes(block(4, [(S_PROG, [b"\0" * 4])])), 32),
    "record size odd": (ext_bytes(block(10, [(S_PROG, [FUNC_REC + b"\0\0"])])), 32),
    "no records": (ext_bytes(struct.pack("<I", 8)), 32),
    "truncated section header": (ext_bytes(struct.pack("<II", 8, S_PROG)), 36),
    "zero count": (ext_bytes(block(8, [(S_PROG, [])])), 40),
    "count too large": (ext_bytes(struct.pack("<III", 8, S_PROG, 0x10000000) + FUNC_REC), 40),
    "section name past strings": (ext_bytes(block(8, [(999, [FUNC_REC])])), 36),
    "same section twice": (ext_bytes(block(8, [(S_PROG, [FUNC_REC]), (S_PROG, [FUNC_REC])])), 52),
    "func_info of a non-FUNC": (ext_bytes(block(8, [(S_PROG, [struct.pack("<II", 0, 1)])])), 48),
    "func_info of a missing type": (
        ext_bytes(block(8, [(S_PROG, [struct.pack("<II", 0, 99)])])),
        48,
    ),
    "insn_off not a multiple of 8": (
        ext_bytes(block(8, [(S_PROG, [struct.pack("<II", 4, 3)])])),
        44,
    ),
    "line text past strings": (
        ext_bytes(line=block(16, [(S_PROG, [struct.pack("<IIII", 0, S_FILE, 999, 0)])])),
        52,
    ),
    "relo of a missing type": (
        ext_bytes(core=block(16, [(S_PROG, [struct.pack("<IIII", 0, 99, S_ACCESS, 0)])])),
        48,
    ),
    "relo kind unknown": (
        ext_bytes(core=block(16, [(S_PROG, [struct.pack("<IIII", 0, 4, S_ACCESS, 13)])])),
        56,
    ),
    "relo access not numeric": (
        ext_bytes(core=block(16, [(S_PROG, [struct.pack("<IIII", 0, 4, S_FILE, 0)])])),
        52,
    ),
    "relo access empty": (
        ext_bytes(core=block(16, [(S_PROG, [struct.pack("<IIII", 0, 4, 0, 0)])])),
        52,
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_sections_raise_one_clean_error(case: str) -> None:
    data, offset = MALFORMED[case]
    with pytest.raises(BTFError) as err:
        parse_ext(data, small_spec())
    assert isinstance(err.value, InputError)
    assert err.value.section == ".BTF.ext"
    assert err.value.offset == offset, str(err.value)
