"""The object commands: object show, btf dump and disasm on object files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "c"
BTF_FIXTURES = ROOT / "tests" / "fixtures" / "btf"


def _pybpf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pybpf", *args], capture_output=True, text=True, timeout=60
    )


def test_object_show_json_lists_programs_with_types():
    proc = _pybpf("-j", "object", "show", str(EXAMPLES / "programs.o"))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    types = {p["name"]: (p["section"], p["type"]) for p in info["programs"]}
    assert types["xdp_pass"] == ("xdp", "xdp")
    assert types["tc_ok"] == ("tc", "sched_cls")
    assert types["bind4_allow"] == ("cgroup/bind4", "cgroup_sock_addr")
    assert types["tp_write"] == ("tracepoint/syscalls/sys_enter_write", "tracepoint")


def test_object_show_maps_legacy_records():
    proc = _pybpf("-j", "object", "show", str(EXAMPLES / "legacy_maps.o"))
    maps = {m["name"]: m for m in json.loads(proc.stdout)["maps"]}
    assert maps["flows"]["type"] == "hash" and maps["flows"]["bytes_key"] == 8
    assert maps["counters"]["max_entries"] == 256


def test_disasm_object_interleaves_source_lines():
    proc = _pybpf("disasm", str(EXAMPLES / "xdp_counter.o"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "; value = bpf_map_lookup_elem(&proto_count, &proto); @ xdp_counter.c:" in out
    assert "r1 = 0 ll\t; map proto_count" in out


def test_disasm_object_listing_assembles_back():
    from pybpf.isa import assemble, encode
    from pybpf.objects import Object, listing

    spec = Object.open(EXAMPLES / "xdp_counter.o").spec
    for prog in spec.programs.values():
        text = listing(spec, prog.name)
        body = text.split("\n", 1)[1]  # drop the "name (section, type):" header
        assert encode(assemble(body)) == encode(prog.instructions)


CORPUS = ROOT.parent / "shared" / "corpus"


def _fixture_object(fixture: Path) -> Path | None:
    stem = fixture.name.rsplit(".", 2)[0]  # drop ".raw.txt" / ".c.txt"
    if stem.startswith("corpus__"):
        return CORPUS.joinpath(*stem[len("corpus__") :].split("__"))
    return BTF_FIXTURES / f"{stem}.o"


def test_btf_dump_matches_bpftool_fixtures():
    """Committed `bpftool btf dump file X [format c]` outputs, byte for byte."""
    checked = 0
    for fixture in sorted(BTF_FIXTURES.glob("*.txt")):
        obj = _fixture_object(fixture)
        if obj is None or not obj.exists():
            continue  # corpus objects are absent without ../shared
        fmt = "c" if fixture.name.endswith(".c.txt") else "raw"
        proc = _pybpf("btf", "dump", str(obj), "--format", fmt)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == fixture.read_text(), fixture.name
        checked += 1
    assert checked >= 4  # the project's own kinds.o and layouts.o, raw and C


def test_malformed_object_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.o"
    data = (EXAMPLES / "xdp_counter.o").read_bytes()
    bad.write_bytes(data[:200])
    for args in (("object", "show", str(bad)), ("disasm", str(bad)), ("btf", "dump", str(bad))):
        proc = _pybpf(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("Error: ") and len(proc.stderr.strip().splitlines()) == 1
