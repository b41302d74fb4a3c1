"""``pybpf net attach`` as a real process on a veth link: listed by ``net show``, passing and
dropping real UDP traffic, ended by ``net detach`` or ``link detach`` (Linux, root)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pybpf.cli.app import main
from test_hooks_live import EXAMPLES, Wire, build_wire, pytestmark, udp_exchange  # noqa: F401


@pytest.fixture(scope="module")
def wire():
    with build_wire() as w:
        yield w


def _main(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def _attach(w: Wire, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "pybpf", "net", "attach", "xdp",
            str(EXAMPLES / "drop_empty_udp.o"), "--dev", w.b, "--to", w.c, *extra]  # fmt: skip
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )


def _wait_listed(proc: subprocess.Popen, dev: str, capsys) -> dict:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        code, out, _ = _main(["-j", "net", "show", "--dev", dev], capsys)
        rows = json.loads(out)[0]["xdp"]
        if rows:
            return rows[0]
        time.sleep(0.1)
    raise AssertionError("net attach never showed up in net show")


@pytest.fixture
def state(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "state"
    monkeypatch.setenv("PYBPF_STATE", str(path))
    return path


def test_attach_show_traffic_and_net_detach(wire: Wire, state: Path, capsys) -> None:
    proc = _attach(wire, "--json")
    try:
        row = _wait_listed(proc, wire.b, capsys)
        assert row["devname"] == wire.b and row["name"] == "drop_empty_udp"
        assert row["ifindex"] == int(Path(f"/sys/class/net/{wire.b}/ifindex").read_text())
        assert row["pid"] == proc.pid and row["to"] == wire.c and row["mode"] == "user"
        assert row["io"] == "ring"  # PACKET_MMAP rings work here (root, Linux)
        code, out, _ = _main(["-j", "link", "show"], capsys)
        assert [r["id"] for r in json.loads(out)] == [row["link_id"]]
        assert udp_exchange(wire, [0, 7, 0]) == [7]
        code, out, _ = _main(["-j", "net", "detach", "xdp", "--dev", wire.b], capsys)
        assert code == 0 and json.loads(out) == {"detached": [row["link_id"]]}
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
    finally:
        proc.kill()
    summary = json.loads(out)
    assert summary["id"] == row["link_id"] and summary["devname"] == wire.b
    assert summary["counters"]["drop"] == 2 and summary["counters"]["forwarded"] >= 2
    code, out, _ = _main(["-j", "net", "show"], capsys)
    assert json.loads(out) == [{"xdp": [], "tc": []}]


def test_attach_ended_by_link_detach_and_by_duration(wire: Wire, state: Path, capsys) -> None:
    proc = _attach(wire, "--engine", "interpreter")
    try:
        row = _wait_listed(proc, wire.b, capsys)
        code, out, _ = _main(["link", "detach", "id", str(row["link_id"])], capsys)
        assert code == 0
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert f"drop_empty_udp on {wire.b}" in out
    finally:
        proc.kill()
    proc = _attach(wire, "--json")  # Ctrl-C ends it too
    try:
        _wait_listed(proc, wire.b, capsys)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert json.loads(out)["devname"] == wire.b
    finally:
        proc.kill()
    code, out, _ = _main(["-j", "link", "show"], capsys)
    assert json.loads(out) == []
    proc = _attach(wire, "--duration", "0.3", "--json")
    try:
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert json.loads(out)["prog_name"] == "drop_empty_udp"
    finally:
        proc.kill()


def test_attach_to_a_missing_interface_fails(state: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pybpf", "net", "attach", "xdp",
         str(EXAMPLES / "drop_empty_udp.o"), "--dev", "pybpf-none0"],  # fmt: skip
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith("Error:")
