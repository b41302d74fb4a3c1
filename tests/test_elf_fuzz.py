"""ELF fuzzing: mutated example, fixture and corpus objects either open or raise one clean
error (InputError, or NotSupportedError for valid input pybpf cannot represent), quickly."""

from __future__ import annotations

import struct
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.elf import ElfFile, read_object
from pybpf.errors import InputError, NotSupportedError
from pybpf.spec import link

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
_SHDR = struct.Struct("<IIQQQQIIQQ")
_CORPUS_SAMPLES = (
    "linux/sockex3_kern.o",
    "new_linux/tracex2_kern.o",
    "build/map_in_map.o",
    "build/prog_array.o",
    "build/global_variable.o",
    "cilium-examples/tcprtt_sockops_bpf_bpfel.o",
    "invalid/dac31099c3bb5b6395908c82cc8540e77a6a1849",
)
MAX_SECONDS = 2.0  # per input: objects here open in milliseconds


def _regions(data: bytes) -> tuple[tuple[int, int], ...]:
    """Byte ranges worth mutating: headers and every section but DWARF."""
    elf = ElfFile(data)
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    out = [(0, 64), (shoff, 64 * len(elf.sections))]
    for sec in elf.sections:
        if sec.nobits or not sec.size or ".debug" in sec.name:
            continue
        out.append((_SHDR.unpack_from(data, shoff + 64 * sec.index)[4], sec.size))
    return tuple(out)


def _samples() -> list[tuple[bytes, tuple[tuple[int, int], ...]]]:
    paths = sorted((ROOT / "examples" / "c").glob("*.o"))
    paths += sorted((ROOT / "tests" / "fixtures" / "elf").glob("*.o"))
    paths += [CORPUS / n for n in _CORPUS_SAMPLES if (CORPUS / n).exists()]
    out = []
    for path in paths:
        data = path.read_bytes()
        out.append((data, _regions(data)))
    return out


SAMPLES = _samples()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
_VALUES = [0, 1, 2, 3, 4, 7, 8, 16, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFFFFFFF, 1 << 63, (1 << 64) - 1]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data, regions = draw(st.sampled_from(SAMPLES))
    out = bytearray(data)
    if draw(st.integers(0, 9)) == 0:
        return bytes(out[: draw(st.integers(0, len(out)))])
    for _ in range(draw(st.integers(1, 4))):
        start, size = draw(st.sampled_from(regions))
        width = draw(st.sampled_from([1, 2, 4, 8]))
        pos = start + draw(st.integers(0, max(0, size - 1)))
        pos -= pos % width
        if pos + width > len(out):
            continue
        mask = (1 << (8 * width)) - 1
        if draw(st.booleans()):
            value = draw(st.sampled_from(_VALUES)) & mask
        else:
            old = int.from_bytes(out[pos : pos + width], "little")
            value = (old + draw(st.sampled_from([-8, -1, 1, 8, 24]))) & mask
        out[pos : pos + width] = value.to_bytes(width, "little")
    return bytes(out)


def _exercise(data: bytes) -> None:
    try:
        spec = read_object(data)
    except (InputError, NotSupportedError):
        return
    for name in spec.programs:
        try:
            link(spec, name)
        except InputError:
            pass


@FUZZ
@given(mutated())
def test_mutated_objects_open_or_fail_cleanly(data):
    start = time.perf_counter()
    _exercise(data)
    assert time.perf_counter() - start < MAX_SECONDS


@FUZZ
@given(st.binary(max_size=256))
def test_random_bytes_fail_cleanly(data):
    _exercise(b"\x7fELF\x02\x01\x01" + data if data[:1] == b"\0" else data)


def test_samples_open_unmutated():
    assert len(SAMPLES) >= 10
    for data, _ in SAMPLES:
        read_object(data)
