"""JIT benchmarks: compile time, the code cache, native map calls and the batch rate.

Run ``python benchmarks/jit.py [--json]`` for these figures alone; ``benchmarks/run.py``
(the suite: every program on every engine, ratios to the kernel) prints them too:

- compile time of a 100-instruction program (ALU work, stack traffic, branches) at O2 and
  O3, best and median of several compilations;
- the code cache: the same program compiled (cold) and from the cache (a hit: load check,
  key, reading the entry and linking it);
- a map lookup and atomic add on an array and a hash map, native map calls against the
  Python helper;
- the batch rate of the drop-empty-UDP program over 64-byte packets
  (``JitProgram.run_batch``: one Python-to-native transition per batch; ``ns/packet``
  native, ``wall`` with the Python call and results included).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time

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


def compile_figure(n: int = 100, rounds: int = 9) -> dict[str, float]:
    """Compile ms of an ``n``-instruction program (instructions to native code): best and
    median at O2 and O3 without checks, and O2 with debug checks (no code cache)."""
    prog = synthetic_program(n)
    out = {}
    for label, level, debug in (("o2", 2, False), ("o3", 3, False), ("o2_checked", 2, True)):
        times = []
        for _ in range(rounds):
            with JitProgram(prog, debug_checks=debug, opt_level=level) as jit:
                times.append(jit.compile_seconds * 1e3)
        out[f"{label}_best_ms"] = round(min(times), 2)
        out[f"{label}_median_ms"] = round(statistics.median(times), 2)
    return out


def cache_figure(n: int = 100, rounds: int = 9) -> dict[str, float]:
    """ms to a runnable ``n``-instruction program: compiled (cold) and from the code
    cache (warm: load check, key, reading the entry and linking it); medians, and the
    best warm time."""
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
        "warm_best_ms": round(min(warm), 2),
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
    """Print the JIT's figures (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not available():
        print(f"the JIT is unavailable: {unavailable_reason()}", file=sys.stderr)
        return 1
    out = {
        "llvm": llvm_version(),
        "compile_100_insns": compile_figure(),
        "cache_100_insns": cache_figure(),
        "map_lookup_ns": map_figure(),
        "batch_drop_empty_udp": batch_figure(),
    }
    if args.json:
        print(json.dumps(out))
        return 0
    for name, values in out.items():
        print(f"{name}: {values}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
