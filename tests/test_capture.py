"""Captures: fixtures read as packed and as tcpdump reads them, round trips, dpkt agreement."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from pybpf.errors import CaptureError, InputError
from pybpf.hooks import (
    Capture,
    Frame,
    Interface,
    PcapngReader,
    PcapngWriter,
    PcapReader,
    PcapWriter,
    detect_format,
    open_capture,
    open_writer,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "captures"
NAMES = sorted(p.name for p in FIXTURES.glob("*.pcap*") if p.suffix in (".pcap", ".pcapng"))


def as_rows(frames):
    return [[f.timestamp_ns, f.data.hex(), f.orig_len, f.interface, f.linktype] for f in frames]


def read(path_or_bytes):
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with open_capture(src) as cap:
        return cap.read_all()


def test_fixtures_exist():
    assert len(NAMES) >= 6


@pytest.mark.parametrize("name", NAMES)
def test_fixture_frames_match_ground_truth(name):
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    with open_capture(FIXTURES / name) as cap:
        assert cap.format == ("pcapng" if name.endswith(".pcapng") else "pcap")
        rows = as_rows(cap)
        assert cap.count == len(expected)
    assert rows == expected


def parse_tcpdump(text: str) -> list[tuple[int, bytes]]:
    """(ns timestamp, captured bytes) per packet of ``tcpdump -tt -nn -xx`` output."""
    packets: list[tuple[int, bytearray]] = []
    for line in text.splitlines():
        head = re.match(r"^(\d+)\.(\d{9}) ", line)
        if head:
            packets.append((int(head.group(1)) * 10**9 + int(head.group(2)), bytearray()))
            continue
        hexline = re.match(r"^\s+0x[0-9a-f]+:\s+((?:[0-9a-f]{2,4}\s?)+)", line)
        if hexline and packets:
            packets[-1][1].extend(bytes.fromhex(hexline.group(1).replace(" ", "")))
    return [(ts, bytes(data)) for ts, data in packets]


@pytest.mark.parametrize("name", [n for n in NAMES if (FIXTURES / f"{n}.tcpdump.txt").exists()])
def test_fixture_frames_match_tcpdump(name):
    theirs = parse_tcpdump((FIXTURES / f"{name}.tcpdump.txt").read_text())
    ours = [(f.timestamp_ns, f.data) for f in read(FIXTURES / name)]
    assert len(theirs) == len(ours) > 0
    assert ours == theirs


def test_some_fixtures_have_tcpdump_output():
    assert len(list(FIXTURES.glob("*.tcpdump.txt"))) >= 4


def test_reader_details():
    with PcapReader(FIXTURES / "eth_be_nano.pcap") as r:
        assert (r.byteorder, r.nanosecond, r.version, r.linktype) == (">", True, (2, 4), 1)
        assert r.snaplen == 262144
    with PcapReader(FIXTURES / "eth_le_micro.pcap") as r:
        assert (r.byteorder, r.nanosecond, r.snaplen) == ("<", False, 65535)
    with PcapngReader(FIXTURES / "mixed_links.pcapng") as r:
        frames = list(r)
        assert r.sections == 2
        assert [i.linktype for i in r.interfaces] == [1, 101, 1]
        assert r.interfaces[1].name == "veth1"
        assert r.interfaces[1].ts_units_per_second == 10**9
        assert r.interfaces[2].ts_units_per_second == 2**20
        assert r.interfaces[2].ts_offset_s == 5
        assert {f.linktype for f in frames} == {1, 101}


def frames_sample(n=20):
    return [
        Frame(
            1_600_000_000_000_000_000 + i * 1_234_567,
            bytes(range(i % 256)) * 3,
            3 * (i % 256),
            0,
            1,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [True, False])
def test_pcap_round_trip(order, nano):
    frames = frames_sample()
    out = io.BytesIO()
    with PcapWriter(out, nanosecond=nano, byteorder=order) as w:
        assert w.write_frames(frames) == len(frames)
    back = read(out.getvalue())
    want = [
        f._replace(timestamp_ns=f.timestamp_ns - (0 if nano else f.timestamp_ns % 1000))
        for f in frames
    ]
    assert back == want
    again = io.BytesIO()
    with PcapWriter(again, nanosecond=nano, byteorder=order) as w:
        w.write_frames(back)
    assert again.getvalue() == out.getvalue()


@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith(".pcapng")])
def test_pcapng_round_trip(name):
    with PcapngReader(FIXTURES / name) as r:
        frames = list(r)
        interfaces = r.interfaces
    out = io.BytesIO()
    with PcapngWriter(out, interfaces=interfaces, byteorder=">") as w:
        for f in frames:
            w.write_frame(f)
    back = read(out.getvalue())
    assert back == frames
    again = io.BytesIO()
    with PcapngWriter(again, interfaces=interfaces, byteorder=">") as w:
        w.write_frames(back)
    assert again.getvalue() == out.getvalue()


def test_pcapng_to_pcap_and_back(tmp_path):
    frames = read(FIXTURES / "multi_le.pcapng")
    with open_writer(tmp_path / "x.pcap") as w:
        assert w.format == "pcap"
        w.write_frames(frames)
    with open_capture(tmp_path / "x.pcap") as cap:
        assert cap.format == "pcap"
        got = cap.read_all()
    assert [(f.timestamp_ns, f.data, f.orig_len) for f in got] == [
        (f.timestamp_ns, f.data, f.orig_len) for f in frames
    ]
    with open_writer(tmp_path / "y.pcapng", interfaces=[Interface(1, 0)]) as w:
        assert w.format == "pcapng"
        w.write_frames(got)
    assert read(tmp_path / "y.pcapng") == got


def test_snaplen_cuts_and_keeps_orig_len():
    out = io.BytesIO()
    with PcapWriter(out, snaplen=10) as w:
        w.write(b"x" * 50, 7)
    with PcapngWriter(out2 := io.BytesIO(), snaplen=10) as w:
        w.write(b"x" * 50, 7)
    for data in (out.getvalue(), out2.getvalue()):
        (frame,) = read(data)
        assert (frame.data, frame.orig_len, frame.timestamp_ns) == (b"x" * 10, 50, 7)


def test_detect_format_and_refusals(tmp_path):
    assert detect_format((FIXTURES / "eth_be_nano.pcap").read_bytes()[:4]) == "pcap"
    assert detect_format((FIXTURES / "multi_le.pcapng").read_bytes()[:4]) == "pcapng"
    assert detect_format(b"\x7fELF") is None
    for data in (b"", b"\x7fELF" + bytes(40), b"\xd4\xc3"):
        with pytest.raises(CaptureError) as info:
            Capture.from_bytes(data)
        assert isinstance(info.value, InputError)
        assert (info.value.packet, info.value.offset) == (None, 0)
    with pytest.raises(CaptureError) as info:
        open_capture(tmp_path / "missing.pcap")
    assert info.value.path == str(tmp_path / "missing.pcap")
    with pytest.raises(CaptureError):
        open_writer(io.BytesIO(), "pcapx")
    with pytest.raises(CaptureError) as info:
        PcapWriter(io.BytesIO()).write(b"x", interface=1)
    assert info.value.packet == 1
    with pytest.raises(CaptureError):
        PcapngWriter(io.BytesIO()).write(b"x", interface=3)


def test_path_reader_closes_and_file_stays_open(tmp_path):
    with open(FIXTURES / "eth_le_micro.pcap", "rb") as f:
        with open_capture(f) as cap:
            assert len(cap.read_all()) == 7
        assert not f.closed
    cap = open_capture(FIXTURES / "eth_le_micro.pcap")
    cap.close()
    assert cap._file.closed


def test_writer_flushes_on_error(tmp_path):
    path = tmp_path / "partial.pcapng"
    with pytest.raises(RuntimeError):
        with open_writer(path) as w:
            w.write(b"abc", 1)
            w.write(b"defg", 2)
            raise RuntimeError("stop")
    assert [f.data for f in read(path)] == [b"abc", b"defg"]


def test_big_capture_crosses_chunks():
    frames = [Frame(i, bytes([i & 0xFF]) * (i % 1500), i % 1500, 0, 1) for i in range(3000)]
    for writer in (PcapWriter, PcapngWriter):
        out = io.BytesIO()
        with writer(out) as w:
            w.write_frames(frames)
        assert len(out.getvalue()) > 2 * (1 << 20)
        assert read(out.getvalue()) == frames
