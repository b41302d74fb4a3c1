"""The bind monitor: a per-process limit on bound sockets, shown on this process's real binds.

Run from the repository root::

    python examples/bind_monitor.py                       # eBPF-for-Windows `bind` flavour
    python examples/bind_monitor.py --flavour cgroup      # Linux: cgroup/bind4 + sock_release
    python examples/bind_monitor.py --engine jit --limit 3 --binds 5 --json

The script loads the sample (``examples/c/bind_monitor.o`` or ``bind_monitor_cgroup.o``),
stores the limit in ``limits_map[0]``, attaches its programs to this Python process
(:func:`pybpf.hooks.socket.attach_socket`), then binds ``--binds`` UDP sockets to
127.0.0.1 (any port) with ``socket.bind``: each bind is permitted or denied
(``PermissionError``) by the program; it prints each verdict and the per-process counts
in ``process_map`` (pid -> count), then closes the sockets one by one (unbind /
sock_release) and prints the counts again: the entry is deleted when its count falls to 0.

With ``--plain`` the script attaches nothing: it only binds and prints the verdicts, for
running under a policy from outside (exit status 1 when a bind was denied)::

    pybpf exec examples/c/bind_monitor_cgroup.o --update limits_map 0 2 -- \\
        python examples/bind_monitor.py --plain
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OBJECTS = {"bind": HERE / "c" / "bind_monitor.o", "cgroup": HERE / "c" / "bind_monitor_cgroup.o"}


def bind_sockets(count: int) -> tuple[list[str], list[socket.socket]]:
    """Bind ``count`` UDP sockets to 127.0.0.1; each verdict ("permit" or "deny")."""
    verdicts, sockets = [], []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("127.0.0.1", 0))
            verdicts.append("permit")
        except PermissionError:
            verdicts.append("deny")
        sockets.append(sock)
    return verdicts, sockets


def counts(obj) -> dict[int, int]:
    """``process_map`` as pid -> count (either flavour's value layout)."""
    out = {}
    for key, value in obj.maps["process_map"].items():
        out[int(key)] = int(value["count"] if isinstance(value, dict) else value)
    return out


def monitor(flavour: str, engine: str, limit: int, binds: int) -> dict:
    """Load, attach, bind, close; what happened (verdicts and counts)."""
    from pybpf.hooks.socket import attach_socket
    from pybpf.objects import Object

    with Object.open(OBJECTS[flavour]).load(engine=engine) as obj:
        obj.maps["limits_map"][0] = limit
        links = [attach_socket(prog) for prog in obj.programs.values()]
        try:
            verdicts, sockets = bind_sockets(binds)
            after_binds = counts(obj)
            after_closes = []
            for sock in sockets:
                sock.close()
                after_closes.append(counts(obj))
        finally:
            for link in links:
                link.detach()
    return {
        "flavour": flavour,
        "engine": engine,
        "pid": os.getpid(),
        "limit": limit,
        "verdicts": verdicts,
        "after_binds": after_binds,
        "after_closes": after_closes,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the scenario, print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flavour", choices=sorted(OBJECTS), default="bind")
    parser.add_argument("--engine", choices=["interpreter", "jit"], default="interpreter")
    parser.add_argument("--limit", type=int, default=2)
    parser.add_argument("--binds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--plain", action="store_true", help="only bind (policy from outside)")
    args = parser.parse_args(argv)
    if args.plain:
        verdicts, sockets = bind_sockets(args.binds)
        for sock in sockets:
            sock.close()
        if args.json:
            print(json.dumps({"pid": os.getpid(), "verdicts": verdicts}))
        else:
            print(" ".join(verdicts))
        return 0 if "deny" not in verdicts else 1
    report = monitor(args.flavour, args.engine, args.limit, args.binds)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.flavour} flavour ({args.engine}), pid {report['pid']}, limit {args.limit}")
    for i, verdict in enumerate(report["verdicts"], 1):
        print(f"  bind {i}: {verdict}")
    print(f"  process_map after the binds: {report['after_binds']}")
    for i, state in enumerate(report["after_closes"], 1):
        print(f"  after closing socket {i}: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
