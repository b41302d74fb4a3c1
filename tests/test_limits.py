"""Runtime limits, on the interpreter and the JIT alike, as Linux sets them: the instruction
budget, the call depth (8 frames), the tail-call limit (33), a full ring buffer (-EAGAIN),
a full map (-E2BIG), helper failures reaching the program as negative errno, huge
``max_entries`` refused before anything is allocated, and a JIT that compiles a program
without memory checks only when the verifier accepted it."""

from __future__ import annotations

import dataclasses
import errno
import resource
import struct
import time
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import BudgetExceededError, CallDepthError, MapError, MemoryAccessError
from pybpf.isa import Instruction, assemble
from pybpf.isa.opcodes import MAX_CALL_DEPTH, MAX_TAIL_CALLS
from pybpf.jit import JitProgram, available
from pybpf.maps import MapDefinition, create_map
from pybpf.maptypes import MapFlag, MapType
from pybpf.objects import Object
from pybpf.progtypes import ProgType
from pybpf.spec import MapSpec, ObjectSpec, ProgramSpec, Reference, RefKind
from pybpf.vm import Interpreter

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "c"
M64 = (1 << 64) - 1
NO_JIT = pytest.mark.skipif(not available(), reason="llvmlite is not installed")
ENGINES = ["interpreter", pytest.param("jit", marks=NO_JIT)]
CALL = 0x85  # BPF_JMP | BPF_CALL


def neg(code: int) -> int:
    """A negative errno as the program's u64 r0 holds it."""
    return -code & M64


def ret(code: int) -> int:
    """A negative errno as BPF_PROG_TEST_RUN reports r0 (``retval`` is a __u32)."""
    return -code & 0xFFFFFFFF


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def engine_for(engine: str, insns, **kw):
    """An unverified program on ``engine``: the JIT keeps its memory checks and budget."""
    if engine == "jit":
        return JitProgram(insns, debug_checks=True, **kw)
    return Interpreter(insns, **kw)


# ---- instruction budget ----------------------------------------------------------------
COUNT_TO = """
r0 = 0
L:
r0 += 1
if r0 < {n} goto L
exit
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_the_budget_is_exact_and_stops_runaway_loops(engine):
    n = 500
    insns = assemble(COUNT_TO.format(n=n))
    executed = 1 + 2 * n + 1
    assert engine_for(engine, insns, budget=executed).run((0,)) == n
    with pytest.raises(BudgetExceededError) as info:
        engine_for(engine, insns, budget=executed - 1).run((0,))
    assert info.value.pc in (1, 2, 3)
    started = time.perf_counter()
    with pytest.raises(BudgetExceededError):
        engine_for(engine, assemble("L:\ngoto L"), budget=200_000).run((0,))
    assert time.perf_counter() - started < 10


# ---- call depth ------------------------------------------------------------------------------
def nested_calls(depth: int) -> list[Instruction]:
    """main calls f with r1 = depth; f calls itself until r1 is 0: depth + 2 frames."""
    return [
        *assemble(f"r1 = {depth}"),
        Instruction(CALL, src=1, imm=1),  # pc 1 -> f at pc 3
        *assemble("exit"),
        *assemble("if r1 == 0 goto +2\nr1 -= 1"),  # f: pc 3, 4
        Instruction(CALL, src=1, imm=-3),  # pc 5 -> f
        *assemble("r0 = 0\nexit"),
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_call_depth_is_linux_eight_frames(engine):
    assert MAX_CALL_DEPTH == 8
    deepest = MAX_CALL_DEPTH - 2  # main plus f seven times
    assert engine_for(engine, nested_calls(deepest)).run((0,)) == 0
    with pytest.raises(CallDepthError) as info:
        engine_for(engine, nested_calls(deepest + 1)).run((0,))
    assert info.value.depth > MAX_CALL_DEPTH - 1
    assert info.value.pc == 5


# ---- objects with maps, on both engines ------------------------------------------------------
def _object(engine: str, texts: dict[str, str], ref: tuple[int, str], maps: list[MapSpec]):
    """One object: programs from ``texts`` (each loading map ``ref[1]`` at pc ``ref[0]``)."""
    refs = (Reference(ref[0], RefKind.MAP, ref[1]),)
    programs = {
        name: ProgramSpec(name, "raw", tuple(assemble(text)), references=refs, license="GPL")
        for name, text in texts.items()
    }
    spec = ObjectSpec(name="lim", programs=programs, maps={m.name: m for m in maps}, license="GPL")
    return Object(spec).load(engine=engine)


def _map_ops(engine: str, maps: list[MapSpec]):
    texts = {"update": MAP_OP.format(helper=2), "delete": MAP_OP.format(helper=3)}
    return _object(engine, texts, (1, "m"), maps)


# r1 = the 32-byte buffer: key at 0, value at 8, flags at 16; r0 = the helper's result.
MAP_OP = """
r6 = r1
r1 = 0 ll
r2 = r6
r3 = r6
r3 += 8
r4 = *(u64 *)(r6 + 16)
call {helper}
exit
"""


def _args(key: int, value: int = 0, flags: int = 0) -> bytes:
    return struct.pack("<QQQQ", key, value, flags, 0)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_full_hash_map_returns_e2big_and_helpers_fail_with_negative_errno(engine):
    maps = [MapSpec("m", MapType.HASH, 4, 8, 2)]
    with _map_ops(engine, maps) as obj:
        update, delete = obj.programs["update"], obj.programs["delete"]
        assert update.test_run(_args(1, 10)).retval == 0
        assert update.test_run(_args(2, 20)).retval == 0
        assert update.test_run(_args(3, 30)).retval == ret(errno.E2BIG)  # full
        assert update.test_run(_args(1, 11)).retval == 0  # replacing still works when full
        assert update.test_run(_args(2, 0, 1)).retval == ret(errno.EEXIST)  # BPF_NOEXIST
        assert update.test_run(_args(3, 0, 2)).retval == ret(errno.ENOENT)  # BPF_EXIST
        assert update.test_run(_args(1, 0, 8)).retval == ret(errno.EINVAL)  # unknown flag
        assert delete.test_run(_args(7)).retval == ret(errno.ENOENT)
        m = obj.maps["m"].set_codecs("uint", "uint")
        assert dict(m.items()) == {1: 11, 2: 20}
        with pytest.raises(MapError) as info:
            m[3] = 3  # user space sees the same limit
        assert info.value.errno == errno.E2BIG
        assert delete.test_run(_args(2)).retval == 0
        assert update.test_run(_args(3, 30)).retval == 0  # the freed slot is reused


# The same through verified XDP programs: on the JIT their map calls are inlined native
# code (pybpf.maps.native), which must fail as the helpers do.
CONST_UPDATE = """
*(u32 *)(r10 - 4) = {key}
*(u64 *)(r10 - 16) = {key}
r1 = 0 ll
r2 = r10
r2 += -4
r3 = r10
r3 += -16
r4 = {flags}
call 2
exit
"""
CONST_DELETE = """
*(u32 *)(r10 - 4) = {key}
r1 = 0 ll
r2 = r10
r2 += -4
call 3
exit
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_verified_programs_inlined_map_calls_fail_like_the_helpers(engine):
    def xdp(text: str, pc: int) -> ProgramSpec:
        refs = (Reference(pc, RefKind.MAP, "m"),)
        insns = tuple(assemble(text))
        return ProgramSpec("p", "xdp", insns, type=ProgType.XDP, references=refs, license="GPL")

    cases = {  # name: (program, the errno it must return)
        "add1": (xdp(CONST_UPDATE.format(key=1, flags=0), 2), 0),
        "add2": (xdp(CONST_UPDATE.format(key=2, flags=0), 2), 0),
        "full": (xdp(CONST_UPDATE.format(key=3, flags=0), 2), errno.E2BIG),
        "noexist": (xdp(CONST_UPDATE.format(key=2, flags=1), 2), errno.EEXIST),
        "exist": (xdp(CONST_UPDATE.format(key=3, flags=2), 2), errno.ENOENT),
        "delete": (xdp(CONST_DELETE.format(key=7), 1), errno.ENOENT),
    }
    programs = {n: dataclasses.replace(p, name=n) for n, (p, _) in cases.items()}
    spec = ObjectSpec(name="inl", programs=programs,
                      maps={"m": MapSpec("m", MapType.HASH, 4, 8, 2)}, license="GPL")  # fmt: skip
    with Object(spec).load(engine=engine) as obj:
        for name, (_, code) in cases.items():  # in order: the map fills up first
            prog = obj.programs[name]
            assert prog.verified
            if engine == "jit":
                assert prog._runner.map_sites and not prog._runner.debug_checks
            assert prog.test_run(bytes(64)).retval == (ret(code) if code else 0), name


@pytest.mark.parametrize("engine", ENGINES)
def test_array_helper_failures(engine):
    maps = [MapSpec("m", MapType.ARRAY, 4, 8, 2)]
    with _map_ops(engine, maps) as obj:
        update, delete = obj.programs["update"], obj.programs["delete"]
        assert update.test_run(_args(1, 5)).retval == 0
        assert update.test_run(_args(2, 5)).retval == ret(errno.E2BIG)  # index out of range
        assert update.test_run(_args(0, 5, 1)).retval == ret(errno.EEXIST)  # every slot exists
        assert delete.test_run(_args(0)).retval == ret(errno.EINVAL)  # arrays cannot delete


RINGBUF_OUTPUT = """
r6 = r1
r1 = 0 ll
r2 = r6
r3 = *(u64 *)(r6 + 0)
r4 = 0
call 130
exit
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_a_full_ring_buffer_returns_eagain_until_consumed(engine):
    maps = [MapSpec("rb", MapType.RINGBUF, 0, 0, 4096)]
    with _object(engine, {"p": RINGBUF_OUTPUT}, (1, "rb"), maps) as obj:
        prog = obj.programs["p"]
        data = struct.pack("<Q", 1000) + bytes(1000)
        results = [prog.test_run(data).retval for _ in range(5)]
        # 4 records of 8 + 1000 bytes fill 4032 of 4096; the fifth does not fit
        assert results == [0, 0, 0, 0, ret(errno.EAGAIN)]
        too_big = struct.pack("<Q", 4096) + bytes(4096)
        assert prog.test_run(too_big).retval == ret(errno.EAGAIN)
        seen = []
        assert obj.maps["rb"].consume(lambda sample: seen.append(len(sample)) or 0) == 4
        assert seen == [1000] * 4
        assert prog.test_run(data).retval == 0  # room again


def _counter(name: str, index: int) -> ProgramSpec:
    """Counts its runs in the buffer's first u64, then tail-calls slot ``index``."""
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
    refs = (Reference(5, RefKind.MAP, "jt"),)
    return ProgramSpec(name, "raw", tuple(assemble(text)), references=refs, license="GPL")


@pytest.mark.parametrize("engine", ENGINES)
def test_tail_calls_stop_after_33_across_programs(engine):
    assert MAX_TAIL_CALLS == 33
    spec = ObjectSpec(
        name="ping",
        programs={"a": _counter("a", 1), "b": _counter("b", 0)},
        maps={"jt": MapSpec("jt", MapType.PROG_ARRAY, 4, 4, 2)},
        license="GPL",
    )
    with Object(spec).load(engine=engine) as obj:
        obj.maps["jt"][0] = obj.programs["a"]
        obj.maps["jt"][1] = obj.programs["b"]
        result = obj.programs["a"].test_run(bytes(16))
        runs, fell_through = struct.unpack("<QQ", result.data_out)
        assert runs == result.retval == 1 + MAX_TAIL_CALLS  # a, b, a, ... 34 runs
        assert fell_through == neg(errno.ENOENT)  # the 34th tail call failed and fell through


# ---- huge maps are refused before allocating -----------------------------------------------
def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


HUGE = [
    (MapType.ARRAY, 4, 8, (1 << 32) - 1, 0),
    (MapType.ARRAY, 4, 1 << 20, 1 << 20, 0),  # a terabyte
    (MapType.HASH, 4, 1 << 16, 1 << 31, 0),
    (MapType.HASH, 4, 8, (1 << 32) - 1, 0),
    (MapType.LRU_HASH, 8, 1 << 12, 1 << 30, 0),
    (MapType.PERCPU_ARRAY, 4, 1 << 15, 1 << 24, 0),
    (MapType.LPM_TRIE, 8, 1 << 12, 1 << 30, MapFlag.NO_PREALLOC),
    (MapType.QUEUE, 0, 1 << 16, 1 << 30, 0),
    (MapType.RINGBUF, 0, 0, 1 << 31, 0),
    (MapType.HASH, 4, 8, 1 << 31, MapFlag.NO_PREALLOC),
]


@pytest.mark.parametrize("kind,key,value,entries,flags", HUGE)
def test_huge_maps_fail_fast_without_allocating(kind, key, value, entries, flags):
    before, started = _rss(), time.perf_counter()
    with pytest.raises(MapError) as info:
        create_map(MapDefinition(kind, key, value, entries, flags=flags)).close()
    assert info.value.errno in (errno.ENOMEM, errno.E2BIG, errno.EINVAL)
    assert time.perf_counter() - started < 1.0
    assert _rss() - before < 32 << 20


@pytest.mark.parametrize("engine", ENGINES)
def test_an_object_asking_for_terabytes_fails_to_load_cleanly(engine):
    spec = ObjectSpec(
        name="big",
        programs={"p": ProgramSpec("p", "raw", tuple(assemble("r0 = 0\nexit")), license="GPL")},
        maps={"m": MapSpec("m", MapType.HASH, 8, 1 << 20, 1 << 20)},
        license="GPL",
    )
    before, started = _rss(), time.perf_counter()
    with pytest.raises(MapError) as info:
        Object(spec).load(engine=engine)
    assert info.value.errno in (errno.ENOMEM, errno.E2BIG)
    assert time.perf_counter() - started < 5.0
    assert _rss() - before < 32 << 20


# ---- the JIT compiles without checks only what the verifier accepted -------------------------
@NO_JIT
def test_the_jit_never_compiles_an_unverified_program_without_memory_checks(monkeypatch):
    compiled: list[JitProgram] = []
    real = JitProgram.__init__

    def spy(self, *args, **kw):
        real(self, *args, **kw)
        compiled.append(self)

    monkeypatch.setattr(JitProgram, "__init__", spy)
    unchecked = 0
    # objects with maps, tail calls, callbacks-free helpers and BTF: compiling is slow, so
    # a handful (every example is loaded on the JIT by tests/test_examples.py)
    for name in ("xdp_counter.o", "tail_calls.o", "packet_helpers.o", "legacy_maps.o"):
        path = EXAMPLES / name
        for verify in (True, False):
            compiled.clear()
            with pybpf.Object.open(path).load(engine="jit", verify=verify) as obj:
                runners = {id(p._runner): p for p in obj.programs.values()}
                for jit in compiled:
                    if jit.debug_checks:
                        continue
                    unchecked += 1
                    prog = runners.get(id(jit))
                    assert prog is not None, f"{path.name}: an unchecked JIT that is no program's"
                    assert verify and prog.verified, f"{path.name}: {prog.name} unverified"
    assert unchecked >= 4  # verified programs do run unchecked


# Addresses no region can hold: NULL + 16, and the packet pointer moved by 2^63. (An offset
# like r1 + 4096 is not enough: on the JIT it may land in the program's own stack frames.)
WILD = ["r1 = 0", "r2 = 1\nr2 <<= 63\nr1 += r2"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("wild", WILD)
def test_an_unverified_wild_store_faults_instead_of_writing(engine, wild):
    text = f"{wild}\nr3 = 77\n*(u64 *)(r1 + 16) = r3\nr0 = 0\nexit"
    insns = tuple(assemble(text))
    spec = ObjectSpec(
        name="oob", programs={"p": ProgramSpec("p", "raw", insns, license="GPL")}, license="GPL"
    )
    with Object(spec).load(engine=engine, verify=False) as obj:
        with pytest.raises(MemoryAccessError) as info:
            obj.programs["p"].test_run(bytes(64))
    assert info.value.access == "write" and info.value.pc == len(insns) - 3
