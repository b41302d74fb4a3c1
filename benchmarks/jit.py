"""JIT benchmarks: pybpf's LLVM JIT against the interpreter, the kernel JIT and native C.

Run ``python benchmarks/jit.py [--repeat N] [--json]``. For each program of
``benchmarks/run.py`` (same bytecode, same 64-byte packet) it prints ns per run of:

- ``interp``: the interpreter, one Python call per run;
- ``jit``: the JIT's native repeat loop (``JitProgram.run_repeat``), no memory checks,
  as a verified program runs; ``jit_dbg``: the same with debug checks compiled in;
- ``jit_call``: one ``JitProgram.run`` from Python (the Python-to-native cost included);
- ``kernel``: the kernel JIT through BPF_PROG_TEST_RUN with the same repeat count
  (``duration``; needs root and ``bpf()``), and ``native``: C at ``cc -O2``;

plus the compile time at O2 (ms) and ratios to the kernel. The last lines give the
compile time of a 100-instruction program, cold and from the code cache, a map lookup
on an array and a hash map (native map calls against the Python helper), and the batch
rate of the drop-empty-UDP program over 64-byte packets (``JitProgram.run_batch``: one
Python-to-native transition per batch; ``ns/packet`` native, ``wall`` with the Python
call and results included).
``sum_loop``'s trip count is a constant, so LLVM turns it into a closed form; the other
programs depend on their input.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time

import run as bench  # benchmarks/run.py: the programs, the kernel and native runners

from pybpf.isa import AluOp, Instruction, JmpOp, assemble
from pybpf.isa.opcodes import Class, Source, alu_opcode, jmp_opcode
from pybpf.jit import (
    JitProgram,
    PacketArg,
    PacketBatch,
    available,
    llvm_version,
    unavailable_reason,
)
from pybpf.jit.cache import CodeCache
from pybpf.memory import AddressSpace, Region


def bench_jit(
    name: str, repeat: int, *, debug_checks: bool = False, budget_s: float = 0.2
) -> dict[str, float]:
    """ns per run in the native loop and per Python call, compile ms, and the result."""
    insns = assemble(bench.PYBPF_PROLOGUE + bench.PROGRAMS[name])
    with Region.from_bytes(bench.PACKET, kind="packet") as region:
        space = AddressSpace([region])
        args = (region.address, region.size)
        with JitProgram(insns, entry_registers=(1, 2, 10), debug_checks=debug_checks) as prog:
            result = prog.run(args, memory=space)
            loop_ns = min(prog.run_repeat(args, memory=space, repeat=repeat)[1] for _ in range(5))
            calls, start = 0, time.perf_counter()
            while calls < (1000 if budget_s else 1) or time.perf_counter() - start < budget_s:
                prog.run(args, memory=space)
                calls += 1
            call_ns = (time.perf_counter() - start) / calls * 1e9
            compile_ms = prog.compile_seconds * 1e3
    return {"ns": loop_ns, "call_ns": call_ns, "compile_ms": compile_ms, "result": result}


def synthetic_program(n: int = 100, seed: int = 1) -> list[Instruction]:
    """``n`` instructions of ALU work, stack traffic and forward branches (fixed seed)."""
    rng = random.Random(seed)
    prog = [Instruction(alu_opcode(Class.ALU64, AluOp.MOV, Source.K), r, imm=r) for r in range(10)]
    ops = [AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.XOR, AluOp.OR, AluOp.LSH, AluOp.DIV, AluOp.MOD]
    while len(prog) < n - 1:
        kind = rng.random()
        dst, src = rng.randrange(10), rng.randrange(10)
        if kind < 0.6:
            cls = rng.choice([Class.ALU64, Class.ALU])
            prog.append(Instruction(alu_opcode(cls, rng.choice(ops), Source.X), dst, src))
        elif kind < 0.8:
            off = -8 * rng.randrange(1, 64)
            prog.append(Instruction(0x7B, 10, src, off))  # *(u64 *)(r10 + off) = src
            prog.append(Instruction(0x79, dst, 10, off))  # dst = *(u64 *)(r10 + off)
        else:
            skip = rng.randrange(1, 4)
            if len(prog) + skip + 1 < n - 1:
                code = jmp_opcode(Class.JMP, rng.choice([JmpOp.JGT, JmpOp.JEQ]), Source.X)
                prog.append(Instruction(code, dst, src, skip))
    exit_ = Instruction(jmp_opcode(Class.JMP, JmpOp.EXIT, Source.K))
    return prog[: n - 1] + [exit_]


def compile_figure(n: int = 100) -> dict[str, float]:
    """Median compile ms of an ``n``-instruction program at O2, unchecked and checked."""
    prog = synthetic_program(n)
    out = {}
    for label, debug in (("compile_ms", False), ("compile_dbg_ms", True)):
        times = []
        for _ in range(7):
            with JitProgram(prog, debug_checks=debug) as jit:
                times.append(jit.compile_seconds * 1e3)
        out[label] = round(statistics.median(times), 2)
    return out


def cache_figure(n: int = 100, rounds: int = 7) -> dict[str, float]:
    """Median ms to a runnable ``n``-instruction program: compiled (cold) and from the code
    cache (warm: load check, key, reading the entry and linking it)."""
    prog = synthetic_program(n)
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as directory:
        cache = CodeCache(directory)
        for _ in range(rounds):
            cache.clear()
            for bucket, hit in ((cold, False), (warm, True)):
                start = time.perf_counter()
                with JitProgram(prog, cache=cache) as jit:
                    assert jit.cache_hit is hit
                bucket.append((time.perf_counter() - start) * 1e3)
    return {
        "cold_ms": round(statistics.median(cold), 2),
        "warm_ms": round(statistics.median(warm), 2),
    }


# Look key r1 up and add 1 to its value (r0: the new value, or 0 when missing).
MAP_COUNT = """
    *(u32 *)(r10 - 4) = r1
    r1 = map[fd:1] ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
    r1 = 1
    lock *(u64 *)(r0 + 0) += r1
    r0 = *(u64 *)(r0 + 0)
out:
    exit
"""


def map_figure(repeat: int = 20000) -> dict[str, float]:
    """ns per run of MAP_COUNT on an ARRAY and a HASH map: native map calls (``inline``)
    and through the Python helper (``python``)."""
    from pybpf.maps import create_map
    from pybpf.maptypes import MapType
    from pybpf.runtime.maps import map_lddw_resolver

    out: dict[str, float] = {}
    for kind in (MapType.ARRAY, MapType.HASH):
        with create_map(type=kind, key_size=4, value_size=8, max_entries=64) as m:
            m.set_codecs("uint", "uint")
            m[3] = 0
            for label, inline in (("inline", True), ("python", False)):
                with JitProgram(
                    assemble(MAP_COUNT),
                    lddw_resolver=map_lddw_resolver({1: m}),
                    inline_maps=inline,
                ) as prog:
                    runs = repeat if inline else max(repeat // 20, 100)
                    ns = min(prog.run_repeat((3,), repeat=runs)[1] for _ in range(3))
                out[f"{kind.name.lower()}_{label}_ns"] = round(ns, 1)
    return out


# XDP-like, r1 = data, r2 = data_end: XDP_DROP (1) for an Ethernet/IPv4/UDP packet whose
# UDP length says it carries nothing, XDP_PASS (2) otherwise (the drop-empty-UDP sample).
DROP_EMPTY_UDP = """
    r0 = 2
    r3 = r1
    r3 += 14
    if r3 > r2 goto out
    r4 = *(u16 *)(r1 + 12)
    r4 = be16 r4
    if r4 != 0x800 goto out
    r3 = r1
    r3 += 34
    if r3 > r2 goto out
    r4 = *(u8 *)(r1 + 23)
    if r4 != 17 goto out
    r4 = *(u8 *)(r1 + 14)
    r4 &= 15
    r4 <<= 2
    r3 = r1
    r3 += 14
    r3 += r4
    r5 = r3
    r5 += 8
    if r5 > r2 goto out
    r4 = *(u16 *)(r3 + 4)
    r4 = be16 r4
    if r4 != 8 goto out
    r0 = 1
out:
    exit
"""


def udp_packet(payload_len: int, size: int = 64) -> bytes:
    """An Ethernet/IPv4/UDP packet of ``size`` bytes whose UDP length is 8 + payload_len."""
    head = bytes(12) + b"\x08\x00" + b"\x45" + bytes(8) + b"\x11" + bytes(10)
    udp = (1).to_bytes(2, "big") + (2).to_bytes(2, "big") + (8 + payload_len).to_bytes(2, "big")
    return (head + udp + bytes(2)).ljust(size, b"\x00")


def batch_figure(count: int = 4096, rounds: int = 20) -> dict[str, float]:
    """The drop-empty-UDP program over ``count`` 64-byte packets (half empty UDP)."""
    packets = [udp_packet(0 if i % 2 else 22) for i in range(count)]
    args = (PacketArg.DATA, PacketArg.DATA_END)
    with JitProgram(assemble(DROP_EMPTY_UDP), entry_registers=(1, 2, 10)) as prog, \
            PacketBatch.from_packets(packets) as batch:  # fmt: skip
        native, wall = [], []
        for _ in range(rounds):
            start = time.perf_counter_ns()
            result = prog.run_batch(batch, args=args)
            wall.append((time.perf_counter_ns() - start) / count)
            native.append(result.ns_per_packet)
        assert result.retvals.count(1) == count // 2, result.retvals[:4]
    ns = min(native)
    return {"packets": count, "ns_per_packet": round(ns, 2), "wall_ns_per_packet":
            round(min(wall), 2), "mpps": round(1e3 / ns, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark and print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10000, help="repeat count (JIT, kernel)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not available():
        print(f"the JIT is unavailable: {unavailable_reason()}", file=sys.stderr)
        return 1
    kernel_skip = bench.kernel_unavailable()
    native = bench.build_native()
    rows = []
    for name in bench.PROGRAMS:
        row: dict[str, object] = {"program": name}
        jit = bench_jit(name, args.repeat)
        dbg = bench_jit(name, args.repeat, debug_checks=True)
        assert jit["result"] == dbg["result"] == bench.EXPECTED[name], (name, jit, dbg)
        interp_ns, result = bench.bench_interpreter(name, budget_s=0.3)
        assert result == bench.EXPECTED[name], (name, result)
        row["interp_ns"] = round(interp_ns, 1)
        row["jit_ns"] = round(jit["ns"], 2)
        row["jit_dbg_ns"] = round(dbg["ns"], 2)
        row["jit_call_ns"] = round(jit["call_ns"])
        row["compile_ms"] = round(jit["compile_ms"], 2)
        row["interp/jit"] = round(interp_ns / max(jit["ns"], 0.01))
        if kernel_skip is None:
            kns, kres = bench.bench_kernel(name, args.repeat)
            assert kres == bench.EXPECTED[name] & 0xFFFFFFFF, (name, kres)
            row["kernel_ns"] = kns
            row["jit/kernel"] = round(jit["ns"] / max(kns, 1.0), 2)
            row["jit_dbg/kernel"] = round(dbg["ns"] / max(kns, 1.0), 2)
        if not isinstance(native, str):
            nns, nres = bench.bench_native(native, name)
            assert nres == bench.EXPECTED[name], (name, nres)
            row["native_ns"] = round(nns, 2)
        rows.append(row)
    figure = compile_figure()
    batch = batch_figure()
    cached = cache_figure()
    maps = map_figure()
    if args.json:
        print(
            json.dumps(
                {
                    "llvm": llvm_version(),
                    "rows": rows,
                    "compile_100_insns": figure,
                    "batch_drop_empty_udp": batch,
                    "cache_100_insns": cached,
                    "map_lookup_ns": maps,
                    "kernel_skipped": kernel_skip,
                    "native_skipped": native if isinstance(native, str) else None,
                }
            )
        )
        return 0
    if kernel_skip:
        print(f"kernel: skipped ({kernel_skip})")
    if isinstance(native, str):
        print(f"native: skipped ({native})")
    cols = list(dict.fromkeys(k for row in rows for k in row))
    print("  ".join(f"{c:>14}" for c in cols))
    for row in rows:
        print("  ".join(f"{row.get(c, '-')!s:>14}" for c in cols))
    print(
        f"compile at O2 (LLVM {llvm_version()}), 100-instruction program: "
        f"{figure['compile_ms']} ms, {figure['compile_dbg_ms']} ms with debug checks"
    )
    print(
        f"batch, drop-empty-UDP over {batch['packets']} 64-byte packets: "
        f"{batch['ns_per_packet']} ns/packet native ({batch['mpps']} M packets/s), "
        f"{batch['wall_ns_per_packet']} ns/packet wall"
    )
    print(
        "map lookup + atomic add, ns/run: "
        + ", ".join(f"{name[:-3]} {value}" for name, value in maps.items())
    )
    print(
        f"code cache, 100-instruction program: {cached['cold_ms']} ms cold (LLVM), "
        f"{cached['warm_ms']} ms warm (cache hit)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
