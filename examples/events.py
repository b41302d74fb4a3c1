"""A ring buffer event stream (XDP -> RINGBUF -> Python): one event per TCP SYN.

Run from the repository root::

    python examples/events.py                          # interpreter
    python examples/events.py --engine jit --burst 200

A producer thread runs a stream of frames (``--connections`` TCP SYNs from different clients,
mixed with their other segments, UDP and ARP) through ``syn_events`` while the main thread
reads the events as they come with ``RingBuf.poll(callback, timeout)`` and prints them. Then
``--burst`` SYNs are sent with nobody reading: the 4 KiB ring fills, the program counts the
events that did not fit in ``lost[0]``, and one ``consume()`` drains what was kept. With
``--engine kernel`` the events are read from Linux's ring through ``pybpf.RingBuffer``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import struct
import sys
import threading
from pathlib import Path

from engines import ENGINES, get, load, ring_consume, u32
from frames import arp, tcp4, udp4, xdp_md

OBJECT = Path(__file__).parent / "c" / "events.o"
PROGRAM = "syn_events"
EVENT = struct.Struct("<4s4sHHIII")  # struct event


def decode(record: bytes) -> dict:
    """One ``struct event``."""
    saddr, daddr, sport, dport, ifindex, length, seq = EVENT.unpack(record)
    return {
        "src": f"{ipaddress.IPv4Address(saddr)}:{sport}",
        "dst": f"{ipaddress.IPv4Address(daddr)}:{dport}",
        "ifindex": ifindex,
        "len": length,
        "seq": seq,
    }


def syn(i: int) -> bytes:
    """The ``i``-th client's SYN (its sequence number is ``1000 + i``)."""
    frame = bytearray(tcp4(f"10.0.1.{1 + i % 250}", "10.0.0.80", 30000 + i, 80 + i % 3))
    struct.pack_into("!I", frame, 38, 1000 + i)  # tcp->seq
    return bytes(frame)


def stream(connections: int) -> list[bytes]:
    """SYNs mixed with traffic that must not make events."""
    out = []
    for i in range(connections):
        out += [syn(i), tcp4("10.0.0.80", "10.0.1.1", 80, 30000 + i, flags=0x12)]  # SYN-ACK
        out += [tcp4(f"10.0.1.{1 + i % 250}", "10.0.0.80", 30000 + i, 80, b"data", 0x18)]
        out += [udp4(payload=b"dns"), arp()]
    return out


def run_stream(obj, frames: list[bytes], engine: str) -> list[dict]:
    """Run ``frames`` in a thread while this one consumes events as they come."""
    prog, ring = obj.programs[PROGRAM], obj.maps["events"]
    events: list[dict] = []
    done = threading.Event()

    def produce() -> None:
        try:
            for frame in frames:
                prog.test_run(frame, ctx_in=xdp_md(frame))
        finally:
            done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    handle = lambda record: events.append(decode(record))  # noqa: E731
    while not done.is_set():
        if engine == "kernel":  # no poll for Linux's ring here: read what is there
            ring_consume(ring, handle)
            done.wait(0.01)
        else:
            ring.poll(handle, timeout=0.05)
    producer.join()
    ring_consume(ring, handle)  # what came after the last poll
    return events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=ENGINES, default="interpreter")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--burst", type=int, default=150)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with load(OBJECT, args.engine) as obj:
        events = run_stream(obj, stream(args.connections), args.engine)
        prog = obj.programs[PROGRAM]
        for i in range(args.burst):
            prog.test_run(syn(i))
        kept: list[dict] = []
        ring_consume(obj.maps["events"], lambda r: kept.append(decode(r)))
        lost = struct.unpack("<Q", get(obj.maps["lost"], u32(0)))[0]
    record = {"engine": args.engine, "events": events, "burst": len(kept), "lost": lost}
    if args.json:
        print(json.dumps(record))
        return 0
    print(f"{args.engine}: {len(events)} SYN events while the stream ran")
    for e in events:
        print(f"  SYN {e['src']:18} -> {e['dst']:14} seq {e['seq']} len {e['len']} "
              f"ifindex {e['ifindex']}")
    print(f"burst of {args.burst} SYNs unread: {len(kept)} events kept, {lost} lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
