"""Maps: LRU hashes, LPM tries, queues and stacks, ring buffers, perf event arrays,
map-in-maps and prog arrays, each with Linux's semantics."""

from __future__ import annotations

import errno
import ipaddress
import random
import struct

import pytest

from pybpf.errors import InputError, MapError
from pybpf.maps import BPF_ANY, BPF_EXIST, BPF_NOEXIST, MapDefinition, create_map
from pybpf.maps.perf_event_array import F_CURRENT_CPU, PERF_RECORD_SAMPLE
from pybpf.maps.ringbuf import (
    BUSY_BIT,
    DISCARD_BIT,
    RB_AVAIL_DATA,
    RB_CONS_POS,
    RB_PROD_POS,
    RB_RING_SIZE,
    ringbuf_of_record,
)
from pybpf.maptypes import MapFlag
from pybpf.maptypes import MapType as T


@pytest.fixture(autouse=True)
def _state(monkeypatch, tmp_path):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def k4(i: int) -> bytes:
    return i.to_bytes(4, "little")


def _errno(fn, *args) -> int:
    with pytest.raises(MapError) as info:
        fn(*args)
    return info.value.errno


# ---- LRU ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [T.LRU_HASH, T.LRU_PERCPU_HASH])
def test_lru_size_bound_and_recently_used_keys_kept(kind):
    n = 64
    with create_map(type=kind, key_size=4, value_size=8, max_entries=n, ncpus=2) as m:
        for i in range(n):
            m.update_raw(k4(i), bytes(m.user_value_size))
        hot = set(range(0, n, 4))
        rng = random.Random(1)
        for round_ in range(5):
            for i in hot:
                assert m.elem_lookup(k4(i)), i  # a program uses the hot keys
            for j in range(n // 2):  # new keys push others out, never the hot ones
                m.update_raw(k4(1000 + round_ * 100 + j), bytes(m.user_value_size))
                assert len(m) <= n
            keys = {int.from_bytes(k, "little") for k in m.keys_raw()}
            assert hot <= keys and len(keys) == n
            rng.shuffle(list(hot))
        # updates of existing keys never evict
        before = set(m.keys_raw())
        for key in before:
            m.update_raw(key, bytes(m.user_value_size), BPF_EXIST)
        assert set(m.keys_raw()) == before
        assert _errno(m.update_raw, k4(5000), bytes(m.user_value_size), BPF_EXIST) == 2
        assert _errno(m.update_raw, next(iter(before)), bytes(m.user_value_size), 1) == 17


def test_lru_programs_insert_when_full():
    with create_map(type=T.LRU_HASH, key_size=4, value_size=8, max_entries=8) as m:
        for i in range(100):
            assert m.elem_update(k4(i), bytes(8), BPF_ANY) == 0
            assert len(m) == min(i + 1, 8)
        assert k4(99) in m.keys_raw()


# ---- LPM trie --------------------------------------------------------------------------------
def lpm_key(prefixlen: int, address: str) -> bytes:
    return struct.pack("<I", prefixlen) + ipaddress.ip_address(address).packed


@pytest.fixture
def trie():
    with create_map(
        type=T.LPM_TRIE, key_size=8, value_size=4, max_entries=8, flags=MapFlag.NO_PREALLOC
    ) as m:
        yield m


def test_lpm_longest_prefix_match(trie):
    trie.update_raw(lpm_key(8, "10.0.0.0"), k4(8))
    trie.update_raw(lpm_key(16, "10.1.0.0"), k4(16))
    trie.update_raw(lpm_key(24, "10.1.2.0"), k4(24))
    trie.update_raw(lpm_key(0, "0.0.0.0"), k4(0))
    assert trie.lookup_raw(lpm_key(32, "10.1.2.3")) == k4(24)
    assert trie.lookup_raw(lpm_key(32, "10.1.3.3")) == k4(16)
    assert trie.lookup_raw(lpm_key(32, "10.2.3.3")) == k4(8)
    assert trie.lookup_raw(lpm_key(32, "11.0.0.1")) == k4(0)
    # the lookup key's own prefix length bounds the match
    assert trie.lookup_raw(lpm_key(20, "10.1.2.3")) == k4(16)
    assert trie.lookup_raw(lpm_key(33, "10.1.2.3")) is None
    # programs get an address of the matched value
    address = trie.elem_lookup(lpm_key(32, "10.1.2.3"))
    assert address and trie.regions[0].contains(address, 4)


def test_lpm_update_delete_rules(trie):
    trie.update_raw(lpm_key(8, "10.1.2.3"), k4(1))  # data bits past the prefix are kept
    assert trie.keys_raw() == [lpm_key(8, "10.1.2.3")]
    trie.update_raw(lpm_key(8, "10.9.9.9"), k4(2))  # same prefix: replaced
    assert trie.keys_raw() == [lpm_key(8, "10.9.9.9")]
    assert trie.lookup_raw(lpm_key(32, "10.0.0.0")) == k4(2)
    assert _errno(trie.update_raw, lpm_key(8, "10.0.0.0"), k4(3), BPF_NOEXIST) == errno.EEXIST
    assert _errno(trie.update_raw, lpm_key(9, "10.0.0.0"), k4(3), BPF_EXIST) == errno.ENOENT
    assert _errno(trie.update_raw, lpm_key(33, "10.0.0.0"), k4(3)) == errno.EINVAL
    assert _errno(trie.update_raw, lpm_key(8, "10.0.0.0"), k4(3), 3) == errno.EINVAL
    assert _errno(trie.delete_raw, lpm_key(9, "10.0.0.0")) == errno.ENOENT
    assert _errno(trie.delete_raw, lpm_key(33, "10.0.0.0")) == errno.EINVAL
    trie.delete_raw(lpm_key(8, "10.200.0.0"))  # exact prefix, bits past it ignored
    assert len(trie) == 0
    for i in range(8):
        trie.update_raw(lpm_key(32, f"1.1.1.{i}"), k4(i))
    assert _errno(trie.update_raw, lpm_key(32, "1.1.1.9"), k4(9)) == errno.ENOSPC
    trie.update_raw(lpm_key(32, "1.1.1.3"), k4(33))  # replacing works when full
    assert trie.lookup_raw(lpm_key(32, "1.1.1.3")) == k4(33)


def test_lpm_matches_a_brute_force_model():
    rng = random.Random(7)
    with create_map(
        type=T.LPM_TRIE, key_size=6, value_size=4, max_entries=200, flags=MapFlag.NO_PREALLOC
    ) as m:
        model: dict[tuple[int, int], int] = {}
        for i in range(150):
            length = rng.choice([0, 3, 8, 9, 12, 16])
            data = rng.getrandbits(16)
            masked = data & (((1 << length) - 1) << (16 - length))
            m.update_raw(struct.pack("<IH", length, 0)[:4] + data.to_bytes(2, "big"), k4(i))
            model[(length, masked)] = i
            if rng.random() < 0.2 and model:
                (dl, dm) = rng.choice(sorted(model))
                m.delete_raw(struct.pack("<I", dl) + dm.to_bytes(2, "big"))
                del model[(dl, dm)]
        assert len(m) == len(model)
        for _ in range(300):
            probe = rng.getrandbits(16)
            best = None
            for (length, masked), value in model.items():
                mask = ((1 << length) - 1) << (16 - length)
                if probe & mask == masked and (best is None or length > best[0]):
                    best = (length, value)
            got = m.lookup_raw(struct.pack("<I", 16) + probe.to_bytes(2, "big"))
            assert got == (None if best is None else k4(best[1]))


def test_lpm_creation_rules():
    for attrs in (
        dict(key_size=8, value_size=4, max_entries=4, flags=0),  # NO_PREALLOC is required
        dict(key_size=4, value_size=4, max_entries=4, flags=1),
        dict(key_size=261, value_size=4, max_entries=4, flags=1),
        dict(key_size=8, value_size=0, max_entries=4, flags=1),
        dict(key_size=8, value_size=4, max_entries=0, flags=1),
    ):
        with pytest.raises(MapError) as info:
            create_map(type=T.LPM_TRIE, **attrs)
        assert info.value.errno == errno.EINVAL


# ---- queue and stack -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [T.QUEUE, T.STACK])
def test_queue_stack_semantics(kind):
    with create_map(type=kind, key_size=0, value_size=4, max_entries=3) as q:
        assert q.lookup_raw() is None and q.lookup_and_delete_raw() is None
        for i in (1, 2, 3):
            q.update_raw(None, k4(i))
        assert len(q) == 3
        assert _errno(q.update_raw, None, k4(4)) == errno.E2BIG
        assert _errno(q.update_raw, None, k4(4), BPF_NOEXIST) == errno.EINVAL
        assert _errno(q.update_raw, None, k4(4), 3) == errno.EINVAL
        q.update_raw(None, k4(4), BPF_EXIST)  # evicts the oldest (1)
        assert q.snapshot() == [k4(2), k4(3), k4(4)]
        order = [2, 3, 4] if kind == T.QUEUE else [4, 3, 2]
        assert q.lookup_raw() == k4(order[0])  # peek
        assert [q.lookup_and_delete_raw() for _ in range(3)] == [k4(i) for i in order]
        assert q.lookup_and_delete_raw() is None
        assert _errno(q.delete_raw, None) == errno.EINVAL
        assert _errno(q.get_next_key, None) == errno.EINVAL
        q.set_codecs(None, "uint")
        q.push(10)
        q.push(11)
        assert list(q) == [10, 11] and q.peek() == (10 if kind == T.QUEUE else 11)
        assert q.pop() == (10 if kind == T.QUEUE else 11)
        q.clear()
        assert len(q) == 0 and q.pop(None) is None
        with pytest.raises(MapError):
            q.pop()
        assert q.elem_push(k4(5), 0) == 0 and q.elem_pop(False) == k4(5)
        assert q.elem_push(k4(5), 4) == -errno.EINVAL


def test_queue_creation_rules():
    with pytest.raises(MapError) as info:
        create_map(type=T.QUEUE, key_size=4, value_size=4, max_entries=3)
    assert info.value.errno == errno.EINVAL


# ---- ring buffer -----------------------------------------------------------------------------
@pytest.fixture
def ring():
    with create_map(type=T.RINGBUF, key_size=0, value_size=0, max_entries=4096) as rb:
        yield rb


def test_ringbuf_records_and_consumer(ring):
    assert ring.query(RB_RING_SIZE) == 4096 and ring.query(RB_AVAIL_DATA) == 0
    assert ring.output(b"hello") == 0
    a = ring.reserve(3)
    b = ring.reserve(10)
    assert a and b and b - a == 16  # 8-byte header + 3 bytes, padded to 8
    header = struct.unpack("<II", ring._data[0:8])
    assert header[0] == 5  # committed: no busy bit
    assert struct.unpack("<I", ring._data[16:20])[0] == 3 | BUSY_BIT
    ring._data[a - ring._data_addr : a - ring._data_addr + 3] = b"abc"
    assert ringbuf_of_record(a) is ring and ringbuf_of_record(a + 1 << 20) is None
    got = []
    assert ring.consume(got.append) == 1  # stops at the busy record
    assert got == [b"hello"]
    assert ring.commit(b, discard=True) and ring.commit(a)
    assert not ring.commit(a)  # already committed
    assert ring.consume(got.append) == 1  # the discarded record is skipped
    assert got == [b"hello", b"abc"]
    assert ring.query(RB_CONS_POS) == ring.query(RB_PROD_POS) == 16 + 16 + 24
    assert struct.unpack("<I", ring._data[32:36])[0] & DISCARD_BIT
    assert ring.output(b"x", flags=4) == -errno.EINVAL
    assert ring.reserve(4096) == 0  # longer than the ring


def test_ringbuf_wraps_like_linux(ring):
    seen = []
    total = 0
    for i in range(300):  # many revolutions of a 4 KiB ring
        payload = bytes([i % 251]) * (1 + (i * 37) % 200)
        if i % 3:
            assert ring.output(payload) == 0
        else:
            address = ring.reserve(len(payload))
            assert address
            offset = address - ring._data_addr
            ring._data[offset : offset + len(payload)] = payload  # may run into the mirror
            assert ring.commit(address)
        total += 1
        if i % 5 == 4:
            ring.consume(seen.append)
    ring.consume(seen.append)
    assert len(seen) == total
    assert all(s == bytes([i % 251]) * (1 + (i * 37) % 200) for i, s in enumerate(seen))


def test_ringbuf_full_and_callback_stop(ring):
    count = 0
    while ring.output(b"z" * 100) == 0:
        count += 1
    assert count == 4096 // 112 and ring.output(b"z" * 100) == -errno.EAGAIN
    assert ring.output(b"z" * 40) == 0 and ring.output(b"z") == -errno.EAGAIN  # 4095 max
    count += 1
    assert ring.consume(lambda data: -7) == -7  # the callback asked to stop
    assert ring.consume(lambda data: None, limit=3) == 3
    assert ring.poll(lambda data: None, timeout=0) == count - 4
    assert ring.poll(lambda data: None, timeout=0.01) == 0


def test_ringbuf_creation_rules():
    for attrs in (
        dict(key_size=0, value_size=0, max_entries=4000),
        dict(key_size=0, value_size=0, max_entries=3 * 4096),
        dict(key_size=4, value_size=0, max_entries=4096),
    ):
        with pytest.raises(MapError) as info:
            create_map(type=T.RINGBUF, **attrs)
        assert info.value.errno == errno.EINVAL


# ---- perf event array --------------------------------------------------------------------------
def test_perf_event_array_output_and_consumer():
    with create_map(
        type=T.PERF_EVENT_ARRAY, key_size=4, value_size=4, max_entries=2, page_count=1
    ) as perf:
        assert perf.output(0, b"abc") == -errno.ENOENT  # nobody listens on slot 0
        assert perf.output(5, b"abc") == -errno.E2BIG
        assert perf.output(1 << 60, b"abc") == -errno.EINVAL
        perf.open_buffer()
        assert perf.output(0, b"abc") == 0
        assert perf.output(F_CURRENT_CPU, b"defgh", cpu=1) == 0
        got, lost = [], []
        assert perf.consume(lambda i, d: got.append((i, d)), lambda i, n: lost.append((i, n))) == 2
        assert got == [(0, b"abc\0"), (1, b"defgh" + bytes(7))]  # raw sizes padded like Linux
        n = 0
        while perf.output(0, b"y" * 100) == 0:
            n += 1
        assert n == 4096 // 112 and perf.output(0, b"y" * 100) == -errno.ENOSPC
        assert perf.output(0, b"y" * 40) == 0 and perf.output(0, b"y") == -errno.ENOSPC
        n += 1
        got.clear()
        perf.consume(lambda i, d: got.append((i, d)), lambda i, c: lost.append((i, c)))
        assert len(got) == n and lost == [(0, 3)]
        for _ in range(100):  # wrap around the 4 KiB ring
            assert perf.output(0, b"w" * 50) == 0
            assert perf.poll(lambda i, d: got.append(d)) == 1
        assert got[-1] == b"w" * 50 + bytes(2)
        perf.close_buffer(0)
        assert perf.output(0, b"a") == -errno.ENOENT
        assert _errno(perf.delete_raw, k4(0)) == errno.ENOENT
        perf.update_raw(k4(0), k4(99))
        assert perf.output(0, b"a") == 0 and perf.keys_raw() == [k4(0), k4(1)]
        header = perf._read(0, atomics_tail(perf), 8)
        assert struct.unpack("<IHH", header)[0] == PERF_RECORD_SAMPLE


def atomics_tail(perf) -> int:
    from pybpf.memory import atomics

    return atomics.load_at(perf._control[0] + 1032, 8)


# ---- map-in-maps and prog arrays ------------------------------------------------------------
def test_array_of_maps_and_hash_of_maps():
    inner_d = MapDefinition(T.ARRAY, 4, 8, 4)
    with (
        create_map(
            type=T.ARRAY_OF_MAPS, key_size=4, value_size=4, max_entries=2, inner=inner_d
        ) as outer,
        create_map(
            type=T.HASH_OF_MAPS, key_size=4, value_size=4, max_entries=2, inner=inner_d
        ) as houter,
        create_map(inner_d) as inner,
        create_map(type=T.ARRAY, key_size=4, value_size=8, max_entries=5) as other,
    ):
        outer[0] = inner
        assert outer[0] is inner and outer.lookup_raw(k4(0)) == k4(inner.id)
        assert outer.lookup_raw(k4(1)) is None
        assert outer.elem_lookup(k4(0)) == inner.handle and outer.elem_lookup(k4(1)) == 0
        assert _errno(outer.update_raw, k4(1), k4(other.id)) == errno.EINVAL  # max_entries
        assert _errno(outer.update_raw, k4(1), k4(999999)) == errno.EBADF
        assert _errno(outer.update_raw, k4(1), k4(inner.id), BPF_NOEXIST) == errno.EINVAL
        assert _errno(outer.update_raw, k4(2), k4(inner.id)) == errno.E2BIG
        del outer[0]
        assert _errno(outer.delete_raw, k4(0)) == errno.ENOENT
        houter[7] = inner
        assert houter[7] is inner and houter.elem_lookup(k4(7)) == inner.handle
        assert _errno(houter.update_raw, k4(8), k4(other.id)) == errno.EINVAL
    for kind in (T.ARRAY_OF_MAPS, T.HASH_OF_MAPS):
        with pytest.raises(MapError):
            create_map(type=kind, key_size=4, value_size=4, max_entries=2)  # no template


def test_prog_array():
    class Prog:
        id = 42

    with create_map(type=T.PROG_ARRAY, key_size=4, value_size=4, max_entries=4) as jt:
        jt[1] = Prog()
        jt[2] = 7
        assert jt[1] == 42 and jt.program_id(1) == 42 and jt.program_id(0) == 0
        assert jt.program_id(99) == 0 and len(jt) == 2
        assert _errno(jt.update_raw, k4(0), k4(0)) == errno.EINVAL
        assert _errno(jt.update_raw, k4(0), k4(5), BPF_EXIST) == errno.EINVAL
        assert _errno(jt.update_raw, k4(9), k4(5)) == errno.E2BIG
        assert _errno(jt.delete_raw, k4(9)) == errno.E2BIG
        del jt[1]
        assert jt.program_id(1) == 0 and 1 not in jt and 2 in jt
        assert jt.elem_lookup(k4(2)) == 0  # programs cannot read prog arrays
        with pytest.raises(InputError):
            jt[0] = "prog"
