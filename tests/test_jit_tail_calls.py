"""Tail calls (and callbacks) on the JIT: every result the interpreter's on the same programs."""

from __future__ import annotations

import dataclasses
import errno
import struct
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import HelperError, MemoryAccessError
from pybpf.isa import Instruction
from pybpf.isa.asm import assemble
from pybpf.isa.opcodes import MAX_TAIL_CALLS
from pybpf.jit import available
from pybpf.maptypes import MapType
from pybpf.objects import Object
from pybpf.progtypes import ProgType
from pybpf.spec import MapSpec, ObjectSpec, ProgramSpec, Reference, RefKind

pytestmark = pytest.mark.skipif(not available(), reason="llvmlite is not installed")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "c"
M64 = (1 << 64) - 1
ENOENT = -errno.ENOENT & M64
CALL = 0x85  # BPF_JMP | BPF_CALL
ENGINES = ("interpreter", "jit")


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def _prog(name: str, text: str, refs=(), *, sub: bool = False) -> ProgramSpec:
    insns = []
    for line in text.strip().splitlines():
        if line.strip().startswith("call local"):
            insns.append(Instruction(CALL, src=1, imm=-1))  # linked later
        else:
            insns.extend(assemble(line))
    section = ".text" if sub else "raw"
    return ProgramSpec(
        name, section, tuple(insns), references=tuple(refs), subprogram=sub, license="GPL"
    )


def _jt(pc: int) -> Reference:
    return Reference(pc, RefKind.MAP, "jt")


def _object(engine: str, *programs: ProgramSpec, slots: int = 4) -> Object:
    spec = ObjectSpec(
        name="tc",
        programs={p.name: p for p in programs},
        maps={
            "jt": MapSpec("jt", MapType.PROG_ARRAY, 4, 4, slots),
            "counts": MapSpec("counts", MapType.ARRAY, 4, 8, 2),
        },
        license="GPL",
    )
    return Object(spec).load(engine=engine)


def _counter(name: str, index: int) -> ProgramSpec:
    """Counts itself in the buffer's first u64, tail-calls slot ``index``, and on
    fall-through stores r0 at offset 8 and returns the count."""
    text = f"""
        r6 = r1
        r7 = *(u64 *)(r6 + 0)
        r7 += 1
        *(u64 *)(r6 + 0) = r7
        r1 = r6
        r2 = 0x0 ll
        r3 = {index:#x}
        call 12
        *(u64 *)(r6 + 8) = r0
        r0 = *(u64 *)(r6 + 0)
        exit
    """
    return _prog(name, text, [_jt(5)])


def _both(scenario):
    """``scenario(engine)`` on both engines: its results, which must agree."""
    results = {engine: scenario(engine) for engine in ENGINES}
    assert results["jit"] == results["interpreter"]
    return results["jit"]


def _run(prog, data=bytes(16), **kw):
    r = prog.test_run(data, **kw)
    return r.retval, r.data_out


@pytest.fixture
def python_tail_calls(monkeypatch):
    """Counts the tail calls that go through Python (the dispatcher's path)."""
    from pybpf.jit.calls import HelperDispatcher

    calls = []
    real = HelperDispatcher._tail_call

    def spy(self, state, pc, ctx, handle, index):
        calls.append(index)
        return real(self, state, pc, ctx, handle, index)

    monkeypatch.setattr(HelperDispatcher, "_tail_call", spy)
    return calls


def test_the_jit_runs_tail_calls_natively_after_the_first(python_tail_calls):
    with _object("jit", _counter("loop", 0)) as obj:
        prog = obj.programs["loop"]
        obj.maps["jt"][0] = prog
        assert prog.engine == "jit" and prog._tail_target().engine is prog._runner
        assert prog._runner._states  # the JIT ran, not a hidden interpreter
        assert _run(prog)[0] == 1 + MAX_TAIL_CALLS
        # the first tail call ran through Python (one nested run state) and filled the
        # slot's native entry; the other 32 ran natively on the caller's context block
        assert len(python_tail_calls) == 1 and len(prog._runner._states) == 2
        python_tail_calls.clear()
        assert _run(prog)[0] == 1 + MAX_TAIL_CALLS
        assert python_tail_calls == []  # all 33 native, the limit counted natively


def test_a_slot_written_or_emptied_after_native_runs_takes_effect(python_tail_calls):
    def scenario(engine):
        caller = _prog("caller", "r2 = 0x0 ll\nr3 = 1\ncall 12\nr0 = 9\nexit", [_jt(0)])
        seven, eight = _prog("seven", "r0 = 7\nexit"), _prog("eight", "r0 = 8\nexit")
        with _object(engine, caller, seven, eight) as obj:
            jt, run = obj.maps["jt"], obj.programs["caller"]
            out = [_run(run)[0]]  # empty slot: falls through
            jt[1] = obj.programs["seven"]
            out += [_run(run)[0], _run(run)[0]]  # Python, then native
            jt[1] = obj.programs["eight"]
            out += [_run(run)[0], _run(run)[0]]
            del jt[1]
            out.append(_run(run)[0])
            jt[1] = obj.programs["seven"]
            out.append(_run(run)[0])
            obj.programs["seven"].close()  # its native entry is forgotten with its code
            out.append(_run(run)[0])
            return out

    assert _both(scenario) == [9, 7, 7, 8, 8, 9, 7, 9]


def test_native_tail_calls_of_a_closed_prog_array_go_through_python():
    def scenario(engine):
        with _object(engine, _counter("loop", 0)) as obj:
            prog = obj.programs["loop"]
            obj.maps["jt"][0] = prog
            first = _run(prog)
            obj.maps["jt"].close()
            with pytest.raises(HelperError) as err:
                prog.test_run(bytes(16))
            return first, err.value.helper_id

    (retval, _), helper = _both(scenario)
    assert retval == 1 + MAX_TAIL_CALLS and helper == 12


def _xdp(name: str, text: str, refs=()) -> ProgramSpec:
    spec = _prog(name, text, refs)
    return dataclasses.replace(spec, section="xdp", type=ProgType.XDP)


def test_verified_programs_tail_call_each_other_natively_unchecked(python_tail_calls):
    # XDP programs the verifier accepts run without memory checks; the chain counts its
    # stages in the packet's first byte and the last returns it.
    stage = """
        r2 = *(u32 *)(r1 + 4)
        r3 = *(u32 *)(r1 + 0)
        r4 = r3
        r4 += 1
        if r4 > r2 goto +10
        r4 = *(u8 *)(r3 + 0)
        r4 += 1
        *(u8 *)(r3 + 0) = r4
        r6 = r4
        r2 = 0x0 ll
        r3 = {slot}
        call 12
        r0 = r6
        exit
        r0 = 0
        exit
    """

    def scenario(engine):
        a = _xdp("a", stage.format(slot=1), [_jt(9)])
        b = _xdp("b", stage.format(slot=2), [_jt(9)])
        c = _xdp("c", stage.format(slot=3), [_jt(9)])
        with _object(engine, a, b, c) as obj:
            progs = obj.programs
            assert all(p.verified for p in progs.values())
            jt = obj.maps["jt"]
            jt[1], jt[2] = progs["b"], progs["c"]
            runs = [progs["a"].test_run(bytes(16), repeat=n) for n in (1, 5)]
            return [(r.retval, r.data_out[0]) for r in runs]

    assert _both(scenario) == [(3, 3), (15, 15)]  # repeat shares the packet: 5 x 3
    assert len(python_tail_calls) == 2  # each slot's first call; the rest native


def test_a_checked_caller_and_an_unchecked_target_stay_apart(python_tail_calls):
    # an untyped (unverified, checked) caller and a verified XDP target: different
    # check modes, so every tail call between them takes the Python path
    caller = _prog("caller", "r2 = 0x0 ll\nr3 = 0\ncall 12\nr0 = 9\nexit", [_jt(0)])
    target = _xdp("target", "r0 = 4\nexit")
    with _object("jit", caller, target) as obj:
        obj.maps["jt"][0] = obj.programs["target"]
        assert obj.programs["target"]._runner.debug_checks is False
        assert obj.programs["caller"]._runner.debug_checks is True
        assert [_run(obj.programs["caller"])[0] for _ in range(3)] == [4, 4, 4]
    assert len(python_tail_calls) == 3


def test_a_self_tail_call_runs_at_most_34_times():
    def scenario(engine):
        with _object(engine, _counter("loop", 0)) as obj:
            obj.maps["jt"][0] = obj.programs["loop"]
            return _run(obj.programs["loop"])

    retval, data = _both(scenario)
    assert retval == 1 + MAX_TAIL_CALLS
    assert struct.unpack("<QQ", data) == (1 + MAX_TAIL_CALLS, ENOENT)


@pytest.mark.parametrize("index", [1, 3, 4, 1 << 31])
def test_an_empty_slot_or_an_index_out_of_range_falls_through(index):
    def scenario(engine):
        with _object(engine, _counter("loop", index), _prog("leaf", "r0 = 7\nexit")) as obj:
            obj.maps["jt"][2] = obj.programs["leaf"]  # occupied, but not the one asked for
            return _run(obj.programs["loop"])

    retval, data = _both(scenario)
    assert retval == 1 and struct.unpack("<QQ", data) == (1, ENOENT)


def test_an_index_is_taken_as_u32():
    def scenario(engine):
        text = "r2 = 0x0 ll\nr3 = 0x100000002 ll\ncall 12\nr0 = 9\nexit"
        caller = _prog("caller", text, [_jt(0)])
        with _object(engine, caller, _prog("leaf", "r0 = 7\nexit")) as obj:
            obj.maps["jt"][2] = obj.programs["leaf"]
            return _run(obj.programs["caller"])[0]

    assert _both(scenario) == 7


def test_a_chain_runs_each_stage_once_then_cycles_to_the_limit():
    def scenario(engine):
        a, b = _counter("a", 1), _counter("b", 2)
        c = _prog("c", "r0 = *(u64 *)(r1 + 0)\nr0 *= 100\nexit")
        with _object(engine, a, b, c) as obj:
            jt = obj.maps["jt"]
            jt[1], jt[2] = obj.programs["b"], obj.programs["c"]
            out = [_run(obj.programs["a"])]
            del jt[2]
            out.append(_run(obj.programs["a"]))
            jt[2] = obj.programs["a"]
            out.append(_run(obj.programs["a"]))
            return out

    (r1, _), (r2, d2), (r3, d3) = _both(scenario)
    assert r1 == 200
    assert r2 == 2 and struct.unpack("<QQ", d2) == (2, ENOENT)
    assert r3 == 1 + MAX_TAIL_CALLS and struct.unpack("<QQ", d3)[1] == ENOENT


def test_a_tail_call_from_a_subprogram_returns_to_its_caller():
    def scenario(engine):
        main = _prog(
            "main",
            "r6 = 1000\ncall local\nr0 += r6\nexit",
            [Reference(1, RefKind.CALL, "sub")],
        )
        sub = _prog(
            "sub",
            "r6 = 3\nr2 = 0x0 ll\nr3 = 2\ncall 12\nr0 = r6\nexit",
            [_jt(1)],
            sub=True,
        )
        leaf = _prog("leaf", "r0 = 42\nexit")
        with _object(engine, main, sub, leaf) as obj:
            first = _run(obj.programs["main"], bytes(8))[0]  # empty: falls through, r0 = 3
            obj.maps["jt"][2] = obj.programs["leaf"]
            return first, _run(obj.programs["main"], bytes(8))[0]

    assert _both(scenario) == (1003, 1042)  # r6 survives in main; leaf's r0 returns to it


def test_tail_calls_mixed_with_helpers_and_maps():
    # entry: counts[0] += 1 through map helpers, tail-calls slot 1; stage: counts[1] = r1's
    # first u64 through a helper, returns it + 5. Fall-through returns -ENOENT's low bits.
    entry = _prog(
        "entry",
        """
        r6 = r1
        r1 = 0
        *(u32 *)(r10 - 4) = r1
        r2 = r10
        r2 += -4
        r1 = 0x0 ll
        call 1
        if r0 == 0 goto +3
        r1 = *(u64 *)(r0 + 0)
        r1 += 1
        *(u64 *)(r0 + 0) = r1
        r1 = r6
        r2 = 0x0 ll
        r3 = 1
        call 12
        exit
        """,
        [Reference(5, RefKind.MAP, "counts"), Reference(13, RefKind.MAP, "jt")],
    )
    stage = _prog(
        "stage",
        """
        r6 = *(u64 *)(r1 + 0)
        *(u64 *)(r10 - 8) = r6
        r1 = 1
        *(u32 *)(r10 - 12) = r1
        r1 = 0x0 ll
        r2 = r10
        r2 += -12
        r3 = r10
        r3 += -8
        r4 = 0
        call 2
        r0 = r6
        r0 += 5
        exit
        """,
        [Reference(4, RefKind.MAP, "counts")],
    )

    def scenario(engine):
        with _object(engine, entry, stage) as obj:
            data = struct.pack("<QQ", 37, 0)
            empty = obj.programs["entry"].test_run(data).retval
            obj.maps["jt"][1] = obj.programs["stage"]
            full = obj.programs["entry"].test_run(data).retval
            counts = [struct.unpack("<Q", obj.maps["counts"][i])[0] for i in (0, 1)]
            return empty, full, *counts

    assert _both(scenario) == (ENOENT & 0xFFFFFFFF, 42, 2, 37)


def test_repeat_restarts_the_chain_count_each_run():
    def scenario(engine):
        with _object(engine, _counter("loop", 0)) as obj:
            obj.maps["jt"][0] = obj.programs["loop"]
            return _run(obj.programs["loop"], repeat=3)

    retval, data = _both(scenario)
    assert retval == 3 * (1 + MAX_TAIL_CALLS)  # the buffer persists; each run gets 33 calls


def test_a_batch_restarts_the_chain_count_for_each_packet():
    with _object("interpreter", _counter("loop", 0)) as obj:
        obj.maps["jt"][0] = obj.programs["loop"]
        want = _run(obj.programs["loop"])
    with _object("jit", _counter("loop", 0)) as obj:
        prog = obj.programs["loop"]
        obj.maps["jt"][0] = prog
        result = prog._runner.run_batch([bytes(16)] * 3)
    assert result.retvals == [want[0]] * 3 and result.data_out == [want[1]] * 3
    assert want[0] == 1 + MAX_TAIL_CALLS


def test_a_target_in_a_batch_reaches_only_the_current_packet():
    caller = _prog("caller", "r2 = 0x0 ll\nr3 = 0\ncall 12\nr0 = 9\nexit", [_jt(0)])

    def scenario(engine, off):
        target = _prog("reader", f"r0 = *(u8 *)(r1 + {off})\nexit")
        with _object(engine, caller, target) as obj:
            obj.maps["jt"][0] = obj.programs["reader"]
            packets = [bytes([i]) * 16 for i in (1, 2)]
            if engine == "jit":
                try:
                    return obj.programs["caller"]._runner.run_batch(packets).retvals
                except MemoryAccessError as exc:
                    return type(exc), exc.pc, exc.packet_index
            out = []
            for index, packet in enumerate(packets):
                try:
                    out.append(obj.programs["caller"].test_run(packet).retval)
                except MemoryAccessError as exc:
                    return type(exc), exc.pc, index
            return out

    assert scenario("jit", 15) == scenario("interpreter", 15) == [1, 2]
    assert scenario("jit", 16) == scenario("interpreter", 16) == (MemoryAccessError, 0, 0)


@pytest.mark.parametrize("caller,target", [("jit", "interpreter"), ("interpreter", "jit")])
def test_engines_tail_call_each_other_and_share_the_count(caller, target):
    with _object(caller, _counter("a", 0)) as one, _object(target, _counter("b", 0)) as two:
        one.maps["jt"][0] = two.programs["b"]
        two.maps["jt"][0] = one.programs["a"]  # a -> b -> a -> ... across engines
        retval, data = _run(one.programs["a"])
    assert retval == 1 + MAX_TAIL_CALLS
    assert struct.unpack("<QQ", data) == (1 + MAX_TAIL_CALLS, ENOENT)


def test_a_faulting_target_raises_its_own_error():
    def scenario(engine):
        bad = _prog("bad", "r0 = 1\nr1 = 0\nr0 = *(u64 *)(r1 + 8)\nexit")
        with _object(engine, _counter("entry", 1), bad) as obj:
            obj.maps["jt"][1] = obj.programs["bad"]
            with pytest.raises(MemoryAccessError) as err:
                obj.programs["entry"].test_run(bytes(16))
            return err.value.pc, err.value.size, err.value.access

    assert _both(scenario) == (2, 8, "read")


def test_a_non_prog_array_is_a_helper_error():
    def scenario(engine):
        ref = Reference(0, RefKind.MAP, "counts")
        prog = _prog("p", "r2 = 0x0 ll\nr3 = 0\ncall 12\nexit", [ref])
        with _object(engine, prog) as obj:
            with pytest.raises(HelperError) as err:
                obj.programs["p"].test_run(bytes(8))
            return err.value.helper_id, err.value.pc

    assert _both(scenario) == (12, 3)


def test_callx_of_id_12_is_not_a_tail_call():
    def scenario(engine):
        prog = _prog("p", "r2 = 0x0 ll\nr3 = 0\nr4 = 12\ncallx r4\nr0 = 5\nexit", [_jt(0)])
        with _object(engine, prog, _prog("leaf", "r0 = 7\nexit")) as obj:
            obj.maps["jt"][0] = obj.programs["leaf"]
            with pytest.raises(HelperError) as err:
                obj.programs["p"].test_run(bytes(8))
            return err.value.helper_id, err.value.pc

    assert _both(scenario) == (12, 4)


# ---- the example objects --------------------------------------------------------------------
def test_the_tail_calls_example_chain_and_bpf_loop_callback():
    def scenario(engine):
        with pybpf.load(EXAMPLES / "tail_calls.o", engine=engine) as obj:
            assert obj.programs["entry"].engine == engine
            out = [obj.programs["entry"].test_run(bytes(16)).retval, obj.maps["inner_a"][0]]
            del obj.maps["jump_table"][3]
            out.append(obj.programs["entry"].test_run(bytes(16)).retval)
            return out

    assert _both(scenario) == [1, sum(range(4)), 2]  # XDP_DROP via 2 calls; then XDP_PASS


def test_callbacks_of_jit_programs_are_jit_code():
    from pybpf.jit import JitProgram
    from pybpf.vm import Interpreter

    kinds = {}
    for engine in ENGINES:
        with pybpf.load(EXAMPLES / "tail_calls.o", engine=engine, programs=["entry"]) as obj:
            (callback,) = obj._callbacks
            kinds[engine] = type(callback.engine)
            assert not obj.maps["jump_table"].items()  # stages not loaded: XDP_PASS
            assert obj.programs["entry"].test_run(bytes(16)).retval == 2
            assert obj.maps["inner_a"][0] == sum(range(4))  # the callback wrote the stack
    assert kinds == {"interpreter": Interpreter, "jit": JitProgram}


def test_the_pipeline_example():
    runs = [(3, 4, 1), (3, 5, 1), (1, 2, 0), (1, 2, 7), (9, 1, 1)]

    def scenario(engine):
        with pybpf.load(EXAMPLES / "pipeline.o", engine=engine) as obj:
            start = obj.programs["start"]
            results = [
                start.test_run(ctx_in=struct.pack("<3Q", *r)).retval for r in runs
            ]
            return (
                results,
                obj.maps["totals"][0],
                obj.maps["totals"][1],
                obj.bss.calls,
                obj.bss.stage_hits,
                sorted(obj.maps["squares"].items()),
            )

    results, total, finished, calls, hits, _ = _both(scenario)
    sums = [a * a + b * b for a, b, _ in runs]
    assert results == [sums[0] + 10, sums[1] + 10, 1000, 1000, sums[4] + 10]
    assert finished == 3 and calls == 5 and hits == [5, 3]
    assert total == 3 * sum(sums)


def test_only_programs_of_objects_with_a_prog_array_get_a_native_tail_entry():
    from pybpf.jit import JitProgram

    insns = assemble("r0 = 7\nexit")
    with JitProgram(insns) as plain, JitProgram(insns, tail_target=True) as target:
        assert plain.native_tail_entry() is None  # a target through Python only
        entry, key = target.native_tail_entry()
        assert entry and key == target.tail_key
        assert plain.run((0,)) == target.run((0,)) == 7
    with pybpf.load(EXAMPLES / "tail_calls.o", engine="jit") as obj:  # has a prog array
        assert all(p._runner.native_tail_entry() for p in obj.programs.values())
    with pybpf.load(EXAMPLES / "drop_empty_udp.o", engine="jit") as obj:  # has none
        assert all(p._runner.native_tail_entry() is None for p in obj.programs.values())
