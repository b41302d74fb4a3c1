"""Captures agree with dpkt, an independent pcap/pcapng implementation, both ways."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pybpf.hooks import Interface, PcapngWriter, PcapWriter, open_capture

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "captures"
NAMES = sorted(p.name for p in FIXTURES.glob("*.pcap*") if p.suffix in (".pcap", ".pcapng"))


def read(path_or_bytes):
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with open_capture(src) as cap:
        return cap.read_all()


dpkt = pytest.importorskip("dpkt", reason="dpkt (an independent reader/writer) is not installed")


@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith(".pcap")])
def test_dpkt_reads_our_pcap_output(name):
    frames = read(FIXTURES / name)
    out = io.BytesIO()
    with PcapWriter(out, nanosecond=True) as w:
        w.write_frames(frames)
    theirs = list(dpkt.pcap.Reader(io.BytesIO(out.getvalue())))
    assert [bytes(b) for _, b in theirs] == [f.data for f in frames]
    assert [round(float(ts) * 1e6) for ts, _ in theirs] == [
        round(f.timestamp_ns / 1e3) for f in frames
    ]


def test_we_read_dpkt_output():
    pkts = [bytes([i]) * (20 + i) for i in range(30)]
    for module in (dpkt.pcap, dpkt.pcapng):
        out = io.BytesIO()
        w = module.Writer(out, snaplen=65535)
        for i, p in enumerate(pkts):
            w.writepkt(p, ts=1_700_000_000 + i / 4)
        got = read(out.getvalue())
        assert [f.data for f in got] == pkts
        assert [f.timestamp_ns for f in got] == [
            1_700_000_000 * 10**9 + i * 250_000_000 for i in range(30)
        ]


def test_dpkt_reads_our_pcapng_output():
    frames = read(FIXTURES / "multi_le.pcapng")
    out = io.BytesIO()
    with PcapngWriter(out, interfaces=[Interface(1, 0)]) as w:
        for f in frames:
            w.write(f.data, f.timestamp_ns, f.orig_len)
    theirs = list(dpkt.pcapng.Reader(io.BytesIO(out.getvalue())))
    assert [bytes(b) for _, b in theirs] == [f.data for f in frames]
    assert [round(float(ts), 6) for ts, _ in theirs] == [
        round(f.timestamp_ns / 1e9, 6) for f in frames
    ]
