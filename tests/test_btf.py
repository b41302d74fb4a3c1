"""BTF .BTF parsing: every kind from a clang-built fixture, lookups, layout, fix-ups, encoding
and clean refusal of malformed sections."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pybpf.btf import (
    Array,
    Const,
    DeclTag,
    Enum64,
    Float,
    Func,
    FuncLinkage,
    FuncProto,
    Int,
    IntEncoding,
    Kind,
    Member,
    Pointer,
    Restrict,
    Spec,
    Struct,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarLinkage,
    Void,
    Volatile,
    encode,
    format_c,
    parse,
)
from pybpf.errors import BTFError, InputError

FIXTURES = Path(__file__).parent / "fixtures" / "btf"
KINDS_O = FIXTURES / "kinds.o"


def elf_section(path: Path, name: str) -> bytes | None:
    """The bytes of one ELF section (pyelftools, in tests only), or None."""
    with open(path, "rb") as f:
        section = ELFFile(f).get_section_by_name(name)
        return section.data() if section is not None else None


@pytest.fixture(scope="module")
def kinds() -> Spec:
    return parse(elf_section(KINDS_O, ".BTF"))


def one(spec: Spec, name: str, kind: Kind):
    found = spec.find_all(name, kind)
    assert len(found) == 1, (name, kind, found)
    return found[0]


# ---- raw section builder for hand-made inputs ----------------------------------------------
def rec(
    kind: int,
    name_off: int = 0,
    vlen: int = 0,
    size_type: int = 0,
    *,
    kflag: int = 0,
    extra: bytes = b"",
    info: int | None = None,
) -> bytes:
    """One type record: the 12-byte common part plus its kind-specific bytes."""
    if info is None:
        info = (kflag << 31) | (kind << 24) | vlen
    return struct.pack("<III", name_off, info, size_type) + extra


def raw_btf(records: list[bytes], strings: bytes = b"\0int\0s\0", **header: int) -> bytes:
    """A little-endian .BTF section; ``header`` overrides fields of the 24-byte header."""
    types = b"".join(records)
    fields = dict(
        magic=0xEB9F,
        version=1,
        flags=0,
        hdr_len=24,
        type_off=0,
        type_len=len(types),
        str_off=len(types),
        str_len=len(strings),
    )
    fields.update(header)
    head = struct.pack("<HBBIIIII", *fields.values())
    return head + b"\0" * (fields["hdr_len"] - 24) + types + strings


INT32 = rec(1, 1, 0, 4, extra=struct.pack("<I", (1 << 24) | 32))  # [1] INT 'int' signed 32


# ---- every kind ----------------------------------------------------------------------------
def test_fixture_has_every_kind(kinds: Spec) -> None:
    assert {t.kind for t in kinds} == set(Kind) - {Kind.VOID}
    assert isinstance(kinds.type(0), Void) and len(kinds) == len(kinds.types)


def test_ints_floats_and_encodings(kinds: Spec) -> None:
    i = one(kinds, "int", Kind.INT)
    assert (i.size, i.bits, i.offset, i.is_signed) == (4, 32, 0, True)
    assert one(kinds, "_Bool", Kind.INT).encoding == IntEncoding.BOOL
    assert one(kinds, "unsigned char", Kind.INT).encoding == IntEncoding.NONE
    assert isinstance(kinds.find("float"), Float) and kinds.find("double").size == 8


def test_struct_members_and_bitfields(kinds: Spec) -> None:
    bits = one(kinds, "bits", Kind.STRUCT)
    assert bits.kind_flag and bits.size == 16
    got = [(m.name, m.bit_offset, m.bitfield_size) for m in bits.members]
    assert got == [("a", 0, 3), ("b", 3, 5), ("c", 8, 7), ("d", 16, 0), ("e", 24, 33), ("f", 64, 0)]
    nested = one(kinds, "nested", Kind.STRUCT)
    anon = kinds.type(nested.members[1].type_id)
    assert nested.members[1].name == "" and isinstance(anon, Union) and anon.size == 4
    assert [m.name for m in anon.members] == ["word", "bytes"]
    matrix = kinds.type(nested.members[9].type_id)
    assert isinstance(matrix, Array) and matrix.nelems == 2
    assert kinds.type(matrix.type_id).nelems == 3


def test_enums_signed_unsigned_and_64(kinds: Spec) -> None:
    color = one(kinds, "color", Kind.ENUM)
    assert not color.signed and [(v.name, v.value) for v in color.values] == [
        ("RED", 0),
        ("GREEN", 5),
        ("BLUE", 6),
    ]
    neg = one(kinds, "neg", Kind.ENUM)
    assert neg.signed and neg.values[0].value == -2
    big = one(kinds, "big", Kind.ENUM64)
    assert isinstance(big, Enum64) and big.size == 8 and big.values[1].value == 0x1FFFFFFFF
    assert one(kinds, "small_e", Kind.ENUM).size == 1


def test_fwd_typedef_qualifiers_and_tags(kinds: Spec) -> None:
    assert one(kinds, "opaque", Kind.FWD).is_union is False
    assert one(kinds, "opaque_u", Kind.FWD).is_union is True
    assert isinstance(kinds.type(one(kinds, "u64_t", Kind.TYPEDEF).type_id), Int)
    for cls in (Volatile, Const, Restrict, Pointer):
        assert kinds.of_kind(cls)
    tag = one(kinds, "user", Kind.TYPE_TAG)
    assert isinstance(tag, TypeTag) and kinds.type(tag.type_id).name == "int"
    nested = one(kinds, "nested", Kind.STRUCT)
    uptr = kinds.type(nested.members[13].type_id)
    assert isinstance(uptr, Pointer) and kinds.type(uptr.type_id) == tag


def test_decl_tags_name_their_component(kinds: Spec) -> None:
    tags = {t.name: t for t in kinds.of_kind(DeclTag)}
    assert kinds.type(tags["member_tag"].type_id).name == "nested"
    assert tags["member_tag"].component_idx == 0
    assert tags["bits_struct"].component_idx == -1
    assert isinstance(kinds.type(tags["param_tag"].type_id), Func)
    assert isinstance(kinds.type(tags["var_tag"].type_id), Var)


def test_funcs_protos_and_linkage(kinds: Spec) -> None:
    linkage = {f.name: f.linkage for f in kinds.of_kind(Func)}
    assert linkage == {
        "global_fn": FuncLinkage.GLOBAL,
        "prog": FuncLinkage.GLOBAL,
        "bpf_fake_kfunc": FuncLinkage.EXTERN,
        "helper": FuncLinkage.STATIC,
    }
    helper = kinds.type(one(kinds, "helper", Kind.FUNC).type_id)
    assert isinstance(helper, FuncProto) and [p.name for p in helper.params] == ["n", "k"]
    assert kinds.type(helper.return_type_id).name == "int"
    variadic = [p for p in kinds.of_kind(FuncProto) if p.variadic]
    assert len(variadic) == 1 and variadic[0].return_type_id == 0


def test_vars_and_datasecs(kinds: Spec) -> None:
    linkage = {v.name: v.linkage for v in kinds.of_kind(Var)}
    assert linkage["counter"] == VarLinkage.GLOBAL
    assert linkage["hidden"] == VarLinkage.STATIC
    assert linkage["LINUX_KERNEL_VERSION"] == VarLinkage.EXTERN
    data = kinds.datasec(".data")
    assert data.size == 0 and [kinds.type(v.type_id).name for v in data.vars] == [
        "counter",
        "scale",
    ]
    assert all(v.offset == 0 for v in data.vars)  # clang leaves them to the loader
    ksyms = kinds.datasec(".ksyms")
    assert isinstance(kinds.type(ksyms.vars[0].type_id), Func)
    assert kinds.datasec(".nope") is None


# ---- lookups and layout --------------------------------------------------------------------
def test_lookups(kinds: Spec) -> None:
    assert kinds.find("nested") is one(kinds, "nested", Kind.STRUCT)
    assert kinds.find("nested", Kind.TYPEDEF) is None and kinds.find("no such type") is None
    assert kinds.find_all("int", Int) == (kinds.find("int"),)
    assert kinds.string(0) == "" and kinds.string(kinds.strings.index(b"int\0")) == "int"
    with pytest.raises(BTFError) as err:
        kinds.type(len(kinds))
    assert err.value.type_id == len(kinds)
    with pytest.raises(BTFError):
        kinds.string(len(kinds.strings))


def test_sizes_and_alignment(kinds: Spec) -> None:
    def sid(name: str, kind: Kind = Kind.STRUCT) -> int:
        return one(kinds, name, kind).id

    assert kinds.size_of(sid("nested")) == 144 and kinds.align_of(sid("nested")) == 8
    assert kinds.size_of(sid("packed_s")) == 7 and kinds.align_of(sid("packed_s")) == 1
    assert kinds.size_of(sid("bits")) == 16 and kinds.align_of(sid("bits")) == 8
    assert kinds.size_of(sid("counter", Kind.VAR)) == 4
    assert kinds.size_of(sid("limit", Kind.VAR)) == 8  # const volatile __u64
    nested = kinds.find("nested")
    assert kinds.size_of(nested.members[9].type_id) == 24  # int[2][3]
    assert kinds.size_of(nested.members[18].type_id) == 0  # long tail[0]
    assert kinds.size_of(nested.members[17].type_id) == 8  # pointer
    assert kinds.align_of(nested.members[2].type_id) == 8  # anon struct with a pointer
    assert kinds.resolve(nested.members[12].type_id).name == "int"  # const volatile int
    assert isinstance(kinds.skip_modifiers(one(kinds, "limit", Kind.VAR).type_id), Typedef)
    for no_size in (0, sid("opaque", Kind.FWD), sid("prog", Kind.FUNC)):
        with pytest.raises(BTFError) as err:
            kinds.size_of(no_size)
        assert err.value.type_id == no_size
    with pytest.raises(BTFError):
        kinds.align_of(sid("prog", Kind.FUNC))


def test_size_overflow_is_an_error() -> None:
    arr = rec(3, extra=struct.pack("<III", 1, 1, 0x10000))
    spec = parse(raw_btf([INT32, arr, rec(3, extra=struct.pack("<III", 2, 1, 0x10000))]))
    assert spec.size_of(2) == 4 << 16
    with pytest.raises(BTFError) as err:
        spec.size_of(3)
    assert err.value.type_id == 3


# ---- loader fix-ups ------------------------------------------------------------------------
def elf_layout(path: Path) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    with open(path, "rb") as f:
        elf = ELFFile(f)
        sizes = {s.name: s.data_size for s in elf.iter_sections()}
        names = [s.name for s in elf.iter_sections()]
        offsets: dict[str, dict[str, int]] = {}
        for sym in elf.get_section_by_name(".symtab").iter_symbols():
            if isinstance(sym["st_shndx"], int) and sym.name:
                offsets.setdefault(names[sym["st_shndx"]], {})[sym.name] = sym["st_value"]
    return sizes, offsets


def test_fix_data_sections_fills_sizes_and_offsets(kinds: Spec) -> None:
    sizes, offsets = elf_layout(KINDS_O)
    fixed = kinds.fix_data_sections(sizes, offsets)
    data = fixed.datasec(".data")
    assert data.size == sizes[".data"] == 8
    assert [(fixed.type(v.type_id).name, v.offset, v.size) for v in data.vars] == [
        ("counter", 0, 4),
        ("scale", 4, 4),
    ]
    bss = fixed.datasec(".bss")
    assert bss.size == 160
    assert fixed.datasec(".kconfig") == kinds.datasec(".kconfig")  # the loader's business
    assert kinds.datasec(".data").size == 0  # the original is untouched
    assert fixed.types[1:] != kinds.types[1:] and len(fixed) == len(kinds)
    hidden = kinds.fix_data_sections(sizes, offsets, hidden={"counter"})
    assert one(hidden, "counter", Kind.VAR).linkage == VarLinkage.STATIC


def test_fix_data_sections_sorts_by_offset(kinds: Spec) -> None:
    sizes, offsets = elf_layout(KINDS_O)
    swapped = dict(offsets, **{".data": {"counter": 4, "scale": 0}})
    data = kinds.fix_data_sections(sizes, swapped).datasec(".data")
    assert [kinds.type(v.type_id).name for v in data.vars] == ["scale", "counter"]


@pytest.mark.parametrize("change", ["no size", "no symbol", "past end"])
def test_fix_data_sections_errors(kinds: Spec, change: str) -> None:
    sizes, offsets = elf_layout(KINDS_O)
    if change == "no size":
        del sizes[".data"]
    elif change == "no symbol":
        offsets = dict(offsets, **{".data": {"scale": 4}})
    else:
        offsets = dict(offsets, **{".data": {"counter": 6, "scale": 0}})
    with pytest.raises(BTFError) as err:
        kinds.fix_data_sections(sizes, offsets)
    assert err.value.type_id == kinds.datasec(".data").id
    assert err.value.section == ".BTF" and err.value.offset is not None


# ---- encoding and byte order ---------------------------------------------------------------
def test_encode_round_trips_exactly(kinds: Spec) -> None:
    data = elf_section(KINDS_O, ".BTF")
    assert encode(kinds) == data
    layouts = elf_section(FIXTURES / "layouts.o", ".BTF")
    assert encode(parse(layouts)) == layouts


def test_big_endian_reads_the_same_types(kinds: Spec) -> None:
    big = encode(kinds, byte_order="big")
    assert big[:2] == b"\xeb\x9f" and big != encode(kinds)
    spec = parse(big)
    assert spec.byte_order == "big" and spec.types == kinds.types
    assert format_c(spec) == format_c(kinds)
    assert encode(spec, byte_order="little") == encode(kinds)


def test_new_names_are_appended_to_the_string_table(kinds: Spec) -> None:
    nested = kinds.find("nested")
    renamed = dataclasses.replace(
        nested,
        name="renamed",
        members=(*nested.members[:-1], dataclasses.replace(nested.members[-1], name="new_tail")),
    )
    types = list(kinds.types)
    types[nested.id] = renamed
    spec = Spec(tuple(types), kinds.strings)
    again = parse(encode(spec))
    assert again.find("renamed") == renamed and again.find("nested") is None
    assert again.strings.startswith(kinds.strings)


def test_specs_can_be_built_from_records() -> None:
    spec = Spec(
        (
            Void(),
            Int(1, "int", 4, IntEncoding.SIGNED, 0, 32),
            Struct(2, "s", 8, (Member("a", 1, 0), Member("b", 1, 32))),
        )
    )
    assert parse(encode(spec)).types == spec.types
    assert spec.size_of(2) == 8 and spec.align_of(2) == 4


# ---- malformed input -----------------------------------------------------------------------
GOOD = raw_btf([INT32])
STRUCT_S = rec(4, 5, 1, 4, extra=struct.pack("<III", 5, 1, 0))  # [2] struct s { int s; }

MALFORMED = {
    "empty": (b"", 0),
    "short header": (GOOD[:20], 0),
    "bad magic": (b"\x00\x00" + GOOD[2:], 0),
    "version": (GOOD[:2] + b"\x02" + GOOD[3:], 2),
    "flags": (GOOD[:3] + b"\x01" + GOOD[4:], 3),
    "hdr_len small": (GOOD[:4] + struct.pack("<I", 8) + GOOD[8:], 4),
    "hdr_len huge": (GOOD[:4] + struct.pack("<I", 1 << 30) + GOOD[8:], 4),
    "strings past end": (raw_btf([INT32], str_len=100), 16),
    "types overlap strings": (raw_btf([INT32], type_len=20), 8),
    "types unaligned": (raw_btf([INT32], type_len=14), 8),
    "no strings": (raw_btf([INT32], str_len=0), 20),
    "strings not NUL-terminated": (raw_btf([INT32], b"\0int"), 24 + 16 + 3),
    "strings start non-empty": (raw_btf([INT32], b"x\0int\0"), 24 + 16),
    "truncated record": (raw_btf([INT32[:8]]), 24),
    "truncated INT data": (raw_btf([INT32[:12]]), 24),
    "kind 0": (raw_btf([INT32, rec(0)]), 40),
    "kind 31": (raw_btf([INT32, rec(31)]), 40),
    "vlen past section": (raw_btf([INT32, rec(4, 0, 0xFFFF, 4)]), 40),
    "name past strings": (raw_btf([rec(1, 99, 0, 4, extra=struct.pack("<I", 32))]), 24),
    "member name past strings": (
        raw_btf([INT32, rec(4, 0, 1, 4, extra=struct.pack("<III", 99, 1, 0))]),
        52,
    ),
    "unused info bits": (raw_btf([INT32, rec(2, info=(2 << 24) | (1 << 20))]), 44),
    "kind_flag on INT": (raw_btf([rec(1, 1, 0, 4, kflag=1, extra=struct.pack("<I", 32))]), 28),
    "vlen on PTR": (raw_btf([INT32, rec(2, 0, 1, 1)]), 44),
    "INT size 3": (raw_btf([rec(1, 1, 0, 3, extra=struct.pack("<I", 24))]), 32),
    "INT bits too wide": (raw_btf([rec(1, 1, 0, 4, extra=struct.pack("<I", 33))]), 32),
    "INT two encodings": (raw_btf([rec(1, 1, 0, 4, extra=struct.pack("<I", (3 << 24) | 32))]), 36),
    "ENUM size 3": (raw_btf([rec(6, 1, 0, 3)]), 32),
    "FLOAT size 5": (raw_btf([rec(16, 1, 0, 5)]), 32),
    "FUNC linkage 3": (raw_btf([INT32, rec(12, 1, 3, 1)]), 44),
    "VAR linkage 9": (raw_btf([INT32, rec(14, 1, 0, 1, extra=struct.pack("<I", 9))]), 52),
    "missing type": (raw_btf([INT32, rec(2, 0, 0, 7)]), 40),
    "FUNC of an INT": (raw_btf([INT32, rec(12, 1, 0, 1)]), 40),
    "DATASEC of an INT": (
        raw_btf([INT32, rec(15, 1, 1, 4, extra=struct.pack("<III", 1, 0, 4))]),
        40,
    ),
    "member of FUNC_PROTO type": (
        raw_btf([rec(13), rec(4, 5, 1, 4, extra=struct.pack("<III", 5, 1, 0))]),
        36,
    ),
    "DECL_TAG component": (
        raw_btf([INT32, STRUCT_S, rec(17, 1, 0, 2, extra=struct.pack("<i", 1))]),
        64,
    ),
    "DECL_TAG on INT": (raw_btf([INT32, rec(17, 1, 0, 1, extra=struct.pack("<i", -1))]), 40),
    "PTR to itself": (raw_btf([rec(2, 0, 0, 1)]), 24),
    "typedef loop": (raw_btf([rec(8, 1, 0, 2), rec(10, 0, 0, 1)]), 24),
    "struct holds itself": (raw_btf([rec(4, 5, 1, 4, extra=struct.pack("<III", 5, 1, 0))]), 24),
    "array of itself": (raw_btf([INT32, rec(3, extra=struct.pack("<III", 2, 1, 4))]), 40),
    "proto returns pointer to itself": (raw_btf([rec(13, 0, 0, 2), rec(2, 0, 0, 1)]), 24),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_sections_raise_one_clean_error(case: str) -> None:
    data, offset = MALFORMED[case]
    with pytest.raises(BTFError) as err:
        parse(data)
    assert isinstance(err.value, InputError)
    assert err.value.section == ".BTF"
    assert err.value.offset == offset, str(err.value)


def test_good_builder_input_parses() -> None:
    assert parse(GOOD).types == (Void(), Int(1, "int", 4, IntEncoding.SIGNED, 0, 32))
    ring = rec(4, 5, 1, 8, extra=struct.pack("<III", 5, 2, 0))  # struct s { struct s *s; }
    spec = parse(raw_btf([ring, rec(2, 0, 0, 1)]))
    assert spec.size_of(1) == 8 and spec.align_of(1) == 8
    assert "struct s *s;" in format_c(spec)


def test_longer_headers_are_honoured() -> None:
    spec = parse(raw_btf([INT32], hdr_len=32))
    assert spec.types == parse(GOOD).types
    assert spec.offsets[1] == 32


def test_a_huge_vlen_is_refused_without_reading_it() -> None:
    claim = rec(4, 0, 0xFFFF, 4) + b"\0" * 12
    with pytest.raises(BTFError) as err:
        parse(raw_btf([claim] * 100))
    assert err.value.offset == 24 and err.value.type_id == 1


def test_datasec_entry_sizes_are_not_trusted_for_allocation() -> None:
    sec = rec(15, 1, 1, 0, extra=struct.pack("<III", 2, 0, 0xFFFFFFFF))
    spec = parse(raw_btf([INT32, rec(14, 1, 0, 1, extra=struct.pack("<I", 1)), sec]))
    with pytest.raises(BTFError):
        spec.fix_data_sections({"int": 8}, {"int": {"int": 0}})
