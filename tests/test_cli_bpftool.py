"""``pybpf prog show --json`` and ``map show/dump --json`` against bpftool's own output.

An object is loaded with ``--backend kernel`` (what ``pybpf prog show OBJ --backend
kernel`` does) and, while it is loaded, ``bpftool -j prog show id N`` and ``bpftool -j map
dump id N`` describe the same programs and maps: key names, order and value formatting
(``"0x.."`` bytes, per-CPU ``values``, BTF ``formatted``) must be equal. The portable
backend's records for the same object use the same keys and formatting.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kernel import requires_bpf
from pybpf.cli.app import main
from pybpf.cli.map_cmd import entry, info
from pybpf.cli.target import ProgramView, load_object, object_maps

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "c"
XDP_COUNTER = str(EXAMPLES / "xdp_counter.o")
LRU_FLOWS = str(EXAMPLES / "lru_flows.o")

pytestmark = [
    requires_bpf,
    pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool is not installed"),
]
OURS_ONLY = {"section", "engine"}  # pybpf's additions to bpftool's prog records


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def bpftool(*args: str):
    proc = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _dump(m) -> list[dict]:
    return [entry(m, k, m.lookup_raw(k)) for k in m.keys_raw()]


def test_prog_show_matches_bpftool():
    with load_object(XDP_COUNTER, backend="kernel") as obj:
        for prog in obj.programs.values():
            ours = ProgramView(prog).info()
            theirs = bpftool("prog", "show", "id", str(ours["id"]))
            assert [k for k in ours if k not in OURS_ONLY] == list(theirs)
            assert abs(ours.pop("loaded_at") - theirs.pop("loaded_at")) <= 2
            assert {k: v for k, v in ours.items() if k not in OURS_ONLY} == theirs


def test_map_show_and_dump_match_bpftool():
    with load_object(XDP_COUNTER, backend="kernel") as obj:
        maps = object_maps(obj)
        maps["proto_count"].update_raw((6).to_bytes(4, "little"), (5).to_bytes(8, "little"))
        maps["proto_count"].update_raw((17).to_bytes(4, "little"), (9).to_bytes(8, "little"))
        for name, m in maps.items():
            assert info(m) == bpftool("map", "show", "id", str(m.id)), name
            theirs = bpftool("map", "dump", "id", str(m.id))
            ours = _dump(m)
            key = (lambda r: r["key"])  # noqa: E731 (bpftool's hash order may differ)
            assert sorted(ours, key=key) == sorted(theirs, key=key), name


def test_struct_keys_and_values_are_formatted_as_bpftool_does():
    frame = bytes(12) + b"\x08\x00" + bytes(
        [0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
    ) + bytes([0x04, 0xD2, 0, 80]) + bytes(16)  # fmt: skip
    with load_object(LRU_FLOWS, backend="kernel") as obj:
        obj.programs["lru_flows"].test_run(frame)
        m = object_maps(obj)["flows"]
        theirs = bpftool("map", "dump", "id", str(m.id))
        assert _dump(m) == theirs and "formatted" in theirs[0]
    with load_object(LRU_FLOWS) as obj:  # the portable backend: the same records
        obj.programs["lru_flows"].test_run(frame)
        assert _dump(obj.maps["flows"]) == theirs


def test_the_command_line_prints_bpftools_keys(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["-j", "prog", "show", XDP_COUNTER, "--backend", "kernel"])
    assert exc.value.code == 0
    [record] = json.loads(capsys.readouterr().out)
    with load_object(XDP_COUNTER, backend="kernel") as obj:
        prog = next(iter(obj.programs.values()))
        theirs = bpftool("prog", "show", "id", str(prog.id))
    assert [k for k in record if k not in OURS_ONLY] == list(theirs)
    assert record["engine"] == "kernel" and record["tag"] == theirs["tag"]
    with pytest.raises(SystemExit) as exc:
        main(["-j", "map", "dump", XDP_COUNTER, "--map", "verdicts", "--backend", "kernel"])
    assert exc.value.code == 0
    dump = json.loads(capsys.readouterr().out)
    assert [list(r) for r in dump] == [["key", "values", "formatted"]] * 2


def _cli(capsys, *args: str):
    with pytest.raises(SystemExit) as exc:
        main(["-j", *args])
    out = capsys.readouterr()
    assert exc.value.code == 0, out.err
    return json.loads(out.out) if out.out.strip() else None


def test_kernel_objects_by_id_as_bpftool_addresses_them(capsys, tmp_path):
    """``--backend kernel`` with ``id N``/``name NAME``: the kernel's objects, as bpftool."""
    import pybpf

    frame = tmp_path / "frame.bin"
    ip = bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    frame.write_bytes(bytes(12) + b"\x08\x00" + ip + bytes(8))
    with pybpf.load(XDP_COUNTER, backend="kernel", pin_maps_dir=None) as obj:
        prog_id = obj.programs["xdp_count"].id
        ours = _cli(capsys, "prog", "show", "id", str(prog_id), "--backend", "kernel")
        theirs = bpftool("prog", "show", "id", str(prog_id))
        assert abs(ours.pop("loaded_at") - theirs.pop("loaded_at")) <= 2
        assert {k: v for k, v in ours.items() if k not in OURS_ONLY} == theirs
        xlated = _cli(capsys, "prog", "dump", "xlated", "id", str(prog_id), "--backend", "kernel")
        assert len(xlated) == len(bpftool("prog", "dump", "xlated", "id", str(prog_id)))
        result = _cli(capsys, "prog", "run", "id", str(prog_id), "--data-in", str(frame),
                      "--backend", "kernel")  # fmt: skip
        assert result["retval"] == 1  # XDP_DROP: UDP
        map_id = obj.maps["proto_count"].id
        args = ["id", str(map_id), "--backend", "kernel"]
        assert _cli(capsys, "map", "dump", *args) == bpftool("map", "dump", "id", str(map_id))
        assert _cli(capsys, "map", "show", *args) == bpftool("map", "show", "id", str(map_id))
        found = _cli(capsys, "map", "lookup", "id", str(map_id), "key", "17", "0", "0", "0",
                     "--backend", "kernel")  # fmt: skip
        assert found["formatted"] == {"key": 17, "value": 1}  # the run counted one UDP frame
        _cli(capsys, "map", "update", "id", str(map_id), "key", "6", "0", "0", "0", "value",
             *["2"] + ["0"] * 7, "--backend", "kernel")  # fmt: skip
        six = obj.maps["proto_count"].lookup((6).to_bytes(4, "little"))
        assert six == (2).to_bytes(8, "little")
        by_name = _cli(capsys, "map", "show", "name", "proto_count", "--backend", "kernel")
        assert by_name["name"] == "proto_count"


def test_event_pipe_on_a_kernel_ring_buffer(capsys):
    import struct

    import pybpf

    ip = bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    syn = struct.pack(">HHIIBBHHH", 4000, 443, 99, 0, 0x50, 0x02, 1024, 0, 0)
    with pybpf.load(EXAMPLES / "events.o", backend="kernel", pin_maps_dir=None) as obj:
        obj.programs["syn_events"].test_run(bytes(12) + b"\x08\x00" + ip + syn)
        map_id = obj.maps["events"].id
        with pytest.raises(SystemExit) as exc:
            main(["-j", "map", "event_pipe", "id", str(map_id), "--backend", "kernel",
                  "--count", "1", "--timeout", "2"])  # fmt: skip
        assert exc.value.code == 0
        [line] = capsys.readouterr().out.splitlines()
        data = bytes(int(b, 16) for b in json.loads(line)["data"])
        assert struct.unpack_from("<HHIII", data, 8)[:2] == (4000, 443)
        assert struct.unpack_from("<I", data, 20)[0] == 99


def test_listing_every_kernel_object_as_bpftool_does(capsys):
    import pybpf

    with pybpf.load(XDP_COUNTER, backend="kernel", pin_maps_dir=None) as obj:
        prog_id = obj.programs["xdp_count"].id
        map_id = obj.maps["proto_count"].id
        progs = {r["id"]: r for r in _cli(capsys, "prog", "show", "--backend", "kernel")}
        maps = {r["id"]: r for r in _cli(capsys, "map", "list", "--backend", "kernel")}
        theirs = bpftool("prog", "show", "id", str(prog_id))
        ours = progs[prog_id]
        assert abs(ours.pop("loaded_at") - theirs.pop("loaded_at")) <= 2
        assert {k: v for k, v in ours.items() if k not in OURS_ONLY} == theirs
        assert maps[map_id] == bpftool("map", "show", "id", str(map_id))


def test_prog_load_into_the_kernel_pins_in_the_real_bpffs(capsys):
    from kernel import private_bpffs

    with private_bpffs() as fs:
        record = _cli(capsys, "prog", "load", XDP_COUNTER, f"{fs}/xc", "pinmaps", f"{fs}/maps",
                      "--backend", "kernel")  # fmt: skip
        # this process closed its fds: the pins keep the program and maps in the kernel
        theirs = bpftool("prog", "show", "pinned", f"{fs}/xc")
        assert theirs["id"] == record["id"] and theirs["tag"] == record["tag"]
        shown = _cli(capsys, "prog", "show", "pinned", f"{fs}/xc", "--backend", "kernel")
        assert shown["id"] == record["id"]
        assert (fs / "maps" / "proto_count").exists()
        dump = _cli(capsys, "map", "dump", "pinned", f"{fs}/maps/proto_count", "--backend",
                    "kernel")  # fmt: skip
        assert dump == bpftool("map", "dump", "pinned", f"{fs}/maps/proto_count") == []
