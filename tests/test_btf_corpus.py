"""BTF on real objects: every corpus file with a .BTF section parses (files in invalid/ may
fail, but only with a clean BTFError), round-trips, prints, and parses fast."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from pybpf.btf import encode, format_c, format_raw, parse, parse_ext
from pybpf.errors import BTFError

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def btf_sections(path: Path) -> tuple[bytes | None, bytes | None]:
    """(.BTF, .BTF.ext) of an object, or (None, None) when pyelftools cannot read it."""
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            sections = []
            for name in (".BTF", ".BTF.ext"):
                section = elf.get_section_by_name(name)
                sections.append(section.data() if section is not None else None)
            return sections[0], sections[1]
    except (ELFError, ValueError, KeyError, OSError):
        return None, None  # malformed ELF: the elf layer's business


def corpus_objects() -> list[tuple[Path, bytes, bytes | None]]:
    if not CORPUS.is_dir():
        return []
    found = []
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".csv"):
        btf, ext = btf_sections(path)
        if btf is not None:
            found.append((path, btf, ext))
    return found


OBJECTS = corpus_objects()


def require_corpus() -> None:
    if not OBJECTS:
        pytest.skip(f"corpus not available at {CORPUS} (../shared is absent)")


def test_every_corpus_btf_parses() -> None:
    require_corpus()
    parsed = refused = 0
    for path, btf, ext in OBJECTS:
        invalid = path.parent.name == "invalid"
        try:
            spec = parse(btf)
            extinfo = parse_ext(ext, spec) if ext is not None else None
        except BTFError as err:
            assert invalid, f"{path}: {err}"
            assert err.section in (".BTF", ".BTF.ext") and err.offset is not None
            refused += 1
            continue
        parsed += 1
        assert encode(spec) == btf, path
        assert format_raw(spec).count("\n") >= len(spec) - 1
        assert format_c(spec).endswith("#endif /* __VMLINUX_H__ */\n")
        if extinfo is not None:
            for records in extinfo.func_info.values():
                assert all(spec.type(r.type_id).kind.name == "FUNC" for r in records)
    assert parsed >= 70, (parsed, refused)


def test_biggest_corpus_btf_parses_well_under_a_second() -> None:
    require_corpus()
    path, btf, ext = max(OBJECTS, key=lambda o: len(o[1]) + len(o[2] or b""))
    start = time.perf_counter()
    spec = parse(btf)
    btf_seconds = time.perf_counter() - start
    start = time.perf_counter()
    extinfo = parse_ext(ext, spec)
    ext_seconds = time.perf_counter() - start
    assert sum(len(r) for r in extinfo.line_info.values()) > 10_000  # a real workload
    assert btf_seconds < 0.1, (path, btf_seconds)
    assert ext_seconds < 0.5, (path, ext_seconds)
