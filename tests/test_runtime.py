"""Runtime: helper registry and error contract, bprintf formatting, trace pipe, basic helpers."""

from __future__ import annotations

import errno
import time

import pytest

from pybpf.errors import HelperError, MemoryAccessError
from pybpf.memory import AddressSpace, Region
from pybpf.runtime import (
    BprintfError,
    ExecutionContext,
    HelperRegistry,
    TracePipe,
    call_helper,
    default_helpers,
    format_bprintf,
)

M64 = (1 << 64) - 1


def test_registry_binds_by_id_and_linux_name():
    reg = HelperRegistry()

    @reg.register("ktime_get_ns")
    def now(ctx, *regs):
        return 1

    reg.register(1000, lambda ctx, *r: 2)
    assert reg.get(5) is now and 1000 in reg and reg.ids() == [5, 1000]
    reg.unregister("ktime_get_ns")
    assert reg.get(5) is None and len(reg) == 1
    with pytest.raises(HelperError):
        reg.register("no_such_helper", now)
    with pytest.raises(HelperError):
        reg.register(3, "not callable")
    copy = default_helpers().copy()
    copy.unregister(5)
    assert 5 in default_helpers() and 5 not in copy


def test_call_helper_error_contract():
    ctx = ExecutionContext(AddressSpace(), pc=4)
    reg = HelperRegistry(
        {
            1000: lambda ctx, *r: None,
            1001: lambda ctx, a, *r: -a,
            1002: lambda ctx, *r: 1 / 0,
            1003: lambda ctx, *r: ctx.memory.read(16, 1),
        }
    )
    assert call_helper(reg, ctx, 1000) == 0
    assert call_helper(reg, ctx, 1001, 3) == (-3) & M64
    with pytest.raises(HelperError) as info:
        call_helper(reg, ctx, 1002)
    assert (info.value.helper_id, info.value.pc) == (1002, 4)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    with pytest.raises(MemoryAccessError) as info:
        call_helper(reg, ctx, 1003)
    assert info.value.pc == 4 and info.value.address == 16
    with pytest.raises(HelperError) as info:
        call_helper(reg, ctx, 9999)
    assert info.value.helper_id == 9999


def _fmt(fmt: bytes, *args, memory=None):
    return format_bprintf(fmt, args, memory or AddressSpace())


def test_bprintf_integers_follow_kernel_widths():
    assert _fmt(b"%d %i %u", 0xFFFFFFFF, 0x1_0000_0005, 0xFFFFFFFE) == "-1 5 4294967294"
    assert _fmt(b"%ld %lu %llx", M64, M64, 0xABC) == f"-1 {M64} abc"
    assert _fmt(b"%x %X %lX", 0xDEADBEEF, 0xBEEF, 0xAB << 32) == "deadbeef BEEF AB00000000"
    assert _fmt(b"[%5d|%-4u|%05x|%+d]", 42, 7, 0xAB, 3) == "[   42|7   |000ab|+3]"
    assert _fmt(b"100%% %c", ord("z")) == "100% z"


def test_bprintf_strings_and_pointers_read_program_memory():
    space = AddressSpace()
    text = space.add(Region.from_bytes(b"hello\0world\0"))
    ip = space.add(Region.from_bytes(bytes([10, 0, 0, 1])))
    assert _fmt(b"%s,%s!", text.address, text.address + 6, memory=space) == "hello,world!"
    assert _fmt(b"%s|", 0, memory=space) == "|"  # unreadable: empty, like the kernel
    assert _fmt(b"%pI4 %pi4", ip.address, ip.address, memory=space) == "10.0.0.1 010.000.000.001"
    assert _fmt(b"%px %p", 0x1234, 0xFF) == "0000000000001234 00000000000000ff"
    assert _fmt(b"%pks", text.address, memory=space) == "hello"


@pytest.mark.parametrize(
    "fmt, nargs",
    [(b"%n", 1), (b"%.2d", 1), (b"%d %d", 1), (b"%q", 1), (b"tab\x01", 0), (b"\xff", 0), (b"%", 1)],
)
def test_bprintf_refuses_like_the_kernel(fmt, nargs):
    with pytest.raises(BprintfError):
        _fmt(fmt, *range(nargs))


def test_trace_pipe_buffers_and_drains():
    pipe = TracePipe(maxlen=2)
    for i in range(3):
        pipe.write(f"line {i}\n")
    assert len(pipe) == 2
    assert pipe.read() == ["line 1\n", "line 2\n"] and pipe.read() == []


def _ctx_with_format(fmt: bytes):
    space = AddressSpace()
    region = space.add(Region.from_bytes(fmt))
    lines: list[str] = []
    return ExecutionContext(space, trace=lines.append), region, lines


def test_trace_printk_helper():
    helpers = default_helpers()
    ctx, region, lines = _ctx_with_format(b"n=%d\n\0")
    r0 = call_helper(helpers, ctx, 6, region.address, region.size, 7)
    assert r0 == 4 and lines == ["n=7\n"]
    # fmt_size must cover the NUL; 0 is invalid; a refused format prints nothing
    assert call_helper(helpers, ctx, 6, region.address, region.size - 1, 7) == -errno.EINVAL & M64
    assert call_helper(helpers, ctx, 6, region.address, 0) == -errno.EINVAL & M64
    ctx2, region2, lines2 = _ctx_with_format(b"%z\0")
    assert call_helper(helpers, ctx2, 6, region2.address, 3) == -errno.EINVAL & M64
    assert lines2 == [] and lines == ["n=7\n"]
    with pytest.raises(MemoryAccessError):  # fmt outside program memory stops the run
        call_helper(helpers, ctx, 6, region.address + 4, 16)


def test_basic_helpers():
    helpers = default_helpers()
    ctx = ExecutionContext(AddressSpace(), cpu=2)
    before = time.monotonic_ns()
    now = call_helper(helpers, ctx, 5)
    assert before <= now <= time.monotonic_ns()
    assert call_helper(helpers, ctx, 8) == 2
    assert call_helper(helpers, ctx, 42) == 0
    ctx.random.seed(1)
    first = [call_helper(helpers, ctx, 7) for _ in range(3)]
    ctx.random.seed(1)
    assert [call_helper(helpers, ctx, 7) for _ in range(3)] == first
    assert all(0 <= v < 1 << 32 for v in first)
    assert call_helper(helpers, ctx, 125) > 0 and call_helper(helpers, ctx, 160) > 0
