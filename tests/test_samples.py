"""Tests for the samples in examples/: drop empty UDP (scenario, capture, CLI, kernel).

Shared by tests/test_samples_*.py: ``run_script`` runs a sample script as a user does,
``EXAMPLES`` and the examples' own helpers (``frames``, ``engines``) on ``sys.path``.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from kernel import requires_bpf
from pybpf.hooks import open_capture

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CAPTURES = EXAMPLES / "captures"
sys.path.insert(0, str(EXAMPLES))

import drop_empty_udp  # noqa: E402
from engines import get, load, put, u32, u64  # noqa: E402
from frames import tcp4, udp4, udp6, xdp_md  # noqa: E402

ENGINES = ("interpreter", "jit")
OBJECT = EXAMPLES / "c" / "drop_empty_udp.o"
FLOOD = CAPTURES / "dns_udp_flood.pcap"
XDP_DROP, XDP_PASS = 1, 2


def run_script(name: str, *args: str, tmp_path: Path) -> dict:
    """``python examples/<name> --json ARGS`` from the repository root: its JSON record."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYBPF_STATE": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def capture_frames(path: Path) -> list[bytes]:
    """The frames of a capture file."""
    with open_capture(path) as cap:
        return [bytes(f.data) for f in cap]


def empty_ipv4_udp(frame: bytes) -> bool:
    """What the sample must drop, decided here from the bytes: an IPv4 first fragment
    carrying UDP whose length field is 8 (a header, no payload)."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return False
    if struct.unpack("!H", frame[20:22])[0] & 0x1FFF:
        return False
    udp_at = 14 + (frame[14] & 0xF) * 4
    return struct.unpack("!H", frame[udp_at + 4 : udp_at + 6])[0] == 8


def counter(obj) -> int:
    return struct.unpack("<Q", get(obj.maps["dropped_packet_map"], u32(0)))[0]


# ---- the scenario -------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_seeded_counter_empty_drops_ten_bytes_pass(engine: str) -> None:
    with load(OBJECT, engine) as obj:
        prog = obj.programs["drop_empty_udp"]
        put(obj.maps["dropped_packet_map"], u32(0), u64(1000))
        empty, ten = udp4(payload=b""), udp4(payload=bytes(10))
        assert prog.test_run(empty, ctx_in=xdp_md(empty)).retval == XDP_DROP
        assert counter(obj) == 1001
        assert prog.test_run(ten, ctx_in=xdp_md(ten)).retval == XDP_PASS
        assert counter(obj) == 1001
        # IPv6, TCP and a datagram with IP options are decided as they must be
        assert prog.test_run(udp6()).retval == XDP_PASS
        assert prog.test_run(tcp4()).retval == XDP_PASS
        assert prog.test_run(udp4(options=b"\x01\x01\x01\x00")).retval == XDP_DROP
        assert prog.test_run(udp4(payload=b"x", options=b"\x01\x00")).retval == XDP_PASS
        assert counter(obj) == 1002


@pytest.mark.parametrize("engine", ENGINES)
def test_interface_filter(engine: str) -> None:
    """interface_index_map[0] names the one interface acted on (0: any); the test run's
    ingress_ifindex (ctx_in) is 1, the loopback device, as Linux allows."""
    empty = udp4()
    with load(OBJECT, engine) as obj:
        prog = obj.programs["drop_empty_udp"]
        for ifindex, expected in ((0, XDP_DROP), (1, XDP_DROP), (2, XDP_PASS), (7, XDP_PASS)):
            put(obj.maps["interface_index_map"], u32(0), u32(ifindex))
            before = counter(obj)
            result = prog.test_run(empty, ctx_in=xdp_md(empty, 1))
            assert result.retval == expected, ifindex
            assert struct.unpack("<6I", result.ctx_out)[3] == 1
            assert counter(obj) == before + (expected == XDP_DROP)


def test_script_scenario_interpreter(tmp_path: Path) -> None:
    record = run_script("drop_empty_udp.py", tmp_path=tmp_path)
    steps = [(s["verdict"], s["counter"]) for s in record["steps"]]
    assert steps == [("drop", 1001), ("pass", 1001), ("drop", 1002), ("pass", 1002)]


def test_script_scenario_jit(capsys) -> None:
    assert drop_empty_udp.main(["--engine", "jit", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("jit: dropped_packet_map[0] seeded with 7")
    assert "empty UDP                        -> drop  counter 8" in out


# ---- the capture: a UDP flood in DNS traffic ----------------------------------------------
def test_capture_is_a_few_hundred_packets_with_a_flood_in_dns() -> None:
    frames = capture_frames(FLOOD)
    empty = sum(map(empty_ipv4_udp, frames))
    assert 100 <= len(frames) <= 1000 and 0 < empty < len(frames)
    dns = [f for f in frames if len(f) > 42 and f[23] == 17 and not empty_ipv4_udp(f)]
    assert len(dns) > 50


def test_capture_generator_reproduces_the_committed_capture(tmp_path: Path) -> None:
    sys.path.insert(0, str(CAPTURES))
    try:
        import random

        import make_dns_flood
    finally:
        sys.path.remove(str(CAPTURES))
    assert make_dns_flood.frames(random.Random(53)) == capture_frames(FLOOD)


@pytest.mark.parametrize(
    "engine", [*ENGINES, pytest.param("kernel", marks=requires_bpf)]
)
def test_net_run_over_the_flood(engine: str, tmp_path: Path) -> None:
    """``pybpf net run`` drops exactly the empty IPv4/UDP datagrams and passes the rest."""
    from pybpf.cli.app import main

    frames = capture_frames(FLOOD)
    dropped = [f for f in frames if empty_ipv4_udp(f)]
    passed = [f for f in frames if not empty_ipv4_udp(f)]
    p, d = tmp_path / "pass.pcap", tmp_path / "drop.pcapng"
    args = ["-j", "net", "run", str(OBJECT), "--pcap", str(FLOOD), "--engine", engine,
            "--out", f"pass={p}", "--out", f"drop={d}"]
    proc = subprocess.run(
        [sys.executable, "-m", "pybpf", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYBPF_STATE": str(tmp_path)},
    ) if engine == "interpreter" else None
    if proc is None:
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 0
    else:
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["packets"] == len(frames)
        assert summary["verdicts"] == {"drop": len(dropped), "pass": len(passed)}
    assert capture_frames(p) == passed
    assert capture_frames(d) == dropped


@pytest.mark.parametrize("engine", ENGINES)
def test_script_over_the_flood_counts_the_drops(engine: str, capsys) -> None:
    expected = sum(map(empty_ipv4_udp, capture_frames(FLOOD)))
    assert drop_empty_udp.main(["--engine", engine, "--pcap", str(FLOOD), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["counter"] == record["verdicts"]["drop"] == expected
    # filtered to another interface: the run's ingress is 1, nothing is dropped
    assert drop_empty_udp.main(["--engine", engine, "--pcap", str(FLOOD), "--ifindex", "2",
                                "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["counter"] == 0 and record["verdicts"] == {"pass": record["packets"]}


def test_readme_sample_commands_run(capsys, monkeypatch) -> None:
    """Every ``python examples/<sample>.py ...`` line of the README's Samples section runs
    (in this process, with ``--json``) and the ``net run`` line names files that exist."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Samples", 1)[1].split("\n### ", 1)[0]
    lines = re.findall(r"^python (examples/\w+\.py.*?)(?:\s+#.*)?$", section, re.M)
    assert len(lines) >= 6, "the README lost its sample commands"
    monkeypatch.chdir(ROOT)
    for line in lines:
        script, *args = shlex.split(line)
        module = importlib.import_module(Path(script).stem)
        assert module.main([*args, "--json"]) == 0, line
        assert json.loads(capsys.readouterr().out)["engine"]
    [net_run] = re.findall(r"`(pybpf net run [^`]*)`", section)
    assert all((ROOT / p).exists() for p in re.findall(r"examples/[\w./-]*\w", net_run))


# ---- Linux ---------------------------------------------------------------------------------
def verdicts_and_maps(path: Path, engine: str, program: str, runs, setup=None):
    """Each ``(frame, ctx_in)`` of ``runs`` through ``program`` in ``engine`` after
    ``setup(obj)``: the return values and every map's contents (bytes)."""
    from engines import items

    with load(path, engine) as obj:
        if setup is not None:
            setup(obj)
        prog = obj.programs[program]
        retvals = [prog.test_run(frame, ctx_in=ctx).retval for frame, ctx in runs]
        return retvals, {name: items(m) for name, m in obj.maps.items()}


@requires_bpf
@pytest.mark.parametrize("engine", ENGINES)
def test_flood_verdicts_and_counter_match_the_kernel(engine: str) -> None:
    frames = capture_frames(FLOOD)
    runs = [(f, xdp_md(f)) for f in frames]

    def setup(ifindex: int):
        def apply(obj) -> None:
            put(obj.maps["dropped_packet_map"], u32(0), u64(1000))
            put(obj.maps["interface_index_map"], u32(0), u32(ifindex))
        return apply

    for ifindex in (0, 1, 2):
        ours = verdicts_and_maps(OBJECT, engine, "drop_empty_udp", runs, setup(ifindex))
        theirs = verdicts_and_maps(OBJECT, "kernel", "drop_empty_udp", runs, setup(ifindex))
        assert ours == theirs
        drops = ours[0].count(XDP_DROP)
        assert drops == (0 if ifindex == 2 else sum(map(empty_ipv4_udp, frames)))
        assert ours[1]["dropped_packet_map"] == {u32(0): u64(1000 + drops)}
