"""Maps: Linux semantics of HASH, PERCPU_HASH, ARRAY, PERCPU_ARRAY (raw and Python APIs),
creation checks, codecs, access flags, lifetime."""

from __future__ import annotations

import errno

import pytest

from pybpf.errors import InputError, MapError, NotSupportedError
from pybpf.maps import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_NOEXIST,
    MAX_MAP_BYTES,
    ArrayMap,
    HashMap,
    MapDefinition,
    by_handle,
    by_id,
    create_map,
)
from pybpf.maptypes import MapFlag
from pybpf.maptypes import MapType as T
from pybpf.memory import atomics


@pytest.fixture(autouse=True)
def _state(monkeypatch, tmp_path):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def k4(i: int) -> bytes:
    return i.to_bytes(4, "little")


def v8(i: int) -> bytes:
    return i.to_bytes(8, "little")


def _errno(fn, *args) -> int:
    with pytest.raises(MapError) as info:
        fn(*args)
    return info.value.errno


# ---- creation ---------------------------------------------------------------------------------
CREATE_ERRORS = [
    (dict(type=T.HASH, key_size=0, value_size=8, max_entries=4), errno.EINVAL),
    (dict(type=T.HASH, key_size=4, value_size=0, max_entries=4), errno.EINVAL),
    (dict(type=T.HASH, key_size=4, value_size=8, max_entries=0), errno.EINVAL),
    (dict(type=T.HASH, key_size=1 << 22, value_size=8, max_entries=4), errno.E2BIG),
    (dict(type=T.HASH, key_size=4, value_size=8, max_entries=4, flags=0x400), errno.EINVAL),
    (dict(type=T.HASH, key_size=4, value_size=8, max_entries=4, flags=2), errno.EINVAL),
    (dict(type=T.LRU_HASH, key_size=4, value_size=8, max_entries=4, flags=1), 524),
    (dict(type=T.PERCPU_HASH, key_size=4, value_size=40000, max_entries=4), errno.E2BIG),
    (dict(type=T.ARRAY, key_size=8, value_size=8, max_entries=4), errno.EINVAL),
    (dict(type=T.ARRAY, key_size=4, value_size=0, max_entries=4), errno.EINVAL),
    (dict(type=T.ARRAY, key_size=4, value_size=8, max_entries=0), errno.EINVAL),
    (dict(type=T.PERCPU_ARRAY, key_size=4, value_size=8, max_entries=4, flags=0x400), 22),
    (dict(type=T.ARRAY, key_size=4, value_size=8, max_entries=4, flags=0x800), errno.EINVAL),
    (dict(type=T.ARRAY, key_size=4, value_size=8, max_entries=4, flags=0x8 | 0x10), 22),
    (dict(type=T.ARRAY, key_size=4, value_size=8, max_entries=4, flags=0x80 | 0x100), 22),
    (dict(type=T.ARRAY, key_size=4, value_size=8, max_entries=4, name="bad name"), 22),
    (dict(type=T.ARRAY, key_size=4, value_size=8, max_entries=4, map_extra=1), 22),
    (dict(type=T.PROG_ARRAY, key_size=4, value_size=8, max_entries=4), errno.EINVAL),
]


@pytest.mark.parametrize("attrs,err", CREATE_ERRORS)
def test_creation_checks(attrs, err):
    with pytest.raises(MapError) as info:
        create_map(**attrs)
    assert info.value.errno == err and info.value.operation == "create"


def test_unsupported_type_is_named():
    with pytest.raises(NotSupportedError) as info:
        create_map(type=T.STACK_TRACE, key_size=4, value_size=8, max_entries=4)
    assert info.value.feature == "stack_trace"


def test_huge_maps_are_refused_before_allocating():
    with pytest.raises(MapError) as info:
        create_map(type=T.ARRAY, key_size=4, value_size=1 << 20, max_entries=1 << 20)
    assert info.value.errno == errno.ENOMEM
    assert (1 << 40) > MAX_MAP_BYTES
    with pytest.raises(MapError) as info:
        create_map(type=T.HASH, key_size=4, value_size=8, max_entries=(1 << 31) + 1)
    assert info.value.errno == errno.E2BIG


def test_definition_and_attributes():
    d = MapDefinition(T.HASH, 4, 8, 16, name="counts")
    with create_map(d) as m:
        assert isinstance(m, HashMap) and m.definition == d.resolved()
        assert m.name == "counts" and m.max_entries == 16
        assert by_handle(m.handle) is m and by_id(m.id) is m
        assert "hash" in repr(m)
    assert by_handle(m.handle) is None and m.closed
    with pytest.raises(InputError):
        create_map(d, key_size=4)
    with pytest.raises(InputError):
        create_map(type=T.HASH, key_size=4)


# ---- hash ---------------------------------------------------------------------------------
@pytest.fixture(
    params=[("anonymous", "auto"), ("file", "auto"), ("anonymous", "python")],
    ids=["anonymous", "file", "python-atomics"],
)
def hmap(request):
    backing, backend = request.param
    previous = atomics.backend()
    atomics.set_backend(backend)  # "python": no native lookups, Python locks
    try:
        with create_map(type=T.HASH, key_size=4, value_size=8, max_entries=4, backing=backing) as m:
            yield m
    finally:
        atomics.set_backend(previous)


def test_hash_flags_and_errnos(hmap):
    assert hmap.lookup_raw(k4(1)) is None
    hmap.update_raw(k4(1), v8(10))
    assert hmap.lookup_raw(k4(1)) == v8(10)
    assert _errno(hmap.update_raw, k4(1), v8(11), BPF_NOEXIST) == errno.EEXIST
    assert _errno(hmap.update_raw, k4(2), v8(11), BPF_EXIST) == errno.ENOENT
    hmap.update_raw(k4(1), v8(12), BPF_EXIST)
    assert hmap.lookup_raw(k4(1)) == v8(12)
    assert _errno(hmap.update_raw, k4(1), v8(1), 3) == errno.EINVAL
    assert _errno(hmap.update_raw, k4(1), v8(1), BPF_F_LOCK) == errno.EINVAL
    for i in (2, 3, 4):
        hmap.update_raw(k4(i), v8(i), BPF_NOEXIST)
    assert _errno(hmap.update_raw, k4(5), v8(5), BPF_ANY) == errno.E2BIG
    assert _errno(hmap.update_raw, k4(5), v8(5), BPF_EXIST) == errno.ENOENT  # flags first
    hmap.update_raw(k4(4), v8(44))  # replacing works when full
    assert _errno(hmap.delete_raw, k4(9)) == errno.ENOENT
    hmap.delete_raw(k4(2))
    hmap.update_raw(k4(5), v8(5))
    assert len(hmap) == 4
    assert sorted(hmap.keys_raw()) == [k4(1), k4(3), k4(4), k4(5)]


def test_hash_get_next_key_walks_every_key_once(hmap):
    for i in (7, 3, 9):
        hmap.update_raw(k4(i), v8(i))
    seen = []
    key = hmap.get_next_key(None)
    while key is not None:
        seen.append(key)
        key = hmap.get_next_key(key)
    assert sorted(seen) == [k4(3), k4(7), k4(9)]
    assert hmap.get_next_key(k4(1000)) == seen[0]  # a missing key restarts (Linux)


def test_hash_python_api(hmap):
    hmap.set_codecs("uint", "uint")
    hmap[1] = 100
    hmap[2] = 200
    assert hmap[1] == 100 and hmap.get(3) is None and hmap.get(3, -1) == -1
    assert 1 in hmap and 3 not in hmap
    assert sorted(hmap) == [1, 2] and sorted(hmap.items()) == [(1, 100), (2, 200)]
    assert sorted(hmap.values()) == [100, 200]
    hmap.update(2, 222, flags=BPF_EXIST)
    with pytest.raises(MapError):
        hmap.update(3, 3, flags=BPF_EXIST)
    with pytest.raises(KeyError):
        hmap[3]
    with pytest.raises(KeyError):
        del hmap[3]
    assert hmap.pop(2) == 222 and 2 not in hmap
    assert hmap.pop(2, "gone") == "gone"
    del hmap[1]
    assert len(hmap) == 0
    hmap[b"\x05\0\0\0"] = b"\x01" * 8  # bytes in, whatever the codec
    assert hmap[5] == 0x0101010101010101
    hmap.clear()
    assert len(hmap) == 0 and list(hmap) == []
    with pytest.raises(InputError):
        hmap[1 << 40] = 1  # the key does not fit
    with pytest.raises(InputError):
        hmap.update_raw(b"abc", v8(1))
    with pytest.raises(InputError):
        hmap[1] = "text"


def test_hash_negative_ints_and_signed_codec(hmap):
    hmap.set_codecs("int", "int")
    hmap[-1] = -5
    assert hmap[-1] == -5
    assert hmap.lookup_raw(b"\xff" * 4) == b"\xfb" + b"\xff" * 7


def test_hash_values_have_stable_addresses(hmap):
    hmap.set_codecs("uint", "uint")
    hmap[1] = 5
    address = hmap.value_address(1)
    hmap[2] = 6
    hmap[1] = 7  # in place
    assert hmap.value_address(1) == address
    assert atomics.load_at(address, 8) == 7
    assert hmap.atomic_add(1, 3) == 7 and hmap[1] == 10
    with pytest.raises(KeyError):
        hmap.value_address(9)
    with pytest.raises(InputError):
        hmap.atomic_add(1, 1, offset=4)


def test_hash_program_entries(hmap):
    assert hmap.elem_lookup(k4(1)) == 0
    assert hmap.elem_update(k4(1), v8(3), BPF_NOEXIST) == 0
    assert hmap.elem_update(k4(1), v8(3), BPF_NOEXIST) == -errno.EEXIST
    assert hmap.elem_update(k4(1), v8(3), 7) == -errno.EINVAL
    address = hmap.elem_lookup(k4(1))
    region = hmap.regions[0]
    assert region.kind == "map_value" and region.contains(address, 8)
    region.view[address - region.address] = 9
    assert hmap.lookup_raw(k4(1)) == v8(9)
    assert hmap.elem_delete(k4(1)) == 0 and hmap.elem_delete(k4(1)) == -errno.ENOENT


def test_hash_zero_seed_and_many_elements():
    with create_map(
        type=T.HASH, key_size=8, value_size=4, max_entries=1000, flags=MapFlag.ZERO_SEED
    ) as m:
        for i in range(1000):
            m.update_raw(v8(i * 7919), k4(i))
        assert len(m) == 1000
        for i in range(0, 1000, 3):
            m.delete_raw(v8(i * 7919))
        assert len(m) == 1000 - 334
        assert all(m.lookup_raw(v8(i * 7919)) == k4(i) for i in range(1, 1000, 3))


def test_access_flags_and_freeze():
    with create_map(
        type=T.HASH, key_size=4, value_size=8, max_entries=4, flags=MapFlag.RDONLY
    ) as m:
        assert _errno(m.update_raw, k4(1), v8(1)) == errno.EPERM
        assert m.lookup_raw(k4(1)) is None
    with create_map(
        type=T.HASH, key_size=4, value_size=8, max_entries=4, flags=MapFlag.WRONLY
    ) as m:
        m.update_raw(k4(1), v8(1))
        assert _errno(m.lookup_raw, k4(1)) == errno.EPERM
    with create_map(type=T.ARRAY, key_size=4, value_size=8, max_entries=4) as m:
        m.update_raw(k4(1), v8(1))
        m.freeze()
        assert m.frozen
        assert _errno(m.update_raw, k4(1), v8(2)) == errno.EPERM
        assert m.lookup_raw(k4(1)) == v8(1)
        assert m.elem_update(k4(1), v8(3), 0) == 0  # programs still write
    flags = MapFlag.RDONLY_PROG
    with create_map(type=T.ARRAY, key_size=4, value_size=8, max_entries=4, flags=flags) as m:
        assert not m.regions[0].writable and m.regions[0].readable


def test_closed_maps_refuse_operations(tmp_path):
    m = create_map(type=T.HASH, key_size=4, value_size=8, max_entries=4, backing="file")
    path = m.path
    assert path.exists()
    m.close()
    m.close()
    assert not path.exists()
    assert _errno(m.lookup_raw, k4(1)) == errno.EBADF
    with pytest.raises(MapError):
        m[1] = 1
    # the program entries never touch the unmapped buffer either
    assert _errno(m.elem_lookup, k4(1)) == errno.EBADF
    assert _errno(m.elem_update, k4(1), v8(1), 0) == errno.EBADF
    for attrs, call in (
        (
            dict(type=T.QUEUE, key_size=0, value_size=4, max_entries=2),
            lambda q: q.elem_push(k4(1), 0),
        ),
        (dict(type=T.RINGBUF, key_size=0, value_size=0, max_entries=4096), lambda r: r.reserve(8)),
        (
            dict(type=T.PERF_EVENT_ARRAY, key_size=4, value_size=4, max_entries=1),
            lambda p: p.output(0, b"x"),
        ),
    ):
        other = create_map(**attrs)
        other.close()
        assert _errno(call, other) == errno.EBADF


def test_threads_share_a_map():
    import threading

    with create_map(type=T.HASH, key_size=4, value_size=8, max_entries=64) as m:

        def work(base):
            for i in range(300):
                key = k4(base + i % 16)
                try:
                    m.update_raw(key, key * 2, BPF_ANY)
                    if i % 3 == 0:
                        m.delete_raw(key)
                except MapError as err:
                    assert err.errno == errno.ENOENT
                value = m.lookup_raw(key)
                assert value in (None, key * 2)

        threads = [threading.Thread(target=work, args=(n * 16,)) for n in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        keys = m.keys_raw()
        assert len(keys) == len(set(keys)) == len(m) and all(m.lookup_raw(k) == k * 2 for k in keys)


# ---- per-CPU hash -------------------------------------------------------------------------
def test_percpu_hash_user_and_program_views():
    with create_map(type=T.PERCPU_HASH, key_size=4, value_size=4, max_entries=4, ncpus=3) as m:
        assert m.ncpus == 3 and m.user_value_size == 24
        raw = b"".join(bytes([c + 1] * 4) + bytes([0xEE] * 4) for c in range(3))
        m.update_raw(k4(1), raw)
        assert m.lookup_raw(k4(1)) == raw  # padding bytes are kept, as Linux does
        m.set_codecs("uint", "uint")
        assert m[1] == [0x01010101, 0x02020202, 0x03030303]
        m[2] = [7, 8, 9]
        assert m[2] == [7, 8, 9]
        m[3] = 5  # one value for every CPU
        assert m[3] == [5, 5, 5]
        # a program on CPU 1 inserts: the other CPUs' copies are zero
        assert m.elem_update(k4(4), k4(42), BPF_ANY, cpu=1) == 0
        assert m[4] == [0, 42, 0]
        # ... and updates only its own copy of an existing element
        assert m.elem_update(k4(2), k4(80), BPF_ANY, cpu=2) == 0
        assert m[2] == [7, 8, 80]
        a0, a2 = m.elem_lookup(k4(2), 0), m.elem_lookup(k4(2), 2)
        assert a2 - a0 == 16
        assert m.elem_lookup_percpu(k4(2), 2) == a2
        assert m.elem_lookup_percpu(k4(2), 3) == 0
        assert _errno(m.update_raw, k4(1), raw, BPF_F_LOCK) == errno.EINVAL
        with pytest.raises(InputError):
            m[1] = [1, 2]


# ---- arrays -------------------------------------------------------------------------------
@pytest.fixture
def amap():
    with create_map(type=T.ARRAY, key_size=4, value_size=6, max_entries=3) as m:
        yield m


def test_array_semantics(amap):
    assert isinstance(amap, ArrayMap)
    assert amap.lookup_raw(k4(0)) == bytes(6)  # elements always exist, zeroed
    assert amap.lookup_raw(k4(3)) is None
    amap.update_raw(k4(2), b"abcdef")
    assert amap.lookup_raw(k4(2)) == b"abcdef"
    assert _errno(amap.update_raw, k4(3), b"abcdef") == errno.E2BIG
    assert _errno(amap.update_raw, k4(1), b"abcdef", BPF_NOEXIST) == errno.EEXIST
    assert _errno(amap.update_raw, k4(3), b"abcdef", BPF_NOEXIST) == errno.E2BIG
    assert _errno(amap.update_raw, k4(1), b"abcdef", 3) == errno.EINVAL
    assert _errno(amap.update_raw, k4(1), b"abcdef", BPF_F_LOCK) == errno.EINVAL
    amap.update_raw(k4(1), b"ghijkl", BPF_EXIST)
    assert _errno(amap.delete_raw, k4(1)) == errno.EINVAL
    assert amap.get_next_key(None) == k4(0)
    assert amap.get_next_key(k4(0)) == k4(1)
    assert amap.get_next_key(k4(2)) is None
    assert amap.get_next_key(k4(99)) == k4(0)
    assert len(amap) == 3 and 2 in amap and 3 not in amap
    assert amap.keys_raw() == [k4(0), k4(1), k4(2)]
    assert _errno(amap.lookup_and_delete_raw, k4(1)) == 524
    amap.clear()
    assert amap.lookup_raw(k4(2)) == bytes(6)


def test_array_memory_and_program_view(amap):
    addresses = [amap.elem_lookup(k4(i)) for i in range(3)]
    assert addresses[1] - addresses[0] == 8  # elements are round8(value_size) apart
    assert amap.elem_lookup(k4(3)) == 0
    mem = amap.memory()
    mem[8:14] = b"zzzzzz"
    assert amap.lookup_raw(k4(1)) == b"zzzzzz"
    mem.release()
    assert amap.elem_update(k4(0), b"qqqqqq", BPF_ANY) == 0
    assert amap.elem_update(k4(5), b"qqqqqq", BPF_ANY) == -errno.E2BIG
    assert amap.elem_delete(k4(0)) == -errno.EINVAL
    assert amap.lookup_raw(k4(0)) == b"qqqqqq"


def test_percpu_array():
    with create_map(type=T.PERCPU_ARRAY, key_size=4, value_size=4, max_entries=2, ncpus=2) as m:
        assert m.lookup_raw(k4(1)) == bytes(16)
        raw = b"\x01" * 8 + b"\x02" * 8
        m.update_raw(k4(1), raw)
        assert m.lookup_raw(k4(1)) == raw
        assert _errno(m.update_raw, k4(0), raw, BPF_NOEXIST) == errno.EEXIST
        assert _errno(m.update_raw, k4(0), raw, BPF_F_LOCK) == errno.EINVAL
        assert m.elem_update(k4(0), k4(9), BPF_ANY, cpu=1) == 0
        m.set_codecs("uint", "uint")
        assert m[0] == [0, 9]
        assert m.elem_lookup(k4(0), 1) - m.elem_lookup(k4(0), 0) == 8


def test_percpu_default_ncpus(monkeypatch):
    monkeypatch.setenv("PYBPF_NCPUS", "5")
    with create_map(type=T.PERCPU_ARRAY, key_size=4, value_size=8, max_entries=1) as m:
        assert m.ncpus == 5 and len(m.lookup_raw(k4(0))) == 40
    with create_map(type=T.ARRAY, key_size=4, value_size=8, max_entries=1) as m:
        assert m.ncpus == 1


def test_batches(hmap):
    hmap.set_codecs("uint", "uint")
    assert hmap.update_batch({1: 10, 2: 20}) == 2
    assert hmap.update_batch([(3, 30)], flags=BPF_NOEXIST) == 1
    with pytest.raises(MapError) as info:
        hmap.update_batch([(4, 40), (5, 50), (6, 60)])  # the map holds 4
    assert info.value.errno == errno.E2BIG and info.value.count == 1
    assert sorted(hmap.lookup_batch()) == [(1, 10), (2, 20), (3, 30), (4, 40)]
    assert hmap.lookup_batch([2, 9]) == [(2, 20)]
    with pytest.raises(MapError) as info:
        hmap.delete_batch([1, 2, 9, 3])
    assert info.value.errno == errno.ENOENT and info.value.count == 2
    assert sorted(hmap) == [3, 4]
