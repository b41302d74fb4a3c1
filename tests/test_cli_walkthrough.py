"""The README's walkthrough runs: every ``$ pybpf ...`` line, its output as the README shows.

Lines after a ``$`` command are patterns its output must contain, in order (``...`` stands
for anything); ``/tmp/`` paths go to a temporary directory, the state directory too.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.cli.app import main

ROOT = Path(__file__).resolve().parents[1]


def _session() -> list[tuple[str, list[str]]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Walkthrough", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:].split("  #", 1)[0].strip(), []))
        elif line.strip():
            steps[-1][1].append(line)
    return steps


def _pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split("...")))


def test_the_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    steps = _session()
    commands = [c for c, _ in steps]
    for verb in ("object show", "prog load", "prog show", "prog run", "map dump", "net run"):
        assert any(verb in c for c in commands), f"the walkthrough lost its {verb!r} step"
    monkeypatch.chdir(ROOT)
    for command, expected in steps:
        command = command.replace("/tmp/", f"{tmp_path}/")
        words = shlex.split(command)
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            monkeypatch.setenv(name, value)
            continue
        assert words[0] == "pybpf", command
        with pytest.raises(SystemExit) as exc:  # each command as its own invocation
            main(words[1:])
        out = capsys.readouterr()
        assert exc.value.code == 0, (command, out.err)
        lines = out.out.splitlines()
        position = 0
        for want in expected:
            pattern = _pattern(want)
            for i in range(position, len(lines)):
                if pattern.fullmatch(lines[i]):
                    position = i + 1
                    break
            else:
                raise AssertionError(f"{command!r}: no line like {want!r} in\n{out.out}")
    assert (tmp_path / "drop.pcap").exists()
    assert Path(os.environ["PYBPF_STATE"]).is_relative_to(tmp_path)


def test_a_second_process_sees_the_pinned_program(tmp_path):
    env = {**os.environ, "PYBPF_STATE": str(tmp_path / "state")}
    xdp = str(ROOT / "examples" / "c" / "xdp_counter.o")
    for args in (["prog", "load", xdp, "/sys/fs/bpf/xc"], ["prog", "show", "name", "xdp_count"]):
        proc = subprocess.run([sys.executable, "-m", "pybpf", *args], env=env, text=True,
                              capture_output=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    assert "pinned /sys/fs/bpf/xc" in proc.stdout
