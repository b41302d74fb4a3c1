"""Checksum helpers: csum_diff against a transcription of the kernel's x86-64 arithmetic and
against the kernel itself, l3/l4_csum_replace on the run's packet."""

from __future__ import annotations

import errno
import random
import struct

import pytest

from kernel import requires_bpf
from pybpf.isa import assemble, encode
from pybpf.memory import AddressSpace, Region
from pybpf.runtime import ExecutionContext, default_helpers
from pybpf.runtime.checksum import csum_diff, csum_fold, l3_csum_replace, l4_csum_replace
from pybpf.vm import Interpreter

M32, M64 = (1 << 32) - 1, (1 << 64) - 1


# ---- reference: a literal transcription of the kernel's C ---------------------------------
def ref_csum_partial(buf: bytes, seed: int) -> int:
    """arch/x86/lib/csum-partial_64.c: 64-bit adds with carry, then from64to32."""
    t = seed & M32
    buf = buf + bytes(-len(buf) % 8)
    for (word,) in struct.iter_unpack("<Q", buf):
        t += word
        t = (t & M64) + (t >> 64)
    ror = ((t >> 32) | (t << 32)) & M64
    return ((t + ror) & M64) >> 32


def ref_add(a: int, b: int) -> int:
    s = (a + b) & M32
    return (s + (s < b)) & M32


def ref_from32to16(s: int) -> int:
    s = (s + ((s >> 16) | (s << 16))) & M32
    return s >> 16


def ref_csum_diff(frm: bytes, to: bytes, seed: int) -> int:
    if frm and to:
        return ref_from32to16(ref_add(ref_csum_partial(to, seed), ~ref_csum_partial(frm, 0) & M32))
    if to:
        return ref_from32to16(ref_csum_partial(to, seed))
    if frm:
        return ref_from32to16(~ref_csum_partial(frm, ~seed & M32) & M32)
    return ref_from32to16(seed)


def vectors(n: int, seed: int = 7):
    rng = random.Random(seed)
    for _ in range(n):
        fs = rng.choice([0, 1, 3, 4, 8, 12, 20, 40, 64, 81, 600])
        ts = rng.choice([0, 2, 4, 8, 16, 20, 40, 100, 513])
        data = rng.randbytes(fs + ts)
        if rng.random() < 0.15:
            data = bytes(fs + ts)
        elif rng.random() < 0.15:
            data = b"\xff" * (fs + ts)
        yield fs, ts, rng.choice([0, 0xFFFF, M32, rng.getrandbits(32)]), data


def test_csum_diff_matches_the_kernel_algorithm():
    for fs, ts, seed, data in vectors(300):
        with Region.from_bytes(data or b"\0", kind="input") as r:
            ctx = ExecutionContext(AddressSpace([r]))
            got = csum_diff(ctx, r.address, fs, r.address + fs, ts, seed)
        assert got == ref_csum_diff(data[:fs], data[fs:], seed), (fs, ts, seed)


def test_csum_diff_known_values_and_meaning():
    # selftests/bpf csum_diff_test: push 0xdeadbeefdeadbeef (little-endian u64) -> 0x3b3b
    data = struct.pack("<Q", 0xDEADBEEFDEADBEEF)
    with Region.from_bytes(data) as r:
        ctx = ExecutionContext(AddressSpace([r]))
        assert csum_diff(ctx, 0, 0, r.address, 8, 0) == 0x3B3B
        # diffing a buffer against itself leaves a checksum unchanged
        same = csum_diff(ctx, r.address, 8, r.address, 8, 0x1234)
        assert csum_fold(same) == csum_fold(0x1234)


PROGRAM_DIFF = """
r3 = r1
r3 += {fs}
r2 = {fs}
r4 = {ts}
r5 = {seed} ll
call 28
exit
"""


def test_csum_diff_in_the_interpreter():
    for fs, ts, seed, data in vectors(20, seed=3):
        if not fs or not ts:
            continue
        vm = Interpreter(
            assemble(PROGRAM_DIFF.format(fs=fs, ts=ts, seed=seed)),
            helpers=default_helpers(),
            entry_registers=(1, 2, 10),
        )
        with vm, Region.from_bytes(data, kind="input") as r:
            got = vm.run((r.address, r.size), memory=AddressSpace([r]))
        assert got == ref_csum_diff(data[:fs], data[fs:], seed)


# ---- l3/l4_csum_replace -------------------------------------------------------------------
def ip_header(rng: random.Random) -> bytearray:
    hdr = bytearray(rng.randbytes(20))
    hdr[10:12] = b"\0\0"
    total = sum(struct.unpack(">10H", hdr))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    hdr[10:12] = struct.pack(">H", ~total & 0xFFFF)
    return hdr


def valid(hdr: bytes) -> bool:
    total = sum(struct.unpack(f">{len(hdr) // 2}H", hdr))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def replace(fn, packet: bytes, offset: int, old: int, new: int, flags: int) -> tuple[int, bytes]:
    with Region.from_bytes(packet, kind="packet") as pkt:
        ctx = ExecutionContext(AddressSpace([pkt]), packet=pkt)
        rc = fn(ctx, 0, offset, old, new, flags)
        return rc & M64, bytes(pkt.view)


@pytest.mark.parametrize("fn", [l3_csum_replace, l4_csum_replace])
def test_csum_replace_keeps_header_checksums_valid(fn):
    rng = random.Random(5)
    for _ in range(100):
        hdr = ip_header(rng)
        assert valid(hdr)
        field = rng.choice([12, 16])  # the source or destination address
        new_addr = rng.randbytes(4)
        (old,) = struct.unpack_from("<I", hdr, field)
        (new,) = struct.unpack("<I", new_addr)
        hdr[field : field + 4] = new_addr
        rc, out = replace(fn, bytes(hdr), 10, old, new, 4)
        assert rc == 0 and valid(out) and out[:10] == hdr[:10]
        # a 2-byte field (the id) changed the same way
        hdr = bytearray(out)
        (old16,) = struct.unpack_from("<H", hdr, 4)
        new16 = rng.getrandbits(16)
        struct.pack_into("<H", hdr, 4, new16)
        rc, out = replace(fn, bytes(hdr), 10, old16, new16, 2)
        assert rc == 0 and valid(out)


def test_csum_replace_errors():
    pkt = bytes(ip_header(random.Random(1)))
    assert replace(l3_csum_replace, pkt, 11, 0, 1, 4)[0] == -errno.EFAULT & M64
    assert replace(l3_csum_replace, pkt, 20, 0, 1, 4)[0] == -errno.EFAULT & M64
    assert replace(l3_csum_replace, pkt, 1 << 16, 0, 1, 4)[0] == -errno.EFAULT & M64
    assert replace(l3_csum_replace, pkt, 10, 0, 1, 3)[0] == -errno.EINVAL & M64
    assert replace(l3_csum_replace, pkt, 10, 1, 1, 0)[0] == -errno.EINVAL & M64
    assert replace(l3_csum_replace, pkt, 10, 0, 1, 0x10)[0] == -errno.EINVAL & M64
    assert replace(l4_csum_replace, pkt, 10, 0, 1, 0x100)[0] == -errno.EINVAL & M64
    assert l3_csum_replace(ExecutionContext(AddressSpace()), 0, 10, 0, 1, 4) == -errno.EINVAL
    with Region.from_bytes(pkt, kind="packet", writable=False) as ro:
        ctx = ExecutionContext(AddressSpace([ro]), packet=ro)
        assert l3_csum_replace(ctx, 0, 10, 0, 1, 4) == -errno.EFAULT


def test_l4_mangled_zero():
    zero = bytes(20)
    rc, out = replace(l4_csum_replace, zero, 10, 0, 5, 0x24)
    assert rc == 0 and out == zero  # a zero (absent UDP) checksum stays zero
    rc, out = replace(l4_csum_replace, zero, 10, 0, 5, 0x64)
    assert rc == 0 and out != zero
    pkt = bytearray(20)
    struct.pack_into("<H", pkt, 10, ~0x0102 & 0xFFFF)
    rc, out = replace(l4_csum_replace, bytes(pkt), 10, 0x0102, 0, 0x24)
    assert rc == 0 and out[10:12] == b"\xff\xff"  # CSUM_MANGLED_0 instead of 0


# ---- against the kernel -------------------------------------------------------------------
KERNEL_DIFF = """
r2 = *(u32 *)(r1 + 0)
r3 = *(u32 *)(r1 + 4)
r4 = r2
r4 += {n}
if r4 > r3 goto fail
r1 = r2
r3 = r2
r3 += {fs}
r2 = {fs}
r4 = {ts}
r5 = {seed} ll
call 28
exit
fail:
r0 = 7
exit
"""


@requires_bpf
def test_csum_diff_equals_the_kernel():
    from pybpf import syscall

    for fs, ts, seed, data in vectors(40, seed=11):
        if not fs or not ts:
            continue
        text = KERNEL_DIFF.format(n=fs + ts, fs=fs, ts=ts, seed=seed)
        fd, _ = syscall.prog_load(syscall.ProgType.XDP, encode(assemble(text)), log_level=0)
        with fd:
            kernel = syscall.prog_test_run(fd, data + bytes(64)).retval
        with Region.from_bytes(data, kind="input") as r:
            ctx = ExecutionContext(AddressSpace([r]))
            assert csum_diff(ctx, r.address, fs, r.address + fs, ts, seed) == kernel


KERNEL_REPLACE = """
r2 = {offset}
r3 = {old} ll
r4 = {new} ll
r5 = {flags}
call {helper}
exit
"""


@requires_bpf
def test_csum_replace_equals_the_kernel():
    from pybpf import syscall

    rng = random.Random(9)
    cases = [(10, 4, 0), (10, 2, 0), (10, 0, 0), (10, 4, 0x10), (10, 4, 0x20), (11, 4, 0)]
    cases += [(10, 4, 0x60), (10, 3, 0), (1 << 20, 4, 0), (60, 4, 0)]
    for helper, fn in ((10, l3_csum_replace), (11, l4_csum_replace)):
        for offset, size, extra in cases:
            pkt = bytearray(rng.randbytes(60))
            if rng.random() < 0.3:
                pkt[offset % 60 : offset % 60 + 2] = b"\0\0"
            old = rng.getrandbits(32) if size else 0
            new = rng.getrandbits(32)
            flags = size | extra
            text = KERNEL_REPLACE.format(
                offset=offset, old=old, new=new, flags=flags, helper=helper
            )
            try:
                fd, _ = syscall.prog_load(
                    syscall.ProgType.SCHED_CLS, encode(assemble(text)), log_level=0
                )
            except Exception:
                if helper == 11 and extra & 0x80:
                    continue
                raise
            with fd:
                result = syscall.prog_test_run(fd, bytes(pkt))
            rc, out = replace(fn, bytes(pkt), offset, old, new, flags)
            assert (rc & M32, out) == (result.retval, result.data_out[: len(pkt)]), (
                helper,
                offset,
                size,
                extra,
            )
