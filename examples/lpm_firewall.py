"""An LPM-trie firewall (XDP): source prefixes filled from Python decide drop or pass.

Run from the repository root::

    python examples/lpm_firewall.py                    # the default rules, interpreter
    python examples/lpm_firewall.py --engine jit --deny 192.0.2.0/24 --source 192.0.2.7

Rules are ``--deny PREFIX`` and ``--allow PREFIX`` (default: deny 10.0.0.0/8, allow
10.1.0.0/16 inside it, deny the host 10.1.2.3/32 inside that). The longest prefix that
matches a packet's IPv4 source decides; no match passes. Each ``--source`` (default: one
address per rule, and one that matches none) is sent as a UDP datagram; the script prints
each verdict, then each rule's hits and the pass/drop counters the program keeps.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import struct
import sys
from pathlib import Path

from engines import ENGINES, get, items, load, put, u32
from frames import XDP_ACTIONS, udp4

OBJECT = Path(__file__).parent / "c" / "lpm_firewall.o"
PROGRAM = "lpm_firewall"
ACTIONS = {"allow": 0, "deny": 1}
DEFAULT_RULES = [("deny", "10.0.0.0/8"), ("allow", "10.1.0.0/16"), ("deny", "10.1.2.3/32")]
DEFAULT_SOURCES = ["10.9.8.7", "10.1.200.1", "10.1.2.3", "192.168.1.1"]


def prefix_key(prefix: str) -> bytes:
    """``struct prefix``: the length (host order), then the address (network order)."""
    net = ipaddress.IPv4Network(prefix)
    return struct.pack("<I4s", net.prefixlen, net.network_address.packed)


def rule_value(action: str, hits: int = 0) -> bytes:
    """``struct rule``: action, padding, hits."""
    return struct.pack("<IIQ", ACTIONS[action], 0, hits)


def install(obj, rules: list[tuple[str, str]]) -> None:
    """Store every ``(action, prefix)`` rule in the ``prefixes`` trie."""
    for action, prefix in rules:
        put(obj.maps["prefixes"], prefix_key(prefix), rule_value(action))


def rules_of(obj) -> list[dict]:
    """The trie's rules as the program left them (prefix, action, hits), longest first."""
    out = []
    for key, value in items(obj.maps["prefixes"]).items():
        plen, addr = struct.unpack("<I4s", key)
        action, _, hits = struct.unpack("<IIQ", value)
        prefix = f"{ipaddress.IPv4Address(addr)}/{plen}"
        out.append({"prefix": prefix, "action": "deny" if action else "allow", "hits": hits})
    return sorted(out, key=lambda r: (-int(r["prefix"].split("/")[1]), r["prefix"]))


def run(obj, sources: list[str]) -> list[dict]:
    """One UDP datagram from each source through the program: its verdict."""
    prog = obj.programs[PROGRAM]
    return [
        {"source": s, "verdict": XDP_ACTIONS[prog.test_run(udp4(src=s, payload=b"hi")).retval]}
        for s in sources
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=ENGINES, default="interpreter")
    parser.add_argument("--deny", action="append", default=[], metavar="PREFIX")
    parser.add_argument("--allow", action="append", default=[], metavar="PREFIX")
    parser.add_argument("--source", action="append", default=[], metavar="IPV4")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rules = [("deny", p) for p in args.deny] + [("allow", p) for p in args.allow]
    rules = rules or DEFAULT_RULES
    with load(OBJECT, args.engine) as obj:
        install(obj, rules)
        packets = run(obj, args.source or DEFAULT_SOURCES)
        stats = [struct.unpack("<Q", get(obj.maps["stats"], u32(i)))[0] for i in (0, 1)]
        record = {
            "engine": args.engine,
            "packets": packets,
            "rules": rules_of(obj),
            "passed": stats[0],
            "dropped": stats[1],
        }
    if args.json:
        print(json.dumps(record))
        return 0
    print(f"{args.engine}: {len(rules)} rules, {len(packets)} packets")
    for p in packets:
        print(f"  from {p['source']:15} -> {p['verdict']}")
    for r in record["rules"]:
        print(f"  rule {r['prefix']:18} {r['action']:5} hits {r['hits']}")
    print(f"  passed {record['passed']}, dropped {record['dropped']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
