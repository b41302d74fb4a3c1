"""``pybpf link show/detach`` and ``pybpf net show/detach`` on links owned by another process.

A helper process records a link (the :class:`~pybpf.hooks.link.Link` base, no interface
needed) and waits for SIGTERM, as ``pybpf net attach`` does; the commands must list it and
end it. Needs no privileges.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.cli.app import main

OWNER = """
import signal, sys, time
from pybpf.hooks.link import Link

class Prog:
    name = "fake_xdp"
    tag = "0011223344556677"

stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
link = Link(Prog(), sys.argv[1], {"devname": sys.argv[2], "ifindex": 4242, "prog_id": 77})
print(link.id, flush=True)
deadline = time.monotonic() + 20
while not stop and time.monotonic() < deadline:
    time.sleep(0.02)
link.detach()
print("detached", flush=True)
"""


def _main(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.fixture
def state(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "state"
    monkeypatch.setenv("PYBPF_STATE", str(path))
    return path


def _owner(kind: str = "xdp", dev: str = "fake0") -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, kind, dev],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    line = proc.stdout.readline().strip()
    assert line.isdigit(), proc.stderr.read()
    return proc, int(line)


def test_link_show_and_detach_by_id(state: Path, capsys) -> None:
    proc, link_id = _owner()
    try:
        code, out, _ = _main(["-j", "link", "show"], capsys)
        records = json.loads(out)
        assert code == 0 and [r["id"] for r in records] == [link_id]
        assert records[0]["pid"] == proc.pid and records[0]["devname"] == "fake0"
        assert records[0]["prog_name"] == "fake_xdp" and records[0]["type"] == "xdp"
        code, out, _ = _main(["-j", "link", "show", "id", str(link_id)], capsys)
        assert code == 0 and json.loads(out)["id"] == link_id
        code, out, _ = _main(["link", "show"], capsys)
        assert code == 0 and f"{link_id}: xdp  prog fake_xdp" in out
        code, out, _ = _main(["-j", "link", "detach", "id", str(link_id)], capsys)
        assert code == 0 and json.loads(out) == {"detached": link_id, "type": "xdp"}
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read().strip() == "detached"
        code, out, _ = _main(["-j", "link", "show"], capsys)
        assert json.loads(out) == []
    finally:
        proc.kill()


def test_net_show_and_detach_by_device(state: Path, capsys) -> None:
    xdp, xdp_id = _owner("xdp", "fake0")
    tc, tc_id = _owner("tc", "fake1")
    try:
        code, out, _ = _main(["-j", "net", "show"], capsys)
        (shown,) = json.loads(out)
        assert code == 0
        assert shown["xdp"] == [{
            "devname": "fake0", "ifindex": 4242, "mode": "user", "id": 77, "name": "fake_xdp",
            "tag": "0011223344556677", "link_id": xdp_id, "pid": xdp.pid,
        }]  # fmt: skip
        assert [r["link_id"] for r in shown["tc"]] == [tc_id]
        code, out, _ = _main(["-j", "net", "show", "--dev", "fake1"], capsys)
        assert json.loads(out)[0]["xdp"] == [] and len(json.loads(out)[0]["tc"]) == 1
        code, out, _ = _main(["net", "show"], capsys)
        assert "fake0(4242) user id 77 name fake_xdp" in out
        # the tc link is not an xdp one: nothing to detach from fake1 as xdp
        code, _, err = _main(["net", "detach", "xdp", "--dev", "fake1"], capsys)
        assert code == 2 and err.startswith("Error:")
        code, out, _ = _main(["-j", "net", "detach", "xdp", "--dev", "fake0"], capsys)
        assert code == 0 and json.loads(out) == {"detached": [xdp_id]}
        assert xdp.wait(timeout=10) == 0
        assert tc.poll() is None  # untouched
        code, out, _ = _main(["-j", "net", "detach", "tc", "--dev", "fake1"], capsys)
        assert code == 0 and tc.wait(timeout=10) == 0
    finally:
        xdp.kill()
        tc.kill()


def test_bad_link_arguments(state: Path, capsys) -> None:
    code, _, err = _main(["link", "show", "id", "12345"], capsys)
    assert code == 2 and err.startswith("Error:")
    code, _, err = _main(["link", "show", "bogus"], capsys)
    assert code == 2
    code, _, _ = _main(["link", "detach", "id", "12345"], capsys)
    assert code == 2
    code, out, _ = _main(["-j", "link", "show", "id", "x"], capsys)
    assert code == 2 and "error" in json.loads(out)


def test_attach_refuses_a_program_of_another_kind(state: Path, capsys) -> None:
    examples = Path(__file__).parents[1] / "examples" / "c"
    for args in (
        ["net", "attach", "tc", str(examples / "drop_empty_udp.o"), "--dev", "lo"],
        ["net", "attach", "xdp", str(examples / "tc_ctx.o"), "--dev", "lo"],
        ["net", "attach", "xdp", str(examples / "sock_ctx.o"), "--dev", "lo"],
    ):
        code, _, err = _main([*args, "--engine", "interpreter"], capsys)
        assert code == 2 and err.startswith("Error:")
    code, out, _ = _main(["-j", "link", "show"], capsys)
    assert json.loads(out) == []
