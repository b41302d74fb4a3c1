"""The pybpf command: global options, error conventions, disasm/asm/exec round trips."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pybpf import __version__


def _pybpf(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pybpf", *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
    )


def test_version():
    proc = _pybpf("--version")
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_asm_disasm_exec_round_trip(tmp_path):
    src = tmp_path / "p.s"
    src.write_text("r0 = *(u32 *)(r1 + 0)\nr0 += r2\nexit\n")
    out = tmp_path / "p.bin"
    proc = _pybpf("asm", str(src), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_bytes()) == 24
    dis = _pybpf("disasm", str(out))
    assert dis.returncode == 0, dis.stderr
    assert dis.stdout.splitlines()[0].split(":", 1)[1].strip() == "r0 = *(u32 *)(r1 + 0)"
    listing = tmp_path / "listing.s"
    listing.write_text(dis.stdout)  # an objdump-style listing assembles back
    again = tmp_path / "again.bin"
    assert _pybpf("asm", str(listing), "-o", str(again)).returncode == 0
    assert again.read_bytes() == out.read_bytes()
    run = _pybpf("-j", "exec", str(out), "--mem", "2a 00 00 00")
    assert json.loads(run.stdout) == {"retval": 46}


def test_disasm_json_rows(tmp_path):
    prog = tmp_path / "p.hex"
    prog.write_text("b7 00 00 00 02 00 00 00 95 00 00 00 00 00 00 00\n")
    proc = _pybpf("-j", "disasm", "--opcodes", str(prog))
    rows = json.loads(proc.stdout)
    assert [r["pc"] for r in rows] == [0, 1]
    assert rows[0]["disasm"] == "r0 = 2" and rows[1]["disasm"] == "exit"
    assert rows[0]["opcodes"] == "b7 00 00 00 02 00 00 00"


def test_bad_bytecode_is_one_clean_error(tmp_path):
    prog = tmp_path / "bad.bin"
    prog.write_bytes(bytes.fromhex("04100000010000009500000000000000"))
    proc = _pybpf("disasm", "--format", "bin", str(prog))
    assert proc.returncode == 2  # unusable input
    assert proc.stderr.startswith("Error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    jproc = _pybpf("-j", "disasm", "--format", "bin", str(prog))
    assert jproc.returncode == 2 and "error" in json.loads(jproc.stdout)


def test_missing_file_and_bad_option():
    proc = _pybpf("disasm", "/nonexistent/file.bin")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    proc = _pybpf("exec", "--engine", "warp", "x")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_assembly_error_names_the_line(tmp_path):
    src = tmp_path / "bad.s"
    src.write_text("r0 = 1\nr0 = frobnicate r1\nexit\n")
    proc = _pybpf("asm", str(src), "-o", str(tmp_path / "o.bin"))
    assert proc.returncode == 2 and "line 2" in proc.stderr and "Traceback" not in proc.stderr


def test_runaway_program_stops_with_an_error(tmp_path):
    src = tmp_path / "loop.s"
    src.write_text("r0 = 0\nloop:\nr0 += 1\ngoto loop\nexit\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pybpf", "exec", str(src)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYBPF_INSN_BUDGET": "100000"},
    )
    assert proc.returncode == 255 and "budget" in proc.stderr.lower(), proc.stderr
