"""An LRU flow table (XDP): per-flow packet and byte counters, evicting when full.

Run from the repository root::

    python examples/lru_flows.py                       # interpreter
    python examples/lru_flows.py --engine jit --new-flows 100

First a few flows (TCP and UDP, 5-tuples) with different packet counts fill part of the
16-entry LRU_HASH ``flows``; the script prints their counters. Then one "hot" flow keeps
sending while ``--new-flows`` (default 40) one-packet flows arrive: the table stays at most
16 entries, the oldest idle flows are evicted, and the hot flow, used all along, survives
with every packet counted. ``stats[0]`` counts the inserts the program made.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import struct
import sys
from pathlib import Path

from engines import ENGINES, get, items, load, u32
from frames import IPPROTO_TCP, IPPROTO_UDP, tcp4, udp4

OBJECT = Path(__file__).parent / "c" / "lru_flows.o"
PROGRAM = "lru_flows"
CAPACITY = 16
PROTOS = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp"}


def flow_key(proto: int, src: str, sport: int, dst: str, dport: int) -> bytes:
    """``struct flow``: addresses in network order, ports in host order, protocol, padding."""
    a, b = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    return struct.pack("<4s4sHHB3x", a, b, sport, dport, proto)


def describe(key: bytes) -> str:
    """``udp 10.0.0.1:4000 -> 10.0.0.2:53`` for a flow key."""
    a, b, sport, dport, proto = struct.unpack("<4s4sHHB3x", key)
    src, dst = ipaddress.IPv4Address(a), ipaddress.IPv4Address(b)
    return f"{PROTOS.get(proto, proto)} {src}:{sport} -> {dst}:{dport}"


def table(obj) -> dict[str, tuple[int, int]]:
    """The flow table: description -> (packets, bytes)."""
    return {
        describe(k): struct.unpack("<QQ", v) for k, v in sorted(items(obj.maps["flows"]).items())
    }


def inserts(obj) -> int:
    """``stats[0]``: new flows the program inserted."""
    return struct.unpack("<Q", get(obj.maps["stats"], u32(0)))[0]


FIRST = [  # (frame, times)
    (tcp4("10.0.0.1", "10.0.0.80", 40000, 80, b"GET / HTTP/1.0\r\n\r\n", 0x18), 5),
    (udp4("10.0.0.2", "10.0.0.53", 5353, 53, b"query"), 3),
    (udp4("10.0.0.3", "10.0.0.53", 5354, 53, bytes(100)), 1),
]


def hot_frame() -> bytes:
    """The flow that keeps sending during the eviction phase."""
    return udp4("10.0.0.7", "10.0.0.9", 7777, 9999, b"hot")


def new_frame(i: int) -> bytes:
    """The ``i``-th one-packet flow of the eviction phase."""
    return udp4(f"192.0.2.{1 + i % 250}", "10.0.0.53", 10000 + i, 53, b"x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=ENGINES, default="interpreter")
    parser.add_argument("--new-flows", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with load(OBJECT, args.engine) as obj:
        prog = obj.programs[PROGRAM]
        for frame, times in FIRST:
            for _ in range(times):
                prog.test_run(frame)
        first = table(obj)
        for i in range(args.new_flows):
            prog.test_run(hot_frame())
            prog.test_run(new_frame(i))
        after = table(obj)
        record = {
            "engine": args.engine,
            "first": first,
            "after": after,
            "inserts": inserts(obj),
            "hot": after.get(describe(flow_key(IPPROTO_UDP, "10.0.0.7", 7777, "10.0.0.9", 9999))),
        }
    if args.json:
        print(json.dumps(record))
        return 0
    print(f"{args.engine}: {len(first)} flows")
    for flow, (packets, nbytes) in first.items():
        print(f"  {flow:36} {packets:4} packets {nbytes:6} bytes")
    print(
        f"after a hot flow and {args.new_flows} new flows: {len(after)} of {CAPACITY} entries, "
        f"{record['inserts']} inserts, {record['inserts'] - len(after)} evicted"
    )
    survivors = [f for f in first if f in after]
    print(f"  first flows still there: {', '.join(survivors) or 'none'}")
    print(f"  hot flow: {record['hot'][0] if record['hot'] else 'evicted'} packets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
