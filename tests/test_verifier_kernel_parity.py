"""Verdicts where pybpf's verifier follows Linux's: programs the kernel accepts or refuses.

Each rule has a twin on the other side of it (a size one byte past a ring buffer record,
...). Where ``bpf()`` works the kernel loads the same assembled program and must give the
same verdict; the corpus programs of ``../shared/corpus`` that showed each disagreement are
verified too (skipped when the corpus is absent).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pybpf import syscall
from pybpf.elf import read_object
from pybpf.errors import SyscallError
from pybpf.isa import Instruction, assemble, encode
from pybpf.maptypes import MapType
from pybpf.progtypes import ProgType
from pybpf.verifier import MapDescriptor, verify, verify_object

sys.path.insert(0, str(Path(__file__).parent))
from kernel import requires_bpf  # noqa: E402

CORPUS = Path(__file__).parents[2] / "shared" / "corpus"

# a 24-byte ring buffer record; get_current_comm writes {size} bytes at offset 8 of it
RINGBUF_COMM = """MAP
r2 = 24
r3 = 0
call 131
if r0 == 0 goto +8
r6 = r0
r1 = r6
r1 += 8
r2 = {size}
call 16
r1 = r6
r2 = 0
call 132
r0 = 0
exit"""

# name -> (program type, text, map type, Linux accepts)
CASES: dict[str, tuple[ProgType, str, MapType, bool]] = {
    "ring buffer record as helper memory": (
        ProgType.KPROBE,
        RINGBUF_COMM.format(size=16),
        MapType.RINGBUF,
        True,
    ),
    "ring buffer record as helper memory, one byte past": (
        ProgType.KPROBE,
        RINGBUF_COMM.format(size=17),
        MapType.RINGBUF,
        False,
    ),
    # check_cfg: an instruction no branch reaches is an error, whatever the conditions
    "unreachable instruction after exit": (
        ProgType.SOCKET_FILTER,
        "r0 = 0\nexit\nr0 = 1\nexit",
        MapType.HASH,
        False,
    ),
    "branch never taken still reaches its target": (
        ProgType.SOCKET_FILTER,
        "r0 = 0\nif r0 == 0 goto +1\nexit\nr0 = 1 ll\nexit",
        MapType.HASH,
        True,
    ),
    "unreachable instruction after a 64-bit load": (
        ProgType.SOCKET_FILTER,
        "r0 = 1 ll\nexit\nr0 = 1 ll\nexit",
        MapType.HASH,
        False,
    ),
}

_MAPS = {
    MapType.RINGBUF: (0, 0, 4096),
    MapType.HASH: (4, 16, 16),
}


def _program(text: str, map_fd: int) -> list[Instruction]:
    out: list[Instruction] = []
    for line in text.strip().splitlines():
        if line == "MAP":
            out.append(Instruction(code=0x18, dst=1, src=1, imm=map_fd))
        else:
            out.extend(assemble(line))
    return out


def _pybpf(name: str):
    prog_type, text, map_type, _ = CASES[name]
    maps = {0: MapDescriptor(0, int(map_type), *_MAPS[map_type])}
    return verify(_program(text, 0), prog_type, maps=maps)


@pytest.mark.parametrize("name", sorted(CASES))
def test_pybpf_verdict_is_linux(name):
    accepted = CASES[name][3]
    result = _pybpf(name)
    assert result.accepted is accepted, result.report()
    if not accepted:
        assert not result.errors[0].unsupported


def test_a_record_too_small_is_refused_at_the_call():
    result = _pybpf("ring buffer record as helper memory, one byte past")
    assert [e.pc for e in result.errors] == [10], result.report()


@requires_bpf
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_kernel_agrees(name):
    prog_type, text, map_type, accepted = CASES[name]
    fd = syscall.map_create(map_type, *_MAPS[map_type])
    try:
        try:
            prog, _ = syscall.prog_load(prog_type, encode(_program(text, int(fd))), log_level=1)
        except SyscallError as err:
            assert not accepted, err.log
            return
        prog.close()
        assert accepted, f"the kernel accepted {name!r}"
    finally:
        fd.close()


def test_the_unreachable_instruction_is_named():
    """The error names the first pc no path reaches (an ``ld_imm64`` takes two slots)."""
    for name, pc in (
        ("unreachable instruction after exit", 2),
        ("unreachable instruction after a 64-bit load", 3),
    ):
        result = _pybpf(name)
        assert [e.pc for e in result.errors] == [pc], (name, result.report())


def _corpus(path: str, program: str):
    file = CORPUS / path
    if not file.exists():
        pytest.skip(f"{file} is absent")
    return verify_object(read_object(file.read_bytes()), program)


def test_cilium_ringbuffer_example_is_accepted():
    """cilium/ebpf's ring buffer example writes the task's name into a reserved record."""
    result = _corpus("cilium-examples/ringbuffer_bpf_bpfel.o", "kprobe_execve")
    assert result.accepted, result.report()


def test_unreachable_byteswap_is_refused():
    """clang keeps the inline assembly after an ``exit``: Linux says "unreachable insn 6"."""
    result = _corpus("build/byteswap.o", "func")
    assert [e.pc for e in result.errors] == [6], result.report()
