"""Benchmarks: pybpf's engines against the Linux kernel JIT and native C, as ratios to the kernel.

Run ``python benchmarks/run.py [--repeat N] [--quick] [--json]``; see benchmarks/README.md.
Every program is C (``benchmarks/c/bench.c``, computations shared with the native build in
``bench_core.h``) compiled to the committed ``benchmarks/c/bench.o``; the same object is
loaded by pybpf (interpreter and JIT) and, where ``bpf()`` works, by the kernel, and run
through ``test_run`` with the same packet and the same repeat count.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
OBJECT = HERE / "c" / "bench.o"
NATIVE_SOURCE = HERE / "c" / "native.c"
STAGES = 9  # stage0..stage8, slots 0..8 of the prog array "stages"
RING = "ring"  # the ringbuf program's ring buffer: emptied before each timing (drain_rings)
_RINGS: list = []  # (object, pybpf.RingBuffer) of every object loaded here


def _u16(n: int, size: int, fill: bytes = b"") -> bytes:
    return (struct.pack("<H", n) + fill).ljust(size, b"\0")[:size]


def udp_packet(payload_len: int, size: int = 64) -> bytes:
    """An Ethernet/IPv4/UDP packet of ``size`` bytes whose UDP length is 8 + payload_len."""
    head = bytes(12) + b"\x08\x00" + b"\x45" + bytes(8) + b"\x11" + bytes(10)
    udp = (1).to_bytes(2, "big") + (2).to_bytes(2, "big") + (8 + payload_len).to_bytes(2, "big")
    return (head + udp + bytes(2)).ljust(size, b"\x00")


def _words(count: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    return b"".join(struct.pack("<I", rng.getrandbits(rng.randrange(1, 32))) for _ in range(count))


_TEXT = b"the quick brown fox jumps over the lazy dog 0123"  # 48 bytes, no NUL


@dataclass(frozen=True)
class Case:
    """One row: ``program`` of bench.o run on ``packet``; ``native``: the C function of
    native.c doing the same work (None: no native equivalent); ``kind``: "compute",
    "map", "tail" or "helper"."""

    name: str
    program: str
    packet: bytes
    kind: str = "compute"
    native: str | None = None


CASES = [
    Case("sum", "sum", _u16(1000, 64), native="sum"),
    Case("prime_count", "prime", _u16(300, 64), native="prime"),
    Case("log2", "ilog2", _u16(16, 80, _words(16)), native="ilog2"),
    Case("memcpy", "copy", _u16(200, 256, bytes(range(254))), native="copy"),
    Case("strcmp", "compare", _u16(0, 130, _TEXT + bytes(16) + _TEXT), native="compare"),
    Case("byte_sum", "byte_sum", bytes(range(256)), native="byte_sum"),
    Case(
        "switch",
        "branches",
        bytes(random.Random(3).randrange(256) for _ in range(256)),
        native="branches",
    ),  # fmt: skip
    Case("parse_udp", "parse", udp_packet(0), native="parse"),
    Case("array_map", "array_map_ops", _u16(16, 64, b"\x05"), kind="map"),
    Case("hash_map", "hash_map_ops", _u16(16, 64, b"\x05"), kind="map"),
    Case("lru_map", "lru_map_ops", _u16(16, 64, b"\x05"), kind="map"),
    Case("percpu_array", "percpu_map_ops", _u16(16, 64, b"\x05"), kind="map"),
    Case("tail_chain", "stage0", bytes([8]) + bytes(63), kind="tail"),
    Case("helpers", "helpers", _u16(8, 64), kind="helper"),
    Case("ringbuf", "ringbuf", _u16(2, 64), kind="helper"),
]
PROGRAMS = {case.name: case for case in CASES}


# ---- pybpf ---------------------------------------------------------------------------------
def load_portable(engine: str):
    """bench.o on pybpf's backend (every program; the tail-call stages in their slots)."""
    import pybpf

    obj = pybpf.load(OBJECT, engine=engine, pin_maps_dir=None)
    for i in range(STAGES):
        obj.maps["stages"][i] = obj.programs[f"stage{i}"]
    _RINGS.append((obj, pybpf.RingBuffer(obj.maps[RING], lambda data: None)))
    return obj


def load_kernel():
    """bench.o in the kernel (every program; the tail-call stages in their slots)."""
    import pybpf

    obj = pybpf.load(OBJECT, backend="kernel", pin_maps_dir=None)
    for i in range(STAGES):
        fd = int(obj.programs[f"stage{i}"].kernel.fd)
        obj.maps["stages"].update(struct.pack("<I", i), struct.pack("<I", fd))
    _RINGS.append((obj, pybpf.RingBuffer(obj.maps[RING], lambda data: None)))
    return obj


def drain_rings() -> None:
    """Consume every record of the loaded objects' rings (a full ring would time NULLs)."""
    for entry in list(_RINGS):
        obj, ring = entry
        if obj.closed:  # (first_result's fresh objects) unmap a kernel ring's pages
            ring.close()
            _RINGS.remove(entry)
        else:
            ring.consume()


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


def first_result(case: Case, engine: str) -> int:
    """The retval of one run on a freshly loaded object (map programs change their maps,
    so later runs differ by how many ran before)."""
    obj = load_kernel() if engine == "kernel" else load_portable(engine)
    with obj:
        return obj.programs[case.program].test_run(case.packet).retval


def timed(prog, packet: bytes, repeat: int, rounds: int = 5) -> float:
    """The best mean ns per run over ``rounds`` test_runs of ``repeat`` runs."""
    return min(drain_rings() or prog.test_run(packet, repeat=repeat).duration
               for _ in range(rounds))  # fmt: skip


def time_interpreter(prog, packet: bytes, budget_s: float) -> float:
    """ns per run of the interpreter, enough runs to fill ``budget_s``."""
    drain_rings()
    start = time.perf_counter()
    prog.test_run(packet)
    once = time.perf_counter() - start
    repeat = max(1, min(20000, int(budget_s / max(once, 1e-7))))
    return float(prog.test_run(packet, repeat=repeat).duration)


def count_insns(run) -> int:
    """Instructions the interpreter executes while ``run()`` runs (every program, tail-call
    targets included): its dispatch loop is swapped for a counting one for the call."""
    from pybpf.errors import BudgetExceededError
    from pybpf.vm import interpreter as vm
    from pybpf.vm.threaded import ProgramExit

    total = 0

    def counting_loop(ops: list, budget: int) -> None:
        nonlocal total
        pc = executed = 0
        try:
            while executed < budget:
                executed += 1
                pc = ops[pc]()
        except ProgramExit:
            return
        finally:
            total += executed
        raise BudgetExceededError(f"instruction budget of {budget} exhausted", budget=budget,
                                  pc=pc)  # fmt: skip

    original, vm._loop = vm._loop, counting_loop
    try:
        run()
    finally:
        vm._loop = original
    return total


def insns_per_run(prog, packet: bytes, runs: int = 16) -> float:
    """Mean instructions the interpreter executes per run of ``prog`` on ``packet``."""
    return count_insns(lambda: prog.test_run(packet, repeat=runs)) / runs


def call_ns(run, calls: int = 3000) -> float:
    """Mean wall ns of ``run()`` (one Python call)."""
    run()
    best = math.inf
    for _ in range(3):
        start = time.perf_counter_ns()
        for _ in range(calls):
            run()
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


TYPES_OBJECT = HERE.parent / "examples" / "c" / "programs.o"
TYPE_PROGRAMS = {"tc": "tc_ok", "socket_filter": "socket_all", "cgroup_skb": "egress_allow"}


def single_calls_by_type(engines: list[str], kernel: bool) -> dict:
    """ns of one ``test_run`` call from Python of a tc, socket-filter and cgroup_skb program
    (examples/c/programs.o) on a 64-byte UDP packet, per engine and in the kernel."""
    import pybpf

    packet = udp_packet(0)
    out: dict[str, dict[str, int]] = {kind: {} for kind in TYPE_PROGRAMS}
    for engine in [*engines, *(["kernel"] if kernel else [])]:
        if engine == "kernel":
            obj = pybpf.load(TYPES_OBJECT, backend="kernel", pin_maps_dir=None)
        else:
            obj = pybpf.load(TYPES_OBJECT, engine=engine, pin_maps_dir=None)
        with obj:
            for kind, name in TYPE_PROGRAMS.items():
                prog = obj.programs[name]
                calls = 300 if engine == "interpreter" else 3000
                out[kind][engine] = round(call_ns(lambda p=prog: p.test_run(packet), calls))
    return out


# ---- native C ------------------------------------------------------------------------------
def build_native() -> ctypes.CDLL | str:
    """native.c built with ``cc -O2`` as a shared library, or why it is unavailable."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return "no C compiler"
    lib = Path(tempfile.mkdtemp(prefix="pybpf-bench-")) / "native.so"
    proc = subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", str(NATIVE_SOURCE), "-o", str(lib)],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        return f"cc failed: {proc.stderr.strip()[:200]}"
    dll = ctypes.CDLL(str(lib))
    dll.bench.restype = ctypes.c_double
    dll.bench.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_uint64,
        ctypes.c_uint64,
        ctypes.POINTER(ctypes.c_uint64),
    ]
    return dll


def bench_native(dll: ctypes.CDLL, case: Case, runs: int) -> tuple[float, int]:
    """ns per run of the C version (timed inside C) and its result."""
    out = ctypes.c_uint64()
    best = math.inf
    for _ in range(3):
        best = min(best, dll.bench(case.native.encode(), case.packet, len(case.packet), runs,
                                   ctypes.byref(out)))  # fmt: skip
    return best, out.value


# ---- the suite -----------------------------------------------------------------------------
def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 2)


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v]
    if not values:
        return None
    return round(math.exp(sum(math.log(v) for v in values) / len(values)), 2)


def run_suite(repeat: int, quick: bool = False) -> dict:
    """Every measurement of the suite, as a JSON-ready dict."""
    import jit as jit_figures  # benchmarks/jit.py: compile, cache and batch figures

    from pybpf.jit import available, llvm_version

    kernel_skip = kernel_unavailable()
    native = build_native()
    budget = 0.05 if quick else 0.3
    interp = load_portable("interpreter")
    jit = load_portable("jit") if available() else None
    kernel = load_kernel() if kernel_skip is None else None
    rows = []
    try:
        for case in CASES:
            row: dict[str, object] = {"program": case.name, "kind": case.kind}
            results = {"interp": first_result(case, "interpreter")}
            iprog = interp.programs[case.program]
            row["interp_ns"] = round(time_interpreter(iprog, case.packet, budget), 1)
            row["interp_insns"] = round(insns_per_run(iprog, case.packet), 1)
            row["interp_ns/insn"] = _ratio(row["interp_ns"], row["interp_insns"])
            if jit is not None:
                results["jit"] = first_result(case, "jit")
                prog = jit.programs[case.program]
                row["verified"] = prog.verified
                row["jit_ns"] = timed(prog, case.packet, repeat)
                row["compile_ms"] = round(prog._runner.compile_seconds * 1e3, 2)
                checked = prog._runner.with_checks()
                unchecked, prog._runner = prog._runner, checked
                try:
                    row["jit_checked_ns"] = timed(prog, case.packet, repeat)
                finally:
                    prog._runner = unchecked
                    checked.close()
            if kernel is not None:
                results["kernel"] = first_result(case, "kernel")
                row["kernel_ns"] = timed(kernel.programs[case.program], case.packet, repeat)
            if case.native is not None and not isinstance(native, str):
                ns, value = bench_native(native, case, max(repeat, 1000) * 10)
                row["native_ns"] = round(ns, 2)
                results["native"] = value & 0xFFFFFFFF
            row["agree"] = len(set(results.values())) == 1
            row["retval"] = results["interp"]
            kns = row.get("kernel_ns")
            row["interp/kernel"] = _ratio(row["interp_ns"], kns)
            row["jit/kernel"] = _ratio(row.get("jit_ns"), kns)
            row["jit_checked/kernel"] = _ratio(row.get("jit_checked_ns"), kns)
            row["native/kernel"] = _ratio(row.get("native_ns"), kns)
            rows.append(row)
        calls = {}
        parse = PROGRAMS["parse_udp"]
        if jit is not None:
            prog = jit.programs[parse.program]
            calls["jit_test_run_ns"] = round(call_ns(lambda: prog.test_run(parse.packet)))
        if kernel is not None:
            from pybpf import syscall

            kprog = kernel.programs[parse.program]
            calls["kernel_test_run_ns"] = round(call_ns(lambda: kprog.test_run(parse.packet)))
            fd = kprog.kernel.fd
            calls["kernel_raw_syscall_ns"] = round(
                call_ns(lambda: syscall.prog_test_run(fd, parse.packet))
            )
        calls["interp_test_run_ns"] = round(
            call_ns(lambda: interp.programs[parse.program].test_run(parse.packet), 300)
        )
    finally:
        for obj in (interp, jit, kernel):
            if obj is not None:
                obj.close()
    out: dict[str, object] = {
        "llvm": llvm_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
        "repeat": repeat,
        "rows": rows,
        "geomean": {
            "jit/kernel": _geomean([r["jit/kernel"] for r in rows]),
            "jit_checked/kernel": _geomean([r["jit_checked/kernel"] for r in rows]),
            "interp/kernel": _geomean([r["interp/kernel"] for r in rows]),
            "interp_ns/insn": _geomean([r["interp_ns/insn"] for r in rows]),
            "native/kernel": _geomean([r["native/kernel"] for r in rows]),
            "jit/kernel (compute)": _geomean(
                [r["jit/kernel"] for r in rows if r["kind"] == "compute"]
            ),
        },
        "single_call": calls,
        "single_call_by_type": single_calls_by_type(
            ["interpreter", *(["jit"] if jit is not None else [])], kernel_skip is None
        ),
        "kernel_skipped": kernel_skip,
        "native_skipped": native if isinstance(native, str) else None,
    }
    if jit is not None:
        out["compile_100_insns"] = jit_figures.compile_figure()
        out["cache_100_insns"] = jit_figures.cache_figure()
        out["batch_drop_empty_udp"] = jit_figures.batch_figure()
    return out


COLUMNS = [
    "program", "interp_ns", "interp_insns", "interp_ns/insn", "jit_ns", "jit_checked_ns",
    "kernel_ns", "native_ns",
    "jit/kernel", "jit_checked/kernel", "interp/kernel", "native/kernel", "compile_ms", "agree",
]  # fmt: skip


def print_table(out: dict) -> None:
    """The suite's results as a text table and summary lines."""
    if out.get("kernel_skipped"):
        print(f"kernel: skipped ({out['kernel_skipped']})")
    if out.get("native_skipped"):
        print(f"native: skipped ({out['native_skipped']})")
    if out.get("load_average"):
        print(f"load average {out['load_average']} (other processes share the CPUs)")
    rows = out["rows"]
    width = {c: max(len(c), *(len(str(r.get(c, "-"))) for r in rows)) for c in COLUMNS}
    print("  ".join(f"{c:>{width[c]}}" for c in COLUMNS))
    for row in rows:
        cells = []
        for c in COLUMNS:
            value = row.get(c)
            cells.append(f"{'-' if value is None else value!s:>{width[c]}}")
        print("  ".join(cells))
    print("geomean: " + ", ".join(f"{k} {v}" for k, v in out["geomean"].items()))
    calls = out["single_call"]
    print("single test_run of parse_udp from Python, ns: "
          + ", ".join(f"{k[:-3]} {v}" for k, v in calls.items()))  # fmt: skip
    for kind, figures in out.get("single_call_by_type", {}).items():
        print(f"single test_run of a {kind} program from Python, ns: "
              + ", ".join(f"{k} {v}" for k, v in figures.items()))  # fmt: skip
    figure = out.get("compile_100_insns")
    if figure:
        print(
            f"compile, 100-instruction program (LLVM {out['llvm']}): "
            + ", ".join(f"{k} {v}" for k, v in figure.items())
        )
    cached = out.get("cache_100_insns")
    if cached:
        print(
            f"code cache, 100-instruction program: {cached['cold_ms']} ms cold (LLVM), "
            f"{cached['warm_ms']} ms warm (cache hit, median; best {cached['warm_best_ms']} ms)"
        )
    batch = out.get("batch_drop_empty_udp")
    if batch:
        print(
            f"batch, drop-empty-UDP over {batch['packets']} 64-byte packets: "
            f"{batch['ns_per_packet']} ns/packet native ({batch['mpps']} M packets/s), "
            f"{batch['wall_ns_per_packet']} ns/packet wall"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the suite and print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10000, help="test_run repeat count")
    parser.add_argument("--quick", action="store_true", help="shorter interpreter timing")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pybpf-bench-state-") as state:
        os.environ["PYBPF_STATE"] = state  # maps and the code cache stay out of the user's
        os.environ["PYBPF_JIT_CACHE"] = "0"  # compile_ms is LLVM's, not the cache's
        out = run_suite(args.repeat, args.quick)
    if args.json:
        print(json.dumps(out))
    else:
        print_table(out)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
