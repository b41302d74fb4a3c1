"""BTF text output: raw listings and C headers compared with committed bpftool 7.1 dumps
(``bpftool btf dump file X [format c]``), plus the C writer's naming and safety bounds."""

from __future__ import annotations

from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pybpf.btf import (
    Enum,
    EnumValue,
    Fwd,
    Int,
    IntEncoding,
    Member,
    Pointer,
    Spec,
    Struct,
    Void,
    encode,
    format_c,
    format_raw,
    format_type,
    parse,
)
from pybpf.errors import BTFError

FIXTURES = Path(__file__).parent / "fixtures" / "btf"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
CORPUS_DUMPS = sorted(
    p.name[len("corpus__") : -len(".raw.txt")] for p in FIXTURES.glob("corpus__*.raw.txt")
)


def btf_of(path: Path) -> Spec:
    with open(path, "rb") as f:
        return parse(ELFFile(f).get_section_by_name(".BTF").data())


@pytest.mark.parametrize("name", ["kinds", "layouts"])
def test_fixture_objects_match_bpftool(name: str) -> None:
    spec = btf_of(FIXTURES / f"{name}.o")
    assert format_raw(spec) == (FIXTURES / f"{name}.raw.txt").read_text()
    assert format_c(spec) == (FIXTURES / f"{name}.c.txt").read_text()


@pytest.mark.parametrize("key", CORPUS_DUMPS)
def test_corpus_objects_match_bpftool(key: str) -> None:
    path = CORPUS / key.replace("__", "/", 1)
    if not path.exists():
        pytest.skip(f"corpus object {path} is not available (../shared is absent)")
    spec = btf_of(path)
    assert format_raw(spec) == (FIXTURES / f"corpus__{key}.raw.txt").read_text()
    assert format_c(spec) == (FIXTURES / f"corpus__{key}.c.txt").read_text()


def test_committed_corpus_dumps_are_listed() -> None:
    assert len(CORPUS_DUMPS) >= 5


def test_format_type_is_one_entry() -> None:
    spec = btf_of(FIXTURES / "kinds.o")
    var = spec.find("counter")
    assert (
        format_type(spec, var) == f"[{var.id}] VAR 'counter' type_id={var.type_id}, linkage=global"
    )


INT = Int(1, "int", 4, IntEncoding.SIGNED, 0, 32)


def test_duplicate_names_get_suffixes() -> None:
    spec = Spec(
        (
            Void(),
            INT,
            Struct(2, "dup", 4, (Member("a", 1, 0),)),
            Struct(3, "dup", 8, (Member("a", 1, 0), Member("b", 1, 32))),
            Enum(4, "e1", 4, (EnumValue("X", 1),)),
            Enum(5, "e2", 4, (EnumValue("X", 2),)),
        )
    )
    text = format_c(spec)
    assert "struct dup {\n\tint a;\n};" in text
    assert "struct dup___2 {\n\tint a;\n\tint b;\n};" in text
    assert "enum e2 {\n\tX___2 = 2,\n};" in text


def test_anonymous_struct_reached_from_inside_itself_is_refused() -> None:
    # struct { <anon> *self; }: legal BTF shape, but no C spelling exists (bpftool fails too)
    spec = Spec((Void(), Struct(1, "", 8, (Member("self", 2, 0),)), Pointer(2, "", 1)))
    assert "type_id=1" in format_raw(spec)
    with pytest.raises(BTFError) as err:
        format_c(spec)
    assert err.value.type_id == 1


def test_exponential_anonymous_nesting_is_bounded() -> None:
    types: list = [Void(), INT]
    for level in range(30):  # each level holds two copies of the previous one
        inner = len(types) - 1
        size = 4 << level
        types.append(
            Struct(len(types), "", size, (Member("a", inner, 0), Member("b", inner, size * 4)))
        )
    types.append(Struct(len(types), "top", 4 << 30, (Member("x", len(types) - 1, 0),)))
    spec = Spec(tuple(types))
    with pytest.raises(BTFError):
        format_c(spec)


def test_huge_padding_is_bounded() -> None:
    spec = Spec((Void(), INT, Struct(2, "big", 1 << 30, (Member("a", 1, 0),))))
    with pytest.raises(BTFError):
        format_c(spec)


def test_deep_nesting_fails_cleanly() -> None:
    # 3000 nested anonymous structs: valid BTF, deeper than Python's recursion allows
    types: list = [Void(), INT]
    for _ in range(3000):
        types.append(Struct(len(types), "", 4, (Member("m", len(types) - 1, 0),)))
    types.append(Struct(len(types), "outer", 4, (Member("m", len(types) - 1, 0),)))
    spec = parse(encode(Spec(tuple(types))))
    assert spec.size_of(len(types) - 1) == 4 and spec.align_of(len(types) - 1) == 4
    assert format_raw(spec).count("\n") == 2 * len(types) - 3
    with pytest.raises(BTFError):
        format_c(spec)


def test_members_without_alignment_do_not_break_padding() -> None:
    # found by the fuzz test: a gap before a member of incomplete type (alignment 0)
    fwd = Fwd(2, "opaque")
    spec = Spec((Void(), INT, fwd, Struct(3, "s", 16, (Member("a", 1, 0), Member("b", 2, 64)))))
    assert "\tint a;\n\tlong: 0;\n\tstruct opaque b;\n" in format_c(spec)


def test_big_structs_print_their_real_padding() -> None:
    spec = Spec((Void(), INT, Struct(2, "page", 4096, (Member("a", 1, 0),))))
    text = format_c(spec)
    # the 32 bits after `a` are left to the alignment of the first `long: 64`, as libbpf does
    assert text.count("\tlong: 64;") == 511 and "\tint: 32;" not in text
