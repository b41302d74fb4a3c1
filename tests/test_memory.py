"""Memory: regions, the address space's bounds/permission check, its caches, and atomics."""

from __future__ import annotations

import ctypes
import threading

import pytest

from pybpf.errors import InputError, MemoryAccessError
from pybpf.memory import AddressSpace, Region, atomic_rmw, cmpxchg, load_acquire, store_release
from pybpf.memory.space import EMPTY_CACHE


def test_region_is_real_native_memory():
    with Region(64, kind="stack") as region:
        assert region.address > 0 and region.size == 64 and region.end == region.address + 64
        region.write(8, b"\x11\x22\x33")
        # The address is a real pointer: ctypes sees the bytes the region wrote.
        assert ctypes.string_at(region.address + 8, 3) == b"\x11\x22\x33"
        ctypes.memmove(region.address + 60, b"abcd", 4)
        assert region.read(60, 4) == b"abcd"
        region.view[0] = 0xAB
        assert region.read(0, 1) == b"\xab"
        assert region.read(16, 8) == bytes(8)  # anonymous memory starts zeroed
    assert region.closed


def test_region_bounds_and_lifetime():
    region = Region.from_bytes(b"hello", kind="input")
    assert region.read(0, 5) == b"hello"
    with pytest.raises(InputError):
        region.read(3, 3)
    with pytest.raises(InputError):
        region.write(-1, b"x")
    region.close()
    region.close()  # idempotent
    empty = Region(0)
    assert empty.size == 0 and empty.address > 0
    empty.close()


def test_wrapped_region_shares_memory_without_owning_it():
    with Region(32) as owner:
        part = Region.wrap(owner.address + 16, 8, kind="ctx", writable=False, owner=owner)
        owner.write(16, b"ABCDEFGH")
        assert part.read(0, 8) == b"ABCDEFGH"
        assert not part.writable
        part.close()
        assert owner.read(16, 2) == b"AB"  # closing the wrapper leaves the memory alone


def _space():
    stack = Region(512, kind="stack")
    ro = Region.from_bytes(bytes(range(16)), kind="ctx", writable=False)
    return AddressSpace([stack, ro]), stack, ro


def test_resolve_inside_and_at_the_edges():
    space, stack, ro = _space()
    assert space.resolve(stack.address, 8, "write", 1) == (stack, 0)
    assert space.resolve(stack.end - 8, 8, "read", 1) == (stack, 504)
    assert space.resolve(ro.address + 15, 1, "read") == (ro, 15)
    assert space.find(stack.address + 100) is stack
    assert space.find(stack.end) is not stack


@pytest.mark.parametrize(
    "delta, size, access",
    [
        (-1, 1, "read"),  # one byte below the region
        (-8, 8, "write"),
        (512, 1, "read"),  # first byte past the end
        (508, 8, "read"),  # straddles the end
        (511, 2, "write"),
    ],
)
def test_out_of_bounds_names_pc_address_size_access(delta, size, access):
    space, stack, _ = _space()
    with pytest.raises(MemoryAccessError) as info:
        space.resolve(stack.address + delta, size, access, pc=7)
    err = info.value
    assert (err.pc, err.address, err.size, err.access) == (7, stack.address + delta, size, access)


def test_write_to_read_only_region_is_refused_but_read_works():
    space, _, ro = _space()
    assert space.read(ro.address, 4) == bytes(range(4))
    with pytest.raises(MemoryAccessError) as info:
        space.write(ro.address, b"\x00", pc=3)
    assert info.value.access == "write" and info.value.pc == 3
    unreadable = Region(8, readable=False)
    space.add(unreadable)
    with pytest.raises(MemoryAccessError) as info:
        space.resolve(unreadable.address, 1, "read")
    assert info.value.access == "read"


def test_an_access_may_not_span_two_adjacent_regions():
    with Region(16) as backing:
        low = Region.wrap(backing.address, 8, owner=backing)
        high = Region.wrap(backing.address + 8, 8, owner=backing)
        space = AddressSpace([low, high])
        assert space.resolve(backing.address + 4, 4)[0] is low
        assert space.resolve(backing.address + 8, 8)[0] is high
        with pytest.raises(MemoryAccessError):
            space.resolve(backing.address + 4, 8)


def test_overlapping_and_duplicate_regions_are_refused():
    with Region(16) as backing:
        space = AddressSpace([Region.wrap(backing.address, 8, owner=backing)])
        with pytest.raises(InputError):
            space.add(Region.wrap(backing.address + 4, 8, owner=backing))
        whole = Region.wrap(backing.address + 8, 8, owner=backing)
        space.add(whole)
        with pytest.raises(InputError):
            space.add(whole)


def test_removed_region_is_unreachable_and_bound_caches_reset():
    space, stack, _ = _space()
    rcache, wcache = [0, 0, None], [0, 0, None]
    space.bind_cache(rcache, wcache)
    assert rcache == list(EMPTY_CACHE)
    space.resolve(stack.address + 4, 4, "write")
    assert wcache[0] == stack.address and wcache[1] == stack.size and wcache[2] is stack.view
    assert rcache == list(EMPTY_CACHE)  # a write fills only write caches
    space.resolve(stack.address, 1, "read")
    assert rcache[0] == stack.address
    space.remove(stack)
    assert rcache == list(EMPTY_CACHE) and wcache == list(EMPTY_CACHE)
    with pytest.raises(MemoryAccessError):
        space.resolve(stack.address, 1, "read")
    space.unbind_cache(rcache, wcache)
    assert len(space) == 1


def test_read_cstring_stops_at_nul_and_at_region_end():
    space = AddressSpace()
    region = space.add(Region.from_bytes(b"abc\0def"))
    assert space.read_cstring(region.address, 64) == b"abc"
    assert space.read_cstring(region.address + 4, 3) == b"def"
    with pytest.raises(MemoryAccessError):
        space.read_cstring(region.address + 4, 64)  # runs off the region before a NUL


@pytest.mark.parametrize(
    "op, operand, expected",
    [("add", 5, 0x1234 + 5), ("or", 0x10000, 0x11234), ("and", 0xFF, 0x34), ("xor", 0x1234, 0)],
)
def test_atomic_rmw_returns_old_value(op, operand, expected):
    with Region(16) as region:
        region.write(8, (0x1234).to_bytes(8, "little"))
        assert atomic_rmw(region, 8, 8, op, operand) == 0x1234
        assert int.from_bytes(region.read(8, 8), "little") == expected


def test_atomics_wrap_at_their_width_and_leave_neighbours_alone():
    with Region(16) as region:
        region.write(0, (0xFFFFFFFF).to_bytes(4, "little") + b"\x77" * 4)
        assert atomic_rmw(region, 0, 4, "add", 1) == 0xFFFFFFFF
        assert region.read(0, 8) == bytes(4) + b"\x77" * 4
        assert atomic_rmw(region, 0, 4, "xchg", -1) == 0
        assert region.read(0, 4) == b"\xff" * 4
        assert cmpxchg(region, 0, 4, 0xFFFFFFFF, 9) == 0xFFFFFFFF
        assert cmpxchg(region, 0, 4, 0xFFFFFFFF, 10) == 9  # mismatch: unchanged
        assert load_acquire(region, 0, 4) == 9
        store_release(region, 4, 2, 0x1ABCD)
        assert region.read(4, 4) == b"\xcd\xab\x77\x77"
        with pytest.raises(InputError):
            atomic_rmw(region, 12, 8, "add", 1)
        with pytest.raises(InputError):
            atomic_rmw(region, 0, 3, "add", 1)


def test_atomic_add_is_atomic_across_threads():
    with Region(8) as region:

        def work():
            for _ in range(2000):
                atomic_rmw(region, 0, 8, "add", 1)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert int.from_bytes(region.read(0, 8), "little") == 8000
