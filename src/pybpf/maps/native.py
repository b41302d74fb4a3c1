"""Native map operations: hash lookups compiled once with llvmlite, for Python and the JIT.

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
  copy), 0 when the key is missing, 1 when the lock stayed busy (the caller takes the
  Python path, which waits and recovers dead holders) or 2 when a chain looks corrupt: a
  cycle, or a slot past ``max_entries`` (the Python path rebuilds the index).

Descriptor: 13 u64 words, absolute addresses into the map's buffer: lock, buckets, next,
hashes, keys, ref, values, then key stride, key length, bucket mask, max_entries, value
slot size, seed. A map builds its own (:meth:`pybpf.maps.hash.HashMap.descriptor`); it
stays valid while the map is open.
"""

from __future__ import annotations

import ctypes
import threading
import zlib
from dataclasses import dataclass
from typing import Any

from pybpf.memory.native import compile_native

__all__ = ["NativeMapOps", "native_map_ops", "module_ir", "DESCRIPTOR_FIELDS"]

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
)
_SPINS = 4096

_U64 = ctypes.c_uint64
_LOOKUP = ctypes.PYFUNCTYPE(_U64, _U64, ctypes.c_char_p, _U64, _U64, _U64, _U64)
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
    return f"""
@crc_table = private unnamed_addr constant [256 x i32] [{table}]

define i32 @pybpf_crc32(i64 %data, i64 %len, i32 %seed) {{
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
}}

define i64 @pybpf_hash_lookup(i64 %desc, i64 %key, i64 %token, i64 %mark, i64 %out,
                              i64 %outlen) {{
entry:
  %d = inttoptr i64 %desc to ptr
{field}  %lockp = inttoptr i64 %f.lock to ptr
  br label %spin
spin:
  %n = phi i64 [0, %entry], [%n1, %retry]
  %cx = cmpxchg ptr %lockp, i64 0, i64 %token acquire monotonic, align 8
  %ok = extractvalue {{i64, i1}} %cx, 1
  br i1 %ok, label %locked, label %retry
retry:
  %n1 = add i64 %n, 1
  %give = icmp ugt i64 %n1, {_SPINS}
  br i1 %give, label %busy, label %spin
busy:
  ret i64 1
locked:
  %seed32 = trunc i64 %f.seed to i32
  %h = call i32 @pybpf_crc32(i64 %key, i64 %f.key_len, i32 %seed32)
  %h64 = zext i32 %h to i64
  %bi = and i64 %h64, %f.bucket_mask
  %bo = mul i64 %bi, 4
  %ba = add i64 %f.buckets, %bo
  %bp = inttoptr i64 %ba to ptr
  %b0 = load i32, ptr %bp
  br label %walk
walk:
  %b = phi i32 [%b0, %locked], [%bn, %next]
  %steps = phi i64 [0, %locked], [%steps1, %next]
  %empty = icmp eq i32 %b, 0
  br i1 %empty, label %notfound, label %check
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
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 2
found:
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
  br i1 %wantcopy, label %copyloop, label %done
copyloop:
  %c = phi i64 [0, %copy], [%c1, %copybody]
  %cend = icmp uge i64 %c, %outlen
  br i1 %cend, label %done, label %copybody
copybody:
  %sa = add i64 %va, %c
  %sp = inttoptr i64 %sa to ptr
  %sv = load i8, ptr %sp
  %da = add i64 %out, %c
  %dp = inttoptr i64 %da to ptr
  store i8 %sv, ptr %dp
  %c1 = add i64 %c, 1
  br label %copyloop
done:
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 %va
notfound:
  store atomic i64 0, ptr %lockp release, align 8
  ret i64 0
}}
"""


@dataclass
class NativeMapOps:
    """The compiled operations (``engine`` keeps the machine code alive).

    ``hash_lookup(desc, key: bytes, token, mark, out, out_len)`` and
    ``crc32(data: bytes, len, seed)`` are ctypes functions; ``*_address`` are the raw
    entry points for JIT code.
    """

    hash_lookup: Any
    crc32: Any
    hash_lookup_address: int
    crc32_address: int
    engine: Any


_LOCK = threading.Lock()
_CACHE: list[NativeMapOps | None] = []


def _compile() -> NativeMapOps | None:
    compiled = compile_native(module_ir())
    if compiled is None:  # no llvmlite, or no native target: the Python path remains
        return None
    engine = compiled[0]
    lookup = engine.get_function_address("pybpf_hash_lookup")
    crc = engine.get_function_address("pybpf_crc32")
    ops = NativeMapOps(_LOOKUP(lookup), _CRC(crc), lookup, crc, engine)
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
