"""``pybpf prog show|run``: bpftool's keys and output on an object file's programs."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import pybpf
from pybpf.cli.app import EXIT_INPUT, main
from pybpf.objects import calc_tag
from pybpf.spec import link

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "c"
PIPELINE = str(EXAMPLES / "pipeline.o")
TAIL_CALLS = str(EXAMPLES / "tail_calls.o")


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


@pytest.fixture
def args_file(tmp_path) -> Path:
    path = tmp_path / "args.bin"
    path.write_bytes(struct.pack("<3Q", 3, 4, 1))
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_run_json_is_bpftools(capsys, args_file):
    code, out, _ = run(
        capsys, "-j", "prog", "run", PIPELINE, "--program", "start", "--ctx-in", str(args_file)
    )
    assert code == 0
    record = json.loads(out)
    assert list(record) == ["retval", "duration"]  # raw_tp: no data_out, no ctx_out
    assert record["retval"] == 3 * 3 + 4 * 4 + 10 and isinstance(record["duration"], int)


def test_run_data_out(capsys, tmp_path):
    packet = tmp_path / "packet.bin"
    packet.write_bytes(bytes(range(16)))
    base = ["prog", "run", TAIL_CALLS, "--program", "entry", "--data-in", str(packet)]
    code, out, _ = run(capsys, "-j", *base)
    assert code == 0
    assert json.loads(out) == {
        "data_out": list(range(16)),
        "retval": 1,  # entry -> stage_one -> stage_two: XDP_DROP
        "duration": json.loads(out)["duration"],
    }
    target = tmp_path / "out.bin"
    code, out, _ = run(capsys, "-j", *base, "--data-out", str(target))
    assert "data_out" not in json.loads(out) and target.read_bytes() == bytes(range(16))
    code, out, _ = run(capsys, *base, "--data-out", "-", "--repeat", "3")
    lines = out.splitlines()
    assert lines[0] == "0000000 " + " ".join(f"{b:02x}" for b in range(16))
    assert lines[-1].startswith("Return value: 1, duration (average): ")
    assert lines[-1].endswith("ns")


def test_show(capsys):
    code, out, _ = run(capsys, "-j", "prog", "show", PIPELINE)
    assert code == 0
    records = {r["name"]: r for r in json.loads(out)}
    spec = pybpf.Object.open(PIPELINE).spec
    for name in ("start", "finish"):
        r = records[name]
        linked = link(spec, name)
        assert r["type"] == "raw_tracepoint" and r["gpl_compatible"] is True
        assert r["tag"] == calc_tag(linked.instructions)
        assert r["bytes_xlated"] == 8 * sum(i.slots for i in linked.instructions)
        assert r["jited"] is False and r["engine"] == "interpreter"
        assert len(r["map_ids"]) == len(linked.maps)
        assert {"id", "btf_id", "bytes_jited", "section"} <= set(r)
    code, out, _ = run(capsys, "prog", "list", PIPELINE)
    assert code == 0 and "raw_tracepoint  name start  tag " in out


def test_bad_arguments(capsys, args_file):
    cases = [
        ["prog", "run", PIPELINE, "--ctx-in", str(args_file)],  # two programs: which?
        ["prog", "run", PIPELINE, "--program", "nope"],
        ["prog", "run", PIPELINE, "--program", "start", "--ctx-in", "/nonexistent"],
        ["prog", "run", "/nonexistent.o"],
        ["prog", "run", PIPELINE, "--repeat", "-1"],
        ["prog", "show", "id", "x"],
        ["prog", "show", "tag", "xyz"],
        ["prog", "dump", "xlated"],
    ]
    for args in cases:
        code, _, err = run(capsys, *args)
        assert code == EXIT_INPUT, (args, err)
    code, out, _ = run(capsys, "-j", "prog", "run", PIPELINE, "--program", "nope")
    assert code == EXIT_INPUT and set(json.loads(out)) == {"error"}


def test_the_jit_engine_runs_tail_calls_as_the_interpreter(capsys, args_file):
    from pybpf.jit import available

    if not available():
        pytest.skip("llvmlite is not installed")
    outs = []
    for engine in ("interpreter", "jit"):
        code, out, _ = run(
            capsys, "prog", "run", PIPELINE, "--program", "start", "--engine", engine,
            "--ctx-in", str(args_file),
        )  # fmt: skip
        assert code == 0
        outs.append(out.split(", duration")[0])
    assert outs[0] == outs[1] and outs[0].startswith("Return value: ")


def test_prog_run_in_a_process(args_file):
    proc = subprocess.run(
        [sys.executable, "-m", "pybpf", "prog", "run", PIPELINE, "--program", "finish",
         "--ctx-in", str(args_file)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Return value: 10, duration: ")  # last_sum 0 + bias 10
