"""A tail-call dispatcher (XDP): one entry program, a handler per IP protocol in a PROG_ARRAY.

Run from the repository root::

    python examples/dispatcher.py                      # interpreter
    python examples/dispatcher.py --engine jit --without udp

The script fills the jump table from Python (``jt[IPPROTO_UDP] = obj.programs["handle_udp"]``,
TCP and ICMP likewise; ``--without`` leaves a protocol out), then sends one frame of each
kind through ``dispatch``: UDP passes, TCP to port 23 is dropped, an ICMP echo request is
answered in place (XDP_TX, addresses swapped), protocols without a handler (GRE here, or
one left out) fall through and pass, counted in ``handled[0]``. It prints each verdict and
the per-handler counters.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import struct
import sys
from pathlib import Path

from engines import ENGINES, get, load, set_program, u32
from frames import (
    ETH_P_IP,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    XDP_ACTIONS,
    ether,
    icmp4,
    ipv4,
    tcp4,
    udp4,
)

OBJECT = Path(__file__).parent / "c" / "dispatcher.o"
HANDLERS = {"udp": IPPROTO_UDP, "tcp": IPPROTO_TCP, "icmp": IPPROTO_ICMP}
IPPROTO_GRE = 47

FRAMES = [
    ("udp to 53", udp4(payload=b"query")),
    ("tcp to 80", tcp4(dport=80)),
    ("tcp to 23", tcp4(dport=23)),
    ("icmp echo request", icmp4("10.0.0.1", "10.0.0.2")),
    ("gre", ether(ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", IPPROTO_GRE, bytes(8)))),
]


def fill(obj, without: list[str]) -> None:
    """``jt[protocol] = handle_<name>`` for every handler not in ``without``."""
    for name, proto in HANDLERS.items():
        if name not in without:
            set_program(obj.maps["jt"], proto, obj.programs[f"handle_{name}"])


def counters(obj) -> dict[str, int]:
    """``handled``: per protocol name, and ``none`` for the fall-through."""
    out = {}
    for name, index in [("none", 0), *HANDLERS.items()]:
        out[name] = struct.unpack("<Q", get(obj.maps["handled"], u32(index)))[0]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=ENGINES, default="interpreter")
    parser.add_argument("--without", action="append", default=[], choices=sorted(HANDLERS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with load(OBJECT, args.engine) as obj:
        fill(obj, args.without)
        results = []
        for label, frame in FRAMES:
            r = obj.programs["dispatch"].test_run(frame)
            out = {"frame": label, "verdict": XDP_ACTIONS[r.retval]}
            if r.data_out != frame:
                ip = r.data_out[14:34]
                out["out"] = (
                    f"{ipaddress.IPv4Address(ip[12:16])} -> {ipaddress.IPv4Address(ip[16:20])}"
                    f" type {r.data_out[34]}"
                )
            results.append(out)
        record = {"engine": args.engine, "results": results, "handled": counters(obj)}
    if args.json:
        print(json.dumps(record))
        return 0
    missing = f" (without {', '.join(args.without)})" if args.without else ""
    print(f"{args.engine}: dispatch by IP protocol{missing}")
    for r in results:
        print(f"  {r['frame']:18} -> {r['verdict']:5} {r.get('out', '')}".rstrip())
    print("  handled: " + ", ".join(f"{k} {v}" for k, v in record["handled"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
