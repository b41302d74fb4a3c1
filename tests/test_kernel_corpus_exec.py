"""Corpus programs run alike in Linux and pybpf: XDP, socket filter and tc programs of
``../shared/corpus`` that both accept give the same return value and output packet on a set
of packets (IPv4 UDP and TCP, IPv6, ARP, a frame of zeros).

A program is compared when pybpf loads it on the interpreter (verified, every helper it
calls available on the portable backend) and the kernel loads it too, and it calls no helper
whose result differs from run to run (random numbers, clocks, CPU ids, socket cookies...).
Program types come from the corpus's ``prog_type`` column. CI runs the first three
programs of each object of the small projects; ``PYBPF_KERNEL_CORPUS_EXEC=all`` runs every
row of every project (Cilium's included).
"""

from __future__ import annotations

import csv
import os
import struct
import sys
from functools import cache
from pathlib import Path

import pytest

from pybpf.elf import read_object
from pybpf.errors import PybpfError
from pybpf.helpers import HELPER_IDS
from pybpf.objects import Object
from pybpf.progtypes import ProgType
from pybpf.spec import link

sys.path.insert(0, str(Path(__file__).parent))
from kernel import requires_bpf  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
pytestmark = [
    requires_bpf,
    pytest.mark.skipif(not (CORPUS / "expected.csv").is_file(), reason=f"no corpus at {CORPUS}"),
]
TYPES = ("xdp", "socket_filter", "sched_cls")
# Disagreements reported to the runtime's owners; printed until fixed.
KNOWN: dict[str, str] = {}  # disagreements with the kernel still open: none
# fixed disagreements, always in the CI sample (LD_ABS/LD_IND at SKF_LL_OFF, csum_replace)
REGRESSIONS = ("linux/tcbpf1_kern.o:classifier", "suricata/lb.o:loadbalancer")
BIG_PROJECTS = ("cilium", "bpf_cilium_test")
PER_OBJECT = 3
KNOWN_OBJECTS = {key.split("/", 1)[1].split(":", 1)[0] for key in (*KNOWN, *REGRESSIONS)}
VARYING = {
    HELPER_IDS[name]
    for name in (
        "get_prandom_u32",
        "ktime_get_ns",
        "ktime_get_boot_ns",
        "ktime_get_coarse_ns",
        "jiffies64",
        "get_smp_processor_id",
        "get_numa_node_id",
        "get_socket_cookie",
        "get_hash_recalc",
        "trace_printk",
    )
    if name in HELPER_IDS
}


def _eth(proto: int, payload: bytes) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", proto) + payload


def _ipv4(proto: int, body: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 64, proto, 0, b"\n\0\0\1", b"\n\0\0\2"
    )
    return header + body


_UDP = struct.pack("!HHHH", 1234, 53, 12, 0) + b"abcd"
_TCP = struct.pack("!HHIIBBHHH", 1234, 80, 1, 0, 0x50, 0x02, 1000, 0, 0)
PACKETS = (
    _eth(0x0800, _ipv4(17, _UDP)),
    _eth(0x0800, _ipv4(6, _TCP)),
    _eth(0x86DD, bytes([0x60, 0, 0, 0, 0, 12, 17, 64]) + bytes(32) + _UDP),
    _eth(0x0806, bytes(28)),
    bytes(64),
)


def _rows() -> list[dict[str, str]]:
    every = os.environ.get("PYBPF_KERNEL_CORPUS_EXEC") == "all"
    with open(CORPUS / "expected.csv") as fh:
        rows = [
            r
            for r in csv.DictReader(fh)
            if r["prog_type"] in TYPES
            and r["status"] == "pass"
            and (every or r["project"] not in BIG_PROJECTS)
        ]
    if every:
        return rows
    per_object: dict[str, int] = {}
    sample = []
    for r in rows:  # CI: the first few programs of each object
        seen = per_object.get(r["object"], 0)
        if seen < PER_OBJECT or r["object"] in KNOWN_OBJECTS:
            sample.append(r)
        per_object[r["object"]] = seen + 1
    return sample


@cache
def _object(project: str, name: str):
    return read_object((CORPUS / project / name).read_bytes())


def _calls_varying_helper(spec, name: str) -> bool:
    return any(
        insn.is_call and insn.src == 0 and insn.imm in VARYING
        for insn in link(spec, name).instructions
    )


def _runs(spec, name: str, backend: str) -> list:
    obj = Object(spec.copy())
    if backend == "kernel":
        obj.load(backend="kernel", programs=[name])
    else:
        obj.load(engine=backend, programs=[name])
    out = []
    try:
        for packet in PACKETS:
            try:
                r = obj.programs[name].test_run(packet)
                out.append((r.retval, bytes(r.data_out)))
            except PybpfError as err:
                out.append(type(err).__name__)
    finally:
        obj.close()
    return out


def test_corpus_programs_run_alike(capsys):
    compared, skipped, failures = 0, 0, []
    for row in _rows():
        spec = _object(row["project"], row["object"]).copy()
        name = row["function"]
        spec.set_program_type(name, ProgType.from_name(row["prog_type"]))
        spec.program(name).attach_type = None
        try:
            if _calls_varying_helper(spec, name):
                skipped += 1
                continue
            mine = _runs(spec, name, "interpreter")
            theirs = _runs(spec, name, "kernel")
        except PybpfError:
            skipped += 1  # one side does not load it (the verdict report lists why)
            continue
        compared += 1
        for packet, a, b in zip(PACKETS, theirs, mine, strict=True):
            if a != b:
                failures.append(
                    f"{row['project']}/{row['object']}:{name}: ({row['prog_type']}) on "
                    f"{packet[:16].hex()}...: kernel {str(a)[:200]} pybpf {str(b)[:200]}"
                )
                break
    new = [f for f in failures if f.split(": ", 1)[0] not in KNOWN]
    with capsys.disabled():
        print(f"\ncorpus programs compared: {compared}, not comparable: {skipped}")
        for line in failures:
            print(f"  disagreement{' (known)' if line not in new else ''}: {line[:300]}")
    assert compared >= 5
    assert not new, "\n".join(new)
