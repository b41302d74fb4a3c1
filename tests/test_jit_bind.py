"""JIT: bound runs (``JitProgram.bind``) behave as ``run`` with the same arguments.

The bound fast path reuses a pooled state as its last run left it; these tests change
every part of the setup between calls (arguments, memory, packet, cpu, trace, budget,
other bindings, other threads) and require what ``run`` gives.
"""

from __future__ import annotations

import threading

import pytest

from pybpf.errors import BudgetExceededError, HelperError, InputError, MemoryAccessError
from pybpf.jit import JitProgram, available, unavailable_reason
from pybpf.memory import AddressSpace, Region
from test_vm import EXIT, I

pytestmark = pytest.mark.skipif(not available(), reason=f"JIT unavailable: {unavailable_reason()}")


def _recording():
    """A helper (id 1000) that records what the run's context shows; returns r1 + 1."""
    seen: list[tuple] = []

    def helper(ctx, r1, *rest):
        seen.append((ctx.cpu, ctx.packet, ctx.trace, ctx.memory))
        return r1 + 1

    return seen, {1000: helper}


def test_bound_runs_match_run_as_the_setup_changes():
    seen, helpers = _recording()
    with JitProgram([I.call(1000), EXIT], helpers=helpers) as jit:
        space_a, space_b = AddressSpace(), AddressSpace()
        with Region.from_bytes(b"abc", kind="packet") as packet:
            a = jit.bind((10,), memory=space_a, packet=packet)
            b = jit.bind((20,), memory=space_b)
            for cpu in (0, 0, 1, 0):
                assert a(cpu) == 11
                assert seen[-1][:2] == (cpu, packet) and seen[-1][3] is space_a
                assert b(cpu) == 21
                assert seen[-1][:2] == (cpu, None) and seen[-1][3] is space_b
                assert jit.run((30,), memory=space_a, cpu=cpu) == 31
                assert a() == 11 and seen[-1][0] == 0
            lines: list[str] = []
            jit.trace = lines.append  # a new trace reaches the next bound run
            assert a() == 11 and seen[-1][2] == lines.append
            jit.trace = None
            assert a() == 11 and seen[-1][2] != lines.append
            # the packet is the run's only while it runs, as with run()
            assert all(state.ctx.packet is None for state in jit._pool)


def test_bound_errors_are_runs_errors_and_the_state_returns_to_the_pool():
    def broken(ctx, *r):
        raise ValueError("no")

    prog = [I.mov(1, 0), I.ldx(8, 0, 1), EXIT]
    with JitProgram(prog, debug_checks=True) as jit:
        bound = jit.bind((0,), memory=AddressSpace())
        for _ in range(3):
            with pytest.raises(MemoryAccessError) as info:
                bound()
            assert info.value.pc == 1
        assert len(jit._pool) == len(jit._states)
    with JitProgram([I.mov(0, 0), I.call(7), EXIT], helpers={7: broken}) as jit:
        space = AddressSpace()
        bound = jit.bind((), memory=space)
        for _ in range(3):  # the first run sets the state up, the others take the fast path
            with pytest.raises(HelperError) as info:
                bound()
            assert info.value.pc == 1
        assert len(jit._pool) == len(jit._states)
    with pytest.raises(InputError):
        bound()  # closed


def test_budget_changes_reach_bound_runs():
    calls = [0]

    def count(ctx, *r):
        calls[0] += 1

    loop = [I.call(1000), I.ja(-2), EXIT]
    with JitProgram(loop, helpers={1000: count}, loop_budget=True, budget=1000) as jit:
        bound = jit.bind((), memory=AddressSpace())
        made = {}
        for budget in (1000, 1000, 50, 50, 1000):
            jit.budget = budget
            calls[0] = 0
            with pytest.raises(BudgetExceededError) as info:
                bound()
            assert info.value.budget == budget
            made.setdefault(budget, set()).add(calls[0])
        assert len(made[50]) == len(made[1000]) == 1 and min(made[50]) < min(made[1000])


def test_threads_share_bound_runs():
    seen, helpers = _recording()
    with JitProgram([I.call(1000), EXIT], helpers=helpers) as jit:
        space = AddressSpace()
        bound = jit.bind((5,), memory=space)
        results: list[int] = []
        errors: list[BaseException] = []

        def work(cpu: int) -> None:
            try:
                for _ in range(200):
                    results.append(bound(cpu))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(cpu,)) for cpu in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and results == [6] * 800
        assert {entry[0] for entry in seen} == {0, 1, 2, 3}
        assert len(jit._pool) == len(jit._states)


def test_kept_test_runs_follow_a_swapped_engine():
    from pathlib import Path

    import pybpf

    path = Path(__file__).parents[1] / "examples" / "c" / "programs.o"
    frame = bytes(range(64))
    with pybpf.load(path, engine="jit", pin_maps_dir=None) as obj:
        prog = obj.programs["xdp_pass"]
        first = prog.test_run(frame)
        runner = prog._runner
        with runner.with_checks() as checked:
            prog._runner = checked
            try:
                assert prog.test_run(frame).retval == first.retval
                assert prog._reused[-1].runner is checked
            finally:
                prog._runner = runner
        # the kept regions were bound to the closed checked code: a run now uses the engine
        again = prog.test_run(frame)
        assert (again.retval, again.data_out) == (first.retval, first.data_out)
        assert prog._reused[-1].runner is runner


def test_arguments_after_a_refused_run_are_those_given():
    # r0 = r1 + r2 + r3: slots a refused run wrote must not leak into the next run
    prog = [I.mov(0, "r1"), I.add(0, "r2"), I.add(0, "r3"), EXIT]
    with JitProgram(prog, entry_registers=(1, 2, 3, 10)) as jit:
        space = AddressSpace()
        assert jit.run((1,), memory=space) == 1
        with pytest.raises(InputError):
            jit.run((1, 2, "x"), memory=space)
        assert jit.run((1,), memory=space) == 1
        assert jit.run((1, 2, 3), memory=space) == 6
        assert jit.run((4,), memory=space) == 4
        assert jit.run([5, 6], memory=space) == 11
        with pytest.raises(InputError):
            jit.run((1, 2, 3, 4, 5, 6), memory=space)
        assert jit.run((), memory=space) == 0
