"""The loader on the JIT: verified programs compile unchecked, unverified ones keep the checks;
Program.xlated() and Program.jited() give ``bpftool prog dump``'s data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import MemoryAccessError, NotSupportedError
from pybpf.isa import Instruction
from pybpf.isa.asm import assemble
from pybpf.isa.opcodes import STACK_SIZE
from pybpf.jit import JitProgram, available
from pybpf.jit.lower import frame_bytes
from pybpf.objects import Object
from pybpf.progtypes import ProgType
from pybpf.spec import ObjectSpec, ProgramSpec

pytestmark = pytest.mark.skipif(not available(), reason="llvmlite is not installed")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "c"
PACKET = bytes(range(64))


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def _xdp_object(text: str) -> ObjectSpec:
    prog = ProgramSpec("p", "xdp", tuple(assemble(text)), type=ProgType.XDP, license="GPL")
    return ObjectSpec(name="t", programs={"p": prog}, license="GPL")


# r1 = xdp_md: reads data and data_end from the context (rewritten at load), returns the
# packet's length; touches the stack so the verifier reports a stack depth.
LENGTH = """
    r2 = *(u32 *)(r1 + 4)
    r1 = *(u32 *)(r1 + 0)
    r2 -= r1
    *(u64 *)(r10 - 16) = r2
    r0 = *(u64 *)(r10 - 16)
    exit
"""


def test_a_verified_program_compiles_without_checks_and_agrees_with_the_interpreter():
    results = {}
    for engine in ("interpreter", "jit"):
        with Object(_xdp_object(LENGTH)).load(engine=engine) as obj:
            prog = obj.programs["p"]
            assert prog.verified
            results[engine] = prog.test_run(PACKET).retval
            if engine == "jit":
                assert prog._runner.debug_checks is False
                assert prog._runner.stack_depth == 16
    assert results["jit"] == results["interpreter"] == len(PACKET)


def test_an_unverified_program_keeps_the_checks():
    with Object(_xdp_object(LENGTH)).load(engine="jit", verify=False) as obj:
        prog = obj.programs["p"]
        assert not prog.verified and prog._runner.debug_checks is True
        assert prog._runner.stack_depth is None


def test_an_unverified_program_that_reads_out_of_bounds_faults_on_the_jit():
    # verify=False: r1 is the packet copy, and reading just past it must fault, not read
    # whatever native memory lies there.
    text = "r0 = *(u64 *)(r1 + 64)\nexit"
    with Object(_xdp_object(text)).load(engine="jit", verify=False) as obj:
        with pytest.raises(MemoryAccessError) as info:
            obj.programs["p"].test_run(PACKET)
    assert info.value.pc == 0 and info.value.access == "read"


def test_an_untyped_program_is_not_verified_so_it_stays_checked():
    spec = ProgramSpec("p", "raw", tuple(assemble("r0 = 3\nexit")), license="GPL")
    obj = ObjectSpec(name="t", programs={"p": spec}, license="GPL")
    with Object(obj).load(engine="jit") as loaded:
        prog = loaded.programs["p"]
        assert not prog.verified and prog._runner.debug_checks is True
        assert prog.test_run(b"x").retval == 3


def test_an_example_object_runs_unchecked_with_inlined_map_calls():
    with Object.open(EXAMPLES / "xdp_counter.o").load(engine="jit") as obj:
        prog = obj.programs["xdp_count"]
        assert prog.verified and prog._runner.debug_checks is False
        assert prog._runner.map_sites  # the verified program's map lookups are native
        with Object.open(EXAMPLES / "xdp_counter.o").load(engine="interpreter") as ref:
            expect = ref.programs["xdp_count"].test_run(PACKET, repeat=3)
        got = prog.test_run(PACKET, repeat=3)
        assert (got.retval, got.data_out) == (expect.retval, expect.data_out)


@pytest.mark.parametrize(
    ("depth", "zeroed"), [(None, STACK_SIZE), (0, 0), (1, 8), (16, 16), (9999, STACK_SIZE)]
)
def test_frame_bytes(depth, zeroed):
    assert frame_bytes(depth) == zeroed


def test_only_the_verified_depth_is_zeroed_and_a_run_still_starts_from_zeros():
    # Writes then reads 8 bytes at r10-8, after reading them first: the read must see 0
    # on every run of the repeat loop, as the interpreter's fresh frames give.
    text = "r0 = *(u64 *)(r10 - 8)\nr1 = 5\n*(u64 *)(r10 - 8) = r1\nexit"
    with JitProgram(assemble(text), stack_depth=8) as prog:
        assert prog.stack_depth == 8
        assert prog.run_repeat((), repeat=3)[0] == 0
    with JitProgram(assemble(text), stack_depth=8, debug_checks=True) as prog:
        assert prog.stack_depth is None  # ignored under debug checks


def test_xlated_is_the_rewritten_program_and_jited_its_native_code():
    with Object(_xdp_object(LENGTH)).load(engine="jit") as obj:
        prog = obj.programs["p"]
        xlated = prog.xlated()
        assert all(isinstance(i, Instruction) for i in xlated)
        assert xlated == prog.instructions
        assert xlated[0] != assemble(LENGTH)[0]  # the xdp_md load was rewritten
        text = prog.jited()
        assert text.startswith("pybpf_entry:")
        records = prog.jited(json=True)
        assert records[0]["name"] == "pybpf_entry" and records[0]["insns"]


def test_an_interpreted_program_has_no_jited_code():
    with Object(_xdp_object(LENGTH)).load(engine="interpreter") as obj:
        prog = obj.programs["p"]
        assert len(prog.xlated()) == len(assemble(LENGTH))
        with pytest.raises(NotSupportedError) as info:
            prog.jited()
    assert info.value.feature == "jited"


# ---- inline helpers ---------------------------------------------------------------------------
def test_clock_and_cpu_helpers_run_inline_with_the_runtimes_results():
    import time

    text = "call 5\nr6 = r0\ncall 8\nr7 = r0\ncall 5\nr0 -= r6\nr0 <<= 8\nr0 |= r7\nexit"
    with JitProgram(assemble(text)) as prog:
        assert {5, 8} <= prog.inline_helpers
        before = time.monotonic_ns()
        r0 = prog.run(cpu=3)
        elapsed = time.monotonic_ns() - before
        (state,) = prog._pool
        assert state.ctx.helper_id in (None, 0)  # the dispatcher never ran
    assert r0 & 0xFF == 3  # bpf_get_smp_processor_id: the run's CPU
    assert 0 <= r0 >> 8 <= elapsed  # two monotonic readings, in order, within the run


def test_a_replaced_clock_helper_keeps_the_python_call():
    from pybpf.runtime import default_helpers

    registry = default_helpers()
    registry.register(5, lambda ctx, *args: 1234)
    with JitProgram(assemble("call 5\nexit"), helpers=registry) as prog:
        assert 5 not in prog.inline_helpers
        assert prog.run() == 1234


# ---- xdp test runs reuse their regions ------------------------------------------------------
# bpf_xdp_adjust_head(ctx, 4), then packet[0] += 1 and r0 = data_end - data
ADJUST_AND_WRITE = """
    r6 = r1
    r2 = 4
    call 44
    r2 = *(u32 *)(r6 + 4)
    r1 = *(u32 *)(r6 + 0)
    r3 = r1
    r3 += 1
    if r3 > r2 goto +6
    r3 = *(u8 *)(r1 + 0)
    r3 += 1
    *(u8 *)(r1 + 0) = r3
    r0 = r2
    r0 -= r1
    exit
    r0 = 0
    exit
"""


@pytest.mark.parametrize("engine", ["interpreter", "jit"])
def test_repeated_xdp_test_runs_start_from_a_fresh_context(engine):
    packets = [bytes([i]) * 64 for i in (1, 2)] + [bytes([3]) * 80, bytes([4]) * 64]
    with Object(_xdp_object(ADJUST_AND_WRITE)).load(engine=engine) as obj:
        prog = obj.programs["p"]
        runs = [prog.test_run(p) for p in packets]
        assert prog._reused  # the regions were kept for the next run
        again = prog.test_run(packets[0])
    for packet, run in zip(packets, runs, strict=True):
        # the head moved by 4 on each run's own packet, not on the last run's
        assert run.retval == len(packet) - 4
        assert run.data_out == bytes([packet[0] + 1]) + packet[5:]
    assert again == dataclasses.replace(runs[0], duration=again.duration)
    assert not prog._reused  # closing the program freed them


def test_with_checks_builds_the_same_program_with_the_checks_compiled_in():
    with Object(_xdp_object(LENGTH)).load(engine="jit") as obj:
        prog = obj.programs["p"]
        runner = prog._runner
        with runner.with_checks() as checked:
            assert checked.debug_checks and not runner.debug_checks
            assert checked.insns == runner.insns and checked.tail_key != runner.tail_key
            unchecked, prog._runner = runner, checked
            try:
                assert prog.test_run(PACKET).retval == len(PACKET)
            finally:
                prog._runner = unchecked
            with pytest.raises(MemoryAccessError):  # r1 = an address no region holds
                checked.run((0x1000,))


def test_frames_are_zeroed_as_deep_as_a_stack_buffer_the_program_passes_on():
    from types import SimpleNamespace

    from pybpf.objects.loader import _stack_bound

    text = "*(u64 *)(r10 - 8) = r1\nr2 = r10\nr2 += -48\nr3 = r10\nr3 += -4\nr0 = 0\nexit"
    insns = tuple(assemble(text))
    assert _stack_bound(insns, SimpleNamespace(stack_depth=8)) == 48
    assert _stack_bound(insns[:1] + insns[-2:], SimpleNamespace(stack_depth=8)) == 8
    assert _stack_bound(insns, None) is None  # not verified: whole frames, checks on


# ---- loops no one proved bounded -------------------------------------------------------------
RUNAWAY = Path(__file__).parent / "fixtures" / "jit" / "runaway_loop.o"


@pytest.mark.parametrize("engine", ["interpreter", "jit"])
def test_a_verified_runaway_loop_stops_at_the_budget(engine):
    from pybpf.errors import BudgetExceededError

    with pybpf.load(RUNAWAY, engine=engine) as obj:
        prog = obj.programs["spin"]
        assert prog.verified
        assert prog.test_run(bytes([1]) + bytes(63)).retval == 1  # XDP_DROP: no loop
        with pytest.raises(BudgetExceededError) as err:
            prog.test_run(bytes([7]) + bytes(63))
        assert err.value.pc is not None


def test_loop_budget_charges_loop_heads_only():
    from pybpf.jit.blocks import analyse, loop_heads

    with pybpf.load(RUNAWAY, engine="jit") as obj:
        runner = obj.programs["spin"]._runner
        assert runner.loop_budget and not runner.debug_checks
        cfg = analyse(runner.insns, entry_registers=runner.entry_registers)
        (function,) = cfg.functions.values()
        heads = loop_heads(function, cfg.table)
        assert heads and len(heads) < len(function.blocks)
