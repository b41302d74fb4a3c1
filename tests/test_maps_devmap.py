"""DEVMAP, DEVMAP_HASH and XSKMAP: Linux's rules, the same answers as the kernel's maps, and
``bpf_redirect_map`` through them (presence decides REDIRECT or the fallback verdict)."""

from __future__ import annotations

import errno
import random
import struct

import pytest

from kernel import BPF_UNAVAILABLE
from pybpf.errors import MapError
from pybpf.maps import create_map
from pybpf.maptypes import MapType as T

LO = 1  # the loopback ifindex: exists in every network namespace, so the kernel accepts it


def _u32(v: int) -> bytes:
    return struct.pack("<I", v)


def _val(ifindex: int, fd: int | None = None) -> bytes:
    return _u32(ifindex) if fd is None else struct.pack("<Ii", ifindex, fd)


def _new(kind, key, value, entries, flags=0):
    return create_map(
        type=kind, key_size=key, value_size=value, max_entries=entries, flags=flags
    )


def _errno(fn, *args):
    try:
        r = fn(*args)
    except MapError as err:
        return ("err", err.errno)
    return ("ok", r)


@pytest.mark.parametrize(
    "kind,key,value,entries,flags",
    [
        (T.DEVMAP, 4, 12, 4, 0),
        (T.DEVMAP, 8, 4, 4, 0),
        (T.DEVMAP, 4, 4, 0, 0),
        (T.DEVMAP, 4, 4, 4, 1),  # BPF_F_NO_PREALLOC
        (T.DEVMAP_HASH, 4, 2, 4, 0),
        (T.XSKMAP, 4, 8, 4, 0),
    ],
)
def test_bad_definitions_are_einval(kind, key, value, entries, flags):
    with pytest.raises(MapError) as err:
        _new(kind, key, value, entries, flags=flags)
    assert err.value.errno == errno.EINVAL


def test_devmap_rules():
    with _new(T.DEVMAP, 4, 8, 4) as m:
        assert len(m) == 0 and m.lookup_raw(_u32(0)) is None
        m.update_raw(_u32(1), _val(LO, -1))
        assert m.lookup_raw(_u32(1)) == _val(LO, 0)  # the prog id field reads 0
        assert len(m) == 1 and m.keys_raw() == [_u32(1)]
        for flags, code in ((1, errno.EEXIST), (4, errno.EINVAL)):  # NOEXIST always fails
            assert _errno(m.update_raw, _u32(2), _val(LO, -1), flags) == ("err", code)
        assert _errno(m.update_raw, _u32(4), _val(LO, -1)) == ("err", errno.E2BIG)
        assert _errno(m.update_raw, _u32(0), _val(0, 3)) == ("err", errno.EINVAL)
        assert _errno(m.update_raw, _u32(0), _val(LO, 3)) == ("err", errno.EOPNOTSUPP)
        m.update_raw(_u32(1), _val(0, -1))  # ifindex 0 empties the slot
        assert m.lookup_raw(_u32(1)) is None
        m.delete_raw(_u32(2))  # deleting an empty slot succeeds, as on Linux
        assert _errno(m.delete_raw, _u32(9)) == ("err", errno.EINVAL)
        # programs see present entries only, read-only, and cannot change them
        m.update_raw(_u32(3), _val(7, -1))
        assert m.elem_lookup(_u32(3)) and not m.elem_lookup(_u32(2))
        assert m.elem_update(_u32(3), _val(8, 0), 0) == -errno.EOPNOTSUPP
        assert all(not r.writable for r in m.regions)


def test_devmap_hash_rules():
    with _new(T.DEVMAP_HASH, 4, 4, 2) as m:
        assert _errno(m.update_raw, _u32(5), _u32(0)) == ("err", errno.EINVAL)
        m.update_raw(_u32(5), _u32(LO), 2)  # BPF_EXIST on a missing key inserts
        assert m.lookup_raw(_u32(5)) == _u32(LO)
        assert _errno(m.update_raw, _u32(5), _u32(LO), 1) == ("err", errno.EEXIST)
        m.update_raw(_u32(6), _u32(LO))
        assert _errno(m.update_raw, _u32(7), _u32(LO)) == ("err", errno.E2BIG)
        m.delete_raw(_u32(6))
        assert _errno(m.delete_raw, _u32(6)) == ("err", errno.ENOENT)


def test_xskmap_rules():
    with _new(T.XSKMAP, 4, 4, 2) as m:
        assert _errno(m.lookup_raw, _u32(0)) == ("err", errno.EOPNOTSUPP)
        assert _errno(m.update_raw, _u32(0), _u32(9), 2) == ("err", errno.ENOENT)
        m.update_raw(_u32(0), _u32(9))
        assert _errno(m.update_raw, _u32(0), _u32(9), 1) == ("err", errno.EEXIST)
        assert m.queue_id(0) == 9 and m.elem_lookup(_u32(0)) and not m.elem_lookup(_u32(1))
        assert _errno(m.update_raw, _u32(2), _u32(9)) == ("err", errno.E2BIG)
        m.delete_raw(_u32(0))
        m.delete_raw(_u32(0))
        assert m.queue_id(0) == 0 and len(m) == 0


def test_unsupported_type_is_named():
    from pybpf.errors import NotSupportedError

    with pytest.raises(NotSupportedError) as err:
        _new(T.CPUMAP, 4, 4, 4)
    assert err.value.feature == "cpumap"


def test_redirect_map_through_devmap():
    from pybpf.runtime import packet

    class _Ctx:
        packet = None
        extra: dict = {}

    with _new(T.DEVMAP, 4, 4, 4) as m, _new(T.XSKMAP, 4, 4, 4) as x:
        m.update_raw(_u32(2), _u32(LO))
        x.update_raw(_u32(1), _u32(5))
        drop, redirect = packet.XDP_DROP, packet.XDP_REDIRECT
        assert packet.redirect_map(_Ctx(), m.handle, 2, drop, 0, 0) == redirect
        assert packet.redirect_map(_Ctx(), m.handle, 3, drop, 0, 0) == drop
        assert packet.redirect_map(_Ctx(), x.handle, 1, drop, 0, 0) == redirect
        assert packet.redirect_map(_Ctx(), x.handle, 0, drop, 0, 0) == drop


# ---- the kernel's maps answer the same ---------------------------------------------------------
@pytest.mark.skipif(BPF_UNAVAILABLE is not None, reason=BPF_UNAVAILABLE or "")
@pytest.mark.parametrize("kind,value_size", [(T.DEVMAP, 4), (T.DEVMAP, 8), (T.DEVMAP_HASH, 8)])
def test_same_answers_as_the_kernel(kind, value_size):
    from pybpf import syscall as sc
    from pybpf.errors import SyscallError

    rng = random.Random(kind * 10 + value_size)
    entries = 4
    kfd = sc.map_create(kind, 4, value_size, entries, 0)
    ours = _new(kind, 4, value_size, entries)

    def run(fn, *args):
        try:
            r = fn(*args)
        except (MapError, SyscallError) as err:
            return ("err", err.errno)
        return ("ok", r)

    try:
        for _ in range(300):
            key = _u32(rng.randrange(6))
            op = rng.choice(("lookup", "update", "update", "delete"))
            if op == "lookup":
                k = run(sc.map_lookup, kfd, key, value_size)
                if k == ("err", errno.ENOENT):
                    k = ("ok", None)
                assert run(ours.lookup_raw, key) == k, (op, key)
            elif op == "update":
                ifindex = rng.choice((0, LO, LO))
                fd = rng.choice((-1, 0))
                value = _val(ifindex, fd if value_size == 8 else None)
                flags = rng.choice((0, 0, 1, 2))
                k = run(sc.map_update, kfd, key, value, flags)
                assert run(ours.update_raw, key, value, flags) == k, (op, key, value, flags)
            else:
                k = run(sc.map_delete, kfd, key)
                assert run(ours.delete_raw, key) == k, (op, key)
        for i in range(entries + 2):
            k = run(sc.map_lookup, kfd, _u32(i), value_size)
            if k == ("err", errno.ENOENT):
                k = ("ok", None)
            assert run(ours.lookup_raw, _u32(i)) == k
    finally:
        ours.close()
        kfd.close()
