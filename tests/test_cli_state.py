"""``pybpf prog``/``map`` across invocations and processes: ids, pins, bpftool addressing.

Programs pinned with ``prog load``/``loadall``/``pin`` and maps created, pinned or held by
them are found again by ``id N``, ``pinned PATH``, ``name NAME`` and ``tag T`` from other
invocations (and other processes), in text and JSON; bad arguments exit 2 with a usage
hint, missing objects exit 255.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pybpf.cli.app import EXIT_ERROR, EXIT_INPUT, main
from pybpf.maps import create_map, open_pinned
from pybpf.maptypes import MapType
from pybpf.objects.pinned import list_programs

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "c"
XDP_COUNTER = str(EXAMPLES / "xdp_counter.o")
TAIL_CALLS = str(EXAMPLES / "tail_calls.o")
PIPELINE = str(EXAMPLES / "pipeline.o")


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def js(capsys, *args: str):
    code, out, err = run(capsys, "-j", *args)
    assert code == 0, err
    return json.loads(out) if out.strip() else None


def _udp_frame() -> bytes:
    ip = bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    return bytes(12) + b"\x08\x00" + ip + bytes(8)


def test_prog_load_then_show_in_other_invocations(capsys):
    assert run(capsys, "prog", "load", XDP_COUNTER, "/sys/fs/bpf/xc")[0] == 0
    listing = js(capsys, "prog", "show")
    assert [r["name"] for r in listing] == ["xdp_count"]
    record = listing[0]
    for key in ("id", "type", "name", "tag", "gpl_compatible", "bytes_xlated", "jited",
                "bytes_jited", "map_ids", "btf_id", "pinned"):  # fmt: skip
        assert key in record
    assert record["type"] == "xdp" and record["pinned"] == ["/sys/fs/bpf/xc"]
    by_id = js(capsys, "prog", "show", "id", str(record["id"]))
    assert by_id == record
    assert js(capsys, "prog", "show", "pinned", "/sys/fs/bpf/xc") == record
    assert js(capsys, "prog", "show", "name", "xdp_count") == [record]
    assert js(capsys, "prog", "show", "tag", record["tag"]) == [record]
    code, text, _ = run(capsys, "prog", "show", "id", str(record["id"]))
    assert code == 0 and text.startswith(f"{record['id']}: xdp  name xdp_count  tag ")
    assert "\tpinned /sys/fs/bpf/xc" in text
    # the maps it uses are held by the pinned program, with their ids
    maps = {m["id"]: m for m in js(capsys, "map", "show")}
    assert set(record["map_ids"]) <= set(maps)
    assert {maps[i]["name"] for i in record["map_ids"]} >= {"proto_count", "verdicts"}


def test_ids_are_unique_across_processes(capsys):
    import pybpf

    code = "import pybpf; o = pybpf.load(%r); p = o.programs['xdp_count']; p.pin(%r); print(p.id)"
    proc = subprocess.run(
        [sys.executable, "-c", code % (XDP_COUNTER, "/sys/fs/bpf/p0")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ids = [int(proc.stdout)]
    with pybpf.load(XDP_COUNTER) as obj:  # this process, after the other one exited
        obj.programs["xdp_count"].pin("/sys/fs/bpf/p1")
        ids.append(obj.programs["xdp_count"].id)
    assert ids[0] != ids[1]
    assert sorted(r["id"] for r in js(capsys, "prog", "show")) == sorted(ids)
    map_ids = [m["id"] for m in js(capsys, "map", "show")]
    assert len(map_ids) == len(set(map_ids)) == 12  # 6 maps per object, held by each program


def test_loadall_pin_and_dump(capsys, tmp_path):
    assert run(capsys, "prog", "loadall", TAIL_CALLS, "/sys/fs/bpf/tc")[0] == 0
    records = js(capsys, "prog", "show")
    names = sorted(r["name"] for r in records)
    assert names == sorted(
        Path(p).name for r in records for p in r["pinned"]
    )  # one pin each, named after the program
    first = records[0]
    assert run(capsys, "prog", "pin", "id", str(first["id"]), "/sys/fs/bpf/again")[0] == 0
    again = js(capsys, "prog", "show", "id", str(first["id"]))
    assert sorted(again["pinned"]) == sorted([*first["pinned"], "/sys/fs/bpf/again"])
    rows = js(capsys, "prog", "dump", "xlated", "pinned", "/sys/fs/bpf/again")
    assert rows and rows[0]["pc"] == 0 and all("disasm" in r for r in rows)
    assert 8 * (rows[-1]["pc"] + 1) <= first["bytes_xlated"]
    code, text, _ = run(capsys, "prog", "dump", "xlated", "id", str(first["id"]), "opcodes")
    assert code == 0 and text.splitlines()[0].startswith("   0: (")
    # the interpreter has no native code: a clean error
    code, _, err = run(capsys, "prog", "dump", "jited", "id", str(first["id"]))
    assert code == EXIT_ERROR and err.startswith("Error:")


def test_dump_jited_of_a_jit_program(capsys):
    from pybpf.jit import available

    if not available():
        pytest.skip("llvmlite is not installed")
    code, text, err = run(capsys, "prog", "dump", "jited", PIPELINE, "--program", "start")
    assert code == 0, err
    assert text.strip()
    dump = js(capsys, "prog", "dump", "jited", PIPELINE, "--program", "start")
    assert isinstance(dump, list) and dump and "insns" in dump[0]


def test_prog_load_pinmaps(capsys):
    args = ["prog", "load", XDP_COUNTER, "/sys/fs/bpf/x", "pinmaps", "/sys/fs/bpf/m"]
    assert run(capsys, *args)[0] == 0
    shown = js(capsys, "map", "show", "pinned", "/sys/fs/bpf/m/proto_count")
    assert shown["name"] == "proto_count" and "/sys/fs/bpf/m/proto_count" in shown["pinned"]


def test_map_create_update_freeze_pin(capsys):
    args = "map create /sys/fs/bpf/c type hash key 4 value 8 entries 16 name c".split()
    created = js(capsys, *args)
    assert created["type"] == "hash" and created["pinned"] == ["/sys/fs/bpf/c"]
    key = "key 1 0 0 0".split()
    value = "value 7 0 0 0 0 0 0 0".split()
    assert run(capsys, "map", "update", "id", str(created["id"]), *key, *value)[0] == 0
    assert js(capsys, "map", "lookup", "name", "c", *key)["value"][0] == "0x07"
    assert run(capsys, "map", "pin", "name", "c", "/sys/fs/bpf/c2")[0] == 0
    assert sorted(js(capsys, "map", "show", "id", str(created["id"]))["pinned"]) == [
        "/sys/fs/bpf/c",
        "/sys/fs/bpf/c2",
    ]
    assert run(capsys, "map", "freeze", "pinned", "/sys/fs/bpf/c2")[0] == 0
    assert js(capsys, "map", "show", "pinned", "/sys/fs/bpf/c")["frozen"] == 1
    code, _, err = run(capsys, "map", "update", "pinned", "/sys/fs/bpf/c", *key, *value)
    assert code == EXIT_ERROR and err.startswith("Error: ")  # EPERM, as Linux
    with open_pinned("/sys/fs/bpf/c") as m:
        assert m.frozen and m.lookup_raw(bytes([1, 0, 0, 0]))[0] == 7
    code, text, _ = run(capsys, "map", "list")
    assert code == 0 and f"{created['id']}: hash  name c  flags 0x0" in text and "frozen" in text


def test_a_live_map_of_another_process_is_visible_by_id(capsys):
    script = (
        "import sys, time; from pybpf.maps import create_map; from pybpf.maptypes import MapType\n"
        "m = create_map(type=MapType.ARRAY, key_size=4, value_size=4, max_entries=2, name='live')\n"
        "m[1] = 5; print(m.id, flush=True); sys.stdin.readline()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        map_id = int(proc.stdout.readline())
        dump = js(capsys, "map", "dump", "id", str(map_id))
        assert dump[1] == {"key": ["0x01", "0x00", "0x00", "0x00"],
                           "value": ["0x05", "0x00", "0x00", "0x00"]}  # fmt: skip
        assert run(capsys, "map", "update", "id", str(map_id), "key", "0", "0", "0", "0",
                   "value", "9", "0", "0", "0")[0] == 0  # fmt: skip
    finally:
        proc.communicate("\n", timeout=30)
    # the process closed it: gone
    assert run(capsys, "map", "dump", "id", str(map_id))[0] == EXIT_ERROR


def test_map_event_pipe_ring_buffer(capsys):
    args = "map create /sys/fs/bpf/rb type ringbuf key 0 value 0 entries 4096 name rb".split()
    assert run(capsys, *args)[0] == 0
    with open_pinned("/sys/fs/bpf/rb") as rb:
        assert rb.output(b"\x01\x02\x03") == 0 and rb.output(bytes(range(20))) == 0
    events = run(capsys, "-j", "map", "event_pipe", "pinned", "/sys/fs/bpf/rb", "--count", "2")
    assert events[0] == 0
    records = [json.loads(line) for line in events[1].splitlines()]
    assert [r["data"] for r in records] == [
        ["0x01", "0x02", "0x03"],
        [f"0x{i:02x}" for i in range(20)],
    ]
    code, out, _ = run(capsys, "map", "event_pipe", "pinned", "/sys/fs/bpf/rb", "--timeout", "0")
    assert code == 0 and out == ""  # nothing left
    code, _, err = run(capsys, "map", "create", "/sys/fs/bpf/h", "type", "hash", "key", "4",
                       "value", "4", "entries", "1", "name", "h")  # fmt: skip
    code, _, err = run(capsys, "map", "event_pipe", "pinned", "/sys/fs/bpf/h", "--timeout", "0")
    assert code == EXIT_INPUT


def test_map_event_pipe_perf_buffer(tmp_path):
    env = {"PYBPF_STATE": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    with create_map(type=MapType.PERF_EVENT_ARRAY, key_size=4, value_size=4, max_entries=2,
                    name="perf", pin="/sys/fs/bpf/perf") as m:  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "pybpf", "-j", "map", "event_pipe", "pinned",
             "/sys/fs/bpf/perf", "--count", "1", "--timeout", "20"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not m.is_open(1) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert m.output(1, b"\xaa\xbb") == 0  # flags: the slot (CPU) index
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    record = json.loads(out)
    # PERF_RECORD_SAMPLE; raw data padded as Linux pads it (size + 4 rounded up to 8)
    assert record == {"type": 9, "cpu": 1, "index": 1, "data": ["0xaa", "0xbb", "0x00", "0x00"]}


def test_tracelog_shows_printk_of_earlier_runs(capsys, tmp_path):
    frame = tmp_path / "frame.bin"
    frame.write_bytes(_udp_frame())
    code, _, err = run(capsys, "prog", "run", XDP_COUNTER, "--data-in", str(frame))
    assert code == 0, err
    code, out, _ = run(capsys, "prog", "tracelog")
    assert code == 0 and "bpf_trace_printk: " in out
    lines = run(capsys, "-j", "prog", "tracelog", "--clear")[1].splitlines()
    messages = [json.loads(line)["message"] for line in lines]
    assert messages and all("bpf_trace_printk" in m for m in messages)
    assert run(capsys, "prog", "tracelog")[1] == ""


def test_bad_arguments_exit_2_with_a_hint(capsys):
    cases = [
        ["prog", "show", "id"],
        ["prog", "show", "id", "nope"],
        ["prog", "show", "tag", "123"],
        ["prog", "show", "name", "missing"],
        ["prog", "load", XDP_COUNTER],
        ["prog", "load", XDP_COUNTER, "/sys/fs/bpf/x", "pinmaps"],
        ["prog", "pin", "id"],
        ["prog", "dump", "xlated", PIPELINE],  # two programs: which one?
        ["map", "create", "/sys/fs/bpf/x", "type", "hash"],
        ["map", "create", "/sys/fs/bpf/x", "type", "nosuch", "key", "4", "value", "4",
         "entries", "1", "name", "x"],  # fmt: skip
        ["map", "create", "/sys/fs/bpf/x", "type", "hash", "key", "four", "value", "4",
         "entries", "1", "name", "x"],  # fmt: skip
        ["map", "pin", "id", "x", "/sys/fs/bpf/y"],
        ["map", "freeze"],
        ["map", "event_pipe"],
    ]
    for args in cases:
        code, _, err = run(capsys, *args)
        assert code == EXIT_INPUT, (args, err)
        lines = err.splitlines()
        assert lines[0].startswith("Error: "), (args, err)
        assert lines[1:] == [f"Try 'pybpf {' '.join(args[:3] if args[1] == 'dump' else args[:2])} -h' for help."], (args, err)  # noqa: E501
    code, out, err = run(capsys, "-j", "prog", "show", "id", "nope")
    assert code == EXIT_INPUT and set(json.loads(out)) == {"error"} and err == ""


def test_missing_objects_exit_255(capsys):
    cases = [
        ["prog", "show", "id", "4242"],
        ["prog", "show", "pinned", "/sys/fs/bpf/none"],
        ["prog", "dump", "xlated", "id", "4242"],
        ["map", "show", "id", "4242"],
        ["map", "dump", "pinned", "/sys/fs/bpf/none"],
        ["map", "freeze", "id", "4242"],
    ]
    for args in cases:
        code, out, err = run(capsys, *args)
        assert code == EXIT_ERROR, (args, err)
        assert err.startswith("Error: ") and err.count("\n") == 1
    code, out, _ = run(capsys, "-j", "map", "show", "id", "4242")
    assert code == EXIT_ERROR and "error" in json.loads(out)


def test_a_pinned_map_is_not_a_program(capsys):
    with create_map(type=MapType.ARRAY, key_size=4, value_size=4, max_entries=1, name="a",
                    pin="/sys/fs/bpf/a"):  # fmt: skip
        code, _, err = run(capsys, "prog", "show", "pinned", "/sys/fs/bpf/a")
        assert code == EXIT_INPUT
    assert js(capsys, "prog", "show") == []
    assert list_programs() == []


def test_pretty_and_debug(capsys):
    code, out, _ = run(capsys, "-p", "map", "create", "/sys/fs/bpf/p", "type", "array", "key",
                       "4", "value", "4", "entries", "1", "name", "p")  # fmt: skip
    assert code == 0 and out.startswith("{\n    ") and json.loads(out)["name"] == "p"
    code, _, err = run(capsys, "--debug", "map", "show", "id", "nope")
    assert code == EXIT_INPUT and "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1].startswith("Try 'pybpf map show -h'")


def test_run_counts_show_in_the_pinned_record(capsys):
    import pybpf

    with pybpf.load(PIPELINE) as obj:
        prog = obj.programs["start"]
        prog.test_run(ctx_in=struct.pack("<3Q", 3, 4, 1), repeat=3)
        record = prog.pin("/sys/fs/bpf/start")
    shown = js(capsys, "prog", "show", "id", str(record.id))
    assert shown["run_cnt"] == 3 and shown["run_time_ns"] >= 0


def test_prog_run_on_a_pinned_program_updates_its_held_maps(capsys, tmp_path):
    frame = tmp_path / "frame.bin"
    frame.write_bytes(_udp_frame())
    assert run(capsys, "prog", "load", XDP_COUNTER, "/sys/fs/bpf/xc")[0] == 0
    prog_id = js(capsys, "prog", "show")[0]["id"]
    for address in (["pinned", "/sys/fs/bpf/xc"], ["id", str(prog_id)], ["name", "xdp_count"]):
        result = js(capsys, "prog", "run", *address, "--data-in", str(frame))
        assert result["retval"] == 1  # XDP_DROP: UDP is .rodata's drop_proto
    [element] = js(capsys, "map", "dump", "name", "proto_count")
    assert element["formatted"] == {"key": 17, "value": 3}  # BTF from the pinned object
    assert js(capsys, "map", "dump", "name", "xdp_coun.bss")[0]["formatted"] == {
        "value": {".bss": [{"seen": 3}]}
    }
    # the run's temporary pins are gone
    assert [m.get("pinned") for m in js(capsys, "map", "show")] == [None] * 6


def test_a_program_pinned_without_its_object_cannot_run(capsys):
    import pybpf
    from pybpf.objects import Object

    spec = pybpf.Object.open(PIPELINE).spec
    with Object(spec).load() as obj:  # built from a spec: no object file to keep
        obj.programs["start"].pin("/sys/fs/bpf/start")
    assert js(capsys, "prog", "show", "pinned", "/sys/fs/bpf/start")["name"] == "start"
    code, _, err = run(capsys, "prog", "run", "pinned", "/sys/fs/bpf/start")
    assert code == EXIT_ERROR and err.startswith("Error: ")


def test_every_verb_in_text_and_json(capsys, tmp_path):
    """Each prog/map verb once as text and once as JSON (state made fresh for each)."""
    frame = tmp_path / "frame.bin"
    frame.write_bytes(_udp_frame())
    n = 0

    def fresh() -> str:
        nonlocal n
        n += 1
        return f"/sys/fs/bpf/v{n}"

    def setup() -> tuple[str, str, int]:
        prog = fresh()
        assert run(capsys, "prog", "load", XDP_COUNTER, prog, "pinmaps", prog + "m")[0] == 0
        record = js(capsys, "prog", "show", "pinned", prog)
        return prog, prog + "m/proto_count", record["id"]

    verbs = [
        lambda p, m, i: ["prog", "show"],
        lambda p, m, i: ["prog", "list", "id", str(i)],
        lambda p, m, i: ["prog", "load", XDP_COUNTER, fresh()],
        lambda p, m, i: ["prog", "loadall", TAIL_CALLS, fresh()],
        lambda p, m, i: ["prog", "pin", "pinned", p, fresh()],
        lambda p, m, i: ["prog", "dump", "xlated", "id", str(i)],
        lambda p, m, i: ["prog", "run", "pinned", p, "--data-in", str(frame)],
        lambda p, m, i: ["prog", "tracelog"],
        lambda p, m, i: ["map", "show"],
        lambda p, m, i: ["map", "list", "pinned", m],
        lambda p, m, i: ["map", "update", "pinned", m, "key", "6", "0", "0", "0",
                         "value", "1", "0", "0", "0", "0", "0", "0", "0"],  # fmt: skip
        lambda p, m, i: ["map", "lookup", "pinned", m, "key", "6", "0", "0", "0"],
        lambda p, m, i: ["map", "dump", "pinned", m],
        lambda p, m, i: ["map", "delete", "pinned", m, "key", "6", "0", "0", "0"],
        lambda p, m, i: ["map", "create", fresh(), "type", "array", "key", "4", "value", "4",
                         "entries", "2", "name", "made"],  # fmt: skip
        lambda p, m, i: ["map", "pin", "pinned", m, fresh()],
        lambda p, m, i: ["map", "freeze", "pinned", m],
    ]
    for make in verbs:
        prog, pinned_map, prog_id = setup()
        for mode in ([], ["-j"]):
            if make(prog, pinned_map, prog_id)[1] in ("lookup", "delete"):
                with open_pinned(pinned_map) as m:
                    m.update_raw(bytes([6, 0, 0, 0]), bytes(8))
            args = make(prog, pinned_map, prog_id)
            code, out, err = run(capsys, *mode, *args)
            assert code == 0, (mode, args, err)
            if mode:
                for line in out.splitlines() or ["null"]:
                    json.loads(line)  # one JSON document (a line each for streams)


def test_unpin(capsys):
    args = ["prog", "load", XDP_COUNTER, "/sys/fs/bpf/a", "pinmaps", "/sys/fs/bpf/m"]
    assert run(capsys, *args)[0] == 0
    assert len(js(capsys, "map", "show")) == 6
    assert run(capsys, "map", "unpin", "/sys/fs/bpf/m/proto_count")[0] == 0
    assert run(capsys, "map", "unpin", "/sys/fs/bpf/m/proto_count")[0] == EXIT_ERROR  # ENOENT
    assert len(js(capsys, "map", "show")) == 6  # still held by the pinned program
    assert run(capsys, "map", "unpin", "/sys/fs/bpf/a")[0] == EXIT_INPUT  # a program
    assert run(capsys, "prog", "unpin", "/sys/fs/bpf/m/verdicts")[0] == EXIT_INPUT  # a map
    assert run(capsys, "prog", "unpin", "/sys/fs/bpf/a")[0] == 0
    assert js(capsys, "prog", "show") == []
    remaining = js(capsys, "map", "show")  # only the maps still pinned under /sys/fs/bpf/m
    assert len(remaining) == 5 and all(m["pinned"] for m in remaining)
    assert run(capsys, "prog", "unpin", "/sys/fs/bpf/a")[0] == EXIT_ERROR


def test_map_event_pipe_text(capsys):
    args = "map create /sys/fs/bpf/rb type ringbuf key 0 value 0 entries 4096 name rb".split()
    assert run(capsys, *args)[0] == 0
    with open_pinned("/sys/fs/bpf/rb") as rb:
        assert rb.output(bytes(range(18))) == 0
    code, out, _ = run(capsys, "map", "event_pipe", "pinned", "/sys/fs/bpf/rb", "--count", "1")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("== @") and lines[0].endswith("=====")
    assert lines[1:3] == [
        " ".join(f"{b:02x}" for b in range(16)),
        "10 11",
    ]


def test_damaged_program_records_are_not_programs(capsys):
    from pybpf.state import StateDirectory

    assert run(capsys, "prog", "load", XDP_COUNTER, "/sys/fs/bpf/good")[0] == 0
    state = StateDirectory()
    good = state.pin_path("/sys/fs/bpf/good").read_text()
    for i, text in enumerate([good[: len(good) // 2], good.replace('"insns": "', '"insns": "zz'),
                              '{"magic": "pybpf-prog"}', "{}"]):  # fmt: skip
        path = state.prepare_pin(f"/sys/fs/bpf/bad{i}")
        path.write_text(text)
        assert run(capsys, "prog", "show", "pinned", f"/sys/fs/bpf/bad{i}")[0] == EXIT_INPUT
    assert [r["name"] for r in js(capsys, "prog", "show")] == ["xdp_count"]
