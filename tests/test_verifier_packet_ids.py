"""Packet bounds the way Linux knows them: checks that reach copies, spills and flags.

Linux gives a packet pointer's checked ``range`` to every register and spilled copy with
the same id (``find_good_pkt_pointers``) and explores paths apart, so a bounds check whose
outcome is kept in a flag (``r4 = 0`` when it passed, ``r4 = -22`` when it failed, then
``if w4 != 0``: cilium's inlined ``ctx_load_bytes``/``revalidate_data``) still protects the
access behind the flag's test. Each accepted program here has an unsafe twin (the access
one byte past the checked range, a flag that does not tell the paths apart, ...) that must
still be refused. Where ``bpf()`` works, the kernel's verdict on every program is checked
too, so the expectations are Linux's. The cilium objects of ``../shared/corpus`` that
needed these patterns are verified at the end (skipped when the corpus is absent).
"""

from __future__ import annotations

import collections
import csv
import os
import random
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

# data in r2, data_end in r3, r0 = 2 (XDP_PASS)
HEAD = "r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr0 = 2\n"

# cilium's pattern: the check's outcome kept in r4, tested after the paths join; the
# pointer has a variable offset (an IP header's length), so no difference of constants
# links the flag to the packet's size
FLAG = (
    HEAD
    + """r5 = *(u32 *)(r1 + 12)
r5 &= 15
r2 += r5
r1 = r2
r1 += 4
if {check} goto +2
r4 = {ok}
goto +1
r4 = -22
{chain}if {test} != 0 goto +1
r1 = *(u32 *)(r2 + {off})
exit
"""
)
# the flag reaches the test through shifts and a copy (cilium built with another clang)
SHIFTED = "r4 <<= 32\nr5 = r4\nr5 >>= 32\n"

SPILL = (
    HEAD
    + """*(u64 *)(r10 - 8) = r2
r6 = r2
r6 += 10
r4 = r2
r4 += 14
if r4 > r3 goto +3
r5 = *(u64 *)(r10 - 8)
r1 = *(u8 *)(r5 + {spilled})
r1 = *(u32 *)(r6 + {copy})
exit
"""
)

VARIABLE = (
    HEAD
    + """r4 = r2
r4 += 1
if r4 > r3 goto +10
r7 = *(u8 *)(r2 + 0)
r7 &= 15
r2 += r7
r6 = r2
r6 += 2
r4 = r2
r4 += 8
if r4 > r3 goto +2
r1 = *(u32 *)(r2 + 4)
r1 = *(u16 *)(r6 + {off})
exit
"""
)

# JMP32 comparisons of packet pointers teach Linux nothing (try_match_pkt_pointers)
JMP32 = HEAD + "r4 = r2\nr4 += 4\nif w4 > w3 goto +1\nr1 = *(u32 *)(r2 + 0)\nexit\n"

POINTER32 = HEAD + "r1 = r2\nr1 += 14\n{op}\nr0 += r1\nexit\n"

# r6 is a map value or a stack buffer written on that path only; a pointer is then spilled
# to the stack (elsewhere, or over the buffer)
STACK_OR_MAP = """*(u32 *)(r10 - 4) = 0
r2 = r10
r2 += -4
MAP
call 1
if r0 != 0 goto +5
r1 = 0
*(u64 *)(r10 - 48) = r1
*(u64 *)(r10 - 40) = r1
r0 = r10
r0 += -48
r6 = r0
r1 = *(u32 *)(r0 + 0)
{spill}r1 = *(u32 *)(r6 + 8)
r0 = 2
exit
"""

# name -> (program, Linux's verdict: accepted?)
CASES: dict[str, tuple[str, bool]] = {
    "flag after a check": (
        FLAG.format(check="r1 > r3", ok=0, chain="", test="w4", off=0),
        True,
    ),
    "flag after a check, one byte past": (
        FLAG.format(check="r1 > r3", ok=0, chain="", test="w4", off=1),
        False,
    ),
    "flag after a check with data_end on the left": (
        FLAG.format(check="r3 < r1", ok=0, chain="", test="w4", off=0),
        True,
    ),
    "flag after a check with data_end on the left, one byte past": (
        FLAG.format(check="r3 < r1", ok=0, chain="", test="w4", off=1),
        False,
    ),
    "flag that does not tell the paths apart": (
        FLAG.format(check="r1 > r3", ok=-22, chain="", test="w4", off=0).replace(
            "r4 = -22", "r4 = 0"
        ),
        False,
    ),
    "flag through shifts and a copy": (
        FLAG.format(check="r1 > r3", ok=0, chain=SHIFTED, test="r5", off=0),
        True,
    ),
    "flag through shifts and a copy, one byte past": (
        FLAG.format(check="r1 > r3", ok=0, chain=SHIFTED, test="r5", off=1),
        False,
    ),
    "spilled copy and constant-offset copy": (SPILL.format(spilled=13, copy=0), True),
    "spilled copy, one byte past": (SPILL.format(spilled=14, copy=0), False),
    "constant-offset copy, one byte past": (SPILL.format(spilled=13, copy=1), False),
    "variable-offset copy": (VARIABLE.format(off=4), True),
    "variable-offset copy, one byte past": (VARIABLE.format(off=5), False),
    "jmp32 pointer comparison": (JMP32, False),
    "32-bit pointer difference": (POINTER32.format(op="w1 -= w2"), True),
    "32-bit pointer plus a number": (POINTER32.format(op="w1 += 3"), False),
    "stack buffer or map value": (STACK_OR_MAP.format(spill=""), True),
    "stack buffer or map value, pointer spilled elsewhere": (
        STACK_OR_MAP.format(spill="*(u64 *)(r10 - 16) = r6\n"),
        True,
    ),
    "stack buffer or map value, pointer spilled over the buffer": (
        STACK_OR_MAP.format(spill="*(u64 *)(r10 - 40) = r6\n"),
        False,
    ),
}


def _program(text: str, map_fd: int) -> list[Instruction]:
    out: list[Instruction] = []
    for line in text.strip().splitlines():
        if line == "MAP":
            out.append(Instruction(code=0x18, dst=1, src=1, imm=map_fd))
        else:
            out.extend(assemble(line))
    return out


def _pybpf(text: str):
    insns = _program(text, 0)
    return verify(insns, ProgType.XDP, maps={0: MapDescriptor(0, int(MapType.HASH), 4, 16, 16)})


@pytest.mark.parametrize("name", sorted(CASES))
def test_pybpf_verdict_is_linux(name):
    text, accepted = CASES[name]
    result = _pybpf(text)
    assert result.accepted is accepted, result.report()
    if not accepted:
        assert not result.errors[0].unsupported


def test_a_32_bit_pointer_minus_a_number_is_a_number_for_privileged_programs_only():
    """Linux gives root (``allow_ptr_leaks``) the low half of an address as a number;
    pybpf verifies packet programs as unprivileged, as PREVAIL does, and refuses it there."""
    text = "r1 = r10\nr1 += -8\nw1 -= 3\nr0 = r1\nexit"
    assert verify(assemble(text), ProgType.KPROBE).accepted
    refused = verify(assemble(text), ProgType.XDP)
    assert [e.pc for e in refused.errors] == [3], refused.report()
    # the distance between two packet pointers is no address: a number for everyone
    assert _pybpf(POINTER32.format(op="w1 -= w2")).accepted


def test_the_refused_twins_fail_at_the_access():
    """The twins are refused for the access itself, not for something earlier."""
    for name, at in (
        ("flag after a check, one byte past", 13),
        ("flag that does not tell the paths apart", 13),
        ("flag through shifts and a copy, one byte past", 16),
        ("spilled copy, one byte past", 10),
        ("constant-offset copy, one byte past", 11),
        ("variable-offset copy, one byte past", 15),
        ("stack buffer or map value, pointer spilled over the buffer", 15),
    ):
        result = _pybpf(CASES[name][0])
        assert [e.pc for e in result.errors] == [at], (name, result.report())


@pytest.fixture(scope="module")
def kernel_map():
    fd = syscall.map_create(syscall.MapType.HASH, 4, 16, 16)
    yield int(fd)
    fd.close()


@requires_bpf
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_kernel_agrees(name, kernel_map):
    text, accepted = CASES[name]
    try:
        fd, _ = syscall.prog_load(ProgType.XDP, encode(_program(text, kernel_map)), log_level=1)
    except SyscallError as err:
        assert not accepted, err.log
        return
    fd.close()
    assert accepted, f"the kernel accepted {name!r}"


# ---- flags, fuzzed ----------------------------------------------------------------------
FLAG_EXAMPLES = int(os.environ.get("PYBPF_FUZZ_EXAMPLES", "150"))
FLAG_SEED = int(os.environ.get("PYBPF_FUZZ_SEED", "0"))
_CHECKS = ("r1 > r3", "r3 < r1", "r1 >= r3", "r3 <= r1", "r3 > r1", "w1 > w3")
_FLAGS = (0, 1, -1, -22, 7)
_CHAINS = ("", "r4 <<= 32\nr4 >>= 32\n", "r5 = r4\nr4 = r5\n", "r4 += 3\n", "w4 = w4\n")
_TESTS = ("!=", "==", "s<", ">", "s>", "&")


def _flag_program(rng: random.Random) -> str:
    """A flagged check: ``r2`` moved by the packet's first byte (0-7), a check of ``reach``
    bytes whose outcome is a flag, then a read behind a test of the flag. Any of the parts
    may be wrong: the check's operator, flags that coincide, a test that lets the failed
    path through, a read past what was checked; sometimes a third path joins."""
    reach = rng.randrange(1, 10)
    width = rng.choice((1, 2, 4, 8))
    off = max(0, reach - width + rng.choice((-1, 0, 0, 0, 1)))
    passed, failed = rng.choice(_FLAGS), rng.choice(_FLAGS)
    third = ""
    if rng.random() < 0.25:  # a path that skips the check, with a flag of its own
        third = f"r4 = {rng.choice(_FLAGS)}\nif r5 == 5 goto join\n"
    test_imm = rng.choice((0, 1, -22, -1, 7, passed, failed))
    test = f"if r4 {rng.choice(_TESTS)} {test_imm} goto"
    read = f"r1 = *(u{8 * width} *)(r2 + {off})\n"
    if rng.random() < 0.5:  # the test jumps over the read, or onto it
        tail = f"{test} out\n{read}"
    else:
        tail = f"{test} load\ngoto out\nload:\n{read}"
    return (
        "r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr0 = 2\n"
        "r1 = r2\nr1 += 14\nif r1 > r3 goto out\n"  # every test packet has 14 bytes
        "r5 = *(u8 *)(r2 + 0)\nr5 &= 7\nr2 += r5\nr2 += 14\n"
        f"{third}r1 = r2\nr1 += {reach}\nif {rng.choice(_CHECKS)} goto fail\n"
        f"r4 = {passed}\ngoto join\nfail:\nr4 = {failed}\njoin:\n{rng.choice(_CHAINS)}{tail}"
        "out:\nr0 = 2\nexit\n"
    )


def _flag_packets(rng: random.Random) -> list[bytes]:
    """Every length from 14 to 40 bytes, the first byte (the read's shift) random."""
    return [bytes([rng.randrange(256)]) + bytes(n - 1) for n in range(14, 41)]


def test_flagged_checks_fuzzed_never_fault():
    """Each accepted flag program runs on the interpreter (every access checked) on packets
    of every length around its check; a fault is a false accept. Some programs must be
    accepted and some refused, or the generator tests nothing."""
    from fuzzgen import from_text
    from fuzzrun import FALSE_ACCEPTS, judge

    verdicts: collections.Counter[str] = collections.Counter()
    failures = []
    for seed in range(FLAG_SEED, FLAG_SEED + FLAG_EXAMPLES):
        rng = random.Random(seed)
        text = _flag_program(rng)
        outcome = judge(from_text(text, ProgType.XDP, seed), _flag_packets(rng))
        verdicts[outcome.verdict] += 1
        if outcome.verdict in FALSE_ACCEPTS:
            failures.append(f"seed {seed}: {outcome.verdict} {outcome.detail}\n{text}")
    print(dict(verdicts))
    assert not failures, failures[0]
    assert verdicts["ran"] >= FLAG_EXAMPLES // 10, verdicts
    assert verdicts["rejected"] >= FLAG_EXAMPLES // 10, verdicts


# ---- the cilium objects these patterns come from ---------------------------------------
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
# one program per pattern: the flag, the flag through shifts, the 32-bit pointer difference
# and the stack-or-map-value pointer
CILIUM = [
    ("bpf_xdp_dsr_linux.o", "tail_rev_nodeport_lb4"),
    ("bpf_xdp_dsr_linux_v1_1.o", "tail_rev_nodeport_lb4"),
    ("bpf_xdp_dsr_linux.o", "tail_nodeport_ipv6_dsr"),
]


@pytest.mark.parametrize("obj,program", CILIUM)
def test_cilium_programs_linux_accepts(obj, program):
    path = CORPUS / "cilium" / obj
    if not path.is_file():
        pytest.skip(f"{path} is not present (the corpus lives beside the clone)")
    rows = {(r["object"], r["function"]): r for r in csv.DictReader(open(CORPUS / "expected.csv"))}
    assert rows[(obj, program)]["status"] == "expected_failure"  # Linux accepts it
    result = verify_object(read_object(path.read_bytes()), program, ProgType.XDP)
    assert result.accepted, result.report()
