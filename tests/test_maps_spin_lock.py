"""Map values holding a struct bpf_spin_lock (and other special fields) behave as in Linux:
the fields found in BTF, creation checks, BPF_F_LOCK updates and lookups, plain copies that
never touch the lock word, pins that remember it, the native hash path stepping aside, a
program taking the lock in both engines while user space uses BPF_F_LOCK, and a kernel
differential (skipped where bpf() does not work)."""

from __future__ import annotations

import ctypes
import errno
import random
import struct
import threading
import time
from pathlib import Path

import pytest

from kernel import requires_bpf
from pybpf.btf import Spec, encode
from pybpf.btf.fields import SpecialField, special_fields
from pybpf.btf.types import Array, Int, IntEncoding, Member, Pointer, Struct, TypeTag, Void
from pybpf.errors import MapError, SyscallError
from pybpf.maps import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_NOEXIST,
    MapDefinition,
    create_map,
    open_pinned,
)
from pybpf.maps.native import OPTION_FIELDS, PYTHON, native_map_ops
from pybpf.maptypes import MapFlag
from pybpf.maptypes import MapType as T
from pybpf.memory import atomics

EXAMPLE = Path(__file__).parents[1] / "examples" / "c" / "spin_lock.o"
KEY = (1).to_bytes(4, "little")
VALUE = struct.Struct("<IIQ")  # hits, the bpf_spin_lock (offset 4), bytes


# ---- BTF: struct counter { u32 hits; struct bpf_spin_lock lock; u64 bytes; } --------------------
def _btf(*extra) -> Spec:
    """Types 1-4: u32, bpf_spin_lock, u64, counter; then ``extra`` (ids from 5)."""
    types = [
        Void(),
        Int(1, "unsigned int", 4, IntEncoding(0), 0, 32),
        Struct(2, "bpf_spin_lock", 4, (Member("val", 1, 0),)),
        Int(3, "unsigned long long", 8, IntEncoding(0), 0, 64),
        Struct(4, "counter", 16, (Member("hits", 1, 0), Member("lock", 2, 32),
                                  Member("bytes", 3, 64))),
    ]  # fmt: skip
    base = len(types)
    types.extend(t(base + i) for i, t in enumerate(extra))
    return Spec(tuple(types))


def _two_locks(i):
    return Struct(i, "two", 8, (Member("a", 2, 0), Member("b", 2, 32)))


def _outer(i):  # struct outer { u64 x; struct counter inner; }: the lock at 12
    return Struct(i, "outer", 24, (Member("x", 3, 0), Member("inner", 4, 64)))


def test_fields_of_a_struct_with_a_lock():
    btf = _btf()
    assert special_fields(btf, 4) == (SpecialField("bpf_spin_lock", 4, 4),)
    assert special_fields(btf, 1) == ()  # not a struct
    d = MapDefinition(T.HASH, 4, 16, 4).with_value_type(btf, 4)
    assert d.spin_lock_offset == 4
    assert d.special_fields == (("bpf_spin_lock", 4, 4),)
    assert d.special_spans == ((4, 4),)


def test_fields_nested_repeated_and_refused():
    btf = _btf(
        _outer,
        _two_locks,
        lambda i: Array(i, "", 2, 1, 2),  # bpf_spin_lock[2]
        lambda i: Struct(i, "locks", 8, (Member("l", i - 1, 0),)),
        lambda i: TypeTag(i, "kptr", 4),
        lambda i: Pointer(i, "", i - 1),
        lambda i: Array(i, "", i - 1, 1, 3),  # 3 kptrs
        lambda i: Struct(i, "kptrs", 24, (Member("p", i - 1, 0),)),
        lambda i: Struct(i, "packed", 8, (Member("c", 1, 0), Member("lock", 2, 16))),
    )
    assert special_fields(btf, 5) == (SpecialField("bpf_spin_lock", 12, 4),)
    with pytest.raises(MapError) as err:
        special_fields(btf, 6)
    assert err.value.errno == errno.E2BIG
    with pytest.raises(MapError) as err:
        special_fields(btf, 8)
    assert err.value.errno == errno.EINVAL
    assert [f.offset for f in special_fields(btf, 12)] == [0, 8, 16]
    assert special_fields(btf, 13) == ()  # a lock at offset 2 is not aligned: ignored
    with pytest.raises(MapError) as err:
        MapDefinition(T.HASH, 4, 8, 4, name="two").with_value_type(btf, 6)
    assert err.value.errno == errno.E2BIG and err.value.map_name == "two"


def test_definition_fills_in_the_lock_either_way():
    by_offset = MapDefinition(T.ARRAY, 4, 16, 1, spin_lock_offset=8)
    assert by_offset.special_fields == (("bpf_spin_lock", 8, 4),)
    by_fields = MapDefinition(T.ARRAY, 4, 16, 1, special_fields=(("bpf_spin_lock", 0, 4),))
    assert by_fields.spin_lock_offset == 0
    assert MapDefinition(T.ARRAY, 4, 16, 1).spin_lock_offset == -1
    assert by_offset.mismatch(MapDefinition(T.ARRAY, 4, 16, 1, spin_lock_offset=0)) == (
        "spin_lock_offset"
    )


@pytest.mark.parametrize(
    ("kind", "flags", "fields", "err"),
    [
        (T.PERCPU_HASH, 0, {"spin_lock_offset": 0}, errno.EOPNOTSUPP),
        (T.PERCPU_ARRAY, 0, {"spin_lock_offset": 0}, errno.EOPNOTSUPP),
        (T.LRU_HASH, 0, {"spin_lock_offset": 0}, errno.EOPNOTSUPP),
        (T.HASH, MapFlag.RDONLY_PROG, {"spin_lock_offset": 0}, errno.EACCES),
        (T.HASH, 0, {"spin_lock_offset": 2}, errno.EINVAL),
        (T.HASH, 0, {"spin_lock_offset": 32}, errno.EINVAL),
        (T.ARRAY, 0, {"special_fields": (("bpf_timer", 0, 16), ("bpf_timer", 16, 16))},
         errno.E2BIG),
        (T.PERCPU_ARRAY, 0, {"special_fields": (("bpf_timer", 0, 16),)}, errno.EOPNOTSUPP),
    ],
)  # fmt: skip
def test_creation_refusals(kind, flags, fields, err):
    with pytest.raises(MapError) as e:
        create_map(type=kind, key_size=4, value_size=32, max_entries=4, flags=flags, **fields)
    assert e.value.errno == err and e.value.operation == "create"


# ---- user space on pybpf maps -------------------------------------------------------------------
@pytest.fixture(params=[T.HASH, T.ARRAY])
def locked(request):
    with create_map(
        type=request.param, key_size=4, value_size=16, max_entries=4, spin_lock_offset=4
    ) as m:
        yield m


def _word(m) -> int:
    return m.value_address(KEY) + 4


def test_plain_copies_skip_the_lock_word(locked):
    locked.update_raw(KEY, VALUE.pack(1, 0xFFFFFFFF, 2))
    word = _word(locked)
    assert atomics.load_at(word, 4) == 0  # a new value's lock starts free
    atomics.store_at(word, 4, 1)  # held (by a program, say)
    locked.update_raw(KEY, VALUE.pack(3, 0xFFFFFFFF, 4))  # never waits, never writes it
    assert atomics.load_at(word, 4) == 1
    assert locked.lookup_raw(KEY) == VALUE.pack(3, 0, 4)  # the lock reads as zero
    assert locked.elem_update(KEY, VALUE.pack(5, 7, 6), BPF_ANY) == 0  # programs too
    assert atomics.load_at(word, 4) == 1
    atomics.store_at(word, 4, 0)
    assert locked.lookup_raw(KEY, BPF_F_LOCK) == VALUE.pack(5, 0, 6)


def test_lock_flag_waits_for_the_lock(locked):
    locked.update_raw(KEY, VALUE.pack(1, 0, 1))
    word = _word(locked)
    atomics.store_at(word, 4, 1)
    done = threading.Event()

    def writer():
        locked.update_raw(KEY, VALUE.pack(9, 0, 9), BPF_F_LOCK)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert not done.wait(0.05)  # blocked on the held lock
        assert locked.lookup_raw(KEY) == VALUE.pack(1, 0, 1)
    finally:
        atomics.store_at(word, 4, 0)
        t.join(5)
    assert done.is_set()
    assert atomics.load_at(word, 4) == 0  # released after the copy
    assert locked.lookup(KEY, BPF_F_LOCK) == VALUE.pack(9, 0, 9)


def test_lock_flag_errors(locked):
    with pytest.raises(MapError) as err:
        locked.lookup_raw(KEY, 8)
    assert err.value.errno == errno.EINVAL
    with pytest.raises(MapError) as err:
        locked.update_raw(KEY, bytes(16), BPF_F_LOCK | 8)
    assert err.value.errno == errno.EINVAL
    if locked.type == T.ARRAY:  # array elements always exist
        with pytest.raises(MapError) as err:
            locked.update_raw(KEY, bytes(16), BPF_F_LOCK | BPF_NOEXIST)
        assert err.value.errno == errno.EEXIST
    else:  # a missing hash element is inserted as by a plain update
        locked.update_raw(KEY, VALUE.pack(1, 1, 1), BPF_F_LOCK | BPF_NOEXIST)
        assert locked.lookup_raw(KEY) == VALUE.pack(1, 0, 1)


def test_hash_lock_flag_semantics():
    with create_map(type=T.HASH, key_size=4, value_size=16, max_entries=2, spin_lock_offset=4) as m:
        with pytest.raises(MapError) as err:
            m.update_raw(KEY, VALUE.pack(1, 0, 1), BPF_F_LOCK | BPF_EXIST)
        assert err.value.errno == errno.ENOENT
        m.update_raw(KEY, VALUE.pack(1, 0, 1), BPF_F_LOCK | BPF_NOEXIST)  # inserts
        address = m.value_address(KEY)
        with pytest.raises(MapError) as err:
            m.update_raw(KEY, VALUE.pack(2, 0, 2), BPF_F_LOCK | BPF_NOEXIST)
        assert err.value.errno == errno.EEXIST
        m.update_raw(KEY, VALUE.pack(3, 5, 3), BPF_F_LOCK | BPF_EXIST)
        assert m.value_address(KEY) == address  # in place
        assert m.lookup_raw(KEY, BPF_F_LOCK) == VALUE.pack(3, 0, 3)
        assert m.elem_update(KEY, VALUE.pack(4, 5, 4), BPF_F_LOCK) == 0  # programs may too
        assert m.pop(KEY) == VALUE.pack(4, 0, 4)


def test_array_lock_flag_semantics():
    with create_map(type=T.ARRAY, key_size=4, value_size=16, max_entries=2,
                    spin_lock_offset=4) as m:  # fmt: skip
        with pytest.raises(MapError) as err:
            m.update_raw(KEY, bytes(16), BPF_F_LOCK | BPF_NOEXIST)
        assert err.value.errno == errno.EEXIST
        with pytest.raises(MapError) as err:
            m.update_raw((7).to_bytes(4, "little"), bytes(16), BPF_F_LOCK)
        assert err.value.errno == errno.E2BIG
        m.update_raw(KEY, VALUE.pack(3, 5, 3), BPF_F_LOCK | BPF_EXIST)
        assert m.lookup_raw(KEY, BPF_F_LOCK) == VALUE.pack(3, 0, 3)
        atomics.store_at(_word(m), 4, 1)
        m.clear()  # zeroes the values, not the lock words
        assert atomics.load_at(_word(m), 4) == 1
        atomics.store_at(_word(m), 4, 0)
        assert m.lookup_raw(KEY) == bytes(16)


@pytest.mark.parametrize("kind", [T.HASH, T.ARRAY, T.PERCPU_HASH, T.LRU_HASH, T.QUEUE])
def test_lock_flag_without_a_lock_is_einval(kind):
    key_size = 0 if kind == T.QUEUE else 4
    with create_map(type=kind, key_size=key_size, value_size=16, max_entries=4) as m:
        if kind == T.QUEUE:  # (no key: only the Pythonic lookup takes the flag)
            with pytest.raises(MapError) as err:
                m.lookup(None, BPF_F_LOCK)
            assert err.value.errno == errno.EINVAL
            return
        m.update_raw(KEY, bytes(m.user_value_size))
        for call in (
            lambda: m.update_raw(KEY, bytes(m.user_value_size), BPF_F_LOCK),
            lambda: m.lookup_raw(KEY, BPF_F_LOCK),
            lambda: m.lookup(1, BPF_F_LOCK),
            lambda: m.lookup(1, 8),
        ):
            with pytest.raises(MapError) as err:
                call()
            assert err.value.errno == errno.EINVAL
        assert m.elem_update(KEY, bytes(16), BPF_F_LOCK) == -errno.EINVAL


@pytest.mark.parametrize(
    ("kind", "field"),
    [(T.PERCPU_HASH, ("kptr", 8, 8)), (T.PERCPU_ARRAY, ("kptr", 8, 8)),
     (T.LRU_HASH, ("bpf_timer", 0, 16))],
)  # fmt: skip
def test_other_special_fields_are_skipped(kind, field):
    """kptrs in per-CPU values (every CPU's copy) and a timer in an LRU hash: plain copies
    from user space and programs leave them, lookups read them as zeros."""
    with create_map(type=kind, key_size=4, value_size=24, max_entries=2, ncpus=2,
                    special_fields=(field,)) as m:  # fmt: skip
        assert m.spin_lock_offset == -1
        _, offset, size = field
        marker = bytes(range(1, size + 1))
        stride = 24 if m.percpu else 0
        m.update_raw(KEY, bytes(m.user_value_size))
        copies = range(m.ncpus) if m.percpu else [0]
        for cpu in copies:
            address = m.value_address(KEY, cpu)
            atomics.store_at(address + offset, 8, int.from_bytes(marker[:8], "little"))
        ones = b"\xff" * m.user_value_size
        m.update_raw(KEY, ones)
        assert m.elem_update(KEY, b"\xee" * 24, BPF_EXIST, cpu=len(copies) - 1) == 0
        raw = m.lookup_raw(KEY)
        for cpu in copies:
            address = m.value_address(KEY, cpu)
            assert atomics.load_at(address + offset, 8) == int.from_bytes(marker[:8], "little")
            start = cpu * stride
            assert raw[start + offset : start + offset + size] == bytes(size)
            fill = b"\xee" if cpu == len(copies) - 1 else b"\xff"
            assert raw[start : start + offset] == fill * offset


def test_a_pin_remembers_the_lock(tmp_path):
    d = MapDefinition(T.HASH, 4, 16, 4, name="locked", spin_lock_offset=4)
    with create_map(d, pin="locked", backing="file") as m:
        with open_pinned("locked") as again:
            assert again.spin_lock_offset == 4
            again.update_raw(KEY, VALUE.pack(1, 9, 2), BPF_F_LOCK)
            assert m.lookup_raw(KEY) == VALUE.pack(1, 0, 2)
        with pytest.raises(MapError) as err:
            open_pinned("locked", MapDefinition(T.HASH, 4, 16, 4))
        assert err.value.field == "spin_lock_offset"
        m.unpin("locked")


def test_native_hash_update_steps_aside():
    ops = native_map_ops()
    if ops is None:
        pytest.skip("no native map operations (llvmlite missing)")
    with create_map(type=T.HASH, key_size=4, value_size=16, max_entries=4,
                    spin_lock_offset=4) as m:  # fmt: skip
        desc = m.descriptor()
        assert desc[-1] & OPTION_FIELDS
        token = m.lock.current_token()
        r = ops.hash_update(ctypes.addressof(desc), KEY, VALUE.pack(1, 1, 1), 0, token, 0)
        assert r == PYTHON
        assert m.lookup_raw(KEY) is None  # nothing written
    with create_map(type=T.HASH, key_size=4, value_size=16, max_entries=4) as plain:
        assert not plain.descriptor()[-1] & OPTION_FIELDS


# ---- a program taking the lock while user space uses BPF_F_LOCK ---------------------------------
@pytest.mark.parametrize("engine", ["interpreter", "jit"])
def test_program_and_user_space_share_the_lock(engine):
    import pybpf

    if not EXAMPLE.exists():
        pytest.skip("examples/c/spin_lock.o is missing")
    with pybpf.load(EXAMPLE, engine=engine) as obj:
        h, a = obj.maps["locked_hash"], obj.maps["locked_array"]
        assert h.spin_lock_offset == a.spin_lock_offset == 4
        prog = obj.programs["count_locked"]
        key = bytes(4)
        runs, packet = 200, bytes(60)
        stop = threading.Event()
        seen = []

        def user():
            while not stop.is_set():
                for m in (h, a):
                    raw = m.lookup_raw(key, BPF_F_LOCK)
                    if raw is not None:
                        seen.append(VALUE.unpack(raw))
                        hits, _, total = VALUE.unpack(raw)
                        m.update_raw(key, VALUE.pack(hits, 0xFFFFFFFF, total), BPF_F_LOCK)
                time.sleep(0)

        t = threading.Thread(target=user)
        t.start()
        try:
            for _ in range(runs):
                assert prog.test_run(packet).retval == 2  # XDP_PASS
        finally:
            stop.set()
            t.join(10)
        for m in (h, a):
            hits, lock, total = VALUE.unpack(m.lookup_raw(key, BPF_F_LOCK))
            assert (hits, lock, total) == (runs, 0, runs * len(packet))
            assert atomics.load_at(m.value_address(key) + 4, 4) == 0
        bss = obj.maps[".bss"]  # a global lock: struct bpf_spin_lock packets_lock at 0
        assert bss.spin_lock_offset == 0
        assert bss.lookup_raw(key, BPF_F_LOCK) == VALUE.pack(0, 0, runs)
        assert all(total == hits * len(packet) and lock == 0 for hits, lock, total in seen)


# ---- the kernel differential --------------------------------------------------------------------
def _outcome(fn):
    try:
        return ("ok", fn())
    except (MapError, SyscallError) as err:
        return ("err", err.errno)


class _Both:
    """The same map in Linux (with BTF) and in pybpf."""

    def __init__(self, kind, btf_fd, value_type, spin_lock_offset):
        from pybpf import syscall as sc

        self.sc = sc
        if value_type:
            self.kfd = sc.map_create(kind, 4, 16, 4, 0, "lk", btf_fd=btf_fd,
                                     btf_key_type_id=1, btf_value_type_id=value_type)  # fmt: skip
        else:
            self.kfd = sc.map_create(kind, 4, 16, 4, 0, "lk")
        self.m = create_map(type=kind, key_size=4, value_size=16, max_entries=4,
                            spin_lock_offset=spin_lock_offset)  # fmt: skip

    def close(self):
        self.kfd.close()
        self.m.close()

    def op(self, name, key, value, flags):
        sc, m = self.sc, self.m
        if name == "update":
            k = _outcome(lambda: sc.map_update(self.kfd, key, value, flags))
            p = _outcome(lambda: m.update_raw(key, value, flags))
        elif name == "lookup":
            k = _outcome(lambda: sc.map_lookup(self.kfd, key, 16, flags))
            p = _outcome(lambda: m.lookup_raw(key, flags))
        else:
            k = _outcome(lambda: sc.map_delete(self.kfd, key))
            p = _outcome(lambda: m.delete_raw(key))
        return k, p


@pytest.fixture
def kernel_btf():
    from pybpf import syscall as sc

    btf = _btf(_outer)  # (Linux refuses BTF whose struct holds two locks at BTF_LOAD)
    fd, _ = sc.btf_load(encode(btf, byte_order="little"))
    with fd:
        yield fd


@requires_bpf
@pytest.mark.parametrize("kind", [T.HASH, T.ARRAY])
@pytest.mark.parametrize("with_lock", [True, False])
def test_kernel_differential_operations(kernel_btf, kind, with_lock):
    both = _Both(kind, kernel_btf, 4 if with_lock else 0, 4 if with_lock else -1)
    rng = random.Random(7)
    try:
        for step in range(300):
            name = rng.choice(["update", "update", "lookup", "delete"])
            key = rng.randrange(6).to_bytes(4, "little")
            value = VALUE.pack(rng.randrange(1 << 32), rng.randrange(1 << 32), step)
            flags = rng.choice([0, 1, 2, 4, 5, 6, 8])
            k, p = both.op(name, key, value, flags if name != "lookup" else flags & 12)
            assert k == p, (step, name, key, flags)
    finally:
        both.close()


@requires_bpf
@pytest.mark.parametrize(
    ("kind", "flags", "value_type"),
    [(T.PERCPU_HASH, 0, 4), (T.PERCPU_ARRAY, 0, 4), (T.LRU_HASH, 0, 4),
     (T.LRU_PERCPU_HASH, 0, 4), (T.HASH, MapFlag.RDONLY_PROG, 4),
     (T.ARRAY, MapFlag.WRONLY_PROG, 5), (T.PERCPU_ARRAY, 0, 5), (T.HASH, 0, 5),
     (T.ARRAY, 0, 4), (T.ARRAY, MapFlag.MMAPABLE, 4)],
)  # fmt: skip
def test_kernel_differential_creation(kernel_btf, kind, flags, value_type):
    from pybpf import syscall as sc

    btf = _btf(_outer)
    size = btf.size_of(value_type)
    k = _outcome(
        lambda: sc.map_create(kind, 4, size, 4, flags, "lk", btf_fd=kernel_btf,
                              btf_key_type_id=1, btf_value_type_id=value_type)
    )  # fmt: skip

    def ours():
        d = MapDefinition(kind, 4, size, 4, flags).with_value_type(btf, value_type)
        return create_map(d)

    p = _outcome(ours)
    if p[0] == "ok":
        assert p[1].spin_lock_offset == (4 if value_type == 4 else 12)
    for kind_, result in (k, p):
        if kind_ == "ok":
            result.close()
    assert k[0] == p[0] and (k[0] == "ok" or k[1] == p[1])


def _example_steps(obj, update, lookup) -> list:
    """The same steps on the example object's two maps; ``update(map, value, flags)`` and
    ``lookup(map, flags)`` reach one backend's maps."""
    prog = obj.programs["count_locked"]
    out = []
    for name in ("locked_hash", "locked_array"):
        m = obj.maps[name]
        out.append(_outcome(lambda: lookup(m, BPF_F_LOCK)))  # noqa: B023
        prog.test_run(bytes(60))
        prog.test_run(bytes(40))
        out.append(_outcome(lambda: lookup(m, BPF_F_LOCK)))  # noqa: B023
        out.append(_outcome(lambda: update(m, VALUE.pack(7, 0xFFFFFFFF, 8), BPF_F_LOCK)))  # noqa: B023
        prog.test_run(bytes(50))
        out.append(_outcome(lambda: lookup(m, 0)))  # noqa: B023
        out.append(_outcome(lambda: update(m, VALUE.pack(1, 1, 1), BPF_F_LOCK | 8)))  # noqa: B023
    bss = obj.maps[".bss"]  # struct bpf_spin_lock packets_lock; __u64 packets;
    out.append(_outcome(lambda: lookup(bss, BPF_F_LOCK)))
    out.append(_outcome(lambda: update(bss, b"\xff" * 16, 0)))  # the lock word is skipped
    prog.test_run(bytes(20))
    out.append(_outcome(lambda: lookup(bss, 0)))
    return out


@requires_bpf
def test_kernel_differential_example_object():
    import pybpf
    from pybpf import syscall as sc

    if not EXAMPLE.exists():
        pytest.skip("examples/c/spin_lock.o is missing")
    key = bytes(4)
    with pybpf.load(EXAMPLE, backend="kernel", pin_maps_dir=None) as obj:
        linux = _example_steps(
            obj,
            lambda m, v, f: sc.map_update(m.fd, key, v, f),
            lambda m, f: sc.map_lookup(m.fd, key, 16, f),
        )
    with pybpf.load(EXAMPLE) as obj:
        ours = _example_steps(
            obj, lambda m, v, f: m.update_raw(key, v, f), lambda m, f: m.lookup_raw(key, f)
        )
    assert linux == ours
    assert ("ok", VALUE.pack(8, 0, 58)) in linux
    assert linux[-3:] == [("ok", VALUE.pack(0, 0, 6)), ("ok", None),
                          ("ok", VALUE.pack(0, 0xFFFFFFFF, 0))]  # fmt: skip


# ---- BPF_MAP_LOOKUP_AND_DELETE_ELEM with BPF_F_LOCK ---------------------------------------------
def test_lookup_and_delete_under_the_lock():
    with create_map(type=T.HASH, key_size=4, value_size=16, max_entries=4,
                    spin_lock_offset=4) as m:  # fmt: skip
        m.update_raw(KEY, VALUE.pack(1, 0, 2))
        word = _word(m)  # (value_address takes the map's lock, which the waiter holds)
        atomics.store_at(word, 4, 1)  # held (by a program, say)
        out = []
        t = threading.Thread(target=lambda: out.append(m.lookup_and_delete_raw(KEY, BPF_F_LOCK)))
        t.start()
        try:
            t.join(0.05)
            assert t.is_alive() and len(m) == 1  # waits for the lock (holding the map's)
        finally:
            atomics.store_at(word, 4, 0)
            t.join(5)
        assert out == [VALUE.pack(1, 0, 2)] and m.lookup_raw(KEY) is None
        assert m.lookup_and_delete_raw(KEY, BPF_F_LOCK) is None  # missing: None (ENOENT)
        m.update_raw(KEY, VALUE.pack(3, 0, 4))
        assert m.pop(KEY, flags=BPF_F_LOCK) == VALUE.pack(3, 0, 4)
        m.update_raw(KEY, VALUE.pack(5, 0, 6))
        atomics.store_at(_word(m), 4, 1)
        assert m.lookup_and_delete_raw(KEY) == VALUE.pack(5, 0, 6)  # plain: never waits


@pytest.mark.parametrize(
    ("kind", "lock", "flags", "err"),
    [(T.HASH, 4, 8, errno.EINVAL), (T.HASH, 4, BPF_F_LOCK | 1, errno.EINVAL),
     (T.HASH, -1, BPF_F_LOCK, errno.EINVAL), (T.PERCPU_HASH, -1, BPF_F_LOCK, errno.EINVAL),
     (T.ARRAY, 4, BPF_F_LOCK, 524), (T.ARRAY, 4, 0, 524), (T.ARRAY, -1, BPF_F_LOCK, errno.EINVAL),
     (T.LPM_TRIE, -1, 0, 524), (T.LPM_TRIE, -1, BPF_F_LOCK, errno.EINVAL),
     (T.DEVMAP_HASH, -1, 0, 524), (T.QUEUE, -1, BPF_F_LOCK, errno.EINVAL)],
)  # fmt: skip
def test_lookup_and_delete_flag_errors(kind, lock, flags, err):
    key_size = {T.QUEUE: 0, T.LPM_TRIE: 8}.get(kind, 4)
    extra = {"flags": MapFlag.NO_PREALLOC} if kind == T.LPM_TRIE else {}
    with create_map(type=kind, key_size=key_size, value_size=16 if lock >= 0 else 4,
                    max_entries=4, spin_lock_offset=lock, **extra) as m:  # fmt: skip
        with pytest.raises(MapError) as e:
            m.lookup_and_delete_raw(bytes(key_size), flags)
        assert e.value.errno == err and e.value.operation == "lookup_and_delete"


def _lookup_and_delete(fd, key: bytes, size: int, flags: int) -> bytes | None:
    """``BPF_MAP_LOOKUP_AND_DELETE_ELEM`` on a Linux map (None: ENOENT)."""
    from pybpf.syscall.attr import MapElemAttr, address, in_buffer, out_buffer
    from pybpf.syscall.call import bpf
    from pybpf.syscall.fd import fd_number
    from pybpf.syscall.uapi import Cmd

    key_buf, value_buf = in_buffer(key), out_buffer(size)
    attr = MapElemAttr(map_fd=fd_number(fd), key=address(key_buf), value=address(value_buf),
                       flags=flags)  # fmt: skip
    try:
        bpf(Cmd.MAP_LOOKUP_AND_DELETE_ELEM, attr)
    except SyscallError as err:
        if err.errno == errno.ENOENT:
            return None
        raise
    return bytes(value_buf)


@requires_bpf
@pytest.mark.parametrize("kind", [T.HASH, T.ARRAY])
@pytest.mark.parametrize("with_lock", [True, False])
def test_kernel_differential_lookup_and_delete(kernel_btf, kind, with_lock):
    both = _Both(kind, kernel_btf, 4 if with_lock else 0, 4 if with_lock else -1)
    rng = random.Random(11)
    try:
        for step in range(120):
            key = rng.randrange(5).to_bytes(4, "little")
            if rng.random() < 0.5:
                value = VALUE.pack(rng.randrange(1 << 32), rng.randrange(1 << 32), step)
                assert both.op("update", key, value, 0)[0][0] in ("ok", "err")
                continue
            flags = rng.choice([0, BPF_F_LOCK, BPF_F_LOCK, 8, BPF_F_LOCK | 1])
            k = _outcome(lambda: _lookup_and_delete(both.kfd, key, 16, flags))  # noqa: B023
            p = _outcome(lambda: both.m.lookup_and_delete_raw(key, flags))  # noqa: B023
            assert k == p, (step, key, flags)
    finally:
        both.close()


@requires_bpf
def test_kernel_map_lookup_takes_flags():
    """KernelMap.lookup(key, flags) offers what the portable Map.lookup(key, flags) does."""
    import pybpf
    from pybpf.kernel.maps import KernelMap

    if not EXAMPLE.exists():
        pytest.skip("examples/c/spin_lock.o is missing")
    key = bytes(4)
    results = {}
    for backend in ("kernel", "pybpf"):
        kw = {"backend": "kernel", "pin_maps_dir": None} if backend == "kernel" else {}
        with pybpf.load(EXAMPLE, **kw) as obj:
            out = []
            for name in ("locked_hash", "locked_array"):
                m = obj.maps[name]
                assert isinstance(m, KernelMap) == (backend == "kernel")
                if backend == "pybpf":
                    m.set_codecs()  # bytes in and out, as the kernel backend's
                obj.programs["count_locked"].test_run(bytes(60))
                out.append(_outcome(lambda: m.lookup(key, BPF_F_LOCK)))  # noqa: B023
                out.append(_outcome(lambda: m.lookup(key)))  # noqa: B023
                out.append(_outcome(lambda: m.lookup(key, 8)))  # noqa: B023
                missing = (9).to_bytes(4, "little")
                out.append(_outcome(lambda: m.lookup(missing, BPF_F_LOCK)))  # noqa: B023
            results[backend] = out
    assert results["kernel"] == results["pybpf"]
    assert results["kernel"][0] == ("ok", VALUE.pack(1, 0, 60))
    assert results["kernel"][2] == ("err", errno.EINVAL)
