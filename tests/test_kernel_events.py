"""Kernel events: ``PerfBuffer`` on a kernel perf event array, ``map event_pipe`` on it, and
the kernel's trace_pipe (``TraceLog.kernel()``, ``prog tracelog --backend kernel``).

``examples/c/perf_output.o`` (XDP) sends one sample per run with ``bpf_perf_event_output(ctx,
&events, (snap << 32) | BPF_F_CURRENT_CPU, &header, 8)``: a sequence number, the frame's
length, then the frame's first ``snap`` bytes copied by the kernel; ``failed`` counts the
outputs the kernel refused. ``BPF_PROG_TEST_RUN`` runs it on the calling CPU. The trace
tests use ``xdp_counter.o``'s ``bpf_printk("%s: proto %d", tag, proto)`` with a tag of this
process's own, in a tracefs mounted for the test when none is.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import InputError
from pybpf.objects.events import PerfBuffer, TraceLog

sys.path.insert(0, str(Path(__file__).parent))
from kernel import open_fds, requires_bpf, tracefs  # noqa: E402

pytestmark = requires_bpf

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "c"
PERF = EXAMPLES / "perf_output.o"
HEADER = 8


def _padded(n: int) -> int:
    """The raw size the kernel gives an n-byte sample (libbpf hands it on)."""
    return (n + 4 + 7) // 8 * 8 - 4


def _bss(obj, snap: int) -> None:
    obj.maps[".bss"].update(b"\0" * 4, struct.pack("<IIQ", snap, 0, 0))


def _failed(obj) -> int:
    return struct.unpack("<IIQ", obj.maps[".bss"].lookup(b"\0" * 4))[2]


@pytest.fixture
def perf_obj():
    with pybpf.load(PERF, backend="kernel", pin_maps_dir=None) as obj:
        yield obj


def test_samples_arrive_with_the_programs_bytes(perf_obj):
    _bss(perf_obj, 16)
    prog = perf_obj.programs["perf_sample"]
    got: list[tuple[int, bytes]] = []
    frames = [bytes(range(i, i + 40 + i)) for i in range(3)]
    with PerfBuffer(perf_obj.maps["events"], lambda cpu, data: got.append((cpu, data))) as pb:
        assert pb.poll(timeout=0) == 0
        for frame in frames:
            prog.test_run(frame)
        assert pb.poll(timeout=2) == 3
    expected = [(i, len(f)) for i, f in enumerate(frames)]
    assert [struct.unpack_from("<II", d) for _, d in got] == expected
    for (cpu, data), frame in zip(got, frames, strict=True):
        assert 0 <= cpu < os.cpu_count()
        assert len(data) == _padded(HEADER + 16)
        assert data[HEADER : HEADER + 16] == frame[:16]
    assert _failed(perf_obj) == 0


def test_a_full_ring_reports_lost_samples_and_wraps(perf_obj):
    _bss(perf_obj, 256)
    prog = perf_obj.programs["perf_sample"]
    frame = bytes(range(256)) * 2
    got: list[bytes] = []
    lost: list[int] = []
    with PerfBuffer(
        perf_obj.maps["events"],
        lambda cpu, d: got.append(d),
        lambda cpu, n: lost.append(n),
        pages=1,
    ) as pb:
        prog.test_run(frame, repeat=40)  # one page holds 14 samples of 276 bytes
        first = pb.poll(timeout=2)
        prog.test_run(frame, repeat=3)  # room again: the kernel writes the LOST record
        pb.poll(timeout=2)
    failed = _failed(perf_obj)
    assert first == len(got[:first]) and 0 < first < 40
    assert failed > 0 and sum(lost) == failed
    assert len(got) + failed == 43
    seqs = [struct.unpack_from("<I", d)[0] for d in got]
    assert seqs == sorted(seqs) and seqs[:first] == list(range(first))
    # the later samples wrapped around the ring's end
    assert all(
        len(d) == _padded(HEADER + 256) and d[HEADER : HEADER + 256] == frame[:256] for d in got
    )


def test_closing_empties_the_slots_and_releases_the_events(perf_obj):
    _bss(perf_obj, 0)
    prog = perf_obj.programs["perf_sample"]
    before = open_fds()
    pb = PerfBuffer(perf_obj.maps["events"], lambda cpu, d: None)
    assert len(pb._kernel.fds) >= 1
    pb.close()
    pb.close()
    assert open_fds() == before
    prog.test_run(bytes(20))
    assert _failed(perf_obj) == 1  # no perf event in the slot: the output fails
    with pytest.raises(InputError):
        pb.consume()


def test_a_kernel_map_of_another_type_is_refused():
    with pybpf.load(EXAMPLES / "xdp_counter.o", backend="kernel", pin_maps_dir=None) as obj:
        with pytest.raises(InputError):
            PerfBuffer(obj.maps["proto_count"], lambda cpu, d: None)
    with pybpf.load(PERF, backend="kernel", pin_maps_dir=None) as obj:
        with pytest.raises(InputError):
            PerfBuffer(obj.maps["events"], lambda cpu, d: None, pages=3)


def test_event_pipe_prints_kernel_perf_samples(perf_obj, capsys, tmp_path, monkeypatch):
    from pybpf.cli.app import main

    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))
    _bss(perf_obj, 4)
    prog = perf_obj.programs["perf_sample"]
    stop = threading.Event()

    def trigger() -> None:  # until the pipe has opened its buffers and seen two samples
        while not stop.wait(0.02):
            prog.test_run(b"\xab\xcd\xef\x01" + bytes(30))

    thread = threading.Thread(target=trigger, daemon=True)
    thread.start()
    try:
        with pytest.raises(SystemExit) as exc:
            main(["-j", "map", "event_pipe", "id", str(perf_obj.maps["events"].id),
                  "--backend", "kernel", "--count", "2", "--timeout", "5"])  # fmt: skip
    finally:
        stop.set()
        thread.join()
    assert exc.value.code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 2
    for record in records:
        assert record["type"] == 9 and record["cpu"] == record["index"]
        data = bytes(int(b, 16) for b in record["data"])
        assert len(data) == _padded(HEADER + 4)
        assert struct.unpack_from("<I", data, 4)[0] == 34 and data[8:12] == b"\xab\xcd\xef\x01"


# ---- trace_pipe -----------------------------------------------------------------------------
def _ipv4(proto: int) -> bytes:
    return bytes(12) + b"\x08\x00" + bytes([0x45, 0, 0, 20, 0, 0, 0, 0, 64, proto]) + bytes(10)


def _printing_object(tag: bytes):
    obj = pybpf.load(EXAMPLES / "xdp_counter.o", backend="kernel", pin_maps_dir=None)
    obj.maps[".data.tag"].update(b"\0" * 4, tag.ljust(8, b"\0"))
    return obj


def test_trace_pipe_lines_of_a_kernel_program():
    tag = f"pb{os.getpid() % 100000}".encode()
    with tracefs() as root, _printing_object(tag) as obj:
        with TraceLog.kernel(root) as pipe:
            pipe.read()
            for proto in (6, 17, 1):
                obj.programs["xdp_count"].test_run(_ipv4(proto))
            ours: list[str] = []
            deadline = 3
            while len(ours) < 3 and deadline:
                lines: list[str] = []
                pipe.poll(lines.append, timeout=1)
                ours += [ln for ln in lines if tag.decode() + ":" in ln]
                deadline -= 1
        assert [ln.split("bpf_trace_printk: ")[1] for ln in ours] == [
            f"{tag.decode()}: proto {p}" for p in (6, 17, 1)
        ]
        assert pipe.closed
        with pytest.raises(InputError):
            pipe.read()


def test_prog_tracelog_backend_kernel_prints_the_trace_pipe(capsys, tmp_path, monkeypatch):
    from pybpf.cli.app import main

    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))
    tag = f"pc{os.getpid() % 100000}".encode()
    with tracefs(), _printing_object(tag) as obj:
        obj.programs["xdp_count"].test_run(_ipv4(6))
        with pytest.raises(SystemExit) as exc:
            main(["-j", "prog", "tracelog", "--backend", "kernel", "--follow", "--timeout", "0.5"])
        assert exc.value.code == 0
    messages = [json.loads(line)["message"] for line in capsys.readouterr().out.splitlines()]
    assert any(m.endswith(f"bpf_trace_printk: {tag.decode()}: proto 6") for m in messages)


def test_trace_pipe_of_a_directory_without_one_is_not_supported(tmp_path):
    from pybpf.errors import NotSupportedError

    with pytest.raises(NotSupportedError):
        TraceLog.kernel(tmp_path)
