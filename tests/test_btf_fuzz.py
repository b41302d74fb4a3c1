"""BTF fuzzing: mutated real .BTF/.BTF.ext sections and random type graphs (cycles
included) either parse or raise one BTFError, never another exception, a hang or a blow-up."""

from __future__ import annotations

import struct
from pathlib import Path

from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.btf import encode, format_c, format_raw, parse, parse_ext
from pybpf.btf.spec import Spec
from pybpf.errors import BTFError, InputError

FIXTURES = Path(__file__).parent / "fixtures" / "btf"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def sections(path: Path) -> tuple[bytes, bytes | None]:
    with open(path, "rb") as f:
        elf = ELFFile(f)
        ext = elf.get_section_by_name(".BTF.ext")
        return elf.get_section_by_name(".BTF").data(), ext.data() if ext is not None else None


SAMPLES = [sections(FIXTURES / "kinds.o"), sections(FIXTURES / "layouts.o")]
for _name in ("new_linux/sockex3_kern.o", "cilium-examples/tcprtt_sockops_bpf_bpfel.o"):
    if (CORPUS / _name).exists():
        SAMPLES.append(sections(CORPUS / _name))

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["byte", "word", "truncate", "insert"]))
        pos = draw(st.integers(0, max(0, len(out) - 1)))
        if op == "byte" and out:
            out[pos] = draw(st.integers(0, 255))
        elif op == "word":
            pos &= ~3
            value = draw(st.sampled_from([0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000]))
            out[pos : pos + 4] = struct.pack("<I", value)
        elif op == "truncate":
            del out[pos:]
        else:
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(out)


def exercise(spec: Spec) -> None:
    """Everything a parsed spec offers must work or raise BTFError."""
    format_raw(spec)
    try:
        format_c(spec)
    except BTFError:
        pass
    for t in spec:
        for query in (spec.size_of, spec.align_of):
            try:
                query(t.id)
            except BTFError:
                pass
    assert parse(encode(spec)).types == spec.types


@FUZZ
@given(st.data())
def test_mutated_btf(data: st.DataObject) -> None:
    btf, _ = data.draw(st.sampled_from(SAMPLES))
    blob = data.draw(mutated(btf))
    try:
        spec = parse(blob)
    except InputError as err:
        assert isinstance(err, BTFError) and err.section == ".BTF"
        return
    exercise(spec)


@FUZZ
@given(st.data())
def test_mutated_btf_ext(data: st.DataObject) -> None:
    btf, ext = data.draw(st.sampled_from([s for s in SAMPLES if s[1] is not None]))
    spec = parse(btf)
    blob = data.draw(mutated(ext))
    try:
        parsed = parse_ext(blob, spec)
    except InputError as err:
        assert isinstance(err, BTFError) and err.section == ".BTF.ext"
        return
    for records in parsed.line_info.values():
        for r in records:
            assert r.insn_off % 8 == 0 and r.line_number >= 0


# Random type graphs: well-formed records whose references point anywhere (cycles included).
REF_KINDS = [2, 3, 4, 5, 8, 9, 10, 11, 13, 18]  # PTR ARRAY STRUCT UNION TYPEDEF mods PROTO TAG


@st.composite
def type_graphs(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(1, 12))
    ref = st.integers(0, n)
    records = [struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", 32)]  # [1] int
    for _ in range(n - 1):
        kind = draw(st.sampled_from(REF_KINDS))
        name = draw(st.sampled_from([0, 1]))
        if kind == 3:
            elem, nelems = draw(ref), draw(st.integers(0, 5))
            records.append(struct.pack("<IIIIII", 0, 3 << 24, 0, elem, 1, nelems))
        elif kind in (4, 5):
            members = draw(st.lists(st.tuples(ref, st.integers(0, 256)), max_size=3))
            size = draw(st.sampled_from([0, 4, 8, 16, 64]))
            body = b"".join(struct.pack("<III", 0, t, off) for t, off in members)
            records.append(struct.pack("<III", name, kind << 24 | len(members), size) + body)
        elif kind == 13:
            params = draw(st.lists(ref, max_size=3))
            body = b"".join(struct.pack("<II", 0, t) for t in params)
            records.append(struct.pack("<III", 0, 13 << 24 | len(params), draw(ref)) + body)
        else:
            records.append(
                struct.pack("<III", name if kind in (8, 18) else 0, kind << 24, draw(ref))
            )
    types = b"".join(records)
    strings = b"\0int\0"
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(type_graphs())
def test_random_type_graphs(blob: bytes) -> None:
    try:
        spec = parse(blob)
    except BTFError as err:
        assert err.type_id is not None
        return
    exercise(spec)
