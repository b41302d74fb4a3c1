"""pybpf bench: one program measured in each engine, ratios to a baseline, results compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel import BPF_UNAVAILABLE
from pybpf.cli import bench_cmd
from pybpf.cli.app import main

EXAMPLES = Path(__file__).parents[1] / "examples" / "c"
DROP = str(EXAMPLES / "drop_empty_udp.o")


class _Result:
    def __init__(self, code: int, output: str) -> None:
        self.exit_code, self.output = code, output


@pytest.fixture
def _run(capsys):
    def run(*args: str) -> _Result:
        with pytest.raises(SystemExit) as exc:
            main(list(args))
        out = capsys.readouterr()
        return _Result(exc.value.code, out.out + out.err)

    return run


def test_engines_side_by_side_in_json(_run):
    res = _run("-j", "bench", DROP, "-e", "interpreter", "-e", "jit", "--seconds", "0.01")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["program"] == "drop_empty_udp" and doc["agree"] and doc["baseline"] == "jit"
    rows = {r["engine"]: r for r in doc["results"]}
    assert set(rows) == {"interpreter", "jit"}
    assert rows["jit"]["ratio"] == 1.0 and rows["interpreter"]["ratio"] > 1
    assert rows["interpreter"]["retval"] == rows["jit"]["retval"] == 2  # XDP_PASS on zeros
    assert all(r["repeat"] >= 1 and r["ns_per_run"] >= 1 for r in rows.values())


def test_text_table_and_the_kernel_row(_run):
    res = _run("bench", DROP, "--seconds", "0.01")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split()[:2] == ["engine", "ns/run"]
    kernel = next(line for line in lines if line.startswith("kernel"))
    if BPF_UNAVAILABLE is None:
        assert "unavailable" not in kernel and "x kernel" in lines[0]
    else:
        assert "unavailable" in kernel


def test_disagreeing_engines_exit_1(_run, monkeypatch):
    real = bench_cmd.measure

    def skewed(*args, **kwargs):
        row = real(*args, **kwargs)
        if row.get("engine") == "jit":
            row["retval"] += 1
        return row

    monkeypatch.setattr(bench_cmd, "measure", skewed)
    res = _run("bench", DROP, "--engine", "interpreter", "--engine", "jit", "--seconds", "0.01")
    assert res.exit_code == 1 and "disagree" in res.output


def test_several_programs_need_a_choice(_run):
    res = _run("bench", str(EXAMPLES / "programs.o"), "--engine", "jit")
    assert res.exit_code == 2 and "--program" in res.output
    res = _run("bench", str(EXAMPLES / "programs.o"), "--program", "nope", "--engine", "jit")
    assert res.exit_code == 2
