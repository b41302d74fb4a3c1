"""Map helpers: programs running in the interpreter use maps through Linux's helpers (lookup
pointers, per-CPU copies, queues, ring buffers, perf output, map-in-maps, for_each)."""

from __future__ import annotations

import errno
import struct

import pytest

from pybpf.errors import HelperError, InputError, MemoryAccessError, NotSupportedError
from pybpf.isa import assemble
from pybpf.maps import MapDefinition, create_map
from pybpf.maptypes import MapFlag
from pybpf.maptypes import MapType as T
from pybpf.memory import AddressSpace, Region
from pybpf.runtime import ExecutionContext, default_helpers
from pybpf.runtime.maps import (
    MAP_HELPERS,
    expose_maps,
    for_each_map_elem,
    map_lddw_resolver,
    register_maps,
)
from pybpf.vm import Interpreter

M64 = (1 << 64) - 1


@pytest.fixture(autouse=True)
def _state(monkeypatch, tmp_path):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def vm(text: str, maps: dict) -> Interpreter:
    return Interpreter(
        assemble(text),
        helpers=register_maps(default_helpers()),
        lddw_resolver=map_lddw_resolver(maps),
        entry_registers=(1, 2, 3, 4, 5, 10),
    )


def neg(err: int) -> int:
    return -err & M64


COUNT = """
*(u32 *)(r10 - 4) = {key}
r1 = map[fd:1] ll
r2 = r10
r2 += -4
call 1
if r0 == 0 goto missing
r1 = {delta}
lock *(u64 *)(r0 + 0) += r1
r0 = *(u64 *)(r0 + 0)
exit
missing:
*(u64 *)(r10 - 16) = {delta}
r1 = map[fd:1] ll
r2 = r10
r2 += -4
r3 = r10
r3 += -16
r4 = 1
call 2
exit
"""


@pytest.mark.parametrize("kind", [T.HASH, T.ARRAY, T.LRU_HASH])
def test_programs_count_through_lookup_pointers(kind):
    with create_map(type=kind, key_size=4, value_size=8, max_entries=8) as m:
        prog = vm(COUNT.format(key=3, delta=5), {1: m})
        first = prog.run()
        if kind == T.ARRAY:
            assert first == 5  # the element exists (zero) and is incremented
        else:
            assert first == 0  # inserted by map_update_elem with BPF_NOEXIST
        for _ in range(3):
            prog.run()
        assert m.set_codecs("uint", "uint")[3] == 20


def test_percpu_programs_touch_their_cpu():
    with create_map(type=T.PERCPU_ARRAY, key_size=4, value_size=8, max_entries=2, ncpus=4) as m:
        prog = vm(COUNT.format(key=1, delta=1), {1: m})
        for cpu in (0, 2, 2, 3, 3, 3):
            prog.run(cpu=cpu)
        assert m.set_codecs("uint", "uint")[1] == [1, 0, 2, 3]
        with pytest.raises(HelperError):
            prog.run(cpu=4)  # more CPUs than the map has: a configuration error
        percpu = vm(
            """
            *(u32 *)(r10 - 4) = 1
            r1 = map[fd:1] ll
            r2 = r10
            r2 += -4
            r3 = 3
            call 195
            if r0 == 0 goto out
            r0 = *(u64 *)(r0 + 0)
            out:
            exit
            """,
            {1: m},
        )
        assert percpu.run() == 3


def test_update_delete_results_are_linux_errnos():
    with create_map(type=T.HASH, key_size=4, value_size=8, max_entries=1) as m:
        text = """
        *(u32 *)(r10 - 4) = r1
        *(u64 *)(r10 - 16) = 0
        r6 = r2
        r1 = map[fd:1] ll
        r2 = r10
        r2 += -4
        if r6 == 3 goto delete
        r3 = r10
        r3 += -16
        r4 = r6
        call 2
        exit
        delete:
        call 3
        exit
        """
        prog = vm(text, {1: m})
        assert prog.run((1, 1)) == 0  # NOEXIST insert
        assert prog.run((1, 1)) == neg(errno.EEXIST)
        assert prog.run((2, 0)) == neg(errno.E2BIG)  # full
        assert prog.run((2, 2)) == neg(errno.ENOENT)  # EXIST on a missing key
        assert prog.run((1, 7)) == neg(errno.EINVAL)  # bad flags
        assert prog.run((1, 3)) == 0 and prog.run((1, 3)) == neg(errno.ENOENT)
    with create_map(
        type=T.HASH, key_size=4, value_size=8, max_entries=1, flags=MapFlag.RDONLY_PROG
    ) as ro:
        assert vm(text, {1: ro}).run((1, 0)) == neg(errno.EPERM)


def test_bad_map_and_key_pointers_stop_the_run():
    text = """
    r1 = map[fd:1] ll
    r1 += 8
    r2 = r10
    r2 += -4
    call 1
    exit
    """
    with create_map(type=T.HASH, key_size=4, value_size=8, max_entries=2) as m:
        with pytest.raises(HelperError) as info:
            vm(text, {1: m}).run()
        assert info.value.pc == 5 and info.value.helper_id == 1  # lddw takes 2 slots
        with pytest.raises(MemoryAccessError):
            vm("r1 = map[fd:1] ll\nr2 = 16\ncall 1\nexit", {1: m}).run()
        with pytest.raises(InputError):
            vm("r1 = map[fd:9] ll\nexit", {1: m})  # resolved at load


POP = """
r6 = r1
r1 = map[fd:1] ll
r2 = r10
r2 += -8
if r6 == 0 goto peek
call 88
goto out
peek:
call 89
out:
if r0 != 0 goto fail
r0 = *(u64 *)(r10 - 8)
fail:
exit
"""


def test_queue_helpers():
    with create_map(type=T.STACK, key_size=0, value_size=8, max_entries=2) as q:
        push = vm(
            """
            *(u64 *)(r10 - 8) = r1
            r1 = map[fd:1] ll
            r2 = r10
            r2 += -8
            r3 = 2
            call 87
            exit
            """,
            {1: q},
        )
        assert push.run((10,)) == 0 and push.run((11,)) == 0 and push.run((12,)) == 0
        pop = vm(POP, {1: q})
        assert pop.run((0,)) == 12 and pop.run((1,)) == 12 and pop.run((1,)) == 11
        assert pop.run((1,)) == neg(errno.ENOENT)
    with create_map(type=T.HASH, key_size=4, value_size=8, max_entries=2) as h:
        assert vm(POP, {1: h}).run((1,)) == neg(errno.EINVAL)


def test_ringbuf_helpers():
    with create_map(type=T.RINGBUF, key_size=0, value_size=0, max_entries=4096) as rb:
        text = """
        r6 = r1
        r1 = map[fd:1] ll
        r2 = 12
        r3 = 0
        call 131
        if r0 == 0 goto full
        r7 = r0
        *(u64 *)(r7 + 0) = r6
        *(u32 *)(r7 + 8) = 0x41424344
        r1 = r7
        r2 = 0
        if r6 == 2 goto discard
        call 132
        goto query
        discard:
        call 133
        query:
        *(u32 *)(r10 - 4) = 0x7a7a7a7a
        r1 = map[fd:1] ll
        r2 = r10
        r2 += -4
        r3 = 4
        r4 = 0
        call 130
        r1 = map[fd:1] ll
        r2 = 0
        call 134
        exit
        full:
        r0 = -1
        exit
        """
        prog = vm(text, {1: rb})
        assert prog.run((1,)) == 40  # avail: records of 8+12 and 8+4 bytes, padded to 8
        assert prog.run((2,)) == 80
        got = []
        assert rb.consume(got.append) == 3  # the discarded one is skipped
        assert got[0] == struct.pack("<QI", 1, 0x41424344) and got[1] == b"zzzz"
        with pytest.raises(HelperError):
            vm("r1 = r10\nr1 += -8\nr2 = 0\ncall 132\nexit", {}).run()


def test_perf_event_output_helper():
    with create_map(type=T.PERF_EVENT_ARRAY, key_size=4, value_size=4, max_entries=2) as perf:
        text = """
        r6 = r1
        r1 = 0x1122334455667788 ll
        *(u64 *)(r10 - 8) = r1
        r1 = 0
        r2 = map[fd:1] ll
        r3 = 0xffffffff ll
        r4 = r10
        r4 += -8
        r5 = 8
        call 25
        exit
        """
        prog = vm(text, {1: perf})
        assert prog.run(cpu=1) == neg(errno.ENOENT)
        perf.open_buffer(1)
        assert prog.run(cpu=1) == 0
        got = []
        perf.consume(lambda i, d: got.append((i, d)))
        assert got == [(1, struct.pack("<Q", 0x1122334455667788) + bytes(4))]


def test_map_in_map_helpers():
    inner_d = MapDefinition(T.ARRAY, 4, 8, 2)
    with (
        create_map(
            type=T.HASH_OF_MAPS, key_size=4, value_size=4, max_entries=2, inner=inner_d
        ) as outer,
        create_map(inner_d) as inner,
    ):
        inner.set_codecs("uint", "uint")[1] = 77
        outer[5] = inner
        text = """
        *(u32 *)(r10 - 4) = r1
        r1 = map[fd:1] ll
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto out
        *(u32 *)(r10 - 4) = 1
        r1 = r0
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto out
        r0 = *(u64 *)(r0 + 0)
        out:
        exit
        """
        prog = vm(text, {1: outer})
        assert prog.run((5,)) == 77 and prog.run((6,)) == 0


def test_global_data_through_map_values():
    with create_map(type=T.ARRAY, key_size=4, value_size=16, max_entries=1, name=".bss") as bss:
        text = """
        r1 = map[fd:1][0]+8 ll
        r2 = 99
        *(u64 *)(r1 + 0) = r2
        r0 = 1
        exit
        """
        prog = vm(text, {1: bss})
        space = AddressSpace()
        expose_maps(space, [bss])
        expose_maps(space, [bss])  # idempotent
        assert prog.run(memory=space) == 1
        assert bss.lookup_raw(bytes(4)) == bytes(8) + (99).to_bytes(8, "little")


def test_for_each_map_elem_calls_back():
    with create_map(type=T.HASH, key_size=4, value_size=8, max_entries=8) as m:
        m.set_codecs("uint", "uint")
        for i in range(5):
            m[i] = i * 10
        space = AddressSpace()
        calls = []

        def call_function(func, r1, r2, r3, r4, r5):
            key = int.from_bytes(space.read(r2, 4), "little")
            value = int.from_bytes(space.read(r3, 8), "little")
            space.write(r3, (value + 1).to_bytes(8, "little"))  # values are writable
            calls.append((func, r1, key, value, r4))
            return 1 if key == 3 else 0

        ctx = ExecutionContext(space, extra={"call_function": call_function})
        visited = for_each_map_elem(ctx, m.handle, 0x1000, 0x2000, 0, 0)
        keys = [c[2] for c in calls]
        assert visited == len(calls) and keys[-1] == 3  # the callback's 1 stops the walk
        assert all(c[0] == 0x1000 and c[1] == m.handle and c[4] == 0x2000 for c in calls)
        assert all(m[k] == k * 10 + 1 for k in keys)
        assert for_each_map_elem(ctx, m.handle, 0x1000, 0x2000, 1, 0) == -errno.EINVAL
        with pytest.raises(NotSupportedError):
            for_each_map_elem(ExecutionContext(space), m.handle, 1, 0, 0, 0)
    with create_map(type=T.ARRAY, key_size=4, value_size=8, max_entries=3) as a:
        seen = []
        space = AddressSpace()

        def on_array(func, r1, r2, r3, r4, r5):
            seen.append(int.from_bytes(space.read(r2, 4), "little"))
            with pytest.raises(MemoryAccessError):
                space.write(r2, b"\0")  # keys are read-only
            return 0

        ctx = ExecutionContext(space, extra={"call_function": on_array})
        assert for_each_map_elem(ctx, a.handle, 1, 0, 0, 0) == 3 and seen == [0, 1, 2]
        assert [r.kind for r in space] == ["map_value"]  # the scratch key region is gone


def test_every_map_helper_is_registered_by_linux_name():
    registry = register_maps(default_helpers())
    for name in MAP_HELPERS:
        from pybpf.helpers import lookup

        assert lookup(name).id in registry
    assert Region  # imported for type use


def test_cpu_only_selects_a_value_in_per_cpu_maps():
    """A program on CPU 3 sees the one value of a non-per-CPU map (as Linux and the JIT)."""
    from pybpf.maps import MapDefinition, create_map
    from pybpf.maptypes import MapType

    for map_type in (MapType.ARRAY, MapType.HASH):
        with create_map(MapDefinition(map_type, 4, 8, 4), backing="anonymous") as m:
            key = (1).to_bytes(4, "little")
            m.update_raw(key, (42).to_bytes(8, "little"))
            assert m.elem_lookup(key, 3) == m.elem_lookup(key, 0) != 0
    with create_map(
        MapDefinition(MapType.PERCPU_ARRAY, 4, 8, 4, ncpus=4), backing="anonymous"
    ) as m:
        key = (1).to_bytes(4, "little")
        assert m.elem_lookup(key, 3) == m.elem_lookup(key, 0) + 3 * 8
