"""Ids allocated in the state directory: unique across threads and processes, stable per map."""

from __future__ import annotations

import subprocess
import sys
import threading

from pybpf.maps import create_map, open_pinned
from pybpf.maps.shared import find_map, list_maps, open_by_id
from pybpf.maptypes import MapType
from pybpf.state import StateDirectory, allocate_id, last_id
from pybpf.state.ids import LOCAL_BASE


def test_ids_are_unique_across_threads_and_processes(tmp_path):
    state = StateDirectory(tmp_path / "state")
    script = (
        "import sys; from pybpf.state import StateDirectory, allocate_id\n"
        "s = StateDirectory(sys.argv[1])\n"
        "print(' '.join(str(allocate_id('prog', s)) for _ in range(200)))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(state.root)], stdout=subprocess.PIPE,
                         text=True)  # fmt: skip
        for _ in range(3)
    ]
    mine: list[int] = []

    def allocate() -> None:
        for _ in range(100):
            mine.append(allocate_id("prog", state))

    threads = [threading.Thread(target=allocate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    theirs = [int(x) for p in procs for x in p.communicate(timeout=60)[0].split()]
    every = mine + theirs
    assert len(every) == 800 and len(set(every)) == 800
    assert sorted(every) == list(range(1, 801)) and last_id("prog", state) == 800
    assert last_id("map", state) == 0


def test_an_unusable_state_directory_gives_local_ids(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    first = allocate_id("map", StateDirectory(blocker / "state"))
    assert first >= LOCAL_BASE and allocate_id("map", StateDirectory(blocker / "x")) > first


def test_a_map_keeps_its_id_when_reopened_elsewhere(tmp_path):
    with create_map(type=MapType.HASH, key_size=4, value_size=4, max_entries=4, name="keep",
                    pin="/sys/fs/bpf/keep") as m:  # fmt: skip
        m[1] = 2
        map_id = m.id
    script = (
        "from pybpf.maps import open_pinned\n"
        "with open_pinned('/sys/fs/bpf/keep') as m: print(m.id)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert int(proc.stdout) == map_id
    with open_pinned("/sys/fs/bpf/keep") as again, open_by_id(map_id) as by_id:
        assert again.id == by_id.id == map_id and by_id[1] == b"\x02\x00\x00\x00"
    found = find_map(map_id)
    assert found.pins == ("/sys/fs/bpf/keep",) and found.definition.name == "keep"
    with create_map(type=MapType.ARRAY, key_size=4, value_size=4, max_entries=1) as other:
        assert other.id > map_id and {m.id for m in list_maps()} >= {map_id, other.id}
