"""``pybpf map``: bpftool's verbs, DATA syntax and JSON keys on pinned maps and object files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.cli.app import EXIT_ERROR, EXIT_INPUT, main
from pybpf.cli.map_cmd import parse_data
from pybpf.errors import InputError
from pybpf.maps import create_map, open_pinned
from pybpf.maptypes import MapType

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "c"
PIN = "/sys/fs/bpf/counts"


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


@pytest.fixture
def counts():
    with create_map(
        type=MapType.HASH, key_size=4, value_size=8, max_entries=16, name="counts", pin=PIN
    ) as m:
        yield m.set_codecs("uint", "uint")


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def _hex(*values: int) -> list[str]:
    return [f"0x{v:02x}" for v in values]


def test_parse_data_follows_bpftool():
    assert parse_data(["1", "0x10", "010", "255"], 4, "key") == (bytes([1, 16, 8, 255]), [])
    assert parse_data(["hex", "0a", "ff", "value", "1"], 2, "key") == (b"\x0a\xff", ["value", "1"])
    for words in (["1", "2"], ["256", "0", "0"], ["0x1g", "0", "0"], ["hex", "zz", "0", "0"]):
        with pytest.raises(InputError):
            parse_data(words, 3, "key")


def test_update_lookup_delete_round_trip(capsys, counts):
    code, out, _ = run(capsys, "map", "update", "pinned", PIN, "key", "1", "0", "0", "0",
                       "value", "5", "0", "0", "0", "0", "0", "0", "0")  # fmt: skip
    assert code == 0 and out == ""
    assert counts[1] == 5  # the same map, live
    code, out, _ = run(capsys, *f"-j map lookup pinned {PIN} key hex 01 00 00 00".split())
    assert code == 0
    assert json.loads(out) == {"key": _hex(1, 0, 0, 0), "value": _hex(5, 0, 0, 0, 0, 0, 0, 0)}
    code, out, _ = run(capsys, "map", "lookup", "pinned", PIN, "key", "1", "0", "0", "0")
    assert out.strip() == "key: 01 00 00 00  value: 05 00 00 00 00 00 00 00"
    code, out, _ = run(capsys, "-j", "map", "delete", "pinned", PIN, "key", "1", "0", "0", "0")
    assert code == 0 and json.loads(out) is None and 1 not in counts
    code, out, err = run(capsys, "map", "lookup", "pinned", PIN, "key", "1", "0", "0", "0")
    assert code == EXIT_ERROR and err.startswith("Error:")


def test_update_flags(capsys, counts):
    counts[2] = 7
    words = ["map", "update", "pinned", PIN, "key", "2", "0", "0", "0", "value", *["9"] * 8]
    code, out, _ = run(capsys, "-j", *words, "noexist")
    assert code == EXIT_ERROR and "error" in json.loads(out)
    assert counts[2] == 7
    assert run(capsys, *words, "exist")[0] == 0 and counts[2] == int.from_bytes(
        b"\x09" * 8, "little"
    )
    missing = ["map", "update", "pinned", PIN, "key", "3", "0", "0", "0", "value", *["1"] * 8]
    assert run(capsys, *missing, "exist")[0] == EXIT_ERROR and 3 not in counts
    assert run(capsys, *missing, "any")[0] == 0 and counts[3] == 0x0101010101010101


def test_dump_and_show(capsys, counts):
    counts.update_batch({1: 10, 2: 20})
    code, out, _ = run(capsys, "-j", "map", "dump", "name", "counts")
    assert code == 0
    entries = json.loads(out)
    assert sorted(e["key"][0] for e in entries) == ["0x01", "0x02"]
    assert all(set(e) == {"key", "value"} for e in entries)  # no BTF: no "formatted"
    code, out, _ = run(capsys, "map", "dump", "pinned", PIN)
    assert out.splitlines()[-1] == "Found 2 elements" and len(out.splitlines()) == 3
    code, out, _ = run(capsys, "-j", "map", "show")
    (record,) = json.loads(out)
    assert record == {
        "id": record["id"],
        "type": "hash",
        "name": "counts",
        "flags": 0,
        "bytes_key": 4,
        "bytes_value": 8,
        "max_entries": 16,
        "frozen": 0,
        "pinned": [PIN],
    }
    code, out, _ = run(capsys, "map", "show", "pinned", PIN)
    assert out.split(":", 1)[1].startswith(" hash  name counts  flags 0x0")
    assert f"pinned {PIN}" in out


def test_object_maps_are_formatted_from_btf(capsys):
    obj = str(EXAMPLES / "pipeline.o")
    code, out, _ = run(capsys, "-j", "map", "dump", obj, "--map", "totals")
    assert code == 0
    entries = json.loads(out)
    assert [e["formatted"] for e in entries] == [{"key": i, "value": 0} for i in range(4)]
    assert entries[0]["key"] == _hex(0, 0, 0, 0) and len(entries[0]["value"]) == 8
    code, out, _ = run(capsys, "-j", "map", "dump", obj, "--map", ".data")
    (entry,) = json.loads(out)
    cfg = {"port": 8080, "verbose": 0, "name": "pipe", "bias": 10}
    assert entry["formatted"] == {"value": {".data": [{"cfg": cfg}]}}  # bpftool's DATASEC form
    code, out, _ = run(capsys, "-j", "map", "show", obj)
    shown = {r["name"]: r for r in json.loads(out)}
    assert shown["pipeline.rodata"]["frozen"] == 1 and shown["squares"]["type"] == "hash"


def test_percpu_values_per_cpu(capsys, monkeypatch):
    monkeypatch.setenv("PYBPF_NCPUS", "2")
    with create_map(type=MapType.PERCPU_ARRAY, key_size=4, value_size=4, max_entries=1,
                    name="pc", pin="/sys/fs/bpf/pc") as m:  # fmt: skip
        m[0] = [1, 2]
        code, out, _ = run(capsys, "-j", "map", "dump", "pinned", "/sys/fs/bpf/pc")
        (entry,) = json.loads(out)
        assert entry["values"] == [
            {"cpu": 0, "value": _hex(1, 0, 0, 0)},
            {"cpu": 1, "value": _hex(2, 0, 0, 0)},
        ]
        value = [
            *["1", "0", "0", "0", "0", "0", "0", "0"],
            *["3", "0", "0", "0", "0", "0", "0", "0"],
        ]
        update = "map update pinned /sys/fs/bpf/pc key 0 0 0 0 value".split()
        assert run(capsys, *update, *value)[0] == 0
        assert open_pinned("/sys/fs/bpf/pc").set_codecs("uint", "uint")[0] == [1, 3]


def test_bad_arguments(capsys, counts):
    cases = [
        ["map", "dump"],  # no map
        ["map", "dump", "pinned"],  # no path
        ["map", "dump", "id", "x"],  # not a number
        ["map", "dump", "tag", "0011223344556677"],  # maps have no tag
        ["map", "dump", "name", "nope"],
        ["map", "lookup", "pinned", PIN, "key", "1", "0", "0"],  # 3 of 4 bytes
        ["map", "lookup", "pinned", PIN, "value", "1"],
        ["map", "update", "pinned", PIN, "key", "1", "0", "0", "0"],  # no value
        ["map", "dump", "pinned", PIN, "extra"],
        ["map", "dump", str(EXAMPLES / "pipeline.o")],  # several maps: --map needed
        ["map", "dump", "/nonexistent.o", "--map", "x"],
    ]
    for args in cases:
        code, _, err = run(capsys, *args)
        assert code == EXIT_INPUT, (args, err)
        first, *hint = err.splitlines()
        assert first.startswith("Error:") and "\n" == err[-1]
        assert hint in ([], [f"Try 'pybpf {' '.join(args[:2])} -h' for help."])
    for args in (["pinned", "/sys/fs/bpf/missing"], ["id", "999"]):
        code, _, _ = run(capsys, "map", "dump", *args)
        assert code == EXIT_ERROR  # ENOENT: a map error, not bad input


def test_the_command_line_round_trip_in_processes(counts):
    def pybpf(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pybpf", *args], capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    proc = pybpf("map", "update", "pinned", PIN, "key", "4", "0", "0", "0",
                 "value", "hex", "ff", "00", "00", "00", "00", "00", "00", "00")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert counts[4] == 255
    proc = pybpf("-p", "map", "lookup", "pinned", PIN, "key", "4", "0", "0", "0")
    assert json.loads(proc.stdout)["value"][0] == "0xff" and "\n    " in proc.stdout
