"""``pybpf feature``, ``gen skeleton``, ``cc``, ``completion`` and every command's help."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import click
import pytest

from pybpf.cli.app import EXIT_ERROR, EXIT_INPUT, cli, main
from pybpf.maps import FAMILIES
from pybpf.maptypes import MapType

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "c"


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


# ---- feature ----------------------------------------------------------------------------------
def test_feature_json_has_bpftools_keys(capsys):
    code, out, _ = run(capsys, "-j", "feature", "--no-kernel")
    assert code == 0
    info = json.loads(out)
    assert info["program_types"]["have_xdp_prog_type"] is True
    for t in MapType:
        if t.value:
            assert info["map_types"][f"have_{t.type_name}_map_type"] == (t in FAMILIES)
    helpers = info["helpers"]["available_helpers"]
    assert "bpf_map_lookup_elem" in helpers and "bpf_trace_printk" in helpers
    assert info["engines"]["interpreter"] is True and info["engines"]["kernel"] is False
    assert "xdp" in info["contexts"]
    code, text, _ = run(capsys, "feature", "--no-kernel")
    assert code == 0 and "\txdp program type is available" in text
    assert "\tstack_trace map type is NOT available" in text


# ---- gen skeleton -----------------------------------------------------------------------------
def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tcp_frame(sport: int, dport: int) -> bytes:
    ip = bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    return bytes(12) + b"\x08\x00" + ip + struct.pack(">HH", sport, dport) + bytes(16)


def test_gen_skeleton_module_imports_and_works(capsys, tmp_path):
    target = tmp_path / "lru_flows_skel.py"
    code, _, err = run(capsys, "gen", "skeleton", str(EXAMPLES / "lru_flows.o"), "-o", str(target))
    assert code == 0, err
    skel_mod = _import(target, "lru_flows_skel")
    assert skel_mod.PROGRAMS == ("lru_flows",) and set(skel_mod.MAPS) == {"flows", "stats"}
    flow, counters = skel_mod.flow, skel_mod.counters
    assert ctypes.sizeof(flow) == 16 and ctypes.sizeof(counters) == 16
    assert [f[0] for f in flow._fields_][:5] == ["saddr", "daddr", "sport", "dport", "proto"]
    with skel_mod.load() as skel:
        assert skel.progs.lru_flows.test_run(_tcp_frame(1234, 80)).retval == 2  # XDP_PASS
        assert skel.progs.lru_flows.test_run(_tcp_frame(1234, 80)).retval == 2
        [(key, value)] = skel.maps.flows.items()
        assert isinstance(key, flow) and isinstance(value, counters)
        assert (key.sport, key.dport, key.proto, value.packets) == (1234, 80, 6, 2)
        assert skel.maps.stats[0] == 1  # a plain int for a scalar value
        key = flow(sport=7)
        skel.maps.flows[key] = counters(5, 6)
        assert skel.maps.flows[key].bytes == 6
    # stdout and JSON
    code, out, _ = run(capsys, "gen", "skeleton", str(EXAMPLES / "xdp_counter.o"))
    assert code == 0 and "class XdpCounter:" in out and "def rodata(self)" in out
    code, out, _ = run(capsys, "-j", "gen", "skeleton", str(EXAMPLES / "xdp_counter.o"))
    assert json.loads(out)["class"] == "XdpCounter"


def test_gen_skeleton_globals_and_a_ring_buffer(tmp_path, capsys):
    target = tmp_path / "xc_skel.py"
    args = ["gen", "skeleton", str(EXAMPLES / "xdp_counter.o"), "-o", str(target)]
    assert run(capsys, *args)[0] == 0
    module = _import(target, "xc_skel")
    skel = module.XdpCounter.open()
    skel.rodata.drop_proto = 6
    with skel.load():
        assert skel.rodata.drop_proto == 6 and skel.bss.seen == 0
        skel.progs.xdp_count.test_run(_tcp_frame(1, 2))
        assert skel.bss.seen == 1 and skel.maps.proto_count[6] == 1
    target = tmp_path / "events_skel.py"
    assert run(capsys, "gen", "skeleton", str(EXAMPLES / "events.o"), "-o", str(target))[0] == 0
    assert _import(target, "events_skel").MAP_TYPES["events"] == (None, None)


def test_gen_skeleton_bad_input(capsys, tmp_path):
    assert run(capsys, "gen", "skeleton", str(tmp_path / "missing.o"))[0] == EXIT_INPUT
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"not an elf")
    assert run(capsys, "gen", "skeleton", str(junk))[0] == EXIT_INPUT


# ---- cc ---------------------------------------------------------------------------------------
def test_cc_without_clang_says_how_to_install_it(capsys, tmp_path):
    source = tmp_path / "x.c"
    source.write_text("int x;\n")
    code, _, err = run(capsys, "cc", str(source), "--clang", "no-such-clang-here")
    assert code == EXIT_ERROR and "apt-get install clang libbpf-dev" in err
    code, out, _ = run(capsys, "-j", "cc", str(source), "--dry-run", "--mcpu", "v3")
    command = json.loads(out)["command"]
    assert command[:5] == ["clang", "-O2", "-g", "-target", "bpf"] and "-mcpu=v3" in command
    assert command[-3:] == ["-c", str(source), "-o", str(source.with_suffix(".o"))][-3:]


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed")
def test_cc_compiles_an_example_that_then_loads(capsys, tmp_path):
    import pybpf

    output = tmp_path / "xdp_counter.o"
    code, _, err = run(capsys, "cc", str(EXAMPLES / "xdp_counter.c"), "-o", str(output))
    assert code == 0, err
    with pybpf.load(output) as obj:
        assert "xdp_count" in obj.programs
    broken = tmp_path / "broken.c"
    broken.write_text("int f( {\n")
    code, _, err = run(capsys, "cc", str(broken))
    assert code == EXIT_INPUT and "error" in err


# ---- completion, help, debug ------------------------------------------------------------------
def test_completion_script_and_protocol(capsys):
    code, out, _ = run(capsys, "completion", "bash")
    assert code == 0 and "_PYBPF_COMPLETE" in out and "complete " in out
    env = {**os.environ, "_PYBPF_COMPLETE": "bash_complete", "COMP_WORDS": "pybpf map d",
           "COMP_CWORD": "2"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "pybpf"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    if "map" not in proc.stdout and proc.stdout.strip() == "":
        # python -m pybpf runs as "python -m pybpf": click names the variable after argv[0]
        env["_MAIN_COMPLETE"] = env.pop("_PYBPF_COMPLETE")
        proc = subprocess.run([sys.executable, "-m", "pybpf"], env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
    assert "plain,dump" in proc.stdout.splitlines() and "plain,delete" in proc.stdout.splitlines()


def _commands(cmd: click.Command, path: list[str]):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _commands(sub, [*path, name])


# Commands other engineers own; their help examples are tracked in their issues.
_OTHERS: set[str] = set()


def test_every_command_has_help_with_an_example():
    missing = []
    for path, cmd in _commands(cli, ["pybpf"]):
        if len(path) > 1 and path[1] in _OTHERS:
            continue
        ctx = click.Context(cmd, info_name=" ".join(path))
        text = cmd.get_help(ctx)
        if "Example" not in text or "pybpf " not in text.split("Example", 1)[1]:
            missing.append(" ".join(path))
    assert not missing, f"commands without an example in their help: {missing}"


def test_help_and_version(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "--debug" in out and "--pretty" in out
    for group in ("prog", "map", "gen", "feature", "cc", "completion"):
        assert group in out
    code, out, _ = run(capsys, "map", "create", "--help")
    assert code == 0 and "type TYPE key KEY_SIZE" in out


def test_an_internal_error_is_one_line_without_debug(capsys, monkeypatch):
    from pybpf.cli import feature_cmd

    def boom(**_kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(feature_cmd, "features", boom)
    code, _, err = run(capsys, "feature")
    assert code == EXIT_ERROR and err.count("\n") == 1 and "RuntimeError: boom" in err
    code, _, err = run(capsys, "--debug", "feature")
    assert code == EXIT_ERROR and "Traceback" in err
    code, out, _ = run(capsys, "-j", "feature")
    assert code == EXIT_ERROR and "boom" in json.loads(out)["error"]


def test_completion_offers_the_state_directorys_objects(tmp_path):
    from pybpf.maps import create_map

    state = tmp_path / "state"
    env = {**os.environ, "PYBPF_STATE": str(state), "_PYBPF_COMPLETE": "bash_complete"}
    with create_map(type=MapType.ARRAY, key_size=4, value_size=4, max_entries=1, name="done",
                    pin="/sys/fs/bpf/done"):  # fmt: skip
        pass

    def complete(words: str) -> list[str]:
        env.update(COMP_WORDS=words, COMP_CWORD=str(len(words.split(" ")) - 1))
        code = "import sys; from pybpf.cli.app import cli; cli.main(prog_name='pybpf')"
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        return proc.stdout.splitlines()

    assert complete("pybpf map dump ")[:3] == ["plain,id", "plain,pinned", "plain,name"]
    assert complete("pybpf map dump pinned ") == ["plain,/sys/fs/bpf/done"]
    assert complete("pybpf map dump name d") == ["plain,done"]
