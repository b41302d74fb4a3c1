"""Drop empty UDP datagrams in front of a DNS server (XDP), in any engine.

Run from the repository root::

    python examples/drop_empty_udp.py                      # the scenario, interpreter
    python examples/drop_empty_udp.py --engine jit
    python examples/drop_empty_udp.py --engine kernel      # Linux's BPF_PROG_TEST_RUN
    python examples/drop_empty_udp.py --pcap examples/captures/dns_udp_flood.pcap

The scenario seeds ``dropped_packet_map[0]`` with ``--seed`` (1000), runs an empty UDP
datagram (dropped, the counter reads 1001) and one with 10 bytes (passed), then stores
another interface's index in ``interface_index_map[0]``: the program leaves frames arriving
on ifindex 1 alone. With ``--pcap`` it runs every frame of the capture instead and prints the
verdict counts and the counter (``--ifindex`` sets the filter, ``--out VERDICT=FILE`` writes
frames by verdict). ``--json`` prints one JSON record.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

from engines import ENGINES, get, load, put, u32, u64
from frames import XDP_ACTIONS, udp4, xdp_md

OBJECT = Path(__file__).parent / "c" / "drop_empty_udp.o"
PROGRAM = "drop_empty_udp"


def counter(obj) -> int:
    """``dropped_packet_map[0]``."""
    return struct.unpack("<Q", get(obj.maps["dropped_packet_map"], u32(0)))[0]


def verdict(obj, frame: bytes, ifindex: int = 1) -> str:
    """The verdict name of one test run of ``frame`` arriving on ``ifindex``."""
    result = obj.programs[PROGRAM].test_run(frame, ctx_in=xdp_md(frame, ifindex))
    return XDP_ACTIONS[result.retval] if result.retval < len(XDP_ACTIONS) else "aborted"


def scenario(obj, seed: int) -> dict:
    """The scenario of the module docstring: each step's verdict and counter."""
    put(obj.maps["dropped_packet_map"], u32(0), u64(seed))
    steps = []
    for label, frame, filter_ifindex in (
        ("empty UDP", udp4(payload=b""), 0),
        ("10-byte UDP", udp4(payload=b"0123456789"), 0),
        ("empty UDP, filter on ifindex 1", udp4(payload=b""), 1),
        ("empty UDP, filter on ifindex 2", udp4(payload=b""), 2),
    ):
        put(obj.maps["interface_index_map"], u32(0), u32(filter_ifindex))
        steps.append({"step": label, "verdict": verdict(obj, frame), "counter": counter(obj)})
    put(obj.maps["interface_index_map"], u32(0), u32(0))
    return {"seed": seed, "steps": steps}


def over_capture(obj, pcap: Path, ifindex: int, outs: list[str]) -> dict:
    """Every frame of ``pcap`` through the program: the run's summary and the counter."""
    from pybpf.hooks.runner import run_capture

    put(obj.maps["interface_index_map"], u32(0), u32(ifindex))
    outputs = dict(o.split("=", 1) for o in outs)
    summary = run_capture(obj.programs[PROGRAM], pcap, outputs).as_dict()
    return {
        "packets": summary["packets"],
        "verdicts": summary["verdicts"],
        "written": summary["written"],
        "counter": counter(obj),
        "packets_per_second": summary["packets_per_second"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=ENGINES, default="interpreter")
    parser.add_argument("--seed", type=int, default=1000, help="counter start (scenario)")
    parser.add_argument("--pcap", type=Path, help="run over this capture instead")
    parser.add_argument("--ifindex", type=int, default=0, help="filter (capture run; 0: any)")
    parser.add_argument("--out", action="append", default=[], metavar="VERDICT=FILE")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with load(OBJECT, args.engine) as obj:
        if args.pcap:
            record = over_capture(obj, args.pcap, args.ifindex, args.out)
        else:
            record = scenario(obj, args.seed)
    record["engine"] = args.engine
    if args.json:
        print(json.dumps(record))
    elif args.pcap:
        verdicts = ", ".join(f"{k} {v}" for k, v in record["verdicts"].items())
        print(f"{args.engine}: {record['packets']} packets: {verdicts}")
        print(f"dropped_packet_map[0] = {record['counter']}")
    else:
        print(f"{args.engine}: dropped_packet_map[0] seeded with {record['seed']}")
        for step in record["steps"]:
            print(f"  {step['step']:32} -> {step['verdict']:5} counter {step['counter']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
