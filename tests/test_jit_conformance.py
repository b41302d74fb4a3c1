"""The bpf_conformance suite (../shared/conformance) on the JIT engine, with debug checks.

CI runs a fixed sample (every fourth positive file, every negative file);
``pybpf conformance --engine jit ../shared/conformance`` runs them all.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.conformance import collect, run_paths
from pybpf.conformance.runner import run_case
from test_jit import needs_jit

SUITE = Path(__file__).resolve().parents[2] / "shared" / "conformance"
needs_suite = pytest.mark.skipif(
    not SUITE.is_dir(), reason=f"bpf_conformance suite not found at {SUITE}"
)
pytestmark = [needs_jit, needs_suite]


def test_sample_of_the_suite_passes_on_the_jit():
    cases = collect([SUITE])
    positive = [c for c in cases if not c.negative]
    sample = positive[::4] + [c for c in cases if c.negative]
    outcomes = [run_case(case, engine="jit") for case in sample]
    failures = [f"{o.case.path}: {o.detail}" for o in outcomes if not o.passed]
    assert not failures, "\n".join(failures)
    assert all("internal error" not in o.detail for o in outcomes)
    assert sum(not o.case.negative for o in outcomes) == len(positive[::4]) > 70


def test_jit_and_interpreter_return_the_same_values():
    names = ["prime", "subnet", "call_local", "lock_cmpxchg", "div64-by-zero-reg", "mem-len"]
    paths = [SUITE / f"{name}.data" for name in names if (SUITE / f"{name}.data").exists()]
    assert len(paths) >= 4
    jit = run_paths(paths, engine="jit")
    interp = run_paths(paths, engine="interpreter")
    assert [o.value for o in jit] == [o.value for o in interp]
    assert all(o.passed for o in jit)


def test_cli_engine_jit():
    files = [str(SUITE / "prime.data"), str(SUITE / "negative")]
    proc = subprocess.run(
        [sys.executable, "-m", "pybpf", "conformance", "--engine", "jit", *files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.stdout.strip().splitlines()[-1] == "61 passed, 0 failed", proc.stdout[-2000:]
    assert proc.returncode == 0
