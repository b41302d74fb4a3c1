"""Map helpers: the Linux map, ring buffer and perf output helpers, on pybpf maps.

A program names a map by the value its ``lddw`` loaded: the map's ``handle``
(:mod:`pybpf.maps.registry`). Keys and values are read from program memory through the
run's address space (checked like the program's own loads); lookups return real
addresses of values, and the map's regions (values, keys, ring data) are added to the
run's address space so the program can use them. Results are Linux's: 0 or a negative
errno, NULL (0) for a missing element.

Helpers (Linux ids): ``map_lookup_elem`` (1), ``map_update_elem`` (2),
``map_delete_elem`` (3), ``perf_event_output`` (25), ``map_push_elem`` (87),
``map_pop_elem`` (88), ``map_peek_elem`` (89), ``ringbuf_output`` (130),
``ringbuf_reserve`` (131), ``ringbuf_submit`` (132), ``ringbuf_discard`` (133),
``ringbuf_query`` (134), ``for_each_map_elem`` (164), ``map_lookup_percpu_elem`` (195).
``tail_call`` is the engine's.

``for_each_map_elem`` calls back into the program: the engine provides
``ctx.extra["call_function"]``, a callable ``(func_address, r1, r2, r3, r4, r5) -> r0``
running the subprogram at ``func_address`` (what the ``lddw`` of a function loaded) on
the current run; without it the helper stops the run with NotSupportedError.

Also here, for engines and the loader: :func:`expose_maps` (add maps' regions to an
address space) and :func:`map_lddw_resolver` (the ``lddw`` resolver for map fds and map
values).
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Mapping
from typing import Any

from pybpf.errors import HelperError, InputError, NotSupportedError
from pybpf.isa import Instruction
from pybpf.isa.opcodes import Pseudo
from pybpf.maps import Map, registry
from pybpf.maps.perf_event_array import PerfEventArray
from pybpf.maps.queue_stack import QueueStack
from pybpf.maps.ringbuf import RingBuf, ringbuf_of_record
from pybpf.maptypes import MapFlag
from pybpf.memory import AddressSpace, Region
from pybpf.runtime.context import ExecutionContext
from pybpf.runtime.registry import HelperRegistry

__all__ = ["MAP_HELPERS", "register_maps", "expose_maps", "map_lddw_resolver"]

_M64 = (1 << 64) - 1


# ---- plumbing -----------------------------------------------------------------------------
def _map(ctx: ExecutionContext, handle: int) -> Map:
    m = registry.by_handle(handle)
    if m is None or m.closed:
        raise HelperError(f"{handle:#x} is not a live map", helper_id=ctx.helper_id, pc=ctx.pc)
    return m


def _expose(space: AddressSpace, m: Map) -> None:
    for region in m.regions:
        if space.find(region.address) is not region:
            space.add(region)


def expose_maps(space: AddressSpace, maps: Iterable[Map]) -> None:
    """Make the program-visible regions of ``maps`` reachable in ``space`` (idempotent)."""
    for m in maps:
        _expose(space, m)


def _cpu(ctx: ExecutionContext, m: Map) -> int:
    cpu = ctx.cpu
    if m.percpu and not 0 <= cpu < m.ncpus:
        raise HelperError(
            f"cpu {cpu} is outside the {m.ncpus} CPUs of map {m.name!r}",
            helper_id=ctx.helper_id,
            pc=ctx.pc,
        )
    return cpu


def _key(ctx: ExecutionContext, m: Map, address: int) -> bytes:
    return ctx.memory.read(address, m.key_size, ctx.pc) if m.key_size else b""


# ---- element helpers ----------------------------------------------------------------------
def map_lookup_elem(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``void *bpf_map_lookup_elem(map, key)``: the value's address, or NULL."""
    m = _map(ctx, r1)
    address = m.elem_lookup(_key(ctx, m, r2), _cpu(ctx, m))
    if address and m.regions:
        _expose(ctx.memory, m)
    return address


def map_update_elem(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_map_update_elem(map, key, value, flags)``."""
    m = _map(ctx, r1)
    if m.flags & MapFlag.RDONLY_PROG:
        return -errno.EPERM
    key = _key(ctx, m, r2)
    value = ctx.memory.read(r3, m.value_size, ctx.pc)
    return m.elem_update(key, value, r4, _cpu(ctx, m))


def map_delete_elem(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_map_delete_elem(map, key)``."""
    m = _map(ctx, r1)
    if m.flags & MapFlag.RDONLY_PROG:
        return -errno.EPERM
    return m.elem_delete(_key(ctx, m, r2))


def map_lookup_percpu_elem(
    ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int
) -> int:
    """``void *bpf_map_lookup_percpu_elem(map, key, cpu)``: ``cpu``'s copy, or NULL."""
    m = _map(ctx, r1)
    address = m.elem_lookup_percpu(_key(ctx, m, r2), r3 & 0xFFFFFFFF)
    if address:
        _expose(ctx.memory, m)
    return address


def map_push_elem(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_map_push_elem(map, value, flags)`` (queues and stacks)."""
    m = _map(ctx, r1)
    if not isinstance(m, QueueStack):
        return -errno.EINVAL
    return m.elem_push(ctx.memory.read(r2, m.value_size, ctx.pc), r3)


def _pop(ctx: ExecutionContext, handle: int, out: int, delete: bool) -> int:
    m = _map(ctx, handle)
    if not isinstance(m, QueueStack):
        return -errno.EINVAL
    ctx.memory.resolve(out, m.value_size, "write", ctx.pc)  # check before taking
    value = m.elem_pop(delete)
    if value is None:
        return -errno.ENOENT
    ctx.memory.write(out, value, ctx.pc)
    return 0


def map_pop_elem(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_map_pop_elem(map, value)``: -ENOENT when empty."""
    return _pop(ctx, r1, r2, True)


def map_peek_elem(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_map_peek_elem(map, value)``: -ENOENT when empty."""
    return _pop(ctx, r1, r2, False)


# ---- ring buffers and perf output ---------------------------------------------------------
def _ringbuf(ctx: ExecutionContext, handle: int) -> RingBuf:
    m = _map(ctx, handle)
    if not isinstance(m, RingBuf):
        raise HelperError(
            f"map {m.name!r} is not a ring buffer", helper_id=ctx.helper_id, pc=ctx.pc
        )
    return m


def ringbuf_output(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_ringbuf_output(ringbuf, data, size, flags)``: 0, -EINVAL or -EAGAIN."""
    rb = _ringbuf(ctx, r1)
    size = r3 & 0xFFFFFFFF
    data = ctx.memory.read(r2, size, ctx.pc) if size else b""
    return rb.output(data, r4)


def ringbuf_reserve(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``void *bpf_ringbuf_reserve(ringbuf, size, flags)``: the record's data, or NULL."""
    rb = _ringbuf(ctx, r1)
    if r3:
        return 0
    address = rb.reserve(r2)
    if address:
        _expose(ctx.memory, rb)
    return address


def _commit(ctx: ExecutionContext, address: int, discard: bool) -> int:
    rb = ringbuf_of_record(address)
    if rb is None or not rb.commit(address, discard):
        raise HelperError(
            f"{address:#x} is not a reserved ring buffer record",
            helper_id=ctx.helper_id,
            pc=ctx.pc,
        )
    return 0


def ringbuf_submit(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``void bpf_ringbuf_submit(data, flags)``."""
    return _commit(ctx, r1, False)


def ringbuf_discard(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``void bpf_ringbuf_discard(data, flags)``."""
    return _commit(ctx, r1, True)


def ringbuf_query(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``u64 bpf_ringbuf_query(ringbuf, flags)``."""
    return _ringbuf(ctx, r1).query(r2)


def perf_event_output(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_perf_event_output(ctx, map, flags, data, size)``."""
    m = _map(ctx, r2)
    if not isinstance(m, PerfEventArray):
        return -errno.EINVAL
    size = r5 & 0xFFFFFFFF
    data = ctx.memory.read(r4, size, ctx.pc) if size else b""
    return m.output(r3, data, ctx.cpu)


# ---- iteration ------------------------------------------------------------------------------
def for_each_map_elem(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_for_each_map_elem(map, callback, callback_ctx, flags)``: the number of
    elements visited (the callback returning 1 stops after that element)."""
    m = _map(ctx, r1)
    if r4:
        return -errno.EINVAL
    call = ctx.extra.get("call_function")
    if call is None:
        raise NotSupportedError(
            "bpf_for_each_map_elem needs an engine that calls back into the program",
            feature="for_each_map_elem",
            pc=ctx.pc,
        )
    slots = m.elem_slots()
    if slots is None:
        return -errno.EINVAL
    cpu = _cpu(ctx, m)
    space = ctx.memory
    _expose(space, m)
    scratch = Region(8, kind="map_key", name="for_each.key", writable=False)
    space.add(scratch)
    visited = 0
    try:
        for slot in slots:
            found = m.slot_addresses(slot, cpu)
            if found is None:
                continue
            key_address, value_address = found
            if not key_address:  # arrays: the key is the index, on a read-only scratch
                scratch.view[0:4] = slot.to_bytes(4, "little")
                key_address = scratch.address
            visited += 1
            if call(r2, r1, key_address, value_address, r3, 0) & _M64:
                break
    finally:
        space.remove(scratch)
        scratch.close()
    return visited


MAP_HELPERS: dict[str, Any] = {
    "map_lookup_elem": map_lookup_elem,
    "map_update_elem": map_update_elem,
    "map_delete_elem": map_delete_elem,
    "perf_event_output": perf_event_output,
    "map_push_elem": map_push_elem,
    "map_pop_elem": map_pop_elem,
    "map_peek_elem": map_peek_elem,
    "ringbuf_output": ringbuf_output,
    "ringbuf_reserve": ringbuf_reserve,
    "ringbuf_submit": ringbuf_submit,
    "ringbuf_discard": ringbuf_discard,
    "ringbuf_query": ringbuf_query,
    "for_each_map_elem": for_each_map_elem,
    "map_lookup_percpu_elem": map_lookup_percpu_elem,
}


def register_maps(registry_: HelperRegistry) -> HelperRegistry:
    """Bind every map helper into ``registry_``; returns it."""
    for name, fn in MAP_HELPERS.items():
        registry_.register(name, fn)
    return registry_


# ---- loader glue ----------------------------------------------------------------------------
def map_lddw_resolver(maps: Mapping[int, Map]):
    """An ``lddw_resolver`` for programs whose ``lddw`` name maps by fd (``maps[fd]``):
    ``BPF_PSEUDO_MAP_FD`` gives the map's handle, ``BPF_PSEUDO_MAP_VALUE`` the address of
    element 0's value plus the offset in the second slot (global data)."""

    def resolve(insn: Instruction, pc: int) -> int:
        m = maps.get(insn.imm)
        if m is None:
            raise InputError(f"lddw names map fd {insn.imm}, which is not given", pc=pc)
        if insn.src == Pseudo.MAP_FD:
            return m.handle
        if insn.src == Pseudo.MAP_VALUE:
            address = m.elem_lookup_quiet(bytes(m.key_size))
            offset = insn.imm_hi & 0xFFFFFFFF
            if not address or offset >= m.value_size:
                raise InputError(f"lddw map value offset {offset} is outside map {m.name!r}", pc=pc)
            return address + offset
        raise NotSupportedError(f"lddw with src {insn.src}", feature="lddw", pc=pc)

    return resolve
