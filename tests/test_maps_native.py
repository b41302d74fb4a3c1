"""Native map operations: the compiled hash lookup and CRC-32 agree with the Python path,
hand busy locks and corrupt chains back to it, and are skipped with the Python backend."""

from __future__ import annotations

import ctypes
import random
import threading
import time
import zlib

import pytest

from pybpf.maps import create_map
from pybpf.maps.native import DESCRIPTOR_FIELDS, module_ir, native_map_ops
from pybpf.maptypes import MapType as T
from pybpf.memory import atomics

OPS = native_map_ops()
needs_native = pytest.mark.skipif(OPS is None, reason="llvmlite is not installed")


@pytest.fixture(autouse=True)
def _state(monkeypatch, tmp_path):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def test_ir_names_every_descriptor_field():
    ir = module_ir()
    assert "@pybpf_hash_lookup" in ir and "@pybpf_crc32" in ir
    for name in DESCRIPTOR_FIELDS:
        assert f"%f.{name} = load" in ir


@needs_native
def test_crc32_is_zlibs():
    rng = random.Random(3)
    for n in (0, 1, 4, 7, 64, 300):
        data = rng.randbytes(n)
        seed = rng.getrandbits(32)
        assert OPS.crc32(data, n, seed) == zlib.crc32(data, seed)
    assert native_map_ops() is OPS  # compiled once


@needs_native
@pytest.mark.parametrize("kind", [T.HASH, T.PERCPU_HASH, T.LRU_HASH])
def test_native_and_python_lookups_agree(kind):
    with create_map(type=kind, key_size=12, value_size=8, max_entries=64, ncpus=2) as m:
        rng = random.Random(kind)
        keys = [rng.randbytes(12) for _ in range(80)]
        for k in keys[:64]:
            m.update_raw(k, rng.randbytes(m.user_value_size))
        for k in keys[::3]:
            if m.lookup_raw(k) is not None:
                m.delete_raw(k)
        previous = atomics.backend()
        try:
            for k in keys:
                native = (m.lookup_raw(k), m.elem_lookup_quiet(k, 1))
                assert m._native_lookup(k, 0) >= 0  # the native path answered
                atomics.set_backend("python")
                assert m._native_lookup(k, 0) == -1  # ... and is skipped here
                assert (m.lookup_raw(k), m.elem_lookup_quiet(k, 1)) == native
                atomics.set_backend("native")
        finally:
            atomics.set_backend(previous)


@needs_native
def test_lru_mark_from_native_lookups():
    with create_map(type=T.LRU_HASH, key_size=4, value_size=8, max_entries=4) as m:
        for i in range(4):
            m.update_raw(i.to_bytes(4, "little"), bytes(8))
        assert m.elem_lookup((2).to_bytes(4, "little"))
        marked = [i for i in range(4) if m._ref[i]]
        assert len(marked) == 1  # program lookups mark; user lookups do not
        m.lookup_raw((3).to_bytes(4, "little"))
        assert len([i for i in range(4) if m._ref[i]]) == 1


@needs_native
def test_a_busy_lock_falls_back_to_the_waiting_python_path():
    with create_map(type=T.HASH, key_size=4, value_size=8, max_entries=4) as m:
        m.update_raw(b"\1\0\0\0", b"\7" * 8)
        atomics.store_at(m.lock.address, 8, m.lock.current_token() + 1)  # another holder
        assert m._native_lookup(b"\1\0\0\0", 0) == -1
        got = []
        reader = threading.Thread(target=lambda: got.append(m.lookup_raw(b"\1\0\0\0")))
        reader.start()
        time.sleep(0.05)
        assert got == []  # waiting for the holder
        atomics.store_at(m.lock.address, 8, 0)
        reader.join(10)
        assert got == [b"\7" * 8]


@needs_native
def test_a_corrupt_chain_is_rebuilt():
    with create_map(type=T.HASH, key_size=4, value_size=8, max_entries=8) as m:
        for i in range(8):
            m.update_raw(i.to_bytes(4, "little"), i.to_bytes(8, "little"))
        # make a chain loop on itself: slot s points at itself
        h = zlib.crc32(b"\5\0\0\0", m._seed)
        head = m._buckets[h & m._bmask] - 1
        m._next[head] = head + 1
        m._hashes[head] ^= 1  # and never matches, so the walk would spin
        assert m.lookup_raw(b"\5\0\0\0") == (5).to_bytes(8, "little")
        assert sorted(m.keys_raw()) == [i.to_bytes(4, "little") for i in range(8)]


@needs_native
def test_descriptor_points_into_the_buffer():
    with create_map(type=T.HASH, key_size=4, value_size=8, max_entries=8) as m:
        desc = list(m.descriptor())
        assert desc[0] == m.lock.address
        assert desc[6] == m.regions[0].address
        base, end = m._buf.address, m._buf.address + m._buf.size
        assert all(base <= a < end for a in desc[:7])
        assert desc[12] == m._seed
        assert ctypes.sizeof(m.descriptor()) == 8 * len(DESCRIPTOR_FIELDS)
        fields = dict(zip(DESCRIPTOR_FIELDS, desc, strict=True))
        assert base <= fields["state"] < end and base <= fields["header"] < end
