"""Object loader fuzzing: ``pybpf.Object.open`` then ``load()`` of mutated example objects.

``tests/test_elf_fuzz.py`` and ``tests/test_btf_fuzz.py`` fuzz the ELF reader and the BTF
parser on their own; this file goes through the public facade and on to loading, with
mutations aimed where a loader turns bytes into allocations and structure: the ``.BTF``
section inside the object (map definitions' ``max_entries``/``key_size`` are BTF array
lengths), legacy ``maps`` definitions, ``.BTF.ext``, relocations, symbols and program text.

Opening raises only InputError (or NotSupportedError for valid input pybpf cannot
represent); loading may also end in VerifierError (a mutated program is unsafe) or MapError
(Linux's EINVAL/E2BIG for a map it would refuse). Never another exception, a hang past the
time bound, or more than the memory bound: a map asking for terabytes is refused, not
allocated. CI runs a fixed-seed, bounded number of inputs; a longer run::

    PYBPF_FUZZ_EXAMPLES=5000 python -m pytest -q tests/test_fuzz_objects.py

Crashing inputs are kept in ``tests/fixtures/fuzz/objects/`` and replayed here.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pybpf
from fuzz_guard import corpus, fuzz_settings, guard
from pybpf.elf import ElfFile
from pybpf.errors import InputError, MapError, NotSupportedError, VerifierError

ROOT = Path(__file__).resolve().parents[1]
_SHDR = struct.Struct("<IIQQQQIIQQ")
_WORDS = [0, 1, 2, 3, 4, 7, 8, 0x20, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
          0xFFFFFFFF, 0x1000000]  # fmt: skip
OPEN_ERRORS = (InputError, NotSupportedError)
LOAD_ERRORS = (InputError, NotSupportedError, VerifierError, MapError)
MEMORY_BOUND = 256 << 20  # first loads import the verifier (~70 MiB); a huge map would be GiBs


def _sections(data: bytes) -> dict[str, tuple[int, int]]:
    elf = ElfFile(data)
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    out = {"<headers>": (0, 64), "<section headers>": (shoff, 64 * len(elf.sections))}
    for sec in elf.sections:
        if sec.nobits or not sec.size or ".debug" in sec.name:
            continue
        out[sec.name] = (_SHDR.unpack_from(data, shoff + 64 * sec.index)[4], sec.size)
    return out


SAMPLES = [
    (p.name, p.read_bytes())
    for p in sorted((ROOT / "examples" / "c").glob("*.o"))
    if p.name != "bind_monitor.o"  # its 1.5 s load (a big verifier run) would dominate
]
REGIONS = {name: _sections(data) for name, data in SAMPLES}


def _weight(section: str) -> int:
    if section in (".BTF", ".maps", "maps"):
        return 4
    if section.startswith((".rel", ".BTF.ext", ".symtab")):
        return 2
    return 1


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    name, data = draw(st.sampled_from(SAMPLES))
    regions = REGIONS[name]
    weighted = [s for s in sorted(regions) for _ in range(_weight(s))]
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        start, size = regions[draw(st.sampled_from(weighted))]
        pos = start + draw(st.integers(0, max(0, size - 4)))
        pos -= pos % 4
        if draw(st.booleans()):
            value = draw(st.sampled_from(_WORDS))
        else:
            old = int.from_bytes(out[pos : pos + 4], "little")
            value = (old + draw(st.sampled_from([-1, 1, 4, 8, 1 << 20]))) & 0xFFFFFFFF
        out[pos : pos + 4] = value.to_bytes(4, "little")
    return bytes(out)


def open_and_load(data: bytes, engine: str = "interpreter") -> str:
    """Open (only input errors) then load (input, verifier or map errors) and close;
    returns how it ended (``"open:ElfError"``, ``"load:VerifierError"``, ``"loaded"``)."""
    try:
        obj = pybpf.Object.open(data, name="fuzz")
    except OPEN_ERRORS as err:
        return f"open:{type(err).__name__}"
    try:
        obj.load(engine=engine, pin_maps_dir=None)
    except LOAD_ERRORS as err:
        return f"load:{type(err).__name__}"
    finally:
        obj.close()
    return "loaded"


def _run(data: bytes) -> None:
    guard(
        "objects",
        lambda: open_and_load(data),
        allowed=LOAD_ERRORS,
        seconds=15,
        max_bytes=MEMORY_BOUND,
    )


@fuzz_settings(150)
@given(mutated())
def test_mutated_objects_open_and_load(data: bytes) -> None:
    """150 inputs in CI (about 4 s); ``PYBPF_FUZZ_EXAMPLES=N`` for more."""
    _run(data)


@pytest.mark.parametrize("path", corpus("objects"), ids=lambda p: p.name)
def test_regressions(path: Path) -> None:
    _run(path.read_bytes())


def test_samples_load_unmutated() -> None:
    loaded = 0
    for name, data in SAMPLES:
        if name == "externs.o":  # needs kconfig values from the host
            continue
        guard("objects", lambda d=data: open_and_load(d), allowed=(), max_bytes=MEMORY_BOUND)
        loaded += 1
    assert loaded >= 10
