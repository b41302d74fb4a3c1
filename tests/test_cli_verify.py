"""`pybpf verify`: verdicts, exit codes (0 pass, 1 reject, 2 unusable input) and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"


def _pybpf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pybpf", *args], capture_output=True, text=True, timeout=120
    )


def test_safe_example_passes():
    proc = _pybpf("verify", str(ROOT / "examples" / "c" / "xdp_counter.o"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("xdp_count (xdp, xdp): PASS")


def test_verbose_prints_invariants():
    proc = _pybpf(
        "verify", "-v", str(ROOT / "examples" / "c" / "programs.o"), "--program", "xdp_pass"
    )
    assert proc.returncode == 0
    assert "r1.type=ctx" in proc.stdout and "r0.svalue=2" in proc.stdout


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")
def test_unsafe_program_is_rejected_with_pc_reason_and_source_line():
    proc = _pybpf("-j", "verify", str(CORPUS / "build" / "packet_overflow.o"))
    assert proc.returncode == 1
    [result] = json.loads(proc.stdout)
    assert result["verdict"] == "reject" and result["program"] == "read_write_packet_start"
    [error] = result["errors"]
    assert error["pc"] == 4 and error["line"] == 12
    assert "packet_size" in error["message"] and "packet_overflow.c:12" in error["message"]


def test_unusable_input_exits_2(tmp_path):
    bad = tmp_path / "x.o"
    bad.write_bytes(b"\x7fELF" + b"\0" * 20)
    proc = _pybpf("verify", str(bad))
    assert proc.returncode == 2 and proc.stderr.startswith("Error: ")
    proc = _pybpf("verify", str(ROOT / "examples" / "c" / "xdp_counter.o"), "--type", "nope")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_conformance_failure_exits_1(tmp_path):
    case = tmp_path / "wrong.data"
    case.write_text("-- asm\nmov %r0, 1\nexit\n-- result\n0x2\n")
    proc = _pybpf("conformance", str(case))
    assert proc.returncode == 1
    assert proc.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"


def _bpf_reason() -> str | None:
    sys.path.insert(0, str(Path(__file__).parent))
    from kernel import BPF_UNAVAILABLE

    return BPF_UNAVAILABLE


def test_compare_kernel_agreeing_programs_exit_0():
    if _bpf_reason():
        pytest.skip(_bpf_reason())
    proc = _pybpf("-j", "verify", "--compare-kernel", str(ROOT / "examples" / "c" / "programs.o"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(proc.stdout)
    assert {r["program"] for r in rows} >= {"xdp_pass", "tc_ok", "socket_all"}
    assert all(r["outcome"] == "both_accept" for r in rows)
    assert all(r["kernel"]["verdict"] == "accept" for r in rows)


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")
def test_compare_kernel_prints_both_messages_on_disagreement():
    if _bpf_reason():
        pytest.skip(_bpf_reason())
    # Root may store a stack pointer in a map value (allow_ptr_leaks); pybpf verifies
    # socket filters as an unprivileged loader would, and refuses it.
    proc = _pybpf("verify", "--compare-kernel", str(CORPUS / "build" / "exposeptr.o"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    head, pybpf_line, kernel_line = proc.stdout.strip().splitlines()
    assert head.startswith("func (.text, socket_filter): pybpf FAIL, kernel PASS")
    assert pybpf_line.strip().startswith("pybpf: 10: ")
    assert kernel_line.strip() == "kernel: accepted"
    proc = _pybpf("-j", "verify", "--compare-kernel", str(CORPUS / "build" / "packet_overflow.o"))
    assert proc.returncode == 0
    [row] = json.loads(proc.stdout)
    assert row["outcome"] == "both_reject"
    assert row["kernel"]["category"] == "safety" and row["kernel"]["reason"] == "memory"
    assert "packet" in row["pybpf"]["message"]
