"""Examples run as tests: the shipped programs and the README's snippets do what they say."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _pybpf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pybpf", *args], capture_output=True, text=True, timeout=60
    )


def _ones_complement_sum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_ipv4_checksum_example_accepts_a_valid_frame():
    frame = (EXAMPLES / "asm" / "ipv4_frame.bin").read_bytes()
    assert _ones_complement_sum(frame[14:34]) == 0xFFFF  # the fixture itself is valid
    proc = _pybpf(
        "-j",
        "exec",
        str(EXAMPLES / "asm" / "ipv4_checksum.s"),
        "--mem-file",
        str(EXAMPLES / "asm" / "ipv4_frame.bin"),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"retval": 0}


def test_ipv4_checksum_example_reports_a_stale_checksum():
    frame = (EXAMPLES / "asm" / "ipv4_frame_bad_checksum.bin").read_bytes()
    expected = _ones_complement_sum(frame[14:34]) ^ 0xFFFF
    assert expected != 0
    proc = _pybpf(
        "-j",
        "exec",
        str(EXAMPLES / "asm" / "ipv4_checksum.s"),
        "--mem-file",
        str(EXAMPLES / "asm" / "ipv4_frame_bad_checksum.bin"),
    )
    assert json.loads(proc.stdout) == {"retval": expected}


def test_ipv4_checksum_example_refuses_non_ipv4():
    proc = _pybpf("-j", "exec", str(EXAMPLES / "asm" / "ipv4_checksum.s"), "--mem", "00 " * 40)
    assert json.loads(proc.stdout) == {"retval": 0xFFFFFFFF}


def test_readme_python_snippets_print_what_they_say(tmp_path):
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2, "README lost its python examples"
    for block in blocks:
        expected = re.findall(r"^# -> (.*)$", block, re.M)
        assert expected, "each README python block ends with '# -> <output>'"
        proc = subprocess.run(
            [sys.executable, "-c", block],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "PYBPF_STATE": str(tmp_path)},
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == expected[-1]


def test_readme_quick_start_runs_the_pipeline_example():
    proc = _pybpf(
        "prog",
        "run",
        str(EXAMPLES / "c" / "pipeline.o"),
        "--program",
        "start",
        "--ctx-in",
        str(EXAMPLES / "c" / "pipeline_args.bin"),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Return value: 35")


def test_readme_quick_start_example_command_matches_the_example_files():
    readme = (ROOT / "README.md").read_text()
    for path in re.findall(r"(examples/[\w./-]*[\w])", readme):
        assert (ROOT / path).exists(), path


def test_readme_net_run_line_runs_on_the_shipped_capture(tmp_path):
    """The README's `pybpf net run` line, with its outputs moved to a temporary directory."""
    readme = (ROOT / "README.md").read_text()
    [line] = [ln for ln in readme.splitlines() if ln.startswith("pybpf net run ")]
    args = line.split("#")[0].split()[1:]
    args = [a.replace("/tmp/", f"{tmp_path}/") for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "pybpf", "-j", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    # xdp_counter drops UDP (its .rodata drop_proto) and passes TCP and ARP.
    assert summary["packets"] == 4 and summary["verdicts"] == {"drop": 2, "pass": 2}
    assert (tmp_path / "pass.pcap").exists() and (tmp_path / "drop.pcap").exists()


def test_shipped_capture_is_what_its_generator_writes():
    import importlib.util

    from pybpf.hooks import open_capture

    path = EXAMPLES / "captures" / "make_mixed.py"
    spec = importlib.util.spec_from_file_location("make_mixed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with open_capture(EXAMPLES / "captures" / "mixed.pcap") as cap:
        assert [f.data for f in cap] == module.FRAMES
