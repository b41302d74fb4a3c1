"""Map micro-benchmarks: ns per lookup and update, from Python, from programs, and in Linux.

Run ``python benchmarks/maps.py [--seconds S] [--json]``. For each map (HASH, LRU_HASH,
ARRAY, PERCPU_ARRAY, LPM_TRIE; 1024 elements, 4-byte keys, 8-byte values) it prints:

- ``py_get`` / ``py_set``: the Pythonic API, ``m[k]`` and ``m[k] = v`` (int codecs);
- ``raw_lookup`` / ``raw_update``: the bytes API (Linux's ``bpf()`` semantics);
- ``elem_lookup``: the entry the ``bpf_map_lookup_elem`` helper calls (returns an address);
- ``prog_lookup``: one interpreter run of a program doing lookup + ``lock xadd`` on the
  value, minus a run of the same program without the helper call (so: the helper path);
- ``kernel_lookup`` / ``kernel_update``: the same operations on a Linux map through
  ``bpf()`` (pybpf.syscall), when it works here (syscall cost included).

Also the atomics: one native (llvmlite) and one Python-lock fetch-add, and a lock
acquire/release pair. Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import time

from pybpf.isa import assemble
from pybpf.maps import create_map
from pybpf.maptypes import MapFlag
from pybpf.maptypes import MapType as T
from pybpf.memory import Region, atomics
from pybpf.memory.lock import SharedLock
from pybpf.runtime import default_helpers, map_lddw_resolver
from pybpf.vm import Interpreter

N = 1024
NCPUS = 4


def per_op(fn, seconds: float) -> float:
    """Nanoseconds per call of ``fn()`` (itself doing 100 operations), best of 3 batches."""
    best = float("inf")
    deadline = time.perf_counter() + seconds
    batches = 0
    while batches < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - t0) / 100)
        batches += 1
    return best


def keys_for(kind) -> list[bytes]:
    if kind == T.LPM_TRIE:
        return [struct.pack("<I", 32) + i.to_bytes(4, "big") for i in range(N)]
    return [i.to_bytes(4, "little") for i in range(N)]


PROGRAM = """
*(u32 *)(r10 - 4) = r1
r1 = map[fd:1] ll
r2 = r10
r2 += -4
{call}
if r0 == 0 goto out
r1 = 1
lock *(u64 *)(r0 + 0) += r1
out:
exit
"""


def bench_map(kind, seconds: float) -> dict:
    flags = MapFlag.NO_PREALLOC if kind == T.LPM_TRIE else 0
    key_size = 8 if kind == T.LPM_TRIE else 4
    m = create_map(
        type=kind,
        key_size=key_size,
        value_size=8,
        max_entries=N,
        flags=flags,
        ncpus=NCPUS,
        backing="anonymous",
    )
    keys = keys_for(kind)
    value = bytes(m.user_value_size)
    for k in keys:
        m.update_raw(k, value)
    rng = random.Random(0)
    sample = [rng.choice(keys) for _ in range(100)]
    ints = [int.from_bytes(k, "little") for k in sample]
    out: dict[str, float] = {}

    def raw_lookup():
        for k in sample:
            m.lookup_raw(k)

    def raw_update():
        for k in sample:
            m.update_raw(k, value)

    def elem_lookup():
        for k in sample:
            m.elem_lookup(k)

    out["raw_lookup"] = per_op(raw_lookup, seconds)
    out["raw_update"] = per_op(raw_update, seconds)
    out["elem_lookup"] = per_op(elem_lookup, seconds)
    if kind != T.LPM_TRIE:
        m.set_codecs("uint", "uint")

        def py_get():
            for k in ints:
                m[k]

        def py_set():
            for k in ints:
                m[k] = 7 if not m.percpu else [7] * NCPUS

        out["py_get"] = per_op(py_get, seconds)
        out["py_set"] = per_op(py_set, seconds)
        with_call = Interpreter(
            assemble(PROGRAM.format(call="call 1")),
            helpers=default_helpers(),
            lddw_resolver=map_lddw_resolver({1: m}),
        )
        without = Interpreter(
            assemble(PROGRAM.format(call="r0 = 0")),
            helpers=default_helpers(),
            lddw_resolver=map_lddw_resolver({1: m}),
        )

        def run(prog):
            def go():
                for k in ints:
                    prog.run((k,))

            return go

        out["prog_lookup"] = per_op(run(with_call), seconds) - per_op(run(without), seconds)
    out.update(bench_kernel(kind, key_size, flags, keys, sample, seconds))
    m.close()
    return out


def bench_kernel(kind, key_size, flags, keys, sample, seconds) -> dict:
    try:
        from pybpf import syscall as sc

        fd = sc.map_create(kind, key_size, 8, N, flags)
    except Exception:  # noqa: BLE001 - no bpf() here: nothing to compare with
        return {}
    try:
        percpu = kind in (T.PERCPU_ARRAY, T.PERCPU_HASH)
        size = 8 * (sc_possible_cpus() if percpu else 1)
        value = bytes(size)
        for k in keys:
            sc.map_update(fd, k, value)

        def lookup():
            for k in sample:
                sc.map_lookup(fd, k, size)

        def update():
            for k in sample:
                sc.map_update(fd, k, value)

        return {"kernel_lookup": per_op(lookup, seconds), "kernel_update": per_op(update, seconds)}
    finally:
        fd.close()


def sc_possible_cpus() -> int:
    text = open("/sys/devices/system/cpu/possible").read().strip()
    total = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        total += int(hi or lo) - int(lo) + 1
    return total


def bench_atomics(seconds: float) -> dict:
    out = {}
    with Region(16) as region:
        address = region.address
        for name in ("native", "python"):
            if name == "native" and not atomics.native_available():
                continue
            atomics.set_backend(name)

            def add():
                for _ in range(100):
                    atomics.rmw_at(address, 8, "add", 1)

            out[f"fetch_add_{name}"] = per_op(add, seconds)
            lock = SharedLock(address + 8)

            def lock_pair(lock=lock):
                for _ in range(100):
                    lock.acquire()
                    lock.release()

            out[f"lock_pair_{name}"] = per_op(lock_pair, seconds)
        atomics.set_backend("auto")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="time per measurement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = {"atomics": bench_atomics(args.seconds)}
    for kind in (T.HASH, T.LRU_HASH, T.ARRAY, T.PERCPU_ARRAY, T.LPM_TRIE):
        results[kind.type_name] = bench_map(kind, args.seconds)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return 0
    columns = [
        "py_get",
        "py_set",
        "raw_lookup",
        "raw_update",
        "elem_lookup",
        "prog_lookup",
        "kernel_lookup",
        "kernel_update",
    ]
    print(f"ns per operation ({N} elements, backend {atomics.backend()})")
    print(f"{'map':<14}" + "".join(f"{c:>14}" for c in columns))
    for name, row in results.items():
        if name == "atomics":
            continue
        cells = "".join(f"{row[c]:>14.0f}" if c in row else f"{'-':>14}" for c in columns)
        print(f"{name:<14}{cells}")
    print("atomics: " + ", ".join(f"{k} {v:.0f} ns" for k, v in results["atomics"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
