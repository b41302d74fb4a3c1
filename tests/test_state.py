"""State directory: per-user default, PYBPF_STATE, Linux pin paths mapped inside, owner-only
permissions, no escapes, garbage collection of dead processes' files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.errors import InputError
from pybpf.state import BPFFS_ROOT, StateDirectory, state_directory

POSIX = sys.platform != "win32"


@pytest.fixture
def state(tmp_path) -> StateDirectory:
    return StateDirectory(tmp_path / "state")


def test_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("PYBPF_STATE", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_directory().root == tmp_path / "xdg" / "pybpf"
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "mine"))
    assert state_directory().root == tmp_path / "mine"


def test_linux_paths_map_inside(state):
    assert state.pin_path("/sys/fs/bpf/a/b") == state.pins / "a" / "b"
    assert state.pin_path("a/b") == state.pins / "a" / "b"
    assert state.pin_path("./x//y/") == state.pins / "x" / "y"
    assert state.pin_path(state.pins / "c") == state.pins / "c"  # a host path inside
    assert state.linux_path(state.pins / "a" / "b") == f"{BPFFS_ROOT}/a/b"
    assert state.linux_path("/sys/fs/bpf/q") == "/sys/fs/bpf/q"


@pytest.mark.parametrize(
    "bad",
    ["/sys/fs/bpf/../x", "../x", "a/../../x", "/etc/passwd", "/sys/fs/bpf", "", "a\0b", "/tmp/x"],
)
def test_escapes_are_refused(state, bad):
    with pytest.raises(InputError) as info:
        state.pin_path(bad)
    assert info.value.path is not None


@pytest.mark.skipif(not POSIX, reason="symbolic links and modes are POSIX")
def test_symlinks_inside_are_refused(state, tmp_path):
    state.ensure()
    outside = tmp_path / "outside"
    outside.mkdir()
    (state.pins / "link").symlink_to(outside)
    with pytest.raises(InputError):
        state.pin_path("/sys/fs/bpf/link/x")
    (state.pins / "file").symlink_to(outside / "f")
    with pytest.raises(InputError):
        state.pin_path("file")


@pytest.mark.skipif(not POSIX, reason="modes are POSIX")
def test_owner_only_permissions(state):
    state.root.mkdir(mode=0o755)
    os.chmod(state.root, 0o755)
    state.ensure()
    for path in (state.root, state.pins, state.objects):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    target = state.prepare_pin("/sys/fs/bpf/deep/er/pin")
    assert target.parent.is_dir()
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    path, fd = state.new_object("map")
    os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.skipif(not POSIX or os.getuid() != 0, reason="needs root to chown")
def test_a_directory_owned_by_another_user_is_refused(state):
    state.root.mkdir(mode=0o700)
    os.chown(state.root, 12345, 12345)
    with pytest.raises(InputError) as info:
        state.ensure()
    assert info.value.path == str(state.root)


def test_pins_listing_and_unpin(state):
    for name in ("b", "a/c"):
        target = state.prepare_pin(name)
        target.write_bytes(b"x")
    assert list(state.pinned()) == ["/sys/fs/bpf/a/c", "/sys/fs/bpf/b"]
    state.unpin("/sys/fs/bpf/b")
    assert list(state.pinned()) == ["/sys/fs/bpf/a/c"]
    with pytest.raises(FileNotFoundError):
        state.unpin("b")


def test_garbage_collection(state):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state.ensure()
    (state.objects / f"{dead.pid}-aaaa.map").write_bytes(b"x")  # dead, unpinned: removed
    pinned = state.objects / f"{dead.pid}-bbbb.map"
    pinned.write_bytes(b"x")
    os.link(pinned, state.prepare_pin("kept"))  # dead but pinned: kept
    mine = state.objects / f"{os.getpid()}-cccc.map"
    mine.write_bytes(b"x")  # alive: kept
    (state.objects / "junk").write_bytes(b"x")  # not ours: kept
    alive = {os.getpid()}
    assert state.collect_garbage(lambda pid: pid in alive) == 1
    names = sorted(p.name for p in state.objects.iterdir())
    assert names == sorted([pinned.name, mine.name, "junk"])
    assert Path(state.pin_path("kept")).exists()
