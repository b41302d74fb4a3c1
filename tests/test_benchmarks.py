"""The benchmark programs compute what they claim, the same on every engine (no timing here)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import run as bench  # noqa: E402

from pybpf.jit import available  # noqa: E402


def _sum(n: int) -> int:
    s = 0
    for i in range(n):
        s = (s + (i ^ (s >> 7))) & (1 << 64) - 1
    return s


def _primes(n: int) -> int:
    return sum(all(k % d for d in range(2, int(k**0.5) + 1)) for k in range(2, n))


# What some programs must return, computed here independently of every engine.
EXPECTED = {
    "sum": _sum(1000) & 0xFFFFFFFF,
    "prime_count": _primes(300),
    "log2": sum(
        max(w, 1).bit_length() - 1
        for (w,) in struct.iter_unpack("<I", bench.PROGRAMS["log2"].packet[2:66])
    ),
    "memcpy": 200 + 199 + 0,  # 200 bytes copied; dst[199] = 199, dst[0] = 0
    "strcmp": 0,
    "byte_sum": sum(range(256)),
    "parse_udp": 1,  # XDP_DROP: an empty UDP datagram
    "array_map": 16,  # array values start at 0: each lookup makes one 1 (odd)
    "hash_map": 16 * 100,  # every key missing: 16 inserts
    "tail_chain": 1008,  # stage0 -> ... -> stage8
    "helpers": 16,
}


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    import os

    old = os.environ.get("PYBPF_STATE")
    os.environ["PYBPF_STATE"] = str(tmp_path_factory.mktemp("state"))
    engines = ["interpreter"] + (["jit"] if available() else [])
    loaded = {engine: bench.load_portable(engine) for engine in engines}
    yield loaded
    for obj in loaded.values():
        obj.close()
    if old is None:
        os.environ.pop("PYBPF_STATE", None)
    else:
        os.environ["PYBPF_STATE"] = old


@pytest.mark.parametrize("name", list(bench.PROGRAMS))
def test_every_engine_gives_the_same_result(objects, name):
    case = bench.PROGRAMS[name]
    results = {
        engine: obj.programs[case.program].test_run(case.packet).retval
        for engine, obj in objects.items()
    }
    assert len(set(results.values())) == 1, results
    if name in EXPECTED:
        assert results["interpreter"] == EXPECTED[name]


def test_verified_programs_run_unchecked_on_the_jit(objects):
    if "jit" not in objects:
        pytest.skip("llvmlite is not installed")
    progs = objects["jit"].programs
    assert all(p.verified and not p._runner.debug_checks for p in progs.values())


def test_the_native_build_computes_the_same():
    native = bench.build_native()
    if isinstance(native, str):
        pytest.skip(native)
    for case in bench.CASES:
        if case.native is None:
            continue
        _ns, value = bench.bench_native(native, case, 1)
        if case.name in EXPECTED:
            assert value & 0xFFFFFFFF == EXPECTED[case.name], case.name


def test_counting_insns_counts_each_executed_instruction():
    from pybpf.isa.asm import assemble
    from pybpf.vm import Interpreter

    for n in (1, 10, 37):
        text = f"r0 = 0\nr0 += 1\nif r0 < {n} goto -2\nexit"
        with Interpreter(assemble(text, syntax="llvm")) as vm:
            assert bench.count_insns(lambda vm=vm: vm.run()) == 1 + 2 * n + 1


def test_counting_insns_follows_tail_calls_and_restores_the_loop(objects):
    from pybpf.vm import interpreter

    loop = interpreter._loop
    prog = objects["interpreter"].programs
    chain = bench.PROGRAMS["tail_chain"]
    one_stage = bench.insns_per_run(prog["stage8"], chain.packet, runs=2)
    whole = bench.insns_per_run(prog[chain.program], chain.packet, runs=2)
    assert interpreter._loop is loop
    assert whole > 8 * one_stage > 0  # nine stages ran
    summed = bench.PROGRAMS["sum"]
    few = bench.insns_per_run(prog["sum"], bench._u16(10, 64))
    many = bench.insns_per_run(prog["sum"], summed.packet)
    assert many > 50 * few / 2  # the trip count (1000 vs 10) decides the count


def test_single_calls_by_type_time_every_packet_type(monkeypatch):
    monkeypatch.setattr(bench, "call_ns", lambda run, calls=0: run().retval)  # no timing
    out = bench.single_calls_by_type(["interpreter"], kernel=False)
    assert set(out) == set(bench.TYPE_PROGRAMS)
    # tc_ok: 2 (TC_ACT_SHOT) for a 64-byte frame; socket_all: skb->len from L3 (64 - 14)
    assert out["tc"] == {"interpreter": 2} and out["socket_filter"] == {"interpreter": 50}
    assert out["cgroup_skb"] == {"interpreter": 1}
