"""JIT native map calls: lookups, updates and deletes on array and hash maps, against the
interpreter (same r0 sequence, same map contents), without entering Python on the fast path."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

from pybpf.errors import HelperError
from pybpf.isa import assemble
from pybpf.jit import JitProgram
from pybpf.jit.cache import CodeCache
from pybpf.maps import create_map
from pybpf.maptypes import MapFlag
from pybpf.maptypes import MapType as T
from pybpf.memory import AddressSpace, Region
from pybpf.runtime import default_helpers
from pybpf.runtime.maps import map_lddw_resolver
from pybpf.vm import Interpreter
from test_jit import needs_jit

pytestmark = needs_jit
M64 = (1 << 64) - 1
PERCPU = (T.PERCPU_ARRAY, T.PERCPU_HASH, T.LRU_PERCPU_HASH)
KINDS = [T.ARRAY, T.PERCPU_ARRAY, T.HASH, T.LRU_HASH, T.PERCPU_HASH, T.LRU_PERCPU_HASH]


@pytest.fixture(autouse=True)
def _state(monkeypatch, tmp_path):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


# r1 = key, r2 = delta, r3 = update flags: look the key up and add delta to its value
# (returning the new value), or insert delta with the flags (returning the update's r0).
COUNT = """
*(u32 *)(r10 - 4) = r1
r6 = r2
r7 = r3
r1 = map[fd:1] ll
r2 = r10
r2 += -4
call 1
if r0 == 0 goto missing
lock *(u64 *)(r0 + 0) += r6
r0 = *(u64 *)(r0 + 0)
exit
missing:
*(u64 *)(r10 - 16) = r6
r1 = map[fd:1] ll
r2 = r10
r2 += -4
r3 = r10
r3 += -16
r4 = r7
call 2
r0 |= 0x1000000
exit
"""
# r1 = key, r2 = value, r3 = flags: update, then delete when r4 is set
UPDATE = """
*(u32 *)(r10 - 4) = r1
*(u64 *)(r10 - 16) = r2
r6 = r4
r4 = r3
r1 = map[fd:1] ll
r8 = r1
r2 = r10
r2 += -4
r3 = r10
r3 += -16
call 2
if r6 == 0 goto out
r1 = r8
r2 = r10
r2 += -4
call 3
out:
exit
"""
STEPS = [  # (program, r1 key, r2 value/delta, r3 flags, r4 delete)
    ("count", 3, 5, 0, 0), ("count", 3, 7, 1, 0), ("count", 9, 1, 0, 0),
    ("update", 2, 40, 0, 0), ("update", 2, 41, 1, 0), ("update", 2, 42, 2, 0),
    ("update", 5, 43, 2, 0), ("update", 6, 44, 4, 0), ("update", 6, 45, 99, 0),
    ("update", 7, 46, 0, 1), ("update", 8, 47, 0, 0), ("update", 100, 1, 0, 0),
    ("count", 2, 1, 0, 0), ("count", 8, 1, 0, 0), ("count", 7, 3, 0, 0),
    # fill the map: hash maps refuse (E2BIG), LRU maps evict what no lookup marked
    *[("count", k, 1, 0, 0) for k in range(10, 18)],
    ("count", 12, 1, 0, 0), ("count", 15, 1, 0, 0),
    *[("count", k, 1, 0, 0) for k in range(20, 24)],
]  # fmt: skip


def make_map(kind, **kw):
    return create_map(type=kind, key_size=4, value_size=8, max_entries=8, ncpus=2, **kw)


def build(engine, source, m, helpers=None, **kw):
    insns = assemble(source)
    common = {
        "helpers": helpers or default_helpers(),
        "lddw_resolver": map_lddw_resolver({1: m}),
        "entry_registers": (1, 2, 3, 4, 10),
    }
    if engine == "vm":
        return Interpreter(insns, **common)
    return JitProgram(insns, **common, **kw)


def outcomes(engine, kind, cpus, **kw):
    """Every step's r0 (or error type and pc) and the map afterwards, on one engine."""
    with make_map(kind) as m:
        progs = {"count": build(engine, COUNT, m, **kw), "update": build(engine, UPDATE, m, **kw)}
        if engine == "jit" and kw.get("inline_maps", True):
            assert all(p.map_sites for p in progs.values())
        out = []
        for cpu in cpus:
            for name, *args in STEPS:
                try:
                    out.append(progs[name].run(tuple(args), cpu=cpu))
                except HelperError as exc:
                    out.append(("HelperError", exc.pc))
        out.append(sorted(m.items()))
        for prog in progs.values():
            prog.close()
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_native_map_calls_match_the_interpreter(kind):
    cpus = (0, 1, 2) if kind in PERCPU else (0,)  # cpu 2: outside a 2-CPU map
    expected = outcomes("vm", kind, cpus)
    assert outcomes("jit", kind, cpus) == expected
    assert outcomes("jit", kind, cpus, inline_maps=False) == expected
    if kind in PERCPU:
        assert ("HelperError", 7) in expected  # the lookup at cpu 2
    results = {r for r in expected if isinstance(r, int)}
    assert len(results) >= 6  # lookups, inserts (0x1000000 | r0) and errors all happened
    if kind in (T.ARRAY, T.PERCPU_ARRAY):
        assert {-errno.E2BIG & M64, -errno.EEXIST & M64, -errno.EINVAL & M64} <= results


def counting_helpers():
    helpers = default_helpers()
    calls = {1: 0, 2: 0, 3: 0}
    for hid in calls:
        fn = helpers.get(hid)

        def wrapped(ctx, *regs, _fn=fn, _hid=hid):
            calls[_hid] += 1
            return _fn(ctx, *regs)

        helpers.register(hid, wrapped)
    return helpers, calls


@pytest.mark.parametrize("kind", [T.ARRAY, T.HASH])
def test_the_fast_path_never_enters_python(kind):
    helpers, calls = counting_helpers()
    with make_map(kind) as m:
        m.set_codecs("uint", "uint")
        m[3] = 10
        count = build("jit", COUNT, m, helpers)
        update = build("jit", UPDATE, m, helpers)
        assert count.run((3, 5, 0)) == 15 and count.run((3, 5, 0)) == 20
        assert calls[1] == 0  # lookups: native
        update.run((4, 1, 0, 1))  # update and delete
        assert calls == {1: 0, 2: 0, 3: 0}  # updates and deletes: native too
        if kind == T.ARRAY:
            assert m[4] == 1
        else:
            assert 4 not in m
        assert count.run((3, 1, 0)) == 21
        count.close()
        update.close()
    with make_map(kind) as m:
        m.set_codecs("uint", "uint")
        m[3] = 10
        debug = build("jit", COUNT, m, helpers, debug_checks=True)
        assert debug.map_sites  # checked code inlines them too, after checking the key
        assert debug.run((3, 5, 0)) == 15  # and dereferences the value under the checks
        assert calls[1] == 0
        debug.close()


# map_lookup_elem with r2 = r1 (a key pointer from the caller), r0 = the value or 0
LOOKUP_AT = """
r2 = r1
r1 = map[fd:1] ll
call 1
if r0 == 0 goto out
r0 = *(u64 *)(r0 + 0)
out:
exit
"""


@pytest.mark.parametrize("kind", [T.ARRAY, T.HASH])
def test_checked_native_map_calls_check_the_key_pointer(kind):
    from pybpf.errors import MemoryAccessError

    results = {}
    for engine in ("vm", "jit"):
        with make_map(kind) as m:
            m.set_codecs("uint", "uint")
            m[3] = 10
            prog = build(engine, LOOKUP_AT, m, default_helpers(), debug_checks=True)
            with Region.from_bytes((3).to_bytes(4, "little"), kind="input") as key:
                good = prog.run((key.address,), memory=AddressSpace([key]))
            try:
                prog.run((0x1000,))  # a key pointer no region holds
            except MemoryAccessError as exc:
                results[engine] = (good, type(exc), exc.pc)
            prog.close()
    assert results["jit"] == results["vm"] == (10, MemoryAccessError, 3)  # the call's pc


LOOKUP = """
*(u32 *)(r10 - 4) = r1
r1 = map[fd:1] ll
r2 = r10
r2 += -4
call 1
r1 = r0
r0 = 0xdead
if r1 == 0 goto out
r0 = *(u64 *)(r1 + 0)
out:
exit
"""


@pytest.mark.parametrize("kind", [T.ARRAY, T.HASH])
def test_read_only_maps_and_closed_maps_behave_as_in_the_interpreter(kind):
    for engine in ("vm", "jit"):
        with make_map(kind, flags=MapFlag.RDONLY_PROG) as m:
            m.set_codecs("uint", "uint")
            m[1] = 77
            prog = build(engine, UPDATE, m)
            assert prog.run((1, 2, 0, 1)) == -errno.EPERM & M64  # update and delete
            lookup = build(engine, LOOKUP, m)
            assert lookup.run((1,)) == 77 and lookup.run((2,)) == (0 if kind == T.ARRAY
                                                                     else 0xDEAD)  # fmt: skip
            if engine == "jit":
                assert lookup.map_sites and prog.map_sites
        with pytest.raises(HelperError) as info:
            lookup.run((1,))  # the map is closed now
        assert info.value.pc == 5  # the lookup


def test_a_busy_lock_takes_the_python_path():
    with make_map(T.HASH) as m:
        m.set_codecs("uint", "uint")
        m[3] = 1
        count = build("jit", COUNT, m)
        released: list[float] = []

        def release_lock() -> None:
            released.append(time.perf_counter())
            m.lock.release()

        m.lock.acquire()
        release = threading.Timer(0.05, release_lock)
        release.start()
        assert count.run((3, 1, 0)) == 2  # waited for the lock through the helper
        finished = time.perf_counter()
        assert released and released[0] <= finished  # (timing-free under load)
        release.join()
        count.close()


def test_map_shapes_are_part_of_the_cache_key(tmp_path):
    cache = CodeCache(tmp_path / "cache")
    with make_map(T.ARRAY) as a, make_map(T.ARRAY) as b:
        first = build("jit", COUNT, a, cache=cache)
        same_shape = build("jit", COUNT, b, cache=cache)
        assert not first.cache_hit and same_shape.cache_hit
        assert first.run((1, 3, 0)) == 3 and same_shape.run((1, 4, 0)) == 4  # its own map
        assert a.set_codecs("uint", "uint")[1] == 3 and b.set_codecs("uint", "uint")[1] == 4
        first.close()
        same_shape.close()
    with create_map(type=T.ARRAY, key_size=4, value_size=8, max_entries=2) as small:
        other = build("jit", COUNT, small, cache=cache)
        assert not other.cache_hit
        assert other.run((3, 1, 0)) == -errno.E2BIG & M64  # index 3 is outside: no insert
        other.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_forked_child_refreshes_the_lock_tokens():
    with make_map(T.HASH) as m:
        m.set_codecs("uint", "uint")
        m[3] = 1
        count = build("jit", COUNT, m)
        count.run((3, 1, 0))
        (site,) = [s for s in count.map_sites.values()][:1]
        parent_token = count._site_table[site.index + 1]
        pid = os.fork()
        if pid == 0:  # the child: exit code 0 when the token follows the new pid
            try:
                result = count.run((3, 1, 0))
                token = count._site_table[site.index + 1]
                ok = result == 3 and token == m.lock.current_token() != parent_token
                os._exit(0 if ok else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        count.close()

