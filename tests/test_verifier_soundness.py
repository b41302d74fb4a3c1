"""Soundness against execution: whatever the verifier accepts never faults in the interpreter.

Random programs (packet guards, loads, stores, ALU on 32 and 64 bits, forward branches,
stack spills) are verified with a context of two 64-bit packet pointers; each accepted
program then runs in :mod:`pybpf.vm` on packets of several lengths, whose checked memory
raises :class:`~pybpf.errors.MemoryAccessError` on any stray access. A fault there is a
false accept, the one bug a verifier must not have.
"""

from __future__ import annotations

import random
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.errors import ExecutionError, InputError, MemoryAccessError
from pybpf.isa import assemble
from pybpf.memory import AddressSpace, Region
from pybpf.progtypes.contexts import ContextLayout, Field, FieldKind
from pybpf.verifier import ProgramInfo, analyze, entry_state
from pybpf.verifier.lower import lower
from pybpf.vm import Interpreter

CTX = ContextLayout(
    "fuzz_ctx",
    16,
    (
        Field("data", 0, 8, kind=FieldKind.PACKET),
        Field("data_end", 8, 8, kind=FieldKind.PACKET_END),
    ),
)
INFO = ProgramInfo(context=CTX, privileged=False)
PROLOGUE = [
    "r2 = *(u64 *)(r1 + 0)",
    "r3 = *(u64 *)(r1 + 8)",
    "r0 = 0",
    "r4 = 0",
    "r5 = 0",
    "*(u64 *)(r10 - 8) = r4",
]
REGS = ["r0", "r2", "r4", "r5", "r6"]
OPS = ["+=", "-=", "*=", "&=", "|=", "^=", "<<=", ">>=", "s>>=", "/=", "%="]
CMPS = ["==", "!=", ">", ">=", "<", "<=", "s>", "s>=", "s<", "s<="]


def _snippet(rng: random.Random) -> list[str]:
    r = rng.choice(REGS)
    q = rng.choice(REGS)
    kind = rng.randrange(13)
    if kind == 0:
        return [f"{r} = {rng.choice([0, 1, 7, 14, 255, -1, 4096])}"]
    if kind == 1:
        w = rng.choice(["r", "w"])
        src = rng.choice([f"{w}{q[1:]}", str(rng.choice([0, 1, 2, 8, 31, 64, -3]))])
        return [f"{w}{r[1:]} {rng.choice(OPS)} {src}"]
    if kind == 2:
        return [f"{r} = {q}"]
    if kind == 3:  # a packet guard and a read under it
        k = rng.choice([1, 2, 4, 8, 14, 20])
        off = rng.randrange(0, k + 3)
        width = rng.choice([1, 2, 4, 8])
        load = f"{q} = *(u{8 * width} *)(r2 + {off})"
        return [f"{r} = r2", f"{r} += {k}", f"if {r} > r3 goto +1", load]
    if kind == 4:  # read through a register
        width = rng.choice([1, 2, 4, 8])
        off = rng.choice([0, 1, 4, 8, -8])
        sign = "-" if off < 0 else "+"
        return [f"{r} = *(u{8 * width} *)({q} {sign} {abs(off)})"]
    if kind == 5:  # stack store and load
        off = rng.choice([8, 16, 24, 4, 12])
        width = rng.choice([1, 2, 4, 8])
        return [f"*(u{8 * width} *)(r10 - {off}) = {r}", f"{q} = *(u{8 * width} *)(r10 - {off})"]
    if kind == 6:
        return [f"{r} = r10", f"{r} += -{rng.choice([8, 16])}"]
    if kind == 7:
        return [f"{r} = r2", f"{r} += {q}"]
    if kind == 8:
        return [f"*(u8 *)({r} + {rng.choice([0, 1, 13])}) = {q}"]
    if kind == 12:  # rarer forms: unary ops, sign extension, atomics, helpers, r10 writes
        return [
            rng.choice(
                [
                    f"{r} = -{r}",
                    f"w{r[1:]} = -w{r[1:]}",
                    f"{r} = bswap{rng.choice([16, 32, 64])} {r}",
                    f"{r} = le{rng.choice([16, 32])} {r}",
                    f"{r} = be{rng.choice([16, 32, 64])} {r}",
                    f"{r} = (s{rng.choice([8, 16, 32])}){q}",
                    f"w{r[1:]} = (s{rng.choice([8, 16])})w{q[1:]}",
                    f"{r} = *(s{rng.choice([8, 16, 32])} *)({q} + {rng.choice([0, 2, 12])})",
                    f"lock *(u64 *)(r10 - 8) += {q}",
                    f"{q} = atomic_fetch_add((u64 *)(r10 - 8), {q})",
                    "call 7",
                    f"r10 = {q}",
                    "r10 += -8",
                ]
            )
        ]
    if kind == 11:  # a counted loop walking the packet
        n = rng.choice([2, 5, 16, 40])
        step = rng.choice([1, 2, 3])
        body = [
            "r7 = r2",
            "r7 += r6",
            "r8 = r7",
            f"r8 += {rng.choice([1, 2, 4])}",
            "if r8 > r3 goto +1",
            f"r0 = *(u8 *)(r7 + {rng.choice([0, 0, 1, 2])})",
            f"r6 += {step}",
        ]
        return ["r6 = 0", *body, f"if r6 {rng.choice(['<', '<=', '!='])} {n} goto -{len(body) + 1}"]
    if kind == 9:
        return [f"if {r} {rng.choice(CMPS)} {rng.choice([q, '0', '5', '100'])} goto +JUMP"]
    return ["r6 = r3", "r6 -= r2", f"if r6 < {rng.choice([1, 8, 20])} goto +JUMP"]


def _program(seed: int) -> str:
    rng = random.Random(seed)
    body: list[str] = []
    for _ in range(rng.randrange(2, 9)):
        body.extend(_snippet(rng))
    lines = PROLOGUE + body + ["r0 = 0", "exit"]
    last = len(lines) - 2
    out = []
    for i, line in enumerate(lines):
        if "JUMP" in line:
            line = line.replace("JUMP", str(rng.randrange(0, last - i)))
        out.append(line)
    return "\n".join(out)


def _run(insns, size: int, fill: int) -> None:
    packet = Region.from_bytes(bytes((fill + i * 37) & 0xFF for i in range(size)), kind="packet")
    ctx = Region.from_bytes(struct.pack("<QQ", packet.address, packet.address + size), kind="ctx")
    try:
        vm = Interpreter(insns)
    except InputError:
        return  # the interpreter's load check is path-insensitive; nothing to run
    try:
        vm.run((ctx.address,), memory=AddressSpace([ctx, packet]))
    except MemoryAccessError:
        raise
    except ExecutionError:
        pass
    finally:
        vm.close()
        ctx.close()
        packet.close()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_accepted_programs_never_fault(seed):
    text = _program(seed)
    insns = assemble(text)
    result = analyze(lower(insns), INFO, entry_state(INFO))
    if not result.accepted:
        return
    for size in (0, 1, 5, 13, 14, 15, 21, 40):
        for fill in (0, 0xFF, 0x5A):
            try:
                _run(insns, size, fill)
            except MemoryAccessError as err:
                raise AssertionError(f"false accept (packet {size}):\n{text}\n{err}") from err


_ALU = ["+=", "-=", "*=", "&=", "|=", "^=", "<<=", ">>=", "s>>=", "/=", "%=", "s/=", "s%="]
_CONSTS = [0, 1, -1, 7, 255, 256, 65535, -65536, 0x7FFFFFFF, -0x80000000]


def _value_program(seed: int) -> str:
    """Straight-line number code with stack stores and loads, ending in ``r0 = rK``."""
    rng = random.Random(seed)
    lines = [f"r{r} = {rng.choice(_CONSTS)}" for r in range(6)]
    lines += [f"r{r} = {rng.choice([1 << 32, (1 << 63) + 5, -(1 << 40)])} ll" for r in (6, 7)]
    regs = [f"r{r}" for r in range(8)]
    for _ in range(rng.randrange(3, 14)):
        r, q = rng.choice(regs), rng.choice(regs)
        w = rng.choice(["r", "w"])
        width = rng.choice([8, 16, 32, 64])
        off = rng.choice([8, 16, 12, 4, 2, 1, 7])
        lines.append(
            rng.choice(
                [
                    f"{w}{r[1:]} {rng.choice(_ALU)} {w}{q[1:]}",
                    f"{w}{r[1:]} {rng.choice(_ALU)} {rng.choice(_CONSTS)}",
                    f"*(u{width} *)(r10 - {off}) = {q}",
                    f"*(u{width} *)(r10 - {off}) = {rng.choice(_CONSTS)}",
                    f"{r} = *(u{width} *)(r10 - {off})",
                    f"{r} = *(s{rng.choice([8, 16, 32])} *)(r10 - {off})",
                    f"{r} = {q}",
                    f"w{r[1:]} = w{q[1:]}",
                    f"{r} = -{r}",
                    f"{r} = be{rng.choice([16, 32, 64])} {r}",
                    f"{r} = (s{rng.choice([8, 16, 32])}){q}",
                    f"lock *(u64 *)(r10 - 16) += {q}",
                ]
            )
        )
    lines += [f"r0 = {rng.choice(regs)}", "exit"]
    return "\n".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_values_contain_what_the_interpreter_computes(seed):
    """The abstract r0 at exit contains the concrete r0 (stack cells, wrap-around, casts)."""
    text = _value_program(seed)
    insns = assemble(text)
    result = analyze(lower(insns), INFO, entry_state(INFO), keep_invariants=True)
    exit_state = result.invariants.get("exit")
    if exit_state is None or exit_state.bottom or exit_state.type_of("r0") != 2:
        return  # rejected (e.g. a read of uninitialised stack) or r0 not a number
    try:
        vm = Interpreter(insns)
    except InputError:
        return
    try:
        r0 = vm.run((0,))
    except ExecutionError:
        return
    finally:
        vm.close()
    s, u = exit_state.values("r0")
    signed = r0 - (1 << 64) if r0 >> 63 else r0
    assert u.contains(r0) and s.contains(signed), f"{text}\nr0 = {r0:#x}, abstract {s} {u}"


def test_the_generator_produces_accepted_programs():
    runnable = 0
    for seed in range(200):
        insns = assemble(_program(seed))
        if analyze(lower(insns), INFO, entry_state(INFO)).accepted:
            try:
                Interpreter(insns).close()
            except InputError:
                continue
            runnable += 1
    assert runnable >= 20  # the property above is not vacuous
