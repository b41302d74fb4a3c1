"""State directory security: pins and their directories owner-only, whoever makes them (maps,
objects pinning by name, nested pin paths); another user can neither open nor replace them;
a state directory, pin directory or pin owned by someone else is refused; no path, symbolic
link or ``pin_maps_dir`` leads out of the state directory.

``tests/test_state.py`` covers the path rules of :class:`StateDirectory` itself; this file
goes through the maps and objects APIs, and plays the other user with a forked child that
drops to ``nobody`` (root only; skipped otherwise).
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybpf.errors import InputError, MapError, PybpfError
from pybpf.isa import assemble
from pybpf.maps import MapDefinition, create_map, open_or_create, open_pinned
from pybpf.maptypes import MapType
from pybpf.objects import Object
from pybpf.spec import MapSpec, ObjectSpec, ProgramSpec, Reference, RefKind
from pybpf.spec.map import Pinning
from pybpf.state import StateDirectory

POSIX = sys.platform != "win32"
ROOT = POSIX and os.getuid() == 0
NOBODY = 65534
as_root = pytest.mark.skipif(not ROOT, reason="needs root to play another user")
posix = pytest.mark.skipif(not POSIX, reason="owners and modes are POSIX")
FORK = multiprocessing.get_context("fork") if POSIX else None
HASH = MapDefinition(MapType.HASH, 4, 8, 8, name="h")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory every user may enter and write (pytest's own is root-only), as /tmp."""
    top = Path(tempfile.mkdtemp(prefix="pybpf-state-security-"))
    os.chmod(top, 0o1777)
    yield top
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def state(shared_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> StateDirectory:
    monkeypatch.setenv("PYBPF_STATE", str(shared_tmp / "state"))
    return StateDirectory()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _object(name: str = "pinner") -> ObjectSpec:
    insns = tuple(assemble("r1 = 0 ll\nr0 = 0\nexit"))
    prog = ProgramSpec("p", "raw", insns, references=(Reference(0, RefKind.MAP, "pinned"),),
                       license="GPL")  # fmt: skip
    pinned = MapSpec("pinned", MapType.ARRAY, 4, 8, 4, pinning=Pinning.BY_NAME)
    return ObjectSpec(name=name, programs={"p": prog}, maps={"pinned": pinned}, license="GPL")


# ---- owner-only ------------------------------------------------------------------------------
@posix
def test_every_pin_and_directory_is_owner_only(state):
    os.umask(0o000)  # even a permissive umask
    try:
        with create_map(HASH, pin="/sys/fs/bpf/a/b/c") as m:
            m.pin("second")
            with Object(_object()).load() as obj:
                assert obj.maps["pinned"] is not None
                pins = list(state.pinned())
                assert pins == ["/sys/fs/bpf/a/b/c", "/sys/fs/bpf/pinned", "/sys/fs/bpf/second"]
                for pin in pins:
                    assert mode(state.pin_path(pin)) == 0o600
                for d in (state.root, state.pins, state.objects, state.pins / "a",
                          state.pins / "a" / "b"):  # fmt: skip
                    assert mode(d) == 0o700, d
                for f in state.objects.iterdir():
                    assert mode(f) == 0o600
    finally:
        os.umask(0o022)


@posix
def test_a_pin_others_could_write_is_made_private_again(state):
    with create_map(HASH, pin="loose") as m:
        os.chmod(state.pin_path("loose"), 0o666)  # someone loosened it
        with open_pinned("loose") as again:
            assert again.definition == m.definition
        assert mode(state.pin_path("loose")) == 0o600


# ---- another user ---------------------------------------------------------------------------
def _as_nobody(task, *args) -> None:
    """Run ``task(*args)`` in a forked child as uid/gid nobody; fail the test if it fails."""
    queue = FORK.Queue()

    def child() -> None:
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            queue.put(task(*args))
        except BaseException as exc:  # reported to the parent as text
            queue.put(f"child failed: {type(exc).__name__}: {exc}")

    proc = FORK.Process(target=child)
    proc.start()
    result = queue.get(timeout=60)
    proc.join(30)
    assert not (isinstance(result, str) and result.startswith("child failed")), result
    return result


def _try_to_open_and_replace(state_root: str, pin: str) -> dict:
    """What another user gets from the pin at ``pin`` in ``state_root``."""
    os.environ["PYBPF_STATE"] = state_root
    out = {}
    try:
        open_pinned(pin).close()
        out["open"] = "opened"
    except PybpfError as err:
        out["open"] = type(err).__name__
    target = StateDirectory(state_root).pins / pin
    for name, attempt in (
        ("unlink", lambda: os.unlink(target)),
        ("replace", lambda: os.replace(os.devnull, target)),
        ("read", lambda: target.read_bytes()),
    ):
        try:
            attempt()
            out[name] = "done"
        except PermissionError:
            out[name] = "EACCES"
    return out


@as_root
def test_another_user_can_neither_open_nor_replace_a_pin(state):
    with create_map(HASH, pin="mine") as m:
        m.update_raw(bytes(4), bytes(8))
        got = _as_nobody(_try_to_open_and_replace, str(state.root), "mine")
        assert got == {"open": got["open"], "unlink": "EACCES", "replace": "EACCES",
                       "read": "EACCES"}  # fmt: skip
        assert got["open"] in ("InputError", "MapError")  # a pybpf error, not a traceback
        with open_pinned("mine") as again:  # untouched
            assert again.lookup_raw(bytes(4)) == bytes(8)


def _make_state_and_pin(root: str) -> str:
    os.environ["PYBPF_STATE"] = root
    m = create_map(HASH, pin="planted")
    m.update_raw(bytes(4), b"\x01" * 8)
    m.close()  # the pin keeps it
    return "ok"


@as_root
def test_a_state_directory_owned_by_another_user_is_refused(shared_tmp, monkeypatch):
    theirs = shared_tmp / "theirs"
    assert _as_nobody(_make_state_and_pin, str(theirs)) == "ok"
    assert theirs.stat().st_uid == NOBODY
    monkeypatch.setenv("PYBPF_STATE", str(theirs))
    with pytest.raises(InputError) as info:
        open_pinned("planted")
    assert info.value.path == str(theirs)
    with pytest.raises(InputError):
        create_map(HASH, pin="mine")
    with pytest.raises(InputError):
        open_or_create(HASH, "planted")
    with pytest.raises(InputError):
        Object(_object()).load()


@as_root
def test_a_pin_owned_by_another_user_is_refused(state):
    with create_map(HASH, pin="planted") as m:
        os.chown(state.pin_path("planted"), NOBODY, NOBODY)  # also the backing file: one inode
        with pytest.raises(MapError) as info:
            open_pinned("planted")
        assert info.value.errno == errno.EPERM
        with pytest.raises(MapError):
            open_or_create(HASH, "planted")
        os.chown(state.pin_path("planted"), 0, 0)
        open_pinned("planted").close()
        assert m.closed is False


@as_root
def test_a_pin_directory_owned_by_another_user_is_refused(state):
    state.prepare_pin("theirs/x")
    os.chown(state.pins / "theirs", NOBODY, NOBODY)
    with pytest.raises(InputError) as info:
        create_map(HASH, pin="theirs/y")
    assert info.value.path is not None


# ---- no way out --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad", ["/sys/fs/bpf/../../etc/x", "../x", "a/../../x", "/etc/passwd", "/tmp/x", "a\0b"]
)
def test_pins_cannot_escape_through_any_api(state, bad):
    with create_map(HASH) as m:
        with pytest.raises(InputError):
            m.pin(bad)
    with pytest.raises(InputError):
        create_map(HASH, pin=bad)
    with pytest.raises(InputError):
        open_pinned(bad)
    with pytest.raises(InputError):
        open_or_create(HASH, bad)
    assert not Path("/etc/x").exists() and not (state.root.parent / "x").exists()


@pytest.mark.parametrize("pin_root", ["/tmp/elsewhere", "/sys/fs/bpf/../../tmp", "/etc"])
def test_pin_maps_dir_cannot_leave_the_state_directory(state, pin_root):
    with pytest.raises(InputError):
        Object(_object()).load(pin_maps_dir=pin_root)
    assert not Path(pin_root, "pinned").exists()


@posix
@pytest.mark.parametrize("which", ["bpffs", "objects"])
def test_a_state_subdirectory_replaced_by_a_symlink_is_refused(state, shared_tmp, which):
    state.ensure()
    elsewhere = shared_tmp / "elsewhere"
    elsewhere.mkdir()
    target = state.root / which
    target.rmdir()
    target.symlink_to(elsewhere, target_is_directory=True)
    fresh = StateDirectory(state.root)
    with pytest.raises(InputError):
        create_map(HASH, pin="x", state=fresh)
    with pytest.raises(InputError):
        open_pinned("x", state=StateDirectory(state.root))
    assert list(elsewhere.iterdir()) == []


@posix
def test_a_pin_swapped_for_a_symlink_is_not_followed(state, shared_tmp):
    outside = shared_tmp / "outside.map"
    with create_map(HASH, pin="real") as m:
        os.link(state.pin_path("real"), outside)  # a map file outside the state directory
        m.unpin("real")
        state.pin_path("real").symlink_to(outside)
        with pytest.raises(InputError):
            open_pinned("real")
