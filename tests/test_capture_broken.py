"""Broken captures: every complete record, then one CaptureError naming the broken packet."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.errors import CaptureError
from pybpf.hooks import Frame, PcapngWriter, PcapWriter, open_capture

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "captures"
NAMES = sorted(p.name for p in FIXTURES.glob("*.pcap*") if p.suffix in (".pcap", ".pcapng"))


def record_ends(data: bytes) -> tuple[int, list[int], list[int]]:
    """(header end, every record/block end, the ends of packet records), walked here."""
    if data[:4] == b"\n\r\r\n":
        ends, packets, pos, order = [], [], 0, "<"
        while pos < len(data):
            if data[pos : pos + 4] == b"\n\r\r\n":
                order = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            btype, blen = struct.unpack_from(order + "II", data, pos)
            pos += blen
            ends.append(pos)
            if btype in (2, 3, 6):
                packets.append(pos)
        return ends[0], ends, packets
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos, ends = 24, [24]
    while pos < len(data):
        pos += 16 + struct.unpack_from(order + "I", data, pos + 8)[0]
        ends.append(pos)
    return 24, ends, ends[1:]


def read_until_error(data: bytes, **kw) -> tuple[list[Frame], CaptureError | None]:
    frames: list[Frame] = []
    try:
        with open_capture(io.BytesIO(data), **kw) as cap:
            for frame in cap:
                frames.append(frame)
    except CaptureError as exc:
        return frames, exc
    return frames, None


@pytest.mark.parametrize("name", NAMES)
def test_every_truncation_point(name):
    data = (FIXTURES / name).read_bytes()
    full, err = read_until_error(data)
    assert err is None
    header, ends, packet_ends = record_ends(data)
    assert len(packet_ends) == len(full)
    for cut in range(len(data)):
        frames, err = read_until_error(data[:cut])
        complete = sum(1 for e in packet_ends if e <= cut)
        assert frames == full[:complete], cut
        if cut in ends:
            assert err is None, (cut, err)
            continue
        assert err is not None, cut
        if cut < header:
            assert (err.packet, err.offset) == (None, 0), cut
        else:
            assert err.packet == complete + 1, cut
            assert err.offset == max(e for e in ends if e <= cut), cut


class Trickle(io.RawIOBase):
    """A stream that hands out at most a few bytes per read, like a slow pipe."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._step if n < 0 else min(n, self._step)
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("step", [1, 5, 13])
def test_short_reads(name, step):
    data = (FIXTURES / name).read_bytes()
    full, _ = read_until_error(data)
    with open_capture(Trickle(data, step)) as cap:
        assert cap.read_all() == full
    frames, err = [], None
    try:
        for frame in open_capture(Trickle(data[:-3], step)):
            frames.append(frame)
    except CaptureError as exc:
        err = exc
    assert frames == full[:-1]
    assert err is not None and err.packet == len(full)


def test_huge_record_length_is_refused_not_read():
    out = io.BytesIO()
    with PcapWriter(out) as w:
        for i in range(3):
            w.write(bytes([i]) * 40, i)
    data = bytearray(out.getvalue())
    struct.pack_into("<I", data, 24 + 2 * 56 + 8, 0x7FFFFFF0)  # third record's caplen
    frames, err = read_until_error(bytes(data))
    assert len(frames) == 2
    assert (err.packet, err.offset) == (3, 24 + 2 * 56)
    frames, err = read_until_error(out.getvalue(), max_record=39)
    assert (frames, err.packet, err.offset) == ([], 1, 24)


def test_pcapng_corruptions():
    out = io.BytesIO()
    with PcapngWriter(out) as w:
        for i in range(4):
            w.write(bytes([i]) * 40, i)
    good = out.getvalue()
    frames, err = read_until_error(good)
    assert err is None and len(frames) == 4
    _, ends, packet_ends = record_ends(good)
    third = packet_ends[1]  # start of the third EPB
    cases = {
        "huge length": (third + 4, 0x7FFFFFF0),
        "unaligned length": (third + 4, 74),
        "trailer differs": (packet_ends[2] - 4, 76),
        "caplen beyond block": (third + 20, 41),
        "unknown interface": (third + 8, 7),
    }
    for what, (offset, value) in cases.items():
        data = bytearray(good)
        struct.pack_into("<I", data, offset, value)
        frames, err = read_until_error(bytes(data))
        assert frames == read_until_error(good)[0][:2], what
        assert (err.packet, err.offset) == (3, third), what
    data = bytearray(good)
    struct.pack_into("<I", data, 8, 0x11223344)  # byte-order magic
    frames, err = read_until_error(bytes(data))
    assert (frames, err.packet, err.offset) == ([], None, 0)


SEEDS = [(FIXTURES / n).read_bytes() for n in NAMES]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 2000),
)
def test_fuzz_mutated_captures(seed, edits, cut):
    data = bytearray(seed[: max(cut, 4)])
    for offset, value in edits:
        if offset < len(data):
            data[offset] = value
    frames, err = read_until_error(bytes(data))
    for frame in frames:
        assert len(frame.data) <= 262144
    if err is not None:
        assert err.packet is None or err.packet == len(frames) + 1
        assert err.offset is not None and 0 <= err.offset <= len(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\n\r\r\n", b""]))
def test_fuzz_garbage(tail, magic):
    frames, err = read_until_error(magic + tail)
    if err is not None:
        assert err.packet is None or err.packet == len(frames) + 1
