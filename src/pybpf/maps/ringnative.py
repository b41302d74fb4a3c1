"""Native ring producers: RINGBUF reserve, commit, output and query compiled once with llvmlite.

design.md: "Native map operations belong to ``maps`` and are compiled once; the JIT calls
them". :func:`native_ring_ops` compiles one small LLVM module per process on first use
(``None`` without llvmlite) with the producer side of :class:`pybpf.maps.ringbuf.RingBuf`,
doing exactly what its Python methods do (same positions, same header words, the same
mirror copy for records that wrap, the same lock; nothing to notify: consumers poll):

- ``pybpf_ringbuf_reserve(desc, size, flags, token) -> u64``: ``bpf_ringbuf_reserve``
  (:meth:`RingBuf.reserve`, with the helper's rule that nonzero ``flags`` give NULL): the
  record's data address, or 0 (no room, bad size or flags);
- ``pybpf_ringbuf_output(desc, data, size, flags, token) -> u64``: ``bpf_ringbuf_output``
  (:meth:`RingBuf.output` of ``size & 0xffffffff`` bytes at ``data``): 0, -EINVAL or
  -EAGAIN;
- ``pybpf_ringbuf_commit(descs, count, address, discard) -> u64``: ``bpf_ringbuf_submit``
  (``discard`` 0) or ``bpf_ringbuf_discard`` of the record at ``address``, looked up as
  :func:`pybpf.maps.ringbuf.ringbuf_of_record` does (only addresses are compared with the
  data areas of the ``count`` descriptors whose addresses are the u64 words at ``descs``;
  a zero word is skipped): 0 when committed;
- ``pybpf_ringbuf_query(desc, flags) -> u64``: ``bpf_ringbuf_query`` (:meth:`RingBuf.query`).

Every function but query returns :data:`PYTHON_PATH` (1, never a result: records are
8-byte aligned and results are 0 or a negative errno) when it cannot decide exactly: the
lock stayed busy (Python waits and recovers dead holders), a position is past ``2**62``
(Python compares unbounded integers), an output record that can never fit (Python reads
the data first), a commit of an address no descriptor's ring holds, that is not a reserved
record, or whose header claims more than the mirror (the Python helper then raises its
error). The caller then runs the ordinary Python helper, so results and errors stay the
interpreter's.

Descriptor: :data:`DESCRIPTOR_FIELDS`, u64 words, absolute addresses into the map's
buffer (lock word, consumer_pos, producer_pos, pending_pos, data area), the data mask
(``max_entries - 1``), the data area's offset in the buffer and the page size (a header's
``pg_off``). :meth:`pybpf.maps.ringbuf.RingBuf.descriptor` builds it; it stays valid while
the map is open. ``token`` is the caller's lock token
(:meth:`pybpf.memory.lock.SharedLock.current_token` of the map's lock).
"""

from __future__ import annotations

import ctypes
import errno
import threading
from dataclasses import dataclass
from typing import Any

from pybpf.memory.native import compile_native

__all__ = ["NativeRingOps", "native_ring_ops", "module_ir", "DESCRIPTOR_FIELDS", "PYTHON_PATH"]

DESCRIPTOR_FIELDS = (
    "lock",
    "consumer",
    "producer",
    "pending",
    "data",
    "mask",
    "data_offset",
    "page_size",
)
PYTHON_PATH = 1
_SPINS = 4096
_BUSY = 1 << 31
_DISCARD = 1 << 30
_MAX_RECORD = 0xFFFFFFFF // 4

_U64 = ctypes.c_uint64
_RESERVE = ctypes.PYFUNCTYPE(_U64, _U64, _U64, _U64, _U64)
_OUTPUT = ctypes.PYFUNCTYPE(_U64, _U64, _U64, _U64, _U64, _U64)
_COMMIT = ctypes.PYFUNCTYPE(_U64, _U64, _U64, _U64, _U64)
_QUERY = ctypes.PYFUNCTYPE(_U64, _U64, _U64)


def _fields(prefix: str = "") -> str:
    return "".join(
        f"  %{prefix}{name}.p = getelementptr i64, ptr %d, i64 {i}\n"
        f"  %{prefix}{name} = load i64, ptr %{prefix}{name}.p\n"
        for i, name in enumerate(DESCRIPTOR_FIELDS)
    )


def _i32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def module_ir() -> str:
    """The LLVM IR text of the native ring buffer operations."""
    busy, discard = _i32(_BUSY), _i32(_DISCARD)
    not_flags = _i32(~(_BUSY | _DISCARD) & 0xFFFFFFFF)
    not_discard = _i32(~_DISCARD & 0xFFFFFFFF)
    return f"""
declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)

define i64 @pybpf_ringbuf_reserve(i64 %desc, i64 %size, i64 %flags, i64 %token) {{
entry:
  %d = inttoptr i64 %desc to ptr
{_fields()}  %badflags = icmp ne i64 %flags, 0
  %big = icmp ugt i64 %size, {_MAX_RECORD}
  %refuse = or i1 %badflags, %big
  br i1 %refuse, label %nothing, label %sized
sized:
  %len0 = add i64 %size, 15
  %length = and i64 %len0, -8
  %ringsize = add i64 %mask, 1
  %toolong = icmp ugt i64 %length, %ringsize
  br i1 %toolong, label %nothing, label %takelock
takelock:
  %lockp = inttoptr i64 %lock to ptr
  br label %spin
spin:
  %n = phi i64 [0, %takelock], [%n1, %retry]
  %cx = cmpxchg ptr %lockp, i64 0, i64 %token acquire monotonic, align 8
  %ok = extractvalue {{i64, i1}} %cx, 1
  br i1 %ok, label %locked, label %retry
retry:
  %n1 = add i64 %n, 1
  %give = icmp ugt i64 %n1, {_SPINS}
  br i1 %give, label %python, label %spin
python:
  ret i64 {PYTHON_PATH}
locked:
  %consp = inttoptr i64 %consumer to ptr
  %prodp = inttoptr i64 %producer to ptr
  %pendp = inttoptr i64 %pending to ptr
  %cons = load atomic i64, ptr %consp acquire, align 8
  %pend0 = load atomic i64, ptr %pendp acquire, align 8
  %prod = load atomic i64, ptr %prodp acquire, align 8
  %all0 = or i64 %cons, %pend0
  %all = or i64 %all0, %prod
  %high = lshr i64 %all, 62
  %huge = icmp ne i64 %high, 0
  br i1 %huge, label %unlock_python, label %scan
scan:
  %pend = phi i64 [%pend0, %locked], [%pend1, %skip]
  %behind = icmp ult i64 %pend, %prod
  br i1 %behind, label %look, label %scanned
look:
  %po = and i64 %pend, %mask
  %ha = add i64 %data, %po
  %hp = inttoptr i64 %ha to ptr
  %hlen = load atomic i32, ptr %hp acquire, align 4
  %hbusy = and i32 %hlen, {busy}
  %isbusy = icmp ne i32 %hbusy, 0
  br i1 %isbusy, label %scanned, label %skip
skip:
  %hsize = and i32 %hlen, {not_discard}
  %hsize64 = zext i32 %hsize to i64
  %hstep0 = add i64 %hsize64, 15
  %hstep = and i64 %hstep0, -8
  %pend1 = add i64 %pend, %hstep
  br label %scan
scanned:
  %pendf = phi i64 [%pend, %scan], [%pend, %look]
  store atomic i64 %pendf, ptr %pendp release, align 8
  %newprod = add i64 %prod, %length
  %used = sub i64 %newprod, %cons
  %unfreed = sub i64 %newprod, %pendf
  %full1 = icmp sgt i64 %used, %mask
  %full2 = icmp sgt i64 %unfreed, %mask
  %full = or i1 %full1, %full2
  br i1 %full, label %unlock_nothing, label %write
write:
  %off = and i64 %prod, %mask
  %header = add i64 %data, %off
  %hdrp = inttoptr i64 %header to ptr
  %size32 = trunc i64 %size to i32
  %word = or i32 %size32, {busy}
  store atomic i32 %word, ptr %hdrp release, align 4
  %pgbytes = add i64 %data_offset, %off
  %pg = udiv i64 %pgbytes, %page_size
  %pg32 = trunc i64 %pg to i32
  %pga = add i64 %header, 4
  %pgp = inttoptr i64 %pga to ptr
  store atomic i32 %pg32, ptr %pgp release, align 4
  store atomic i64 %newprod, ptr %prodp release, align 8
  store atomic i64 0, ptr %lockp release, align 8
  %record = add i64 %header, 8
  ret i64 %record
unlock_nothing:
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 0
unlock_python:
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 {PYTHON_PATH}
nothing:
  ret i64 0
}}

define internal i64 @commit_one(i64 %desc, i64 %address, i64 %discard) {{
entry:
  %d = inttoptr i64 %desc to ptr
{_fields()}  %header = sub i64 %address, 8
  %off = sub i64 %header, %data
  %outside = icmp ugt i64 %off, %mask
  %low = and i64 %off, 7
  %unaligned = icmp ne i64 %low, 0
  %bad = or i1 %outside, %unaligned
  br i1 %bad, label %python, label %look
look:
  %hp = inttoptr i64 %header to ptr
  %hlen = load atomic i32, ptr %hp acquire, align 4
  %hbusy = and i32 %hlen, {busy}
  %reserved = icmp ne i32 %hbusy, 0
  br i1 %reserved, label %sized, label %python
sized:
  %size = and i32 %hlen, {not_flags}
  %size64 = zext i32 %size to i64
  %end0 = add i64 %off, 8
  %end = add i64 %end0, %size64
  %ringsize = add i64 %mask, 1
  %wraps = icmp ugt i64 %end, %ringsize
  br i1 %wraps, label %wrapped, label %commit
wrapped:
  %over = sub i64 %end, %ringsize
  %toomuch = icmp ugt i64 %over, %ringsize
  br i1 %toomuch, label %python, label %copy
copy:
  %dst = inttoptr i64 %data to ptr
  %srca = add i64 %data, %ringsize
  %src = inttoptr i64 %srca to ptr
  call void @llvm.memcpy.p0.p0.i64(ptr %dst, ptr %src, i64 %over, i1 false)
  br label %commit
commit:
  %flip = xor i32 %hlen, {busy}
  %isdiscard = icmp ne i64 %discard, 0
  %marked = or i32 %flip, {discard}
  %new = select i1 %isdiscard, i32 %marked, i32 %flip
  %old = atomicrmw xchg ptr %hp, i32 %new seq_cst, align 4
  ret i64 0
python:
  ret i64 {PYTHON_PATH}
}}

define i64 @pybpf_ringbuf_commit(i64 %descs, i64 %count, i64 %address, i64 %discard) {{
entry:
  %header = sub i64 %address, 8
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%i1, %next]
  %more = icmp ult i64 %i, %count
  br i1 %more, label %body, label %python
body:
  %io = mul i64 %i, 8
  %wa = add i64 %descs, %io
  %wp = inttoptr i64 %wa to ptr
  %desc = load i64, ptr %wp
  %closed = icmp eq i64 %desc, 0
  br i1 %closed, label %next, label %compare
compare:
  %d = inttoptr i64 %desc to ptr
  %datap = getelementptr i64, ptr %d, i64 4
  %data = load i64, ptr %datap
  %maskp = getelementptr i64, ptr %d, i64 5
  %mask = load i64, ptr %maskp
  %off = sub i64 %header, %data
  %inside = icmp ule i64 %off, %mask
  br i1 %inside, label %found, label %next
found:
  %r = call i64 @commit_one(i64 %desc, i64 %address, i64 %discard)
  ret i64 %r
next:
  %i1 = add i64 %i, 1
  br label %loop
python:
  ret i64 {PYTHON_PATH}
}}

define i64 @pybpf_ringbuf_output(i64 %desc, i64 %src, i64 %size0, i64 %flags, i64 %token) {{
entry:
  %d = inttoptr i64 %desc to ptr
{_fields()}  %size = and i64 %size0, 4294967295
  %extra = and i64 %flags, -4
  %badflags = icmp ne i64 %extra, 0
  br i1 %badflags, label %einval, label %sized
sized:
  %len0 = add i64 %size, 15
  %length = and i64 %len0, -8
  %ringsize = add i64 %mask, 1
  %never = icmp ugt i64 %length, %ringsize
  br i1 %never, label %python, label %reserve
reserve:
  %rec = call i64 @pybpf_ringbuf_reserve(i64 %desc, i64 %size, i64 0, i64 %token)
  %busy = icmp eq i64 %rec, {PYTHON_PATH}
  br i1 %busy, label %python, label %got
got:
  %none = icmp eq i64 %rec, 0
  br i1 %none, label %eagain, label %fill
fill:
  %dst = inttoptr i64 %rec to ptr
  %from = inttoptr i64 %src to ptr
  call void @llvm.memcpy.p0.p0.i64(ptr %dst, ptr %from, i64 %size, i1 false)
  %c = call i64 @commit_one(i64 %desc, i64 %rec, i64 0)
  ret i64 0
einval:
  ret i64 {-errno.EINVAL}
eagain:
  ret i64 {-errno.EAGAIN}
python:
  ret i64 {PYTHON_PATH}
}}

define i64 @pybpf_ringbuf_query(i64 %desc, i64 %flags) {{
entry:
  %d = inttoptr i64 %desc to ptr
{_fields()}  %consp = inttoptr i64 %consumer to ptr
  %prodp = inttoptr i64 %producer to ptr
  switch i64 %flags, label %other [i64 0, label %avail
                                   i64 1, label %size
                                   i64 2, label %cons
                                   i64 3, label %prod]
avail:
  %p = load atomic i64, ptr %prodp acquire, align 8
  %c = load atomic i64, ptr %consp acquire, align 8
  %a = sub i64 %p, %c
  ret i64 %a
size:
  %s = add i64 %mask, 1
  ret i64 %s
cons:
  %c2 = load atomic i64, ptr %consp acquire, align 8
  ret i64 %c2
prod:
  %p2 = load atomic i64, ptr %prodp acquire, align 8
  ret i64 %p2
other:
  ret i64 0
}}
"""


@dataclass
class NativeRingOps:
    """The compiled operations (``engine`` keeps the machine code alive): ctypes functions
    ``reserve``, ``output``, ``commit``, ``query`` (the module docstring's arguments) and
    their raw entry points ``*_address`` for JIT code."""

    reserve: Any
    output: Any
    commit: Any
    query: Any
    reserve_address: int
    output_address: int
    commit_address: int
    query_address: int
    engine: Any


_LOCK = threading.Lock()
_CACHE: list[NativeRingOps | None] = []


def _compile() -> NativeRingOps | None:
    compiled = compile_native(module_ir())
    if compiled is None:  # no llvmlite, or no native target: the Python path remains
        return None
    engine = compiled[0]
    names = ("reserve", "output", "commit", "query")
    addresses = [engine.get_function_address(f"pybpf_ringbuf_{name}") for name in names]
    if not all(addresses):
        return None
    types = (_RESERVE, _OUTPUT, _COMMIT, _QUERY)
    fns = [t(a) for t, a in zip(types, addresses, strict=True)]
    return NativeRingOps(*fns, *addresses, engine)


def native_ring_ops() -> NativeRingOps | None:
    """The native ring buffer operations, compiled on the first call (``None`` without
    llvmlite)."""
    if not _CACHE:
        with _LOCK:
            if not _CACHE:
                _CACHE.append(_compile())
    return _CACHE[0]
