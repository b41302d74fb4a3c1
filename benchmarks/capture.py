"""Capture I/O benchmark: frames/s and MB/s reading and writing pcap and pcapng files.

Run ``python benchmarks/capture.py [--frames N] [--size B] [--json]``. It writes a synthetic
capture of N frames of B bytes (default 1,000,000 frames of 60 bytes) in each format to a
temporary directory with pybpf's writers, then reads it back with ``open_capture`` (only
counting frames and bytes, so the figure is the reader's), best of three reads. When dpkt
is installed its pcap reader is timed on the same file for comparison. Speed is measured
here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from pybpf.hooks import open_capture, open_writer


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=60)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
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
        json.dump(rows, sys.stdout, indent=2)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
