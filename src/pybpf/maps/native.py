"""Native map operations: hash lookups, updates and deletes compiled once with llvmlite.

design.md: "Native map operations (lookup, update, ...) belong to ``maps`` and are compiled
once; the JIT calls them or inlines array lookups." :func:`native_map_ops` compiles one
small LLVM module per process on first use (``None`` without llvmlite) with:

- ``pybpf_crc32(data, len, seed) -> u32``: zlib's CRC-32 (``zlib.crc32(data, seed)``), the
  hash of :mod:`pybpf.maps.hash`;
- ``pybpf_hash_lookup(desc, key, token, mark, out, out_len) -> u64``: look ``key`` up in a
  hash-family map under its lock. ``desc`` is the address of the map's descriptor (below),
  ``token`` the caller's lock token (:class:`pybpf.memory.lock.SharedLock`), ``mark``
  nonzero sets the LRU reference bit; when ``out`` is nonzero, ``out_len`` bytes of the
  value are copied there before the lock is released. Returns the value's address (CPU 0's
  copy) or 0 when the key is missing;
- ``pybpf_hash_update(desc, key, value, flags, token, cpu) -> u64``: what
  :meth:`pybpf.maps.hash.HashMap.elem_update` does, in the same order under the same lock:
  ``-EINVAL`` for flags above ``BPF_EXIST`` (``BPF_F_LOCK`` included), ``-EEXIST``
  (``BPF_NOEXIST``, key present) or ``-ENOENT`` (``BPF_EXIST``, key missing); an existing
  value is overwritten in place (LRU: reference bit set); a new element takes the free
  list's head, or on a full LRU map the slot the CLOCK sweep picks (the same sweep over the
  reference bits from the hand, so the same element goes), else ``-E2BIG``; key, hash and
  value are written before the state byte (a release store), then the slot is linked and
  the count raised. Per-CPU maps: ``cpu`` names the copy written (a new element's other
  copies are zeroed), or :data:`ALL_CPUS` writes the whole slot from ``value`` (user space,
  ``ncpus * round8(value_size)`` bytes);
- ``pybpf_hash_delete(desc, key, token) -> u64``: unlink, clear the state byte, push the
  slot on the free list, lower the count (:meth:`~pybpf.maps.hash.HashMap.elem_delete`);
  ``-ENOENT`` when missing.

Results are 0 or ``-errno`` as u64 (:func:`signed`), or one of two codes that mean "take
the Python path", returned before anything was written: :data:`BUSY` (1), the lock stayed
busy (the Python path waits and recovers dead holders), and :data:`PYTHON` (2), something
only the Python path decides: a corrupt index (a chain cycle, a slot past
``max_entries``, a free list naming a slot in use, a sweep victim not in its chain; the
Python path rebuilds it), an update's CPU outside a per-CPU map, or an update of a map
whose values hold special fields (:data:`OPTION_FIELDS`: a ``bpf_spin_lock``, ...; the
Python path copies around them). No value ever
returned is 1 or 2: lookups return addresses inside the map's buffer.

Descriptor: u64 words named by :data:`DESCRIPTOR_FIELDS`, absolute addresses into the
map's buffer (lock, buckets, next, hashes, keys, ref, values, state, the family header with
count, free list head and hand) and numbers (key stride, key length, bucket mask,
max_entries, value slot size, seed, value size, per-CPU stride, CPUs, options:
:data:`OPTION_LRU`, :data:`OPTION_PERCPU`, :data:`OPTION_FIELDS`). A map builds its own
(:meth:`pybpf.maps.hash.HashMap.descriptor`); it stays valid while the map is open.
"""

from __future__ import annotations

import ctypes
import threading
import zlib
from dataclasses import dataclass
from typing import Any

from pybpf.memory.native import compile_native

__all__ = [
    "NativeMapOps",
    "native_map_ops",
    "module_ir",
    "signed",
    "DESCRIPTOR_FIELDS",
    "OPTION_LRU",
    "OPTION_PERCPU",
    "OPTION_FIELDS",
    "ALL_CPUS",
    "BUSY",
    "PYTHON",
]

DESCRIPTOR_FIELDS = (
    "lock",
    "buckets",
    "next",
    "hashes",
    "keys",
    "ref",
    "values",
    "key_stride",
    "key_len",
    "bucket_mask",
    "max_entries",
    "value_slot",
    "seed",
    "state",
    "header",
    "value_size",
    "cpu_stride",
    "ncpus",
    "options",
)
OPTION_LRU = 1  # descriptor ``options`` bits
OPTION_PERCPU = 2
OPTION_FIELDS = 4  # the value has special fields: updates answer PYTHON (maps.definition)
ALL_CPUS = (1 << 64) - 1  # pybpf_hash_update's cpu for "every CPU's copy" (user space)
BUSY, PYTHON = 1, 2  # native codes meaning "take the Python path"
_SPINS = 4096

_U64 = ctypes.c_uint64
_LOOKUP = ctypes.PYFUNCTYPE(_U64, _U64, ctypes.c_char_p, _U64, _U64, _U64, _U64)
_UPDATE = ctypes.PYFUNCTYPE(_U64, _U64, ctypes.c_char_p, ctypes.c_char_p, _U64, _U64, _U64)
_DELETE = ctypes.PYFUNCTYPE(_U64, _U64, ctypes.c_char_p, _U64)
_CRC = ctypes.PYFUNCTYPE(ctypes.c_uint32, ctypes.c_char_p, _U64, ctypes.c_uint32)


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if c & 1 else c >> 1
        table.append(c)
    return table


def module_ir() -> str:
    """The LLVM IR text of the native map operations."""
    table = ", ".join(f"i32 {v - (1 << 32) if v >= 1 << 31 else v}" for v in _crc_table())
    field = "".join(
        f"  %f.{name}.p = getelementptr i64, ptr %d, i64 {i}\n"
        f"  %f.{name} = load i64, ptr %f.{name}.p\n"
        for i, name in enumerate(DESCRIPTOR_FIELDS)
    )
    return (
        _IR.replace("@TABLE@", table)
        .replace("@FIELDS@", field)
        .replace("@SPINS@", str(_SPINS))
        .replace("@LRU@", str(OPTION_LRU))
        .replace("@PERCPU@", str(OPTION_PERCPU))
        .replace("@FIELDS_OPT@", str(OPTION_FIELDS))
    )


# The IR, with @TABLE@ (the CRC table), @FIELDS@ (loads of the descriptor's words from
# %d), @SPINS@ and the option bits filled in by module_ir(). Internal functions work with
# the lock held: find (slot + 1, 0 or -1: corrupt), pred (the address of the word naming a
# slot in its chain, 0: corrupt), free (unlink and free a slot, in HashMap._unlink's
# order). Index words and state bytes are written with volatile stores, so the compiler
# keeps HashMap's write order (what a process killed halfway leaves); state := 1 is a
# release store, after the key, hash and value.
_IR = """
@crc_table = private unnamed_addr constant [256 x i32] [@TABLE@]

declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)
declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)

define i32 @pybpf_crc32(i64 %data, i64 %len, i32 %seed) {
entry:
  %init = xor i32 %seed, -1
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%i1, %body]
  %crc = phi i32 [%init, %entry], [%crc1, %body]
  %done = icmp uge i64 %i, %len
  br i1 %done, label %exit, label %body
body:
  %pa = add i64 %data, %i
  %p = inttoptr i64 %pa to ptr
  %b = load i8, ptr %p
  %b32 = zext i8 %b to i32
  %x = xor i32 %crc, %b32
  %idx = and i32 %x, 255
  %idx64 = zext i32 %idx to i64
  %tp = getelementptr [256 x i32], ptr @crc_table, i64 0, i64 %idx64
  %t = load i32, ptr %tp
  %sh = lshr i32 %crc, 8
  %crc1 = xor i32 %t, %sh
  %i1 = add i64 %i, 1
  br label %loop
exit:
  %r = xor i32 %crc, -1
  ret i32 %r
}

define internal i1 @pybpf_lock_take(ptr %lockp, i64 %token) {
entry:
  br label %spin
spin:
  %n = phi i64 [0, %entry], [%n1, %retry]
  %cx = cmpxchg ptr %lockp, i64 0, i64 %token acquire monotonic, align 8
  %ok = extractvalue {i64, i1} %cx, 1
  br i1 %ok, label %locked, label %retry
retry:
  %n1 = add i64 %n, 1
  %give = icmp ugt i64 %n1, @SPINS@
  br i1 %give, label %busy, label %spin
busy:
  ret i1 0
locked:
  ret i1 1
}

define internal i64 @pybpf_hash_find(ptr %d, i64 %key, i32 %h) {
entry:
@FIELDS@  %h64 = zext i32 %h to i64
  %bi = and i64 %h64, %f.bucket_mask
  %bo = mul i64 %bi, 4
  %ba = add i64 %f.buckets, %bo
  %bp = inttoptr i64 %ba to ptr
  %b0 = load i32, ptr %bp
  br label %walk
walk:
  %b = phi i32 [%b0, %entry], [%bn, %next]
  %steps = phi i64 [0, %entry], [%steps1, %next]
  %empty = icmp eq i32 %b, 0
  br i1 %empty, label %missing, label %check
check:
  %b64 = zext i32 %b to i64
  %past = icmp ugt i64 %b64, %f.max_entries
  br i1 %past, label %bad, label %inside
inside:
  %s = sub i64 %b64, 1
  %s4 = mul i64 %s, 4
  %ha = add i64 %f.hashes, %s4
  %hp = inttoptr i64 %ha to ptr
  %hs = load i32, ptr %hp
  %heq = icmp eq i32 %hs, %h
  br i1 %heq, label %cmpstart, label %next
cmpstart:
  %ko = mul i64 %s, %f.key_stride
  %kbase = add i64 %f.keys, %ko
  br label %cmploop
cmploop:
  %j = phi i64 [0, %cmpstart], [%j1, %cmpbody]
  %cdone = icmp uge i64 %j, %f.key_len
  br i1 %cdone, label %found, label %cmpbody
cmpbody:
  %ka = add i64 %kbase, %j
  %kp = inttoptr i64 %ka to ptr
  %kv = load i8, ptr %kp
  %qa = add i64 %key, %j
  %qp = inttoptr i64 %qa to ptr
  %qv = load i8, ptr %qp
  %j1 = add i64 %j, 1
  %eq = icmp eq i8 %kv, %qv
  br i1 %eq, label %cmploop, label %next
next:
  %na = add i64 %f.next, %s4
  %np = inttoptr i64 %na to ptr
  %bn = load i32, ptr %np
  %steps1 = add i64 %steps, 1
  %corrupt = icmp ugt i64 %steps1, %f.max_entries
  br i1 %corrupt, label %bad, label %walk
bad:
  ret i64 -1
missing:
  ret i64 0
found:
  ret i64 %b64
}

define internal i64 @pybpf_hash_pred(ptr %d, i64 %s) {
entry:
@FIELDS@  %s4 = mul i64 %s, 4
  %ha = add i64 %f.hashes, %s4
  %hp = inttoptr i64 %ha to ptr
  %hs = load i32, ptr %hp
  %h64 = zext i32 %hs to i64
  %bi = and i64 %h64, %f.bucket_mask
  %bo = mul i64 %bi, 4
  %ba = add i64 %f.buckets, %bo
  %want = add i64 %s, 1
  br label %walk
walk:
  %at = phi i64 [%ba, %entry], [%na, %step]
  %steps = phi i64 [0, %entry], [%steps1, %step]
  %atp = inttoptr i64 %at to ptr
  %i = load i32, ptr %atp
  %i64 = zext i32 %i to i64
  %hit = icmp eq i64 %i64, %want
  br i1 %hit, label %found, label %cont
cont:
  %end = icmp eq i64 %i64, 0
  %past = icmp ugt i64 %i64, %f.max_entries
  %stop = or i1 %end, %past
  br i1 %stop, label %bad, label %step
step:
  %im1 = sub i64 %i64, 1
  %i4 = mul i64 %im1, 4
  %na = add i64 %f.next, %i4
  %steps1 = add i64 %steps, 1
  %cyc = icmp ugt i64 %steps1, %f.max_entries
  br i1 %cyc, label %bad, label %walk
found:
  ret i64 %at
bad:
  ret i64 0
}

define internal void @pybpf_hash_free(ptr %d, i64 %s, i64 %pred) {
entry:
@FIELDS@  %s4 = mul i64 %s, 4
  %na = add i64 %f.next, %s4
  %np = inttoptr i64 %na to ptr
  %nx = load volatile i32, ptr %np
  %pp = inttoptr i64 %pred to ptr
  store volatile i32 %nx, ptr %pp
  %sa = add i64 %f.state, %s
  %sp = inttoptr i64 %sa to ptr
  store atomic volatile i8 0, ptr %sp release, align 1
  %ra = add i64 %f.ref, %s
  %rp = inttoptr i64 %ra to ptr
  store volatile i8 0, ptr %rp
  %fa = add i64 %f.header, 4
  %fp = inttoptr i64 %fa to ptr
  %fh = load volatile i32, ptr %fp
  store volatile i32 %fh, ptr %np
  %s32 = trunc i64 %s to i32
  %s1 = add i32 %s32, 1
  store volatile i32 %s1, ptr %fp
  %cp = inttoptr i64 %f.header to ptr
  %c = load volatile i32, ptr %cp
  %c1 = sub i32 %c, 1
  store volatile i32 %c1, ptr %cp
  ret void
}

define i64 @pybpf_hash_lookup(i64 %desc, i64 %key, i64 %token, i64 %mark, i64 %out,
                              i64 %outlen) {
entry:
  %d = inttoptr i64 %desc to ptr
@FIELDS@  %lockp = inttoptr i64 %f.lock to ptr
  %got = call i1 @pybpf_lock_take(ptr %lockp, i64 %token)
  br i1 %got, label %locked, label %busy
busy:
  ret i64 1
locked:
  %seed32 = trunc i64 %f.seed to i32
  %h = call i32 @pybpf_crc32(i64 %key, i64 %f.key_len, i32 %seed32)
  %found = call i64 @pybpf_hash_find(ptr %d, i64 %key, i32 %h)
  switch i64 %found, label %hit [ i64 -1, label %bad
                                  i64 0, label %notfound ]
bad:
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 2
hit:
  %s = sub i64 %found, 1
  %vo = mul i64 %s, %f.value_slot
  %va = add i64 %f.values, %vo
  %m = icmp ne i64 %mark, 0
  br i1 %m, label %setref, label %copy
setref:
  %ra = add i64 %f.ref, %s
  %rp = inttoptr i64 %ra to ptr
  store i8 1, ptr %rp
  br label %copy
copy:
  %wantcopy = icmp ne i64 %out, 0
  br i1 %wantcopy, label %copyit, label %done
copyit:
  %dp = inttoptr i64 %out to ptr
  %sp = inttoptr i64 %va to ptr
  call void @llvm.memcpy.p0.p0.i64(ptr %dp, ptr %sp, i64 %outlen, i1 false)
  br label %done
done:
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 %va
notfound:
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 0
}

define i64 @pybpf_hash_update(i64 %desc, i64 %key, i64 %value, i64 %flags, i64 %token,
                              i64 %cpu) {
entry:
  %d = inttoptr i64 %desc to ptr
@FIELDS@  %lockp = inttoptr i64 %f.lock to ptr
  %pcbit = and i64 %f.options, @PERCPU@
  %percpu = icmp ne i64 %pcbit, 0
  %lrubit = and i64 %f.options, @LRU@
  %lru = icmp ne i64 %lrubit, 0
  %all = icmp eq i64 %cpu, -1
  %notall = xor i1 %all, true
  %one = and i1 %percpu, %notall
  %whole = and i1 %percpu, %all
  %cpuout = icmp uge i64 %cpu, %f.ncpus
  %cpubad = and i1 %one, %cpuout
  %cpuo = mul i64 %cpu, %f.cpu_stride
  %cpuoff = select i1 %one, i64 %cpuo, i64 0
  %len = select i1 %whole, i64 %f.value_slot, i64 %f.value_size
  %srcp = inttoptr i64 %value to ptr
  %fhp.a = add i64 %f.header, 4
  %fhp = inttoptr i64 %fhp.a to ptr
  %spbit = and i64 %f.options, @FIELDS_OPT@
  %special = icmp ne i64 %spbit, 0
  %topython = or i1 %cpubad, %special
  br i1 %topython, label %python, label %flagcheck
python:
  ret i64 2
flagcheck:
  %badflags = icmp ugt i64 %flags, 2
  br i1 %badflags, label %einval, label %lock
einval:
  ret i64 -22
lock:
  %got = call i1 @pybpf_lock_take(ptr %lockp, i64 %token)
  br i1 %got, label %locked, label %busy
busy:
  ret i64 1
locked:
  %seed32 = trunc i64 %f.seed to i32
  %h = call i32 @pybpf_crc32(i64 %key, i64 %f.key_len, i32 %seed32)
  %found = call i64 @pybpf_hash_find(ptr %d, i64 %key, i32 %h)
  switch i64 %found, label %exists [ i64 -1, label %bad
                                     i64 0, label %absent ]
bad:
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 2
exists:
  %noexist = icmp eq i64 %flags, 1
  br i1 %noexist, label %eexist, label %overwrite
eexist:
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 -17
overwrite:
  %s = sub i64 %found, 1
  %vo = mul i64 %s, %f.value_slot
  %vbase = add i64 %f.values, %vo
  %dst = add i64 %vbase, %cpuoff
  %dstp = inttoptr i64 %dst to ptr
  call void @llvm.memcpy.p0.p0.i64(ptr %dstp, ptr %srcp, i64 %len, i1 false)
  br i1 %lru, label %touch, label %updated
touch:
  %ra = add i64 %f.ref, %s
  %rp = inttoptr i64 %ra to ptr
  store volatile i8 1, ptr %rp
  br label %updated
updated:
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 0
absent:
  %exist = icmp eq i64 %flags, 2
  br i1 %exist, label %enoent, label %alloc
enoent:
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 -2
alloc:
  %fh = load volatile i32, ptr %fhp
  %fh64 = zext i32 %fh to i64
  %nofree = icmp eq i64 %fh64, 0
  br i1 %nofree, label %full, label %checkfree
checkfree:
  %fpast = icmp ugt i64 %fh64, %f.max_entries
  br i1 %fpast, label %bad, label %checkused
checkused:
  %fs = sub i64 %fh64, 1
  %fsa = add i64 %f.state, %fs
  %fsp = inttoptr i64 %fsa to ptr
  %fst = load i8, ptr %fsp
  %fused = icmp ne i8 %fst, 0
  br i1 %fused, label %bad, label %insert
full:
  br i1 %lru, label %evict, label %e2big
e2big:
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 -7
evict:
  %handa = add i64 %f.header, 8
  %handp = inttoptr i64 %handa to ptr
  %hand0 = load volatile i32, ptr %handp
  %hand64 = zext i32 %hand0 to i64
  %hand = urem i64 %hand64, %f.max_entries
  br label %scan
scan:
  %k = phi i64 [0, %evict], [%k1, %scannext]
  %kdone = icmp uge i64 %k, %f.max_entries
  br i1 %kdone, label %nonefound, label %scanbody
scanbody:
  %j0 = add i64 %hand, %k
  %wrap = icmp uge i64 %j0, %f.max_entries
  %jw = sub i64 %j0, %f.max_entries
  %j = select i1 %wrap, i64 %jw, i64 %j0
  %rja = add i64 %f.ref, %j
  %rjp = inttoptr i64 %rja to ptr
  %rj = load i8, ptr %rjp
  %clear = icmp eq i8 %rj, 0
  br i1 %clear, label %victim, label %scannext
scannext:
  %k1 = add i64 %k, 1
  br label %scan
nonefound:
  %rest = sub i64 %f.max_entries, %hand
  br label %victim
victim:
  %pos = phi i64 [%j, %scanbody], [%hand, %nonefound]
  %cleared = phi i64 [%k, %scanbody], [%rest, %nonefound]
  %vsa = add i64 %f.state, %pos
  %vsp = inttoptr i64 %vsa to ptr
  %vst = load i8, ptr %vsp
  %vused = icmp eq i8 %vst, 1
  br i1 %vused, label %vpred, label %bad
vpred:
  %pred = call i64 @pybpf_hash_pred(ptr %d, i64 %pos)
  %nopred = icmp eq i64 %pred, 0
  br i1 %nopred, label %bad, label %sweep
sweep:
  %c = phi i64 [0, %vpred], [%c1, %sweepbody]
  %cdone = icmp uge i64 %c, %cleared
  br i1 %cdone, label %evicted, label %sweepbody
sweepbody:
  %cj0 = add i64 %hand, %c
  %cwrap = icmp uge i64 %cj0, %f.max_entries
  %cjw = sub i64 %cj0, %f.max_entries
  %cj = select i1 %cwrap, i64 %cjw, i64 %cj0
  %rca = add i64 %f.ref, %cj
  %rcp = inttoptr i64 %rca to ptr
  store volatile i8 0, ptr %rcp
  %c1 = add i64 %c, 1
  br label %sweep
evicted:
  %pos1 = add i64 %pos, 1
  %newhand = urem i64 %pos1, %f.max_entries
  %nh32 = trunc i64 %newhand to i32
  store volatile i32 %nh32, ptr %handp
  call void @pybpf_hash_free(ptr %d, i64 %pos, i64 %pred)
  %fh2 = load volatile i32, ptr %fhp
  %fh2.64 = zext i32 %fh2 to i64
  br label %insert
insert:
  %slot1 = phi i64 [%fh64, %checkused], [%fh2.64, %evicted]
  %t = sub i64 %slot1, 1
  %t4 = mul i64 %t, 4
  %tna = add i64 %f.next, %t4
  %tnp = inttoptr i64 %tna to ptr
  %tnx = load volatile i32, ptr %tnp
  store volatile i32 %tnx, ptr %fhp
  %tko = mul i64 %t, %f.key_stride
  %tka = add i64 %f.keys, %tko
  %tkp = inttoptr i64 %tka to ptr
  %keyp = inttoptr i64 %key to ptr
  call void @llvm.memcpy.p0.p0.i64(ptr %tkp, ptr %keyp, i64 %f.key_len, i1 false)
  %tha = add i64 %f.hashes, %t4
  %thp = inttoptr i64 %tha to ptr
  store volatile i32 %h, ptr %thp
  %tvo = mul i64 %t, %f.value_slot
  %tvb = add i64 %f.values, %tvo
  %tvbp = inttoptr i64 %tvb to ptr
  br i1 %one, label %zero, label %fill
zero:
  call void @llvm.memset.p0.i64(ptr %tvbp, i8 0, i64 %f.value_slot, i1 false)
  br label %fill
fill:
  %tvd = add i64 %tvb, %cpuoff
  %tvdp = inttoptr i64 %tvd to ptr
  call void @llvm.memcpy.p0.p0.i64(ptr %tvdp, ptr %srcp, i64 %len, i1 false)
  %tra = add i64 %f.ref, %t
  %trp = inttoptr i64 %tra to ptr
  store volatile i8 0, ptr %trp
  %tsa = add i64 %f.state, %t
  %tsp = inttoptr i64 %tsa to ptr
  store atomic volatile i8 1, ptr %tsp release, align 1
  %h64 = zext i32 %h to i64
  %bi = and i64 %h64, %f.bucket_mask
  %bo = mul i64 %bi, 4
  %ba = add i64 %f.buckets, %bo
  %bp = inttoptr i64 %ba to ptr
  %head = load volatile i32, ptr %bp
  store volatile i32 %head, ptr %tnp
  %t32 = trunc i64 %slot1 to i32
  store volatile i32 %t32, ptr %bp
  %cp = inttoptr i64 %f.header to ptr
  %cnt = load volatile i32, ptr %cp
  %cnt1 = add i32 %cnt, 1
  store volatile i32 %cnt1, ptr %cp
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 0
}

define i64 @pybpf_hash_delete(i64 %desc, i64 %key, i64 %token) {
entry:
  %d = inttoptr i64 %desc to ptr
@FIELDS@  %lockp = inttoptr i64 %f.lock to ptr
  %got = call i1 @pybpf_lock_take(ptr %lockp, i64 %token)
  br i1 %got, label %locked, label %busy
busy:
  ret i64 1
locked:
  %seed32 = trunc i64 %f.seed to i32
  %h = call i32 @pybpf_crc32(i64 %key, i64 %f.key_len, i32 %seed32)
  %found = call i64 @pybpf_hash_find(ptr %d, i64 %key, i32 %h)
  switch i64 %found, label %hit [ i64 -1, label %bad
                                  i64 0, label %enoent ]
bad:
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 2
enoent:
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 -2
hit:
  %s = sub i64 %found, 1
  %pred = call i64 @pybpf_hash_pred(ptr %d, i64 %s)
  %nopred = icmp eq i64 %pred, 0
  br i1 %nopred, label %bad, label %unlink
unlink:
  call void @pybpf_hash_free(ptr %d, i64 %s, i64 %pred)
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 0
}
"""


@dataclass
class NativeMapOps:
    """The compiled operations (``engine`` keeps the machine code alive).

    ``hash_lookup(desc, key: bytes, token, mark, out, out_len)``,
    ``hash_update(desc, key: bytes, value: bytes, flags, token, cpu)``,
    ``hash_delete(desc, key: bytes, token)`` and ``crc32(data: bytes, len, seed)`` are
    ctypes functions (results as unsigned 64-bit integers: see :func:`signed`);
    ``*_address`` are the raw entry points for JIT code.
    """

    hash_lookup: Any
    crc32: Any
    hash_lookup_address: int
    crc32_address: int
    engine: Any
    hash_update: Any = None
    hash_delete: Any = None
    hash_update_address: int = 0
    hash_delete_address: int = 0


def signed(result: int) -> int:
    """A native operation's u64 result as a signed integer (``-errno`` stays negative)."""
    return result - (1 << 64) if result >> 63 else result


_LOCK = threading.Lock()
_CACHE: list[NativeMapOps | None] = []


def _compile() -> NativeMapOps | None:
    compiled = compile_native(module_ir())
    if compiled is None:  # no llvmlite, or no native target: the Python path remains
        return None
    engine = compiled[0]
    lookup = engine.get_function_address("pybpf_hash_lookup")
    crc = engine.get_function_address("pybpf_crc32")
    update = engine.get_function_address("pybpf_hash_update")
    delete = engine.get_function_address("pybpf_hash_delete")
    ops = NativeMapOps(_LOOKUP(lookup), _CRC(crc), lookup, crc, engine)
    ops.hash_update, ops.hash_update_address = _UPDATE(update), update
    ops.hash_delete, ops.hash_delete_address = _DELETE(delete), delete
    if ops.crc32(b"pybpf", 5, 7) != zlib.crc32(b"pybpf", 7):  # never trust a miscompile
        return None
    return ops


def native_map_ops() -> NativeMapOps | None:
    """The native map operations, compiled on the first call (``None`` without llvmlite)."""
    if not _CACHE:
        with _LOCK:
            if not _CACHE:
                _CACHE.append(_compile())
    return _CACHE[0]
