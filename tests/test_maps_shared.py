"""Shared maps: pinning, other processes seeing the same data live, concurrent increments
from programs and user space with no lost update, and recovery after a process is killed
in the middle of an update."""

from __future__ import annotations

import errno
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from pybpf.errors import InputError, MapError, NotSupportedError
from pybpf.isa import assemble
from pybpf.maps import BPF_NOEXIST, MapDefinition, create_map, open_or_create, open_pinned
from pybpf.maptypes import MapFlag
from pybpf.maptypes import MapType as T
from pybpf.memory import atomics
from pybpf.memory.native import native_atomics
from pybpf.runtime import default_helpers
from pybpf.runtime.maps import map_lddw_resolver, register_maps
from pybpf.state import StateDirectory
from pybpf.vm import Interpreter

NATIVE = native_atomics() is not None
needs_native = pytest.mark.skipif(not NATIVE, reason="cross-process atomics need llvmlite")
needs_fork = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork() here"
)
FORK = (
    multiprocessing.get_context("fork")
    if "fork" in multiprocessing.get_all_start_methods()
    else None
)
HASH = MapDefinition(T.HASH, 4, 8, 64, name="shared")


@pytest.fixture(autouse=True)
def _state(monkeypatch, tmp_path):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def k4(i: int) -> bytes:
    return i.to_bytes(4, "little")


# ---- pinning --------------------------------------------------------------------------------
def test_pin_and_open_share_data_live():
    with create_map(HASH) as m:
        path = m.pin("/sys/fs/bpf/app/counts")
        assert path == StateDirectory().pins / "app" / "counts"
        with open_pinned("/sys/fs/bpf/app/counts", HASH) as other:
            assert other.handle != m.handle  # another mapping of the same buffer
            m.set_codecs("uint", "uint")[1] = 10
            other.set_codecs("uint", "uint")
            assert other[1] == 10
            other[2] = 20
            assert m[2] == 20 and len(m) == 2
            assert other.definition == m.definition
        with pytest.raises(MapError) as info:
            m.pin("app/counts")
        assert info.value.errno == errno.EEXIST
        m.pin("second")  # several pins, one map
        m.unpin("/sys/fs/bpf/app/counts")
        with pytest.raises(MapError) as info:
            open_pinned("/sys/fs/bpf/app/counts")
        assert info.value.errno == errno.ENOENT
        assert open_pinned("second").set_codecs("uint", "uint")[2] == 20
    # the pin keeps the data after every map object is closed
    with open_pinned("second") as again:
        assert again.set_codecs("uint", "uint")[1] == 10


def test_open_with_a_different_definition_fails_clearly():
    with create_map(HASH, pin="/sys/fs/bpf/def") as m:
        for change, field in (
            (dict(max_entries=65), "max_entries"),
            (dict(value_size=4), "value_size"),
            (dict(type=T.ARRAY, key_size=4), "type"),
            (dict(flags=MapFlag.NO_PREALLOC), "flags"),
        ):
            d = MapDefinition(**{**HASH.__dict__, **change})
            with pytest.raises(MapError) as info:
                open_pinned("/sys/fs/bpf/def", d)
            assert info.value.errno == errno.EINVAL
            assert info.value.field == field and info.value.path == "/sys/fs/bpf/def"
        same_but_renamed = MapDefinition(T.HASH, 4, 8, 64, name="other")
        open_pinned("/sys/fs/bpf/def", same_but_renamed).close()
        assert open_or_create(HASH, "/sys/fs/bpf/def").handle != m.handle
    with open_or_create(HASH, "/sys/fs/bpf/fresh") as created:
        assert created.path.exists() or created.path is not None
        with open_or_create(HASH, "/sys/fs/bpf/fresh") as reused:
            created.set_codecs("uint", "uint")[3] = 3
            assert reused.lookup_raw(k4(3)) is not None


def test_pin_errors():
    with create_map(HASH, backing="anonymous") as anon:
        with pytest.raises(NotSupportedError):
            anon.pin("x")
    state = StateDirectory()
    state.prepare_pin("junk").write_bytes(b"not a map" * 100)
    with pytest.raises(InputError):
        open_pinned("junk")
    with pytest.raises(InputError):
        open_pinned("/sys/fs/bpf/../escape")


def test_percpu_pin_keeps_its_cpu_count():
    d = MapDefinition(T.PERCPU_ARRAY, 4, 8, 2, ncpus=3)
    with create_map(d, pin="pc") as m, open_pinned("pc") as other:
        assert other.ncpus == 3
        m.update_raw(k4(1), bytes(range(24)))
        assert other.lookup_raw(k4(1)) == bytes(range(24))


# ---- other processes -----------------------------------------------------------------------------
CHILD = """
import sys
from pybpf.maps import open_pinned
m = open_pinned(sys.argv[1]).set_codecs("uint", "uint")
m[100] = m[1] + 1
print(len(m))
"""


def test_another_process_sees_and_writes_live():
    with create_map(HASH, pin="live") as m:
        m.set_codecs("uint", "uint")[1] = 41
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, "/sys/fs/bpf/live"],
            capture_output=True,
            text=True,
            env=os.environ,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "2"
        assert m[100] == 42


def test_a_pin_outlives_its_creator():
    script = (
        "from pybpf.maps import create_map, MapDefinition\n"
        "from pybpf.maptypes import MapType as T\n"
        "m = create_map(MapDefinition(T.ARRAY, 4, 8, 4), pin='gone/creator')\n"
        "m.set_codecs('uint', 'uint')[2] = 7\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], env=os.environ, timeout=60)
    assert proc.returncode == 0
    with open_pinned("/sys/fs/bpf/gone/creator") as m:
        assert m.set_codecs("uint", "uint")[2] == 7
    leftovers = list(StateDirectory().objects.iterdir())
    assert leftovers == []  # the creator removed its private file; the pin holds the data


INCREMENT = """
*(u32 *)(r10 - 4) = r1
r1 = map[fd:1] ll
r2 = r10
r2 += -4
call 1
if r0 != 0 goto add
*(u64 *)(r10 - 16) = 0
r1 = map[fd:1] ll
r2 = r10
r2 += -4
r3 = r10
r3 += -16
r4 = 1
call 2
r1 = map[fd:1] ll
r2 = r10
r2 += -4
call 1
if r0 == 0 goto fail
add:
r1 = 1
lock *(u64 *)(r0 + 0) += r1
r0 = 0
exit
fail:
r0 = 1
exit
"""

KEYS = 8
ROUNDS = 600


def _incrementer(seed: int, barrier) -> None:
    atomics.set_backend("native")
    m = open_pinned("/sys/fs/bpf/race", HASH)
    prog = Interpreter(
        assemble(INCREMENT),
        helpers=register_maps(default_helpers()),
        lddw_resolver=map_lddw_resolver({1: m}),
    )
    rng = random.Random(seed)
    barrier.wait(30)  # everyone starts together
    for i in range(ROUNDS):
        for key in rng.sample(range(KEYS), KEYS):
            if i % 2:
                assert prog.run((key,)) == 0
            else:  # user space: create if missing, then an atomic add in place
                try:
                    m.update(key, 0, flags=BPF_NOEXIST)
                except MapError as err:
                    assert err.errno == errno.EEXIST
                m.atomic_add(key, 1)
    m.close()


@needs_native
@needs_fork
def test_processes_increment_a_pinned_map_without_losing_updates():
    with create_map(HASH, pin="race") as m:  # empty: keys are created concurrently too
        barrier = FORK.Barrier(4)
        workers = [FORK.Process(target=_incrementer, args=(seed, barrier)) for seed in range(3)]
        for w in workers:
            w.start()
        _incrementer(99, barrier)
        for w in workers:
            w.join(120)
            assert w.exitcode == 0
        m.set_codecs("uint", "uint")
        assert dict(m.items()) == {key: 4 * ROUNDS for key in range(KEYS)}


# ---- killed in the middle ------------------------------------------------------------------------
def value_of(key: bytes) -> bytes:
    return (int.from_bytes(key, "little") * 3 + 1).to_bytes(8, "little")


def check_consistent(m, capacity: int) -> None:
    keys = m.keys_raw()
    assert len(set(keys)) == len(keys) == len(m)
    for key in keys:
        assert m.lookup_raw(key) == value_of(key)
    # the free list is whole: exactly capacity - len new keys fit, then E2BIG
    new = [k4(10_000 + i) for i in range(capacity - len(keys))]
    for key in new:
        m.update_raw(key, value_of(key), BPF_NOEXIST)
    with pytest.raises(MapError) as info:
        m.update_raw(k4(99_999), value_of(k4(99_999)))
    assert info.value.errno == errno.E2BIG
    for key in new:
        m.delete_raw(key)
    assert sorted(m.keys_raw()) == sorted(keys)


def _die_at(step: str, action: str, key: int) -> None:
    m = open_pinned("/sys/fs/bpf/crash")

    def fault(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    m._fault = fault
    if action == "insert":
        m.update_raw(k4(key), value_of(k4(key)))
    else:
        m.delete_raw(k4(key))
    os._exit(3)  # not reached: the fault kills first


@needs_fork
@pytest.mark.parametrize(
    "step,action",
    [
        ("allocated", "insert"),
        ("written", "insert"),
        ("published", "insert"),
        ("unlinked", "delete"),
    ],
)
def test_a_process_killed_mid_update_leaves_a_consistent_map(step, action):
    d = MapDefinition(T.HASH, 4, 8, 16)
    with create_map(d, pin="crash") as m:
        for i in range(10):
            m.update_raw(k4(i), value_of(k4(i)))
        child = FORK.Process(target=_die_at, args=(step, action, 50 if action == "insert" else 4))
        child.start()
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
        assert m.lock.holder() >> 32 == child.pid  # it died holding the lock
        with open_pinned("crash", d) as reopened:
            check_consistent(reopened, 16)  # its first operation recovers the lock
            assert reopened.lock.recovered == 1
        keys = {int.from_bytes(k, "little") for k in m.keys_raw()}
        assert set(range(10)) - {4} <= keys <= set(range(10)) | {50}
        check_consistent(m, 16)


def _churn(seed: int) -> None:
    m = open_pinned("/sys/fs/bpf/churn")
    rng = random.Random(seed)
    while True:
        key = k4(rng.randrange(40))
        try:
            if rng.random() < 0.55:
                m.update_raw(key, value_of(key))
            else:
                m.delete_raw(key)
        except MapError:
            pass


@needs_fork
def test_random_kills_leave_a_consistent_map():
    d = MapDefinition(T.HASH, 4, 8, 24)
    with create_map(d, pin="churn") as m:
        rng = random.Random(5)
        for round_ in range(4):
            child = FORK.Process(target=_churn, args=(round_,))
            child.start()
            time.sleep(0.05 + rng.random() * 0.1)
            os.kill(child.pid, signal.SIGKILL)
            child.join(30)
            with open_pinned("churn", d) as reopened:
                check_consistent(reopened, 24)
        check_consistent(m, 24)  # the creator's own mapping agrees


@needs_fork
def test_lpm_trie_recovers_its_prefix_counts():
    d = MapDefinition(T.LPM_TRIE, 8, 8, 8, flags=MapFlag.NO_PREALLOC)
    with create_map(d, pin="crash") as m:
        m.update_raw(k4(8) + bytes([10, 0, 0, 0]), bytes(8))
        child = FORK.Process(target=_die_lpm)
        child.start()
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
        with open_pinned("crash", d) as reopened:
            # killed after publishing: the insert happened, and the /16 prefix is found
            assert reopened.lookup_raw(k4(32) + bytes([10, 1, 2, 3])) == b"\1" * 8
            assert reopened.lookup_raw(k4(32) + bytes([10, 2, 2, 3])) == bytes(8)
            assert len(reopened) == 2


def _die_lpm() -> None:
    m = open_pinned("/sys/fs/bpf/crash")
    m._fault = lambda name: os.kill(os.getpid(), signal.SIGKILL) if name == "published" else None
    m.update_raw(k4(16) + bytes([10, 1, 0, 0]), b"\1" * 8)


def test_pinned_maps_work_without_llvmlite(tmp_path):
    script = (
        "import sys; sys.modules['llvmlite'] = None\n"
        "from pybpf.maps import create_map, open_pinned, MapDefinition\n"
        "from pybpf.maptypes import MapType as T\n"
        "from pybpf.memory import atomics\n"
        "d = MapDefinition(T.HASH, 4, 8, 8)\n"
        "m = create_map(d, pin='nollvm').set_codecs('uint', 'uint')\n"
        "m[1] = 5; m.atomic_add(1, 2)\n"
        "o = open_pinned('nollvm', d).set_codecs('uint', 'uint')\n"
        "assert o[1] == 7 and atomics.backend() == 'python'\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=os.environ
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
