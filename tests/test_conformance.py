"""The bpf_conformance suite (../shared/conformance) through the runner, the CLI and the plugin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.conformance import collect, run_paths
from pybpf.conformance.runner import load_program
from pybpf.isa import encode

SUITE = Path(__file__).resolve().parents[2] / "shared" / "conformance"
needs_suite = pytest.mark.skipif(
    not SUITE.is_dir(), reason=f"bpf_conformance suite not found at {SUITE}"
)


@needs_suite
def test_whole_suite_passes_on_the_interpreter():
    outcomes = run_paths([SUITE], engine="interpreter")
    positive = [o for o in outcomes if not o.case.negative]
    negative = [o for o in outcomes if o.case.negative]
    assert len(positive) == 313 and len(negative) == 60
    failures = [f"{o.case.path}: {o.detail}" for o in outcomes if not o.passed]
    assert not failures, "\n".join(failures)
    # Negative files are refused for a reason, never by a pybpf crash.
    assert all("internal error" not in o.detail for o in outcomes)


@needs_suite
def test_expected_values_really_are_compared():
    # The one negative file whose program is valid: its expected r0 is deliberately wrong.
    [case] = [
        c for c in collect([SUITE / "negative"]) if c.name == "incorrect_return_value_high_bits"
    ]
    [outcome] = run_paths([case.path])
    assert outcome.passed and outcome.value is not None and outcome.value != case.result


@needs_suite
def test_cli_summary_line():
    proc = subprocess.run(
        [sys.executable, "-m", "pybpf", "conformance", str(SUITE)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.stdout.strip().splitlines()[-1] == "373 passed, 0 failed", proc.stdout[-2000:]
    assert proc.returncode == 0


def _plugin(program: bytes, mem: bytes, *options: str) -> subprocess.CompletedProcess:
    """Drive the plugin exactly as bpf_conformance's runner does."""
    argv = [sys.executable, "-m", "pybpf.conformance.plugin"]
    if mem:
        argv.append("".join(f"{b:02x} " for b in mem) + " ")
    argv.extend(options)
    stdin = "".join(f"{b:02x} " for b in program) + "\n"
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)


@needs_suite
@pytest.mark.parametrize("name", ["ldxh-all", "mem-len", "lock_cmpxchg", "call_local", "callx"])
def test_plugin_protocol(name):
    [case] = [c for c in collect([SUITE / f"{name}.data"])]
    proc = _plugin(encode(load_program(case)), case.mem)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip(), 16) == case.result


def test_plugin_refuses_with_message_and_nonzero_exit():
    proc = _plugin(bytes.fromhex("04100000010000009500000000000000"), b"")
    assert proc.returncode != 0
    assert proc.stdout == "" and "src" in proc.stderr and "Traceback" not in proc.stderr


def test_plugin_elf_mode_is_refused_cleanly():
    proc = _plugin(bytes.fromhex("b7000000000000009500000000000000"), b"", "--elf")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
