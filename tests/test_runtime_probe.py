"""Probe-read helpers: checked copies from readable regions, -EFAULT and zero-filling."""

from __future__ import annotations

import errno

import pytest

from pybpf.errors import MemoryAccessError
from pybpf.isa import assemble
from pybpf.memory import AddressSpace, Region
from pybpf.runtime import ExecutionContext, default_helpers
from pybpf.runtime.probe import PROBE_HELPERS, probe_read, probe_read_str
from pybpf.vm import Interpreter

M64 = (1 << 64) - 1
EFAULT = -errno.EFAULT


@pytest.fixture
def regions():
    src = Region.from_bytes(b"hello\0world!", kind="input", writable=False)
    dst = Region(16, kind="stack")
    hidden = Region(8, kind="data", readable=False)
    yield ExecutionContext(AddressSpace([src, dst, hidden])), src, dst, hidden
    for r in (src, dst, hidden):
        r.close()


def test_all_ids_are_bound():
    reg = default_helpers()
    assert {4, 45, 112, 113, 114, 115} <= set(reg.ids())
    assert len(PROBE_HELPERS) == 6


def test_probe_read(regions):
    ctx, src, dst, hidden = regions
    dst.view[:] = b"\xee" * 16
    assert probe_read(ctx, dst.address, 12, src.address, 0, 0) == 0
    assert bytes(dst.view[:12]) == b"hello\0world!"
    assert probe_read(ctx, dst.address, 13, src.address, 0, 0) == EFAULT  # past the end
    assert bytes(dst.view) == bytes(13) + b"\xee" * 3
    dst.view[:] = b"\xee" * 16
    assert probe_read(ctx, dst.address, 4, hidden.address, 0, 0) == EFAULT  # not readable
    assert probe_read(ctx, dst.address, 4, 8, 0, 0) == EFAULT  # no region
    assert bytes(dst.view) == bytes(4) + b"\xee" * 12
    assert probe_read(ctx, dst.address, 0, 8, 0, 0) == 0
    with pytest.raises(MemoryAccessError):
        probe_read(ctx, src.address, 4, src.address, 0, 0)  # read-only destination


def test_probe_read_str(regions):
    ctx, src, dst, hidden = regions
    dst.view[:] = b"\xee" * 16
    assert probe_read_str(ctx, dst.address, 16, src.address, 0, 0) == 6
    assert bytes(dst.view) == b"hello\0" + b"\xee" * 10
    assert probe_read_str(ctx, dst.address, 3, src.address, 0, 0) == 3  # truncated
    assert bytes(dst.view[:4]) == b"he\0l"
    assert probe_read_str(ctx, dst.address, 6, src.address + 6, 0, 0) == 6
    assert bytes(dst.view[:6]) == b"world\0"
    # "world!" runs off its region before a NUL: -EFAULT, destination zeroed
    assert probe_read_str(ctx, dst.address, 16, src.address + 6, 0, 0) == EFAULT
    assert bytes(dst.view) == bytes(16)
    assert probe_read_str(ctx, dst.address, 4, hidden.address, 0, 0) == EFAULT
    assert probe_read_str(ctx, dst.address, 0, 8, 0, 0) == 0


PROGRAM = """
r3 = r1
r1 = r10
r1 += -8
r2 = 8
call {helper}
if r0 s< 0 goto out
r0 = *(u64 *)(r10 - 8)
out:
exit
"""


@pytest.mark.parametrize("helper", [4, 113, 45, 115])
def test_probe_reads_in_the_interpreter(helper):
    vm = Interpreter(
        assemble(PROGRAM.format(helper=helper)),
        helpers=default_helpers(),
        entry_registers=(1, 2, 10),
    )
    with vm, Region.from_bytes(b"abcdefgh", kind="input") as r:
        got = vm.run((r.address, r.size), memory=AddressSpace([r]))
        expected = b"abcdefgh" if helper in (4, 113) else b"abcdefg\0"
        assert got == int.from_bytes(expected, "little")
        assert vm.run((r.address + 4, 4), memory=AddressSpace([r])) == EFAULT & M64
