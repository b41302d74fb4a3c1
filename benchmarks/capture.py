"""Capture benchmark: reading and writing pcap/pcapng, and running a program over a capture.

Run ``python benchmarks/capture.py [--frames N] [--size B] [--run-frames M] [--json]``.

I/O: it writes a synthetic capture of N frames of B bytes (default 1,000,000 frames of 60
bytes) in each format to a temporary directory with pybpf's writers, then reads it back with
``open_capture`` (only counting frames and bytes, so the figure is the reader's), best of
three reads. When dpkt is installed its pcap reader is timed on the same file for
comparison.

Processing (file to file): a pcap of M frames (default 200,000; the interpreter gets a tenth)
repeating ``examples/captures/mixed.pcap``'s traffic (an empty and a 5-byte UDP datagram, a
TCP SYN, an ARP request) is run through ``examples/c/drop_empty_udp.o`` with
:func:`pybpf.hooks.runner.run_capture`, passed and dropped frames written to two output
pcaps, on each engine (``interpreter``, ``jit``: through its batch loop, and ``kernel``
where ``bpf()`` works: one ``BPF_PROG_TEST_RUN`` per frame). It prints packets/s of wall
time and of this process's CPU time (the machine may be shared), best of three. Speed is
measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from pybpf.hooks import open_capture, open_writer

ROOT = Path(__file__).resolve().parents[1]


def write_file(path: str, fmt: str, frames: int, size: int) -> float:
    packet = bytes(range(256)) * (size // 256 + 1)
    packet = packet[:size]
    t0 = time.perf_counter()
    with open_writer(path, fmt) as w:
        write = w.write
        for i in range(frames):
            write(packet, 1_700_000_000_000_000_000 + i * 1000)
    return time.perf_counter() - t0


def read_file(path: str) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    n = nbytes = 0
    with open_capture(path) as cap:
        for frame in cap:
            n += 1
            nbytes += len(frame[1])
    return time.perf_counter() - t0, n, nbytes


def read_dpkt(path: str) -> float | None:
    try:
        import dpkt
    except ImportError:
        return None
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        reader = dpkt.pcapng.Reader(f) if path.endswith(".pcapng") else dpkt.pcap.Reader(f)
        for _ts, _buf in reader:
            pass
    return time.perf_counter() - t0


def process_rates(frames: int, tmp: str) -> list[dict]:
    """Packets/s of ``run_capture`` (drop_empty_udp, file to file) on every engine here."""
    import pybpf
    from pybpf.hooks.packetrun import PacketRunner
    from pybpf.hooks.runner import run_capture

    with open_capture(ROOT / "examples" / "captures" / "mixed.pcap") as cap:
        traffic = [f.data for f in cap]
    rows = []
    for engine in ("interpreter", "jit", "kernel"):
        count = frames // 10 if engine == "interpreter" else frames
        path = os.path.join(tmp, f"run-{count}.pcap")
        if not os.path.exists(path):
            with open_writer(path) as w:
                for i in range(count):
                    w.write(traffic[i % len(traffic)], 1_700_000_000_000_000_000 + i * 1000)
        options = {"backend": "kernel"} if engine == "kernel" else {"engine": engine}
        try:
            obj = pybpf.load(ROOT / "examples" / "c" / "drop_empty_udp.o", **options)
        except Exception as exc:  # no llvmlite, no bpf(): skipped
            rows.append({"engine": engine, "skipped": str(exc)})
            continue
        prog = obj.programs["drop_empty_udp"]
        with PacketRunner(prog) as probe:
            batched = probe.batched
        best = None
        for _ in range(3):
            outs = {"pass": os.path.join(tmp, "pass.pcap"), "drop": os.path.join(tmp, "drop.pcap")}
            wall, cpu = time.perf_counter(), time.process_time()
            summary = run_capture(prog, path, outs)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert summary.packets == count
            if best is None or wall < best[0]:
                best = (wall, cpu)
        obj.close()
        rows.append(
            {
                "engine": engine,
                "batched": batched,
                "packets": count,
                "packets_per_s": count / best[0],
                "packets_per_cpu_s": count / best[1] if best[1] > 0 else None,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=60)
    parser.add_argument("--run-frames", type=int, default=200_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = process_rates(args.run_frames, tmp) if args.run_frames > 0 else []
        for fmt in ("pcap", "pcapng"):
            path = os.path.join(tmp, f"bench.{fmt}")
            wsecs = write_file(path, fmt, args.frames, args.size)
            fsize = os.path.getsize(path)
            rsecs, n, _nbytes = min(read_file(path) for _ in range(3))
            assert n == args.frames
            dsecs = read_dpkt(path)
            rows.append(
                {
                    "format": fmt,
                    "frames": n,
                    "frame_bytes": args.size,
                    "file_mb": fsize / 1e6,
                    "read_frames_per_s": n / rsecs,
                    "read_mb_per_s": fsize / rsecs / 1e6,
                    "write_frames_per_s": n / wsecs,
                    "write_mb_per_s": fsize / wsecs / 1e6,
                    "dpkt_read_frames_per_s": n / dsecs if dsecs else None,
                }
            )
    if args.json:
        json.dump({"io": rows, "run": runs}, sys.stdout, indent=2)
        print()
        return 0
    print(f"{args.frames} frames of {args.size} bytes")
    print(
        f"{'format':8} {'read f/s':>12} {'read MB/s':>10} {'write f/s':>12} {'write MB/s':>11} "
        f"{'dpkt f/s':>12}"
    )
    for r in rows:
        dpkt_rate = (
            f"{r['dpkt_read_frames_per_s']:12,.0f}"
            if r["dpkt_read_frames_per_s"]
            else (f"{'-':>12}")
        )
        print(
            f"{r['format']:8} {r['read_frames_per_s']:12,.0f} {r['read_mb_per_s']:10.1f} "
            f"{r['write_frames_per_s']:12,.0f} {r['write_mb_per_s']:11.1f} {dpkt_rate}"
        )
    if runs:
        print("\ncapture processing, file to file (drop_empty_udp over mixed.pcap traffic)")
        print(
            f"{'engine':12} {'batched':>8} {'packets':>9} {'packets/s':>12} "
            f"{'packets/cpu-s':>14}"
        )
        for r in runs:
            if "skipped" in r:
                print(f"{r['engine']:12} skipped: {r['skipped']}")
                continue
            cpu = f"{r['packets_per_cpu_s']:14,.0f}" if r["packets_per_cpu_s"] else f"{'-':>14}"
            print(
                f"{r['engine']:12} {str(r['batched']):>8} {r['packets']:9,} "
                f"{r['packets_per_s']:12,.0f} {cpu}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
