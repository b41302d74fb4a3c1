"""Native hash updates and deletes (:mod:`pybpf.maps.native`, lowered by
:mod:`pybpf.jit.mapcalls`): random lookups, updates and deletes with every flag on every
hash type give the same r0 and the same map buffer, byte for byte, in the JIT (native) as
in the interpreter on the Python path, LRU eviction and per-CPU copies included; the JIT
never enters Python for them; busy locks, corrupt indexes and closed maps take the Python
path; processes sharing a pinned map stay consistent."""

from __future__ import annotations

import errno
import os
import random
import threading

import pytest

from pybpf.errors import HelperError, MapError
from pybpf.isa import assemble
from pybpf.jit import JitProgram
from pybpf.maps import create_map, open_pinned
from pybpf.maps.buffer import FAMILY_OFFSET
from pybpf.maps.hash import HashMap
from pybpf.maps.native import native_map_ops
from pybpf.maptypes import MapFlag
from pybpf.maptypes import MapType as T
from pybpf.memory import atomics
from pybpf.runtime import default_helpers
from pybpf.runtime.maps import map_lddw_resolver
from pybpf.vm import Interpreter
from test_jit import needs_jit

pytestmark = [
    needs_jit,
    pytest.mark.skipif(native_map_ops() is None, reason="no native map operations"),
]
M64 = (1 << 64) - 1
HASHES = [T.HASH, T.PERCPU_HASH, T.LRU_HASH, T.LRU_PERCPU_HASH]
NCPUS = 3
FLAGS = [0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 1 << 32, M64]  # BPF_ANY/NOEXIST/EXIST and bad ones
MISS = 0xDEAD

# r1 = op (1 lookup, 2 update, 3 delete), r2 = key, r3 = value, r4 = update flags;
# r0: the value (MISS when missing) or the helper's result
OPS = f"""
*(u32 *)(r10 - 4) = r2
*(u64 *)(r10 - 16) = r3
r6 = r1
r1 = map[fd:1] ll
r2 = r10
r2 += -4
if r6 == 1 goto lookup
if r6 == 3 goto delete
r3 = r10
r3 += -16
call 2
exit
delete:
call 3
exit
lookup:
call 1
if r0 == 0 goto miss
r0 = *(u64 *)(r0 + 0)
exit
miss:
r0 = {MISS}
exit
"""
UPDATE_PC, DELETE_PC = 11, 13  # the calls' pcs (the lddw takes two slots)


@pytest.fixture(autouse=True)
def _state(monkeypatch, tmp_path):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def make_map(kind, max_entries=6, **kw):
    """ZERO_SEED: two maps given the same operations hold the same bytes."""
    return create_map(
        type=kind,
        key_size=4,
        value_size=8,
        max_entries=max_entries,
        ncpus=NCPUS,
        flags=MapFlag.ZERO_SEED | kw.pop("flags", 0),
        **kw,
    )


def python_only(m):
    """Make ``m``'s updates and deletes take the Python path (the reference)."""
    m._nwrite = False
    return m


def build(engine, m, source=OPS, helpers=None, **kw):
    common = {
        "helpers": helpers or default_helpers(),
        "lddw_resolver": map_lddw_resolver({1: m}),
        "entry_registers": (1, 2, 3, 4, 10),
    }
    if engine == "vm":
        return Interpreter(assemble(source), **common)
    return JitProgram(assemble(source), **common, **kw)


def contents(m) -> bytes:
    """Everything a hash map keeps past the common header (index, keys, values)."""
    return bytes(m._buf.view[FAMILY_OFFSET:])


def run(prog, args, cpu=0):
    try:
        return prog.run(args, cpu=cpu)
    except HelperError as exc:
        return ("HelperError", exc.pc)


def random_steps(rng, n, percpu):
    steps = []
    for _ in range(n):
        op = rng.choice((1, 2, 2, 2, 2, 3))
        key = rng.randrange(10)  # more keys than the map holds: full maps, evictions
        cpu = rng.choice((0, 1, 2, 2, 3)) if percpu else 0  # 3: outside the map's CPUs
        steps.append(((op, key, rng.getrandbits(64), rng.choice(FLAGS)), cpu))
    return steps


def test_the_jit_binds_hash_update_and_delete_to_native_code():
    with make_map(T.HASH) as m:
        prog = build("jit", m)
        (site,) = prog.map_sites.values()
        ops = native_map_ops()
        rows = prog._site_table[site.index : site.index + site.rows]
        assert site.kind == "hash" and site.rows == 5
        assert list(rows[2:]) == [
            ops.hash_lookup_address,
            ops.hash_update_address,
            ops.hash_delete_address,
        ]
        prog.close()


@pytest.mark.parametrize("kind", HASHES)
@pytest.mark.parametrize("debug", [False, True])
def test_random_operations_match_the_interpreter_byte_for_byte(kind, debug):
    rng = random.Random(f"{kind}-{debug}")
    steps = random_steps(rng, 300, kind in (T.PERCPU_HASH, T.LRU_PERCPU_HASH))
    with python_only(make_map(kind)) as ref, make_map(kind) as m:
        vm, jit = build("vm", ref), build("jit", m, debug_checks=debug)
        assert jit.map_sites and m._nwrite
        results, sizes = set(), set()
        for i, (args, cpu) in enumerate(steps):
            expected = run(vm, args, cpu)
            assert run(jit, args, cpu) == expected, (i, args, cpu)
            assert contents(m) == contents(ref), (i, args, cpu)
            results.add(expected)
            sizes.add(len(m))
        assert ref.max_entries in sizes  # it filled up
        jit.close()
    codes = {-e & M64 for e in (errno.EINVAL, errno.EEXIST, errno.ENOENT)}
    assert codes | {0, MISS} <= results  # every outcome happened...
    if kind in (T.HASH, T.PERCPU_HASH):
        assert -errno.E2BIG & M64 in results  # ... a full map refused
    if kind in (T.PERCPU_HASH, T.LRU_PERCPU_HASH):
        assert ("HelperError", UPDATE_PC) in results  # ... a CPU outside the map


def test_lru_eviction_follows_the_clock_sweep():
    """Full LRU maps evict the first unmarked slot from the hand, clearing the marks they
    pass; with every slot marked the hand's own slot goes (and the marks before it stay)."""
    for marked in ([0, 1], [2, 3], [0, 1, 2, 3]):
        maps = [python_only(make_map(T.LRU_HASH, 4)), make_map(T.LRU_HASH, 4)]
        for engine, m in zip(("vm", "jit"), maps, strict=True):
            prog = build(engine, m)
            for key in range(4):
                assert prog.run((2, key, key, 0)) == 0
            m._fields[2] = 2  # the hand
            for key in marked:
                assert prog.run((1, key, 0, 0)) == key  # program lookups mark
            assert prog.run((2, 9, 9, 1)) == 0  # full: evicts
            assert prog.run((2, 10, 10, 1)) == 0
            prog.close()
        ref, m = maps
        assert contents(m) == contents(ref)
        survivors = sorted(int.from_bytes(k, "little") for k in m.keys_raw())
        assert survivors == ([2, 3, 9, 10] if marked == [2, 3] else [0, 1, 9, 10])
        if len(marked) == 4:  # the sweep cleared the marks from the hand on, not before it
            assert list(m._ref) == [1, 1, 0, 0]
        for x in maps:
            x.close()


def test_a_new_per_cpu_element_zeroes_the_other_cpus_copies():
    def copies(m):
        value = m.lookup_raw((7).to_bytes(4, "little"))
        return [int.from_bytes(value[8 * c : 8 * c + 8], "little") for c in range(NCPUS)]

    with make_map(T.PERCPU_HASH) as m:
        m.update_raw((7).to_bytes(4, "little"), b"\xff" * m.user_value_size)
        m.delete_raw((7).to_bytes(4, "little"))  # the slot keeps the old bytes
        prog = build("jit", m)
        assert prog.run((2, 7, 5, 0), cpu=1) == 0
        assert copies(m) == [0, 5, 0]
        assert prog.run((2, 7, 6, 2), cpu=2) == 0  # BPF_EXIST: only CPU 2's copy
        assert copies(m) == [0, 5, 6]
        prog.close()


@pytest.fixture
def python_calls(monkeypatch):
    """Counts what enters Python: helper dispatches (the JIT's callback) and the hash
    map's Python-side updates and deletes."""
    from pybpf.jit.calls import HelperDispatcher

    calls: list[str] = []
    dispatch = HelperDispatcher._dispatch

    def spy_dispatch(self, ctx, helper_id, *args):
        calls.append(f"helper {helper_id}")
        return dispatch(self, ctx, helper_id, *args)

    monkeypatch.setattr(HelperDispatcher, "_dispatch", spy_dispatch)
    for name in ("elem_update", "elem_delete", "_upsert", "_unlink"):
        real = getattr(HashMap, name)

        def spy(self, *args, _real=real, _name=name):
            calls.append(_name)
            return _real(self, *args)

        monkeypatch.setattr(HashMap, name, spy)
    return calls


@pytest.mark.parametrize("kind", HASHES)
def test_jit_updates_and_deletes_never_enter_python(kind, python_calls):
    lru = kind in (T.LRU_HASH, T.LRU_PERCPU_HASH)
    with make_map(kind, 4) as m:
        prog = build("jit", m)  # (after the spies: the dispatcher binds at creation)

        def call(*args):
            return prog.run(args, cpu=1)

        results = [call(2, k, k, 0) for k in range(6)]  # full at 4: refused or evicting
        results += [call(2, 3, 1, 1), call(2, 77, 1, 2), call(2, 3, 1, 9)]
        results += [call(3, 3, 0, 0), call(3, 3, 0, 0), call(1, 2, 0, 0)]
        assert python_calls == []
        full = 0 if lru else -errno.E2BIG & M64
        assert results == [0, 0, 0, 0, full, full] + [
            -errno.EEXIST & M64,
            -errno.ENOENT & M64,
            -errno.EINVAL & M64,
            0,
            -errno.ENOENT & M64,
            2,
        ]
        keys = sorted(int.from_bytes(k, "little") for k in m.keys_raw())
        assert keys == ([2, 4, 5] if lru else [0, 1, 2])
        m.close()  # the spies are real: a closed map's calls go through the helper
        with pytest.raises(HelperError):
            call(2, 1, 1, 0)
        assert python_calls == ["helper 2"]
        prog.close()


def test_a_busy_lock_takes_the_python_path(python_calls):
    with make_map(T.HASH) as m:
        m.set_codecs("uint", "uint")
        m[3] = 1
        prog = build("jit", m)
        for args, expected in (((2, 4, 40, 1), 0), ((3, 3, 0, 0), 0)):
            m.lock.acquire()
            timer = threading.Timer(0.05, m.lock.release)
            timer.start()
            assert prog.run(args) == expected  # waited for the lock through the helper
            timer.join()
        assert python_calls.count("helper 2") == 1 and python_calls.count("helper 3") == 1
        assert dict(m.items()) == {4: 40}
        prog.close()


def _bucket(m, key: int) -> int:
    import zlib

    return zlib.crc32(key.to_bytes(4, "little"), m._seed) & m._bmask


def _past_the_end(m, key):
    """The key's bucket names a slot past max_entries."""
    m._buckets[_bucket(m, key)] = m.max_entries + 3


def _cycle(m, key):
    """The key's bucket starts a chain that loops on a slot whose hash never matches."""
    s = m._state.tobytes().index(1)
    m._buckets[_bucket(m, key)] = s + 1
    m._next[s] = s + 1
    m._hashes[s] ^= 1


def _free_list(m, key):
    """The free list names a slot in use."""
    m._fields[1] = m._state.tobytes().index(1) + 1


@pytest.mark.parametrize("corrupt", [_past_the_end, _cycle, _free_list])
@pytest.mark.parametrize("op", [(2, 0), (2, 1), (3, 0)])  # update BPF_ANY/NOEXIST, delete
def test_a_corrupt_index_is_rebuilt_by_the_python_path(corrupt, op, python_calls):
    helper, flags = op
    key = 2 if helper == 3 else 6  # delete one there, insert one not there
    maps = [python_only(make_map(T.HASH, 8)), make_map(T.HASH, 8)]
    out = []
    for engine, m in zip(("vm", "jit"), maps, strict=True):
        prog = build(engine, m)
        for k in range(5):
            prog.run((2, k, k, 0))
        corrupt(m, key)
        python_calls.clear()
        out.append(prog.run((helper, key, 60, flags)))
        if engine == "jit" and not (corrupt is _free_list and helper == 3):
            # the native code handed over (a delete never reads the free list)
            assert python_calls[:2] == [f"helper {helper}", HELPER_METHOD[helper]]
            assert ("_upsert" if helper == 2 else "_unlink") in python_calls
        prog.close()
    ref, m = maps
    assert out[0] == out[1] == 0
    assert contents(m) == contents(ref)
    assert len(m) == (4 if helper == 3 else 6)
    assert sorted(m.keys_raw()) == sorted(ref.keys_raw())
    ref.close()
    m.close()


HELPER_METHOD = {2: "elem_update", 3: "elem_delete"}


def test_closed_maps_fail_as_in_the_interpreter():
    errors = {}
    for engine in ("vm", "jit"):
        m = make_map(T.LRU_HASH)
        prog = build(engine, m)
        assert prog.run((2, 1, 1, 0)) == 0
        m.close()
        errors[engine] = [run(prog, (2, 1, 1, 0)), run(prog, (3, 1, 0, 0))]
        prog.close()
    assert errors["jit"] == errors["vm"] == [("HelperError", UPDATE_PC), ("HelperError", DELETE_PC)]


def test_the_python_backend_keeps_the_python_path():
    previous = atomics.backend()
    try:
        atomics.set_backend("python")
        with make_map(T.HASH) as m:
            assert m._native_update(b"\1\0\0\0", bytes(8), 0, 0) is None
            assert m._native_delete(b"\1\0\0\0") is None
            m.update_raw(b"\1\0\0\0", bytes(8))
            m.delete_raw(b"\1\0\0\0")
            assert len(m) == 0
    finally:
        atomics.set_backend(previous)


@pytest.mark.parametrize("kind", HASHES)
def test_user_space_updates_and_deletes_match_the_python_path(kind):
    """The maps layer uses the native operations too (whole per-CPU values from user space,
    program-side updates for one CPU): same results, same bytes."""
    rng = random.Random(str(kind))
    with python_only(make_map(kind, 5)) as ref, make_map(kind, 5) as m:
        for i in range(600):
            key = rng.randrange(8).to_bytes(4, "little")
            op = rng.randrange(5)
            value = rng.randbytes(m.user_value_size)
            flags, elem_flags, cpu = rng.choice((0, 1, 2)), rng.choice(FLAGS), rng.randrange(3)
            out = []
            for x in (ref, m):
                try:
                    if op == 0:
                        out.append(x.update_raw(key, value, flags))
                    elif op == 1:
                        out.append(x.delete_raw(key))
                    elif op == 2:
                        out.append(x.elem_update(key, value[:8], elem_flags, cpu))
                    elif op == 3:
                        out.append(x.elem_delete(key))
                    else:
                        address = x.elem_lookup(key)
                        out.append(address and address - x._values_address)
                except MapError as exc:
                    out.append((type(exc), exc.errno))
            assert out[0] == out[1], i
            assert contents(m) == contents(ref), i
        assert m._nwrite and not ref._nwrite


# ---- processes sharing a pinned map --------------------------------------------------------
ROUNDS = 300


def _worker(path: str, base: int) -> int:
    """Insert and delete own keys (expected end state known) and race on shared ones."""
    with open_pinned(path) as m:
        prog = build("jit", m)
        assert prog.map_sites
        for i in range(ROUNDS):
            k = base + i % 16
            if (i // 16) % 2 == 0:
                assert prog.run((2, k, i, 0)) == 0
            else:
                assert prog.run((3, k, 0, 0)) == 0
            shared = 1000 + i % 4
            r = prog.run((2, shared, base, 1)) if i % 3 else prog.run((3, shared, 0, 0))
            assert r in (0, -errno.EEXIST & M64, -errno.ENOENT & M64)
        prog.close()
    return 0


def _expected(base: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for i in range(ROUNDS):
        k = base + i % 16
        if (i // 16) % 2 == 0:
            out[k] = i
        else:
            out.pop(k, None)
    return out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_processes_sharing_a_pinned_map_stay_consistent():
    with make_map(T.HASH, 64, pin="shared/native") as m:
        m.set_codecs("uint", "uint")
        children = []
        for base in (100, 200):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = _worker("shared/native", base)
                finally:
                    os._exit(code)
            children.append(pid)
        _worker("shared/native", 300)
        for pid in children:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        data = dict(m.items())
        for base in (100, 200, 300):
            assert {k: v for k, v in data.items() if base <= k < base + 16} == _expected(base)
        assert set(data) <= set(range(100, 116)) | set(range(200, 216)) | set(range(300, 316)) | {
            1000,
            1001,
            1002,
            1003,
        }
        assert len(m) == len(data) == sum(m._state)  # count, chains and state agree
        free, i = [], m._fields[1]
        while i and len(free) <= m.max_entries:
            free.append(i - 1)
            i = m._next[i - 1]
        assert sorted(free) == [s for s in range(m.max_entries) if not m._state[s]]
        with m.lock:
            m._rebuild()  # nothing to fix
        assert dict(m.items()) == data and len(m) == len(data)


def test_other_buffer_types_take_the_python_path():
    with make_map(T.HASH) as m:
        assert m._native_update(bytearray(4), bytes(8), 0, 0) is None
        assert m._native_delete(memoryview(bytes(4))) is None
        assert m._native_update(bytes(4), bytes(7), 0, 0) is None  # a short value
        assert m.elem_update(bytearray(4), bytearray(b"\7" * 8), 0) == 0
        assert m.lookup_raw(bytes(4)) == b"\7" * 8
        assert m.elem_delete(memoryview(bytes(4))) == 0 and len(m) == 0
