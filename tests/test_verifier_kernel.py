"""The verifier against Linux's: unsafe programs the kernel refuses, pybpf refuses too.

One XDP program per kind of safety error (out-of-bounds packet, stack and map value access,
uninitialised register or stack, null map value, pointer leak, pointer arithmetic on a
possibly-null pointer, bad helper argument, context pointer-field write, unbounded loop,
unknown helper) is loaded into this machine's kernel with ``BPF_PROG_LOAD`` and verified by
pybpf; both must refuse it. The errors Linux reports only for unprivileged loaders (this
test runs as root) are checked on pybpf alone. A few safe programs must pass both.
Skipped where ``bpf()`` is not available.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pybpf import syscall
from pybpf.errors import SyscallError
from pybpf.isa import Instruction, assemble, encode
from pybpf.maptypes import MapType
from pybpf.progtypes import ProgType
from pybpf.verifier import MapDescriptor, Options, verify

sys.path.insert(0, str(Path(__file__).parent))
from kernel import requires_bpf  # noqa: E402

pytestmark = requires_bpf

GUARD = "r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr4 = r2\nr4 += 14\nif r4 > r3 goto +{skip}\n"
LOOKUP = "*(u32 *)(r10 - 4) = 0\nr2 = r10\nr2 += -4\nMAP\ncall 1\n"
RESERVE = "RINGBUF\nr2 = 8\nr3 = 0\ncall 131\n"

UNSAFE = {
    "packet read past the checked end": GUARD.format(skip=2)
    + "r0 = *(u16 *)(r2 + 13)\nexit\nr0 = 2\nexit",
    "packet read without a check": "r2 = *(u32 *)(r1 + 0)\nr0 = *(u8 *)(r2 + 0)\nexit",
    "uninitialised register": "r0 = r5\nexit",
    "stack below the frame": "*(u64 *)(r10 - 520) = 0\nr0 = 0\nexit",
    "null map value": LOOKUP + "r0 = *(u64 *)(r0 + 0)\nexit",
    "map value overrun": LOOKUP + "if r0 == 0 goto +2\nr0 = *(u64 *)(r0 + 4)\nexit\nr0 = 0\nexit",
    "arithmetic on a possibly-null pointer": LOOKUP + "r0 += 4\nr0 = 0\nexit",
    "bad helper argument": "r2 = r10\nr2 += -4\n*(u32 *)(r10 - 4) = 0\nr1 = 0\ncall 1\n"
    + "r0 = 0\nexit",
    "write to the packet pointer field": "r2 = 0\n*(u32 *)(r1 + 0) = r2\nr0 = 0\nexit",
    "unbounded loop": "r0 = 0\nif r0 == 0 goto -1\nexit",
    "unknown helper": "call 100000\nr0 = 0\nexit",
    "unreleased ring buffer record": RESERVE
    + "if r0 == 0 goto +1\n*(u64 *)(r0 + 0) = 1\n"
    + "r0 = 0\nexit",
    "ring buffer record used after submit": RESERVE
    + "if r0 == 0 goto +6\nr6 = r0\nr1 = r0\nr2 = 0\ncall 132\n*(u64 *)(r6 + 0) = 1\n"
    + "r0 = 0\nexit",
}
# Errors only for unprivileged programs: the kernel lets root (this test) leak pointers and
# read uninitialised stack, pybpf verifies XDP as unprivileged, as PREVAIL does.
UNPRIVILEGED = {
    "uninitialised stack": "r2 = r10\nr2 += -8\nr0 = *(u64 *)(r2 + 0)\nexit",
    "pointer leaked into a map": LOOKUP
    + "if r0 == 0 goto +2\n*(u64 *)(r0 + 0) = r10\nexit\nr0 = 0\nexit",
    "pointer returned": "r0 = r1\nexit",
}
SAFE = {
    "checked packet read": GUARD.format(skip=2) + "r0 = *(u8 *)(r2 + 13)\nexit\nr0 = 2\nexit",
    "checked map value": LOOKUP + "if r0 == 0 goto +2\nr0 = *(u64 *)(r0 + 0)\nexit\nr0 = 0\nexit",
    "bounded loop": "r0 = 0\nr0 += 1\nif r0 < 10 goto -2\nexit",
    "stack round trip": "*(u64 *)(r10 - 8) = 7\nr0 = *(u64 *)(r10 - 8)\nexit",
    "submitted ring buffer record": RESERVE
    + "if r0 == 0 goto +4\n*(u64 *)(r0 + 0) = 1\nr1 = r0\nr2 = 0\ncall 132\nr0 = 0\nexit",
}


@pytest.fixture(scope="module")
def map_fd():
    fd = syscall.map_create(syscall.MapType.HASH, 4, 8, 16)
    ring = syscall.map_create(syscall.MapType.RINGBUF, 0, 0, 4096)
    yield fd, ring
    fd.close()
    ring.close()


def _program(text: str, fds) -> list[Instruction]:
    out: list[Instruction] = []
    for line in text.strip().splitlines():
        if line in ("MAP", "RINGBUF"):
            fd = fds[0] if line == "MAP" else fds[1]
            out.append(Instruction(code=0x18, dst=1, src=1, imm=int(fd)))
        else:
            out.extend(assemble(line))
    return out


def _kernel_accepts(insns: list[Instruction]) -> tuple[bool, str]:
    try:
        fd, _ = syscall.prog_load(ProgType.XDP, encode(insns), log_level=1)
    except SyscallError as err:
        return False, err.log
    fd.close()
    return True, ""


def _pybpf(insns: list[Instruction], fds):
    fd, ring = int(fds[0]), int(fds[1])
    maps = {
        fd: MapDescriptor(fd, int(MapType.HASH), 4, 8, 16),
        ring: MapDescriptor(ring, int(MapType.RINGBUF), 0, 0, 4096),
    }
    return verify(insns, ProgType.XDP, maps=maps, options=Options(termination=True))


@pytest.mark.parametrize("name", sorted(UNSAFE))
def test_kernel_and_pybpf_refuse(name, map_fd):
    insns = _program(UNSAFE[name], map_fd)
    kernel_ok, log = _kernel_accepts(insns)
    assert not kernel_ok, f"the kernel accepted {name!r}: the test program is wrong"
    result = _pybpf(insns, map_fd)
    assert not result.accepted, f"pybpf accepted {name!r}; the kernel said:\n{log}"


@pytest.mark.parametrize("name", sorted(UNPRIVILEGED))
def test_pybpf_refuses_unprivileged_errors(name, map_fd):
    result = _pybpf(_program(UNPRIVILEGED[name], map_fd), map_fd)
    assert not result.accepted, result.report()


@pytest.mark.parametrize("name", sorted(SAFE))
def test_kernel_and_pybpf_accept(name, map_fd):
    insns = _program(SAFE[name], map_fd)
    kernel_ok, log = _kernel_accepts(insns)
    assert kernel_ok, log
    result = _pybpf(insns, map_fd)
    assert result.accepted, result.report()
