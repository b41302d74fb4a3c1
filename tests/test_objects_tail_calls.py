"""Tail calls through PROG_ARRAY on the portable backend: chains, the limit of 33, fall-through."""

from __future__ import annotations

import errno
import struct
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import MemoryAccessError
from pybpf.isa import Instruction
from pybpf.isa.asm import assemble
from pybpf.isa.opcodes import MAX_TAIL_CALLS
from pybpf.maptypes import MapType
from pybpf.objects import Object
from pybpf.spec import MapSpec, ObjectSpec, ProgramSpec, Reference, RefKind

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "c"
M64 = (1 << 64) - 1
CALL = 0x85  # BPF_JMP | BPF_CALL


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def _prog(name: str, text: str, refs=(), *, section: str = "raw", sub: bool = False):
    insns = []
    for line in text.strip().splitlines():
        if line.strip().startswith("call local"):
            insns.append(Instruction(CALL, src=1, imm=-1))  # linked later
        else:
            insns.extend(assemble(line))
    return ProgramSpec(
        name, section, tuple(insns), references=tuple(refs), subprogram=sub, license="GPL"
    )


def _jt_ref(pc: int) -> Reference:
    return Reference(pc, RefKind.MAP, "jt")


def _object(*programs: ProgramSpec, slots: int = 4) -> Object:
    spec = ObjectSpec(
        name="tc",
        programs={p.name: p for p in programs},
        maps={"jt": MapSpec("jt", MapType.PROG_ARRAY, 4, 4, slots)},
        license="GPL",
    )
    return Object(spec).load()


# The program counts itself in the first u64 of its buffer and tail-calls slot ``index``;
# r0 is the count when the call falls through.
def _counter(name: str, index: int) -> ProgramSpec:
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
    return _prog(name, text, [_jt_ref(5)])


def test_a_program_tail_calling_itself_runs_at_most_34_times():
    with _object(_counter("loop", 0)) as obj:
        obj.maps["jt"][0] = obj.programs["loop"]  # a prog array takes programs
        assert obj.maps["jt"][0] == obj.programs["loop"].id
        r = obj.programs["loop"].test_run(bytes(16))
        runs = 1 + MAX_TAIL_CALLS
        assert r.retval == runs
        # The last run's call failed (limit reached): it fell through with -ENOENT.
        assert struct.unpack("<QQ", r.data_out) == (runs, -errno.ENOENT & M64)


def test_an_empty_slot_or_a_bad_index_falls_through():
    for index in (1, 3, 4, 1 << 31):  # empty, empty, past max_entries, far past
        with _object(_counter("loop", index)) as obj:
            r = obj.programs["loop"].test_run(bytes(16))
            assert struct.unpack("<QQ", r.data_out) == (1, -errno.ENOENT & M64)
            assert r.retval == 1


def test_a_chain_runs_each_stage_once_with_the_same_context():
    a = _counter("a", 1)
    b = _counter("b", 2)
    c = _prog("c", "r0 = *(u64 *)(r1 + 0)\nr0 *= 100\nexit")
    with _object(a, b, c) as obj:
        jt = obj.maps["jt"]
        jt[1], jt[2] = obj.programs["b"], obj.programs["c"]
        assert obj.programs["a"].test_run(bytes(16)).retval == 200  # a, b counted; c returns
        del jt[2]
        r = obj.programs["a"].test_run(bytes(16))
        assert r.retval == 2 and struct.unpack("<QQ", r.data_out)[1] == -errno.ENOENT & M64
        jt[2] = obj.programs["a"]  # a -> b -> a -> b ... until the limit
        assert obj.programs["a"].test_run(bytes(16)).retval == 1 + MAX_TAIL_CALLS


def test_a_tail_call_from_a_subprogram_returns_to_its_caller():
    main = _prog("main", "call local\nr0 += 1000\nexit", [Reference(0, RefKind.CALL, "sub")])
    sub = _prog(
        "sub",
        "r2 = 0x0 ll\nr3 = 2\ncall 12\nr0 = 5\nexit",
        [_jt_ref(0)],
        section=".text",
        sub=True,
    )
    leaf = _prog("leaf", "r0 = 42\nexit")
    with _object(main, sub, leaf) as obj:
        assert obj.programs["main"].test_run(bytes(8)).retval == 1005  # empty: falls through
        obj.maps["jt"][2] = obj.programs["leaf"]
        assert obj.programs["main"].test_run(bytes(8)).retval == 1042


def test_tail_call_targets_reach_their_own_objects_maps():
    with pybpf.load(EXAMPLES / "pipeline.o") as obj:
        finish = obj.programs["finish"]
        with _object(_counter("entry", 0)) as other:
            other.maps["jt"][0] = finish  # finish reads its object's .data and .bss
            r = other.programs["entry"].test_run(bytes(16))
            assert r.retval == 10  # last_sum 0 + cfg.bias
            assert obj.bss.stage_hits == [0, 1]


def test_a_faulting_target_stops_the_whole_run():
    bad = _prog("bad", "r0 = *(u64 *)(r1 + 4096)\nexit")
    with _object(_counter("entry", 1), bad) as obj:
        obj.maps["jt"][1] = obj.programs["bad"]
        with pytest.raises(MemoryAccessError):
            obj.programs["entry"].test_run(bytes(16))


def test_the_examples_chain_and_callbacks():
    with pybpf.load(EXAMPLES / "tail_calls.o") as obj:
        # entry: bpf_loop sums 0..3 into inner_a[0] (through the map-in-map), then
        # tail-calls stage_one (slot 1), which tail-calls stage_two (slot 3): XDP_DROP.
        assert obj.maps["jump_table"].items() == [
            (1, obj.programs["stage_one"].id),
            (3, obj.programs["stage_two"].id),
        ]
        assert obj.maps["outer"][0] is obj.maps["inner_a"]
        assert obj.programs["entry"].test_run(bytes(16)).retval == 1
        assert obj.maps["inner_a"][0] == sum(range(4))
        del obj.maps["jump_table"][3]
        assert obj.programs["entry"].test_run(bytes(16)).retval == 2  # stage_one's XDP_PASS
