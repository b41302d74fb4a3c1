"""Corpus agreement: accepted corpus programs compile on the JIT; packet programs agree on both.

Run ``python benchmarks/corpus_engines.py [--corpus DIR] [--project P] [--json FILE]``. For
every row of ``expected.csv`` (``../shared/corpus`` beside the clone by default) it opens
the object and loads the row's function on pybpf's backend, once on the interpreter and
once on the JIT (``pin_maps_dir=None``; a function whose section names no program type
gets the row's ``prog_type``). A program is *accepted* when it loads on the interpreter
(for xdp, tc and socket filters that includes the verifier); it *compiles* when it loads
on the JIT too. Accepted xdp, sched_cls and socket_filter programs then run over
:data:`PACKETS` (a fixed set of frames) on each engine, each engine on its own fresh
object; a program *agrees* when every run gives the same (retval, data_out), or the same
error type, on both. Prints per project and in total: rows, accepted, compiled, packet
programs, those calling clock or random helpers (run, not compared), agreeing; then
every compile failure and disagreement. Exit status 1 when an
accepted program fails to compile or a packet program disagrees.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
PACKET_TYPES = ("xdp", "sched_cls", "socket_filter")
# helpers whose results differ from run to run (clocks, bpf_get_prandom_u32, jiffies): a
# program calling them is run but not counted as agreeing or disagreeing
NONDETERMINISTIC = {5, 7, 118, 125, 160}


def _udp(payload: int) -> bytes:
    eth = bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x00"
    total = 20 + 8 + payload
    ip = bytes([0x45, 0]) + total.to_bytes(2, "big") + bytes(4) + bytes([64, 17, 0, 0])
    ip += bytes([10, 0, 0, 1, 10, 0, 0, 2])
    udp = (1234).to_bytes(2, "big") + (53).to_bytes(2, "big") + (8 + payload).to_bytes(2, "big")
    return eth + ip + udp + bytes(2) + bytes(range(payload))


def _tcp_syn() -> bytes:
    eth = bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x00"
    ip = bytes([0x45, 0, 0, 40]) + bytes(4) + bytes([64, 6, 0, 0]) + bytes([192, 168, 0, 1])
    ip += bytes([192, 168, 0, 2])
    tcp = (40000).to_bytes(2, "big") + (80).to_bytes(2, "big") + bytes(8) + bytes([0x50, 0x02])
    return eth + ip + tcp + bytes(6)


def _ipv6_udp() -> bytes:
    eth = bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + b"\x86\xdd"
    ip6 = bytes([0x60, 0, 0, 0]) + (12).to_bytes(2, "big") + bytes([17, 64])
    ip6 += bytes(15) + b"\x01" + bytes(15) + b"\x02"
    udp = (1234).to_bytes(2, "big") + (53).to_bytes(2, "big") + (12).to_bytes(2, "big")
    return eth + ip6 + udp + bytes(2) + b"abcd"


def _arp() -> bytes:
    return b"\xff" * 6 + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x06" + bytes(28)


PACKETS: tuple[bytes, ...] = (
    _udp(0),  # an empty UDP datagram
    _udp(22),
    _tcp_syn(),
    _ipv6_udp(),
    _arp(),
    bytes(random.Random(1).randrange(256) for _ in range(128)),  # noise
    bytes(14),  # an Ethernet header alone
    bytes(64),
)


def _effective_spec(obj: Any, function: str, prog_type: str) -> Any:
    """The object spec with ``function`` given the row's type when its section gives none."""
    from pybpf.progtypes import ProgType

    program = obj.spec.programs.get(function)
    if program is None or program.type is not None or not prog_type:
        return obj.spec
    try:
        kind = ProgType.from_name(prog_type)
    except Exception:  # an unknown name: leave the program untyped
        return obj.spec
    programs = dict(obj.spec.programs)
    programs[function] = dataclasses.replace(program, type=kind)
    return dataclasses.replace(obj.spec, programs=programs)


def _helpers(spec: Any, function: str) -> set[int]:
    from pybpf.isa import CallKind
    from pybpf.spec import link

    insns = link(spec, function).instructions
    return {i.imm for i in insns if i.is_call and i.call_kind == CallKind.HELPER}


def _outcome(prog: Any, packet: bytes) -> tuple:
    try:
        result = prog.test_run(packet)
    except Exception as exc:  # the error type is the outcome
        return ("error", type(exc).__name__)
    return (result.retval, result.data_out)


def check_row(corpus: Path, row: dict[str, str]) -> dict[str, Any]:
    """One row on both engines: what loaded, and each engine's outcomes on :data:`PACKETS`."""
    from pybpf.objects import Object

    out: dict[str, Any] = {key: row[key] for key in ("project", "object", "function")}
    out["prog_type"] = row["prog_type"]
    started = time.perf_counter()
    try:
        opened = Object.open(corpus / row["project"] / row["object"])
        spec = _effective_spec(opened, row["function"], row["prog_type"])
    except Exception as exc:  # unreadable objects are not accepted
        out["accepted"], out["error"] = False, f"{type(exc).__name__}: {exc}"[:200]
        return out
    outcomes = {}
    for engine in ("interpreter", "jit"):
        try:
            obj = Object(spec).load(engine=engine, programs=[row["function"]], pin_maps_dir=None)
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"[:200]
            if engine == "interpreter":
                out["accepted"], out["error"] = False, text
                return out
            out["compiled"], out["error"] = False, text
            return out
        with obj:
            prog = obj.programs[row["function"]]
            kind = prog.type.type_name if prog.type is not None else ""
            if engine == "interpreter":
                out["accepted"], out["type"] = True, kind
            else:
                out["compiled"] = True
                out["verified"] = prog.verified
            if kind in PACKET_TYPES:
                outcomes[engine] = [_outcome(prog, packet) for packet in PACKETS]
    if outcomes and _helpers(spec, row["function"]) & NONDETERMINISTIC:
        out["nondeterministic"] = True
    elif outcomes:
        out["agree"] = outcomes["interpreter"] == outcomes["jit"]
        if not out["agree"]:
            pairs = zip(outcomes["interpreter"], outcomes["jit"], strict=True)
            out["diff"] = [
                (i, repr(a)[:120], repr(b)[:120]) for i, (a, b) in enumerate(pairs) if a != b
            ]
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


def rows_of(corpus: Path, projects: list[str] | None = None) -> list[dict[str, str]]:
    """The rows of ``expected.csv`` (only ``projects`` when given)."""
    with open(corpus / "expected.csv") as fh:
        return [r for r in csv.DictReader(fh) if not projects or r["project"] in projects]


def main(argv: list[str] | None = None) -> int:
    """Check every row and print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--project", action="append", help="only these projects")
    parser.add_argument("--json", type=Path, help="write every row's outcome here")
    args = parser.parse_args(argv)
    if not (args.corpus / "expected.csv").is_file():
        print(f"no corpus at {args.corpus}", file=sys.stderr)
        return 2
    import os
    import tempfile

    results = []
    with tempfile.TemporaryDirectory(prefix="pybpf-corpus-") as state:
        os.environ["PYBPF_STATE"] = state
        for row in rows_of(args.corpus, args.project):
            results.append(check_row(args.corpus, row))
    stats: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in results:
        for key in (r["project"], "TOTAL"):
            s = stats[key]
            s["rows"] += 1
            s["accepted"] += bool(r.get("accepted"))
            s["compiled"] += bool(r.get("compiled"))
            s["verified"] += bool(r.get("verified"))
            s["packet"] += "agree" in r or "nondeterministic" in r
            s["nondet"] += bool(r.get("nondeterministic"))
            s["agree"] += bool(r.get("agree"))
    cols = ["rows", "accepted", "compiled", "verified", "packet", "nondet", "agree"]
    print(f"{'project':>18}  " + "  ".join(f"{c:>8}" for c in cols))
    for project in sorted(stats, key=lambda p: (p == "TOTAL", p)):
        print(f"{project:>18}  " + "  ".join(f"{stats[project][c]:>8}" for c in cols))
    failed = [r for r in results if r.get("accepted") and not r.get("compiled")]
    differ = [r for r in results if r.get("agree") is False]
    for r in failed:
        print(f"compile failure: {r['project']}/{r['object']} {r['function']}: {r['error']}")
    for r in differ:
        print(f"disagree: {r['project']}/{r['object']} {r['function']}: {r['diff'][:2]}")
    if args.json:
        args.json.write_text(json.dumps(results, default=repr, indent=1))
    return 1 if failed or differ else 0


if __name__ == "__main__":
    sys.exit(main())
