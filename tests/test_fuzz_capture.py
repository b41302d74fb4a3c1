"""Capture fuzzing: mutated pcap/pcapng files read as every complete frame then, at most, one
CaptureError; never another exception, a hang or a blow-up of memory.

Mutations are structure-aware (record and block length fields, pcapng options such as
``if_tsresol``, section headers spliced in, records duplicated or cut) over the shipped
``examples/captures/mixed.pcap`` and the capture fixtures. CI runs a fixed-seed, bounded
number of inputs; a longer run::

    PYBPF_FUZZ_EXAMPLES=20000 python -m pytest -q tests/test_fuzz_capture.py

Crashing inputs found are kept in ``tests/fixtures/fuzz/capture/`` and replayed here.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz_guard import corpus, fuzz_settings, guard
from pybpf.errors import CaptureError, InputError
from pybpf.hooks import MAX_RECORD, open_capture

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [(ROOT / "examples" / "captures" / "mixed.pcap").read_bytes()] + [
    p.read_bytes()
    for p in sorted((ROOT / "tests" / "fixtures" / "captures").iterdir())
    if p.suffix in (".pcap", ".pcapng")
]
_WORDS = [0, 1, 3, 4, 11, 12, 16, 27, 28, 32, 0x7F, 0x80, 0xFF, 0xFFFF, 0x40000, 0x40001,
          0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFF]  # fmt: skip
_SHB_LE = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
_SHB_BE = struct.pack(">IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack(">I", 28)


def _idb(order: str, linktype: int, options: bytes) -> bytes:
    body = struct.pack(order + "HHI", linktype, 0, 0) + options
    blen = 12 + len(body)
    return struct.pack(order + "II", 1, blen) + body + struct.pack(order + "I", blen)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """One seed capture with a few structure-aware edits."""
    out = bytearray(draw(st.sampled_from(SEEDS)))
    order = "<" if out[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    if out[:4] == b"\n\r\r\n":
        order = "<" if out[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["word", "byte", "cut", "dup", "insert", "block"]))
        pos = draw(st.integers(0, max(0, len(out) - 1)))
        if op == "word":
            pos &= ~3
            value = draw(st.sampled_from(_WORDS))
            out[pos : pos + 4] = struct.pack(order + "I", value)[: max(0, len(out) - pos)]
        elif op == "byte" and out:
            out[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del out[draw(st.integers(0, len(out))) :]
        elif op == "dup":
            size = draw(st.integers(1, 64))
            out[pos:pos] = out[pos : pos + size]
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=24))
        else:  # a pcapng block: a section header, or an interface with odd options
            code = draw(st.sampled_from([9, 14, 10, 2, 0, 1, 0xFFFF]))  # tsresol, tsoffset...
            value = draw(st.binary(min_size=0, max_size=9))
            pad = b"\0" * (-len(value) % 4)
            opts = struct.pack(order + "HH", code, len(value)) + value + pad
            if draw(st.booleans()):
                opts += struct.pack(order + "HH", 0, 0)
            block = draw(
                st.sampled_from([_SHB_LE, _SHB_BE, _idb(order, 1, opts), _idb(order, 0xFFFF, b"")])
            )
            out[pos:pos] = block
    return bytes(out)


def read_all(data: bytes, via: str = "memory", tmp: Path | None = None) -> None:
    """Read every frame, checking what a reader promises along the way."""
    frames = 0
    source = io.BytesIO(data)
    if via == "path":
        assert tmp is not None
        source = tmp / "input.cap"
        source.write_bytes(data)
    try:
        with open_capture(source) as cap:
            for frame in cap:
                frames += 1
                assert len(frame.data) <= MAX_RECORD
                assert frame.timestamp_ns >= 0 or cap.format == "pcapng"
                assert 0 <= frame.interface < max(1, len(cap.interfaces))
            assert cap.count == frames
    except CaptureError as err:
        assert err.packet is None or err.packet == frames + 1
        assert err.offset is None or 0 <= err.offset <= len(data)
        raise


def _run(data: bytes, **kw) -> None:
    guard("capture", lambda: read_all(data, **kw), allowed=(InputError,), seconds=10)


@fuzz_settings(400)
@given(mutated())
def test_mutated_captures(data: bytes) -> None:
    """400 inputs in CI (about 2 s); ``PYBPF_FUZZ_EXAMPLES=N`` for more."""
    _run(data)


@fuzz_settings(150)
@given(
    st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\n\r\r\n", b"\x4d\x3c\xb2\xa1"]),
    st.binary(max_size=200),
)
def test_magic_then_garbage(magic: bytes, tail: bytes) -> None:
    """150 inputs in CI; ``PYBPF_FUZZ_EXAMPLES=N`` for more."""
    _run(magic + tail)


@pytest.mark.parametrize("path", corpus("capture"), ids=lambda p: p.name)
def test_regressions(path: Path, tmp_path: Path) -> None:
    """Inputs that once crashed or hung a reader, read from memory and from a path."""
    data = path.read_bytes()
    _run(data)
    _run(data, via="path", tmp=tmp_path)


def test_seeds_read_cleanly() -> None:
    for data in SEEDS:
        assert guard("capture", lambda d=data: read_all(d), allowed=()) is None
