"""Event consumers (RingBuffer, PerfBuffer, TraceLog) and bcc-style histograms."""

from __future__ import annotations

import io
import struct
import threading
import time
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import InputError
from pybpf.maps import create_map
from pybpf.maptypes import MapType
from pybpf.objects.events import PerfBuffer, RingBuffer, TraceLog
from pybpf.objects.histogram import (
    bucket_counts,
    format_linear_hist,
    format_log2_hist,
    log2_bucket,
    print_log2_hist,
)
from pybpf.state import StateDirectory

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "c"


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def _syn(seq: int) -> bytes:
    ip = bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    tcp = struct.pack(">HHIIBBHHH", 4000, 443, seq, 0, 5 << 4, 0x02, 1024, 0, 0)
    return bytes(12) + b"\x08\x00" + ip + tcp


# ---- ring buffers ------------------------------------------------------------------------------
def test_ring_buffer_hands_program_events_to_the_callback():
    got: list[bytes] = []
    with pybpf.load(EXAMPLES / "events.o") as obj:
        prog = obj.programs["syn_events"]
        rb = RingBuffer(obj.maps["events"], got.append)
        assert rb.poll(timeout=0) == 0  # nothing yet
        for seq in (7, 8, 9):
            prog.test_run(_syn(seq))
        assert rb.poll(timeout=1) == 3
        assert [struct.unpack_from("<I", e, 20)[0] for e in got] == [7, 8, 9]  # e->seq
        assert [struct.unpack_from("<HH", e, 8) for e in got] == [(4000, 443)] * 3
        assert rb.consume() == 0
        rb.close()
        with pytest.raises(InputError):
            rb.consume()


def test_ring_buffer_poll_wakes_for_a_producer_thread_and_stops_on_negative():
    with create_map(type=MapType.RINGBUF, key_size=0, value_size=0, max_entries=4096,
                    backing="anonymous") as ring:  # fmt: skip
        seen: list[bytes] = []
        threading.Timer(0.05, lambda: ring.output(b"late")).start()
        with RingBuffer(ring, seen.append) as rb:
            start = time.monotonic()
            assert rb.poll(timeout=5) == 1 and seen == [b"late"]
            assert time.monotonic() - start < 4
        ring.output(b"a")
        ring.output(b"b")
        stopper = RingBuffer(ring, lambda data: -5)
        assert stopper.consume() == -5  # libbpf: a negative return stops and is returned
        assert RingBuffer(ring, seen.append).consume() == 1 and seen[-1] == b"b"


def test_ring_buffer_refuses_other_maps():
    with create_map(type=MapType.ARRAY, key_size=4, value_size=4, max_entries=1,
                    backing="anonymous") as m:  # fmt: skip
        with pytest.raises(InputError):
            RingBuffer(m, print)
        with pytest.raises(InputError):
            PerfBuffer(m, print)


# ---- perf buffers ------------------------------------------------------------------------------
def test_perf_buffer_opens_every_cpu_and_reports_samples_and_losses():
    with create_map(type=MapType.PERF_EVENT_ARRAY, key_size=4, value_size=4, max_entries=2,
                    backing="anonymous") as perf:  # fmt: skip
        assert perf.output(0, b"x") < 0  # no reader yet: ENOENT, as Linux
        samples: list[tuple[int, bytes]] = []
        lost: list[tuple[int, int]] = []
        with PerfBuffer(perf, lambda cpu, data: samples.append((cpu, data)),
                        lambda cpu, n: lost.append((cpu, n))) as pb:  # fmt: skip
            assert perf.is_open(0) and perf.is_open(1)
            assert perf.output(1, b"\x01\x02\x03\x04") == 0
            assert perf.output(0, b"\x05\x06\x07\x08") == 0
            assert pb.poll(timeout=1) == 2
            assert sorted(samples) == [(0, b"\x05\x06\x07\x08"), (1, b"\x01\x02\x03\x04")]
            big = bytes(1000)
            while perf.output(0, big) == 0:
                pass
            pb.consume()
            assert lost and lost[0][0] == 0 and lost[0][1] >= 1
        assert not perf.is_open(0)


# ---- trace output ------------------------------------------------------------------------------
def _udp() -> bytes:
    ip = bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    return bytes(12) + b"\x08\x00" + ip + bytes(8)


def test_trace_log_stream_callback_and_state_directory(tmp_path):
    log = TraceLog()
    log.read()  # drop what earlier tests left in this process's pipe
    with pybpf.load(EXAMPLES / "xdp_counter.o") as obj:
        obj.programs["xdp_count"].test_run(_udp())
        lines: list[str] = []
        assert log.poll(lines.append, timeout=1) >= 1
        assert all(isinstance(line, str) and not line.endswith("\n") for line in lines)
        obj.programs["xdp_count"].test_run(_udp())
        streamed = list(log.stream(timeout=0.05))
        assert streamed == lines  # the same message for the same packet
        obj.programs["xdp_count"].test_run(_udp())
        assert log.save() == len(lines)
    other = TraceLog(StateDirectory())  # another process would see this
    saved = other.saved()
    assert len(saved) == len(lines) and saved[0].endswith(lines[0])
    got: list[str] = []
    writer = threading.Timer(0.05, lambda: (log.read(), _append(log, "late message")))
    writer.start()
    assert other.follow(got.append, timeout=1) == 1 and got[0].endswith("late message")
    assert other.saved(clear=True) and other.saved() == []


def _append(log: TraceLog, text: str) -> None:
    from pybpf.runtime import TRACE_PIPE

    TRACE_PIPE.write(text + "\n")
    log.save()


# ---- histograms --------------------------------------------------------------------------------
def test_log2_hist_is_bccs_layout():
    text = format_log2_hist([0, 1, 2, 4], "usecs")
    assert text.splitlines() == [
        "     usecs               : count     distribution",
        "         0 -> 1          : 1        |**********                              |",
        "         2 -> 3          : 2        |********************                    |",
        "         4 -> 7          : 4        |****************************************|",
    ]
    assert format_log2_hist([0, 0, 0, 3], strip_leading_zero=True).splitlines()[1:] == [
        "         4 -> 7          : 3        |****************************************|"
    ]
    assert format_log2_hist([0, 0]) == ""
    wide = [0] * 40 + [1]  # a slot above 32: bcc's wide layout, half the stars
    last = format_log2_hist(wide).splitlines()[-1]
    assert last.startswith(f"{1 << 39:20d} -> {(1 << 40) - 1:<20d} : 1 ")
    assert last.endswith("|" + "*" * 20 + "|")


def test_linear_hist_is_bccs_layout():
    assert format_linear_hist({0: 2, 2: 1}, "kbytes").splitlines() == [
        "     kbytes        : count     distribution",
        "        0          : 2        |****************************************|",
        "        1          : 0        |                                        |",
        "        2          : 1        |********************                    |",
    ]


def test_histograms_from_a_map():
    assert [log2_bucket(v) for v in (0, 1, 2, 3, 4, 1023, 1024)] == [0, 1, 2, 2, 3, 10, 11]
    with create_map(type=MapType.PERCPU_ARRAY, key_size=4, value_size=8, max_entries=4,
                    ncpus=2, backing="anonymous") as m:  # fmt: skip
        m.update_raw((1).to_bytes(4, "little"), struct.pack("<QQ", 2, 3))
        m.update_raw((3).to_bytes(4, "little"), struct.pack("<QQ", 1, 0))
        assert bucket_counts(m) == [0, 5, 0, 1]
        out = io.StringIO()
        print_log2_hist(m, "ns", file=out)
        assert out.getvalue() == format_log2_hist([0, 5, 0, 1], "ns")


def test_ring_buffer_reads_a_kernel_ring_as_libbpf_does():
    from kernel import BPF_UNAVAILABLE

    if BPF_UNAVAILABLE is not None:
        pytest.skip(BPF_UNAVAILABLE)
    got: list[bytes] = []
    with pybpf.load(EXAMPLES / "events.o", backend="kernel", pin_maps_dir=None) as obj:
        with RingBuffer(obj.maps["events"], got.append) as rb:
            assert rb.poll(timeout=0) == 0
            for seq in (11, 12):
                obj.programs["syn_events"].test_run(_syn(seq))
            assert rb.poll(timeout=1) == 2 and rb.consume() == 0
        assert [struct.unpack_from("<I", e, 20)[0] for e in got] == [11, 12]
        with pytest.raises(InputError):
            RingBuffer(obj.maps["lost"], got.append)  # an array
