"""Verdicts where pybpf's verifier follows Linux's: programs the kernel accepts or refuses.

Each rule has a twin on the other side of it (a size one byte past a ring buffer record,
...). Where ``bpf()`` works the kernel loads the same assembled program and must give the
same verdict; the corpus programs of ``../shared/corpus`` that showed each disagreement are
verified too (skipped when the corpus is absent).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pybpf import syscall
from pybpf.elf import read_object
from pybpf.errors import SyscallError
from pybpf.isa import Instruction, assemble, encode
from pybpf.maptypes import MapType
from pybpf.progtypes import AttachType, ProgType
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


# ---- helpers that might sleep ----
# copy_from_user into 8 stack bytes: Linux refuses it in a program loaded without
# BPF_F_SLEEPABLE ("helper call might sleep in a non-sleepable prog")
COPY_FROM_USER = "r1 = r10\nr1 += -8\nr2 = 8\nr3 = 0\ncall 148\nr0 = 0\nexit"
BPF_F_SLEEPABLE = 1 << 4


@pytest.mark.parametrize("sleepable", [False, True])
def test_helpers_that_might_sleep_need_a_sleepable_program(sleepable):
    result = verify(assemble(COPY_FROM_USER), ProgType.KPROBE, sleepable=sleepable)
    assert result.accepted is sleepable, result.report()
    if not sleepable:
        assert [e.pc for e in result.errors] == [4] and not result.unsupported


@pytest.mark.parametrize(
    ("section", "accepted"),
    [("uprobe.s/bin:f", True), ("uprobe/bin:f", False), ("lsm.s/file_open", True)],
)
def test_the_section_says_whether_the_program_is_sleepable(section, accepted):
    """libbpf's ``.s`` sections load with ``BPF_F_SLEEPABLE``; without a section or flags
    the verifier does not know, and does not check."""
    prog_type = ProgType.LSM if section.startswith("lsm") else ProgType.KPROBE
    result = verify(assemble(COPY_FROM_USER), prog_type, section=section)
    assert result.accepted is accepted, result.report()
    assert verify(assemble(COPY_FROM_USER), prog_type).accepted


def test_a_linked_programs_flags_say_whether_it_is_sleepable():
    for flags, accepted in ((0, False), (BPF_F_SLEEPABLE, True)):
        linked = SimpleNamespace(
            instructions=assemble(COPY_FROM_USER), type=ProgType.KPROBE, name="p", flags=flags
        )
        assert verify(linked).accepted is accepted, flags


@requires_bpf
@pytest.mark.parametrize("sleepable", [False, True])
def test_the_kernel_agrees_on_sleepable_helpers(sleepable):
    extra = {}
    if sleepable:  # uprobe.multi.s: the kprobe flavour Linux lets sleep
        extra = {
            "expected_attach_type": int(AttachType.TRACE_UPROBE_MULTI),
            "prog_flags": BPF_F_SLEEPABLE,
        }
    try:
        prog, _ = syscall.prog_load(ProgType.KPROBE, encode(assemble(COPY_FROM_USER)), **extra)
    except SyscallError as err:
        assert not sleepable, err.log
        return
    prog.close()
    assert sleepable, "the kernel let a non-sleepable program call copy_from_user"
