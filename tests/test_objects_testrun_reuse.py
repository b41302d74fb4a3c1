"""test_run keeps xdp/skb runs' regions: later runs give exactly what a fresh run gives."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import InputError
from pybpf.jit import available
from pybpf.progtypes import ProgType
from pybpf.progtypes.contexts import rules_for

EXAMPLES = Path(__file__).parents[1] / "examples" / "c"
ENGINES = ["interpreter"] + (["jit"] if available() else [])
SKB = {f.name: f for f in rules_for(ProgType.SCHED_CLS).context.fields}


def _frame(kind: str, size: int, seed: int) -> bytes:
    """An Ethernet frame of ``size`` bytes: IPv4, IPv6, ARP or multicast IPv4, random rest."""
    rng = random.Random(seed)
    body = bytes(rng.randrange(256) for _ in range(size))
    dst = bytes([1, 0, 0x5E, 0, 0, 1]) if kind == "mcast" else body[:6]
    proto = {"ipv4": 0x0800, "mcast": 0x0800, "ipv6": 0x86DD, "arp": 0x0806}[kind]
    return (dst + body[6:12] + proto.to_bytes(2, "big") + body[14:])[:size]


def _skb_ctx(**values: int) -> bytes:
    out = bytearray(192)
    for name, value in values.items():
        f = SKB[name]
        out[f.offset : f.end] = value.to_bytes(f.size, "little")
    return bytes(out)


def _md(data: int, data_end: int) -> bytes:
    return struct.pack("<6I", data, data_end, 0, 0, 0, 0)


F = _frame
CASES = {
    "tc_ctx": (
        "tc_ctx.o",
        "tc_ctx",
        [
            (F("ipv4", 128, 1), None),
            (F("ipv6", 128, 2), None),  # same length, other header: rederived fields
            (F("arp", 128, 3), None),
            (F("mcast", 128, 4), _skb_ctx(mark=7, priority=3, **{"cb[0]": 9})),
            (F("mcast", 128, 5), _skb_ctx(mark=7, priority=3, **{"cb[0]": 9})),
            (F("ipv4", 128, 6), _skb_ctx(mark=8, wire_len=300)),
            (F("ipv4", 160, 7), None),  # another length: prepared anew
            (F("ipv6", 128, 8), None),
        ],
    ),
    "cgskb_ctx": (
        "cgskb_ctx.o",
        "cgskb_ctx",
        [(F(k, 80, i), None) for i, k in enumerate(["ipv4", "ipv6", "arp", "ipv4", "mcast"])]
        + [(F("ipv4", 80, 9), _skb_ctx(**{"cb[1]": 5})), (F("ipv6", 80, 10), None)],
    ),
    "sock_bytes": (
        "packet_helpers.o",
        "sock_bytes",
        [(F(k, 64, i), None) for i, k in enumerate(["ipv4", "ipv6", "arp", "ipv4"])],
    ),
    "tc_bytes": (
        "packet_helpers.o",
        "tc_bytes",
        [(F("ipv4", n, i), None) for i, n in enumerate([60, 60, 120, 120, 60])],
    ),
    "xdp_push": (
        "packet_helpers.o",
        "xdp_push",
        [(b"\1" + bytes(63), None), (bytes(64), None), (b"\2" + bytes(63), None)],
    ),
    "xdp_tail": (
        "packet_helpers.o",
        "xdp_tail",
        [(struct.pack("<h", n).ljust(64, b"\xaa"), None) for n in (40, -20, 0, 3000, 16)],
    ),
    "xdp_meta": (
        "packet_helpers.o",
        "xdp_meta",
        [(struct.pack("<h", n).ljust(64, b"\x55"), None) for n in (-8, -4, 0, -8, 4)],
    ),
    "xdp_ctx": (
        "xdp_ctx.o",
        "xdp_ctx",
        [
            (F("ipv4", 64, 1), None),
            (F("ipv4", 64, 2), _md(4, 64)),
            (F("ipv4", 64, 3), _md(4, 64)),
            (F("ipv4", 64, 4), _md(0, 40)),  # fragments past data_end
            (F("ipv4", 64, 5), _md(0, 40)),
            (F("ipv4", 64, 6), None),
        ],
    ),
    "xdp_counter": (
        "xdp_counter.o",
        "xdp_count",
        [(F("ipv4", 64, i), None) for i in range(6)],
    ),
}


def _runs(engine: str, path: Path, name: str, runs, *, reuse: bool):
    """Every result of ``runs`` on a new object, then every map's contents."""
    out = []
    with pybpf.load(path, engine=engine, pin_maps_dir=None) as obj:
        prog = obj.programs[name]
        assert prog.context == "runtime"
        if not reuse:
            prog._reusable = False  # the reference: every run prepares its regions anew
        for data, ctx_in in runs:
            try:
                res = prog.test_run(data, ctx_in=ctx_in)
            except InputError as exc:
                out.append(("error", exc.errno, exc.field))
                continue
            out.append((res.retval, res.data_out, res.ctx_out))
        maps = {
            m: sorted((bytes(k), repr(v)) for k, v in obj.maps[m].items())
            for m in obj.maps
        }
        kept = len(prog._reused)
    return out, maps, kept


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", list(CASES))
def test_kept_regions_give_a_fresh_runs_results(engine, case):
    file, name, runs = CASES[case]
    path = EXAMPLES / file
    got, got_maps, kept = _runs(engine, path, name, runs, reuse=True)
    want, want_maps, _ = _runs(engine, path, name, runs, reuse=False)
    assert kept == 1  # the runs were made on kept regions
    assert got == want
    assert got_maps == want_maps
    # a fresh object running only the last input agrees too (nothing leaks from earlier runs)
    last, _, _ = _runs(engine, path, name, runs[-1:], reuse=False)
    if case != "xdp_counter":  # its map counts every earlier run
        assert got[-1] == last[0]


def test_a_bad_frame_on_kept_regions_fails_as_a_fresh_one_and_leaves_them_usable():
    with pybpf.load(EXAMPLES / "cgskb_ctx.o", pin_maps_dir=None) as obj:
        prog = obj.programs["cgskb_ctx"]
        first = prog.test_run(_frame("ipv4", 40, 1))
        bad = _frame("ipv6", 40, 2)  # 26 bytes after Ethernet: no room for an IPv6 header
        with pytest.raises(InputError) as kept_error:
            prog.test_run(bad)
        prog._reusable = False
        with pytest.raises(InputError) as fresh_error:
            prog.test_run(bad)
        assert (kept_error.value.errno, kept_error.value.field) == (
            fresh_error.value.errno,
            fresh_error.value.field,
        )
        prog._reusable = True
        again = prog.test_run(_frame("ipv4", 40, 1))
        assert (again.retval, again.data_out) == (first.retval, first.data_out)


# ---- plain-memory contexts ---------------------------------------------------------------
# untyped: r1 = data_in (or ctx_in), r2 = its length; ctx[0] = ctx[0] + ctx[1] + length
MEMORY = """
r0 = *(u8 *)(r1 + 0)
r3 = *(u8 *)(r1 + 1)
r0 += r3
r0 += r2
r3 = r0
*(u8 *)(r1 + 0) = r3
exit
"""
MEMORY_RUNS = [
    (b"\x05\x06\x07", None),
    (b"\x09\x01\x02", None),
    (b"\x01\x02", None),
    (b"zz", b"\x01\x02"),
    (b"zz", b"\x03\x04"),
    (b"", b"\x10\x20\x30"),
    (b"\x05\x06\x07", None),
]


def _memory_runs(engine: str, *, keep: bool) -> list:
    from pybpf.isa.asm import assemble
    from pybpf.objects import Object
    from pybpf.spec import ObjectSpec, ProgramSpec

    spec = ProgramSpec("p", "", tuple(assemble(MEMORY, syntax="llvm")), license="GPL")
    out = []
    with Object(ObjectSpec(name="t", programs={"p": spec}, license="GPL")).load(
        engine=engine
    ) as obj:
        prog = obj.programs["p"]
        assert prog.context == "memory"
        for data, ctx_in in MEMORY_RUNS:
            res = prog.test_run(data, ctx_in=ctx_in)
            out.append((res.retval, res.data_out, res.ctx_out))
            if not keep:
                while prog._kept_memory:
                    prog._kept_memory.pop().close()
        kept = len(prog._kept_memory)
    return out, kept


@pytest.mark.parametrize("engine", ENGINES)
def test_kept_memory_regions_give_a_fresh_runs_results(engine):
    got, kept = _memory_runs(engine, keep=True)
    want, _ = _memory_runs(engine, keep=False)
    assert kept == 1
    assert got == want
    assert got[1][0] == 9 + 1 + 3 and got[1][1] == bytes([13, 1, 2])  # not the first run's


@pytest.mark.parametrize("engine", ENGINES)
def test_a_failed_run_frees_its_regions_and_closing_the_program_frees_the_kept_ones(engine):
    from pybpf.errors import MemoryAccessError
    from pybpf.isa.asm import assemble
    from pybpf.objects import Object
    from pybpf.spec import ObjectSpec, ProgramSpec

    spec = ProgramSpec("p", "", tuple(assemble(MEMORY, syntax="llvm")), license="GPL")
    obj = Object(ObjectSpec(name="t", programs={"p": spec}, license="GPL")).load(engine=engine)
    with obj:
        prog = obj.programs["p"]
        assert prog.test_run(b"\x01\x02").retval == 5
        with pytest.raises(MemoryAccessError):
            prog.test_run(b"\x01")  # reads one byte past data_in
        assert prog._kept_memory == []
        assert prog.test_run(b"\x01\x02").retval == 5
        kept = prog._kept_memory[0]
        with pybpf.load(EXAMPLES / "xdp_ctx.o", engine=engine, pin_maps_dir=None) as xdp:
            xprog = xdp.programs["xdp_ctx"]
            xprog.test_run(_frame("ipv4", 64, 1))
            held = xprog._reused[0].reused.prepared.packet
        assert held.closed and xprog._reused == []
    assert kept.data.closed and prog._kept_memory == []
