"""String helpers: strncmp, strtol/strtoul (Linux's parsing rules), snprintf, trace_vprintk."""

from __future__ import annotations

import errno
import struct

import pytest

from pybpf.errors import MemoryAccessError
from pybpf.isa import assemble
from pybpf.memory import AddressSpace, Region
from pybpf.runtime import ExecutionContext, default_helpers
from pybpf.runtime.strings import snprintf, strncmp, strtol, strtoul, trace_vprintk
from pybpf.vm import Interpreter

M64 = (1 << 64) - 1
EINVAL, ERANGE = -errno.EINVAL, -errno.ERANGE


class Mem:
    """A context over one writable region: ``put`` bytes, ``get`` them back."""

    def __init__(self, size: int = 512) -> None:
        self.region = Region(size, kind="input")
        self.trace: list[str] = []
        self.ctx = ExecutionContext(AddressSpace([self.region]), trace=self.trace.append)
        self.used = 0

    def put(self, data: bytes) -> int:
        address = self.region.address + self.used
        self.region.view[self.used : self.used + len(data)] = data
        self.used += (len(data) + 7) & ~7 or 8
        return address

    def get(self, address: int, n: int) -> bytes:
        return self.ctx.memory.read(address, n)

    def close(self) -> None:
        self.region.close()


@pytest.fixture
def mem():
    m = Mem()
    yield m
    m.close()


def signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def parse(mem: Mem, fn, text: bytes, flags: int = 0) -> tuple[int, int]:
    buf = mem.put(text)
    out = mem.put(struct.pack("<Q", 0xAAAA))
    rc = signed(fn(mem.ctx, buf, len(text), flags, out, 0) & M64)
    return rc, struct.unpack("<Q", mem.get(out, 8))[0]


@pytest.mark.parametrize(
    "text, flags, rc, value",
    [
        (b"123", 0, 3, 123),
        (b"  \t-42xyz", 10, 6, -42 & M64),
        (b"0x1F", 0, 4, 31),
        (b"0x1F", 16, 4, 31),
        (b"1F", 16, 2, 31),
        (b"0xg", 0, 1, 0),  # "0" in octal: the x is not a prefix without a hex digit
        (b"0xg", 16, EINVAL, 0),
        (b"017", 0, 3, 15),
        (b"089", 0, 1, 0),
        (b"-", 0, EINVAL, 0),
        (b"   ", 0, EINVAL, 0),
        (b"abc", 10, EINVAL, 0),
        (b"12", 2, EINVAL, 0),  # base 2 is not accepted
        (b"12", 0x20 | 10, EINVAL, 0),  # bits above the base
        (b"9223372036854775807", 0, 19, (1 << 63) - 1),
        (b"9223372036854775808", 0, ERANGE, 0),
        (b"-9223372036854775808", 0, 20, 1 << 63),
        (b"-9223372036854775809", 0, ERANGE, 0),
        (b"99999999999999999999999", 0, ERANGE, 0),
        (b"12\x0034", 0, 2, 12),
        (b"1" * 70, 0, ERANGE, 0),
        (b" " * 10 + b"0" * 70, 0, 73, 0),  # 63 digits after the skipped prefix
    ],
)
def test_strtol(mem, text, flags, rc, value):
    assert parse(mem, strtol, text, flags) == (rc, value)


def test_strtoul(mem):
    assert parse(mem, strtoul, b"18446744073709551615") == (20, M64)
    assert parse(mem, strtoul, b"18446744073709551616") == (ERANGE, 0)
    assert parse(mem, strtoul, b"-1") == (EINVAL, 0)
    assert parse(mem, strtoul, b"\n0xffz", 0) == (5, 255)
    assert parse(mem, strtoul, b"", 0) == (EINVAL, 0)


def test_strncmp(mem):
    def cmp(s1: bytes, size: int, s2: bytes) -> int:
        return signed(strncmp(mem.ctx, mem.put(s1), size, mem.put(s2 + b"\0"), 0, 0) & M64)

    assert cmp(b"hello", 5, b"hello") == 0
    assert cmp(b"hellO", 5, b"hello") == -1
    assert cmp(b"hello", 4, b"hellx") == 0
    assert cmp(b"hello", 5, b"hell") == 1
    assert cmp(b"he\0xx", 5, b"he") == 0
    assert cmp(b"\xff", 1, b"a") == 1  # unsigned bytes
    assert cmp(b"x", 0, b"y") == 0
    with pytest.raises(MemoryAccessError):
        strncmp(mem.ctx, mem.put(b"abc"), 3, 8, 0, 0)


def test_snprintf_truncates_and_returns_the_needed_size(mem):
    fmt = mem.put(b"pid %d comm %s\0")
    name = mem.put(b"python\0")
    data = mem.put(struct.pack("<QQ", 42, name))
    out = mem.put(b"\xee" * 64)
    assert snprintf(mem.ctx, out, 64, fmt, data, 16) == len("pid 42 comm python") + 1
    assert mem.get(out, 19) == b"pid 42 comm python\0"
    out = mem.put(b"\xee" * 8)
    assert snprintf(mem.ctx, out, 5, fmt, data, 16) == 19
    assert mem.get(out, 8) == b"pid \0" + b"\xee" * 3
    assert snprintf(mem.ctx, 0, 0, fmt, data, 16) == 19
    assert snprintf(mem.ctx, out, 8, fmt, data, 12) == EINVAL  # not a multiple of 8
    assert snprintf(mem.ctx, out, 8, fmt, data, 8) == EINVAL  # fewer args than conversions
    assert snprintf(mem.ctx, out, 8, fmt, 0, 16) == EINVAL
    assert snprintf(mem.ctx, out, 8, fmt, data, 13 * 8) == EINVAL
    bad = mem.put(b"%n\0")
    assert snprintf(mem.ctx, out, 8, bad, data, 8) == EINVAL


def test_trace_vprintk(mem):
    fmt = b"%d + %d = %lld\n\0"
    a = mem.put(fmt)
    data = mem.put(struct.pack("<qqq", 2, -3, -1))
    assert trace_vprintk(mem.ctx, a, len(fmt), data, 24, 0) == len("2 + -3 = -1\n")
    assert mem.trace == ["2 + -3 = -1\n"]
    assert trace_vprintk(mem.ctx, a, len(fmt) - 1, data, 24, 0) == EINVAL  # no NUL in fmt_size
    assert trace_vprintk(mem.ctx, a, len(fmt), data, 16, 0) == EINVAL
    assert trace_vprintk(mem.ctx, a, 0, data, 24, 0) == EINVAL
    assert len(mem.trace) == 1


STRTOL_PROGRAM = """
r3 = 0
r4 = r10
r4 += -8
call 105
if r0 s< 0 goto out
r0 = *(u64 *)(r10 - 8)
out:
exit
"""


def test_strtol_in_the_interpreter():
    vm = Interpreter(
        assemble(STRTOL_PROGRAM), helpers=default_helpers(), entry_registers=(1, 2, 10)
    )
    with vm:
        for text, expected in ((b" 0x7b", 123), (b"-5", -5 & M64), (b"zz", EINVAL & M64)):
            with Region.from_bytes(text, kind="input") as r:
                assert vm.run((r.address, r.size), memory=AddressSpace([r])) == expected
