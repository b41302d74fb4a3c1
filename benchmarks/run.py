"""Benchmarks: pybpf's engines against the Linux kernel JIT and native C, as ratios.

Run ``python benchmarks/run.py [--repeat N] [--json]``; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pybpf.isa import assemble, encode
from pybpf.memory import AddressSpace, Region
from pybpf.vm import Interpreter

PACKET = bytes(range(64))

# Common bodies: r1 = packet start, r2 = packet end (pybpf: r2 = r1 + length first; the
# kernel: both loaded from xdp_md).
PROGRAMS = {
    "ret_const": "r0 = 2\nexit",
    "sum_loop": """
        r0 = 0
        r1 = 0
    loop:
        r0 += r1
        r1 += 1
        if r1 < 1000 goto loop
        exit
    """,
    "prime_count": """
        r0 = 0
        r1 = 2
    outer:
        r2 = 2
    inner:
        r3 = r2
        r3 *= r2
        if r3 > r1 goto prime
        r4 = r1
        r4 %= r2
        if r4 == 0 goto next
        r2 += 1
        goto inner
    prime:
        r0 += 1
    next:
        r1 += 1
        if r1 < 100 goto outer
        exit
    """,
    "byte_sum": """
        r0 = 0
        r3 = r1
        r6 = 0
    loop:
        r4 = r3
        r4 += 1
        if r4 > r2 goto out
        r5 = *(u8 *)(r3 + 0)
        r0 += r5
        r3 = r4
        r6 += 1
        if r6 < 64 goto loop
    out:
        exit
    """,
}

PYBPF_PROLOGUE = "r2 += r1\n"
KERNEL_PROLOGUE = "r2 = *(u32 *)(r1 + 4)\nr1 = *(u32 *)(r1 + 0)\n"
# Instructions executed per run, where fixed (for ns/insn).
EXECUTED = {"ret_const": 1 + 2, "sum_loop": 1 + 2 + 3 * 1000 + 1, "byte_sum": 1 + 3 + 8 * 64 + 1}

EXPECTED = {"ret_const": 2, "sum_loop": 499500, "prime_count": 25, "byte_sum": sum(PACKET)}

NATIVE_C = r"""
#include <stdint.h>
#include <time.h>
static volatile uint64_t sink;
static uint64_t ret_const(const uint8_t *p, uint64_t n) { (void)p; (void)n; return 2; }
static uint64_t sum_loop(const uint8_t *p, uint64_t n) {
    (void)p; volatile uint64_t lim = 1000; uint64_t s = 0;
    for (uint64_t i = 0; i < lim; i++) s += i; (void)n; return s; }
static uint64_t prime_count(const uint8_t *p, uint64_t n) {
    (void)p; (void)n; volatile uint64_t lim = 100; uint64_t c = 0;
    for (uint64_t k = 2; k < lim; k++) { uint64_t d = 2, prime = 1;
        for (; d * d <= k; d++) if (k % d == 0) { prime = 0; break; } c += prime; }
    return c; }
static uint64_t byte_sum(const uint8_t *p, uint64_t n) {
    uint64_t s = 0; for (uint64_t i = 0; i < n; i++) s += p[i]; return s; }
typedef uint64_t (*fn)(const uint8_t *, uint64_t);
static fn table[] = { ret_const, sum_loop, prime_count, byte_sum };
double bench(int which, const uint8_t *p, uint64_t n, uint64_t reps, uint64_t *result) {
    struct timespec a, b; fn f = table[which];
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (uint64_t i = 0; i < reps; i++) { sink = f(p, n); __asm__ volatile("" ::: "memory"); }
    clock_gettime(CLOCK_MONOTONIC, &b);
    *result = sink;
    return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / reps; }
"""


def bench_interpreter(name: str, budget_s: float = 0.5) -> tuple[float, int]:
    """ns per run of the interpreter (one Python call per run) and the result."""
    vm = Interpreter(assemble(PYBPF_PROLOGUE + PROGRAMS[name]), entry_registers=(1, 2, 10))
    with Region.from_bytes(PACKET, kind="packet") as region:
        space = AddressSpace([region])
        args = (region.address, region.size)
        result = vm.run(args, memory=space)
        runs, start = 0, time.perf_counter()
        while runs == 0 or time.perf_counter() - start < budget_s:
            vm.run(args, memory=space)
            runs += 1
        elapsed = time.perf_counter() - start
    vm.close()
    return elapsed / runs * 1e9, result


def kernel_unavailable() -> str | None:
    """Why the kernel column is skipped, or None when it can run."""
    try:
        from pybpf import syscall

        if not syscall.available():
            return "bpf() is not available on this platform"
        with syscall.map_create(syscall.MapType.ARRAY, 4, 4, 1):
            return None
    except Exception as exc:  # report any refusal as the skip reason
        return f"bpf() refused: {exc}"


def bench_kernel(name: str, repeat: int) -> tuple[float, int]:
    """ns per run in the kernel JIT (BPF_PROG_TEST_RUN duration) and the result."""
    from pybpf import syscall

    code = encode(assemble(KERNEL_PROLOGUE + PROGRAMS[name]))
    fd, _log = syscall.prog_load(syscall.ProgType.XDP, code, log_level=0)
    with fd:
        res = syscall.prog_test_run(fd, PACKET, repeat=repeat)
    return float(res.duration), res.retval


def build_native() -> ctypes.CDLL | str:
    """The native C benchmark library, or why it is unavailable."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return "no C compiler"
    tmp = Path(tempfile.mkdtemp(prefix="pybpf-bench-"))
    src, lib = tmp / "native.c", tmp / "native.so"
    src.write_text(NATIVE_C)
    proc = subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", str(src), "-o", str(lib)], capture_output=True, text=True
    )
    if proc.returncode:
        return f"cc failed: {proc.stderr.strip()[:200]}"
    dll = ctypes.CDLL(str(lib))
    dll.bench.restype = ctypes.c_double
    dll.bench.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint64,
        ctypes.c_uint64,
        ctypes.POINTER(ctypes.c_uint64),
    ]
    return dll


def bench_native(dll: ctypes.CDLL, name: str) -> tuple[float, int]:
    """ns per run of the C version, timed inside C."""
    which = list(PROGRAMS).index(name)
    out = ctypes.c_uint64()
    reps = 1_000_000 if name in ("ret_const", "byte_sum") else 2000
    ns = dll.bench(which, PACKET, len(PACKET), reps, ctypes.byref(out))
    return ns, out.value


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark and print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10000, help="kernel test_run repeat")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    kernel_skip = kernel_unavailable()
    native = build_native()
    rows = []
    for name in PROGRAMS:
        row: dict[str, object] = {"program": name}
        ns, result = bench_interpreter(name)
        assert result == EXPECTED[name], (name, result)
        row["interp_ns"] = round(ns, 1)
        if name in EXECUTED:
            row["interp_ns/insn"] = round(ns / EXECUTED[name], 1)
        if kernel_skip is None:
            kns, kres = bench_kernel(name, args.repeat)
            assert kres == EXPECTED[name] & 0xFFFFFFFF, (name, kres)
            row["kernel_ns"] = kns
            row["interp/kernel"] = round(ns / max(kns, 1.0), 1)
        if not isinstance(native, str):
            nns, nres = bench_native(native, name)
            assert nres == EXPECTED[name], (name, nres)
            row["native_ns"] = round(nns, 2)
            row["interp/native"] = round(ns / max(nns, 0.01), 1)
        rows.append(row)
    if args.json:
        print(
            json.dumps(
                {
                    "rows": rows,
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
