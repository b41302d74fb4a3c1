"""Links: records in the state directory, ids across processes, stale records dropped."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pybpf.errors import InputError
from pybpf.hooks.link import Link, detach_remote, find_link, list_links
from pybpf.state import StateDirectory


class _Prog:
    name = "xdp_prog"
    tag = "0123456789abcdef"


class _Counting(Link):
    def __init__(self, *a, **k):
        self.detached = 0
        super().__init__(*a, **k)

    def _detach(self):
        self.detached += 1


def test_link_records_and_detach(tmp_path):
    state = StateDirectory(tmp_path / "s")
    with _Counting(_Prog(), "xdp", {"ifindex": 3, "devname": "veth0"}, state=state) as a:
        b = _Counting(_Prog(), "xdp", {"ifindex": 4}, state=state)
        assert b.id == a.id + 1
        recs = list_links(state)
        assert [r.id for r in recs] == [a.id, b.id]
        assert recs[0].to_json()["devname"] == "veth0"
        assert recs[0].to_json()["prog_tag"] == _Prog.tag
        detach_remote(b.id, state)
        assert b.detached == 1 and not b.attached
        b.detach()
        assert b.detached == 1
    assert a.detached == 1
    assert list_links(state) == []
    with pytest.raises(InputError):
        find_link(a.id, state)


def test_stale_record_of_dead_process_is_dropped(tmp_path):
    state = StateDirectory(tmp_path / "s")
    state.ensure()
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(proc.stdout)
    (state.links / "7.json").write_text(json.dumps({"id": 7, "type": "xdp", "pid": dead}))
    (state.links / "8.json").write_text("{not json")
    assert list_links(state) == []
    assert not (state.links / "7.json").exists()
    with Link(_Prog(), "xdp", state=state) as link:
        assert link.id == 1
