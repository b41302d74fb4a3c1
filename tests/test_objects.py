"""Object.open / load on the portable backend: examples, globals, pins, refusals, lifetime."""

from __future__ import annotations

import errno
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import pybpf
from kernel import requires_bpf
from pybpf.errors import InputError, MapError, NotSupportedError, VerifierError
from pybpf.isa.asm import assemble
from pybpf.maps import live_maps
from pybpf.maptypes import MapType
from pybpf.objects import Object, Program, calc_tag
from pybpf.progtypes import ProgType
from pybpf.spec import MapSpec, ObjectSpec, Pinning, ProgramSpec
from pybpf.state import StateDirectory

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "c"
CORE_FIXTURE = Path(__file__).parent / "fixtures" / "kernel" / "core.o"
XDP_PASS, XDP_DROP = 2, 1


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def _args(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


def _pipeline(**load) -> Object:
    return pybpf.load(EXAMPLES / "pipeline.o", **load)


def _expected(a: int, b: int, bias: int = 10) -> int:
    return a * a + b * b + bias


# ---- opening --------------------------------------------------------------------------------
def test_open_gives_an_unloaded_object_with_an_editable_spec():
    obj = Object.open(EXAMPLES / "xdp_counter.o")
    assert isinstance(obj.spec, ObjectSpec) and not obj.loaded
    assert obj.name == "xdp_counter" and obj.path == str(EXAMPLES / "xdp_counter.o")
    with pytest.raises(InputError):
        obj.programs["xdp_count"]
    assert "xdp_count" not in obj.programs
    same = Object.open((EXAMPLES / "xdp_counter.o").read_bytes(), name="xdp_counter")
    assert same.spec == obj.spec


def test_open_errors_name_the_path(tmp_path):
    missing = tmp_path / "missing.o"
    with pytest.raises(InputError) as err:
        Object.open(missing)
    assert err.value.path == str(missing)


# ---- every example ------------------------------------------------------------------------
SOCKET_HOOK_TYPES = {ProgType.CGROUP_SOCK_ADDR, ProgType.CGROUP_SOCK}
EXAMPLE_OBJECTS = sorted(p.name for p in EXAMPLES.glob("*.o") if p.name != "externs.o")


@pytest.mark.parametrize("name", EXAMPLE_OBJECTS)
def test_every_example_loads_and_its_programs_run(name):
    with pybpf.load(EXAMPLES / name) as obj:
        assert set(obj.programs) == {n for n, p in obj.spec.entry_programs.items() if p.autoload}
        for prog in obj.programs.values():
            assert isinstance(prog, Program) and prog.engine == "interpreter"
            result = prog.test_run(bytes(64))
            assert 0 <= result.retval < 1 << 32 and isinstance(result.duration, int)
            # Linux socket hooks (bpf_sock_addr, bpf_sock) have no packet: no data_out.
            socket_hook = prog.type in SOCKET_HOOK_TYPES
            assert len(result.data_out) == (0 if socket_hook else 64)


def test_example_results_follow_their_sources():
    with pybpf.load(EXAMPLES / "programs.o") as obj:
        run = {n: p.test_run(bytes(64)).retval for n, p in obj.programs.items()}
    # Programs that never read their context: the values their sources return.
    assert run["xdp_pass"] == XDP_PASS and run["xdp_drop"] == XDP_DROP
    assert run["kprobe_open"] == run["tp_write"] == 0 and run["egress_allow"] == 1
    with pybpf.load(EXAMPLES / "xdp_counter.o") as obj:
        # data = data_end = 0 (the zeroed buffer read as xdp_md): too short, XDP_PASS.
        assert obj.programs["xdp_count"].test_run(bytes(64)).retval == XDP_PASS
        assert obj.bss.seen == 1 and obj.maps["proto_count"].items() == []


def test_every_example_program_has_linux_tag_and_bpftool_fields():
    with pybpf.load(EXAMPLES / "pipeline.o") as obj:
        start = obj.programs["start"]
        assert len(start.tag) == 16 and start.tag == calc_tag(start.instructions)
        assert start.tag != obj.programs["finish"].tag
        assert sorted(start.map_ids) == sorted(obj.maps[n].id for n in start.linked.maps)
        assert pybpf.objects.program.by_id(start.id) is start


def test_untyped_objects_without_entry_programs_load_their_lone_function():
    obj = ObjectSpec(
        name="lone",
        programs={"f": ProgramSpec("f", ".text", tuple(assemble("r0 = r2\nexit")))},
        license="GPL",
    )
    with Object(obj).load() as loaded:
        assert loaded.programs["f"].test_run(bytes(12)).retval == 12  # r2 = length


# ---- the pipeline example: maps, globals, a subprogram, a tail call ------------------------
def test_pipeline_runs_with_known_results():
    with _pipeline() as obj:
        start = obj.programs["start"]
        assert start.context == "memory"
        runs = [(3, 4, 1), (3, 5, 1), (1, 2, 0), (1, 2, 7)]
        results = [start.test_run(ctx_in=_args(*r)) for r in runs]
        assert [r.retval for r in results[:2]] == [_expected(3, 4), _expected(3, 5)]
        assert [r.retval for r in results[2:]] == [1000, 1000]  # empty slot, index too big
        assert all(r.ctx_out is None and r.data_out == b"" for r in results)
        sums = [a * a + b * b for a, b, _ in runs]
        assert obj.maps["totals"][0] == 3 * sum(sums)
        assert obj.maps["totals"][1] == 2  # finish ran twice
        assert sorted(obj.maps["squares"].items()) == [(x, x * x) for x in range(1, 6)]
        assert obj.bss.calls == 4 and obj.bss.stage_hits == [4, 2]
        assert obj.bss.last_sum == sums[-1]
        assert obj.data.cfg == {"port": 8080, "verbose": 0, "name": "pipe", "bias": 10}
        assert obj.maps[".bss"][0] == obj.bss.as_dict()


def test_repeat_runs_share_the_buffers_and_count_runs():
    insns = assemble("r2 = *(u64 *)(r1 + 0)\nr2 += 1\n*(u64 *)(r1 + 0) = r2\nr0 = r2\nexit")
    spec = ObjectSpec(
        name="t", programs={"inc": ProgramSpec("inc", "raw", tuple(insns))}, license="GPL"
    )
    with Object(spec).load() as obj:
        prog = obj.programs["inc"]
        r = prog.test_run(_args(5), repeat=10)
        assert r.retval == 15 and r.data_out == _args(15) and r.duration > 0
        r = prog.test_run(ctx_in=_args(7), repeat=0)  # 0 means once, as in Linux
        assert r.retval == 8 and r.ctx_out == _args(8)  # untyped: a writable context
        assert prog.run_cnt == 11 and prog.run_time_ns > 0
        with pytest.raises(InputError):
            prog.test_run(b"x", repeat=-1)


def test_structured_contexts_refuse_ctx_in_for_now():
    # verify=False keeps the pre-rewrite convention (tests/test_objects_context.py: xdp_md).
    with pybpf.load(EXAMPLES / "xdp_counter.o", verify=False) as obj:
        prog = obj.programs["xdp_count"]
        assert prog.context == "buffer"
        with pytest.raises(NotSupportedError) as err:
            prog.test_run(bytes(64), ctx_in=bytes(24))
        assert err.value.feature == "ctx_in" and err.value.program == "xdp_count"


# ---- globals ----------------------------------------------------------------------------------
def test_globals_before_load_edit_the_spec():
    obj = Object.open(EXAMPLES / "pipeline.o")
    assert obj.rodata.scale == 3 and obj.data.cfg["bias"] == 10 and obj.bss.calls == 0
    obj.rodata.scale = 5
    obj.data.cfg = {"port": 1, "name": "ab", "bias": -7}
    assert obj.spec.get_variable("scale") == (5).to_bytes(8, "little")
    assert obj.data.cfg == {"port": 1, "verbose": 0, "name": "ab", "bias": -7}
    assert "scale" in dir(obj.rodata)
    with obj.load():
        assert obj.rodata.scale == 5
        r = obj.programs["start"].test_run(ctx_in=_args(3, 4, 1))
        assert r.retval == _expected(3, 4, bias=-7)
        assert obj.maps["totals"][0] == 5 * 25


def test_globals_after_load_use_the_live_maps():
    with _pipeline() as obj:
        start = obj.programs["start"]
        obj.data.cfg = {"bias": 1}
        assert start.test_run(ctx_in=_args(1, 1, 1)).retval == 3
        obj.bss.calls = 100
        start.test_run(ctx_in=_args(1, 1, 1))
        assert obj.bss.calls == 101
        with pytest.raises(MapError) as err:
            obj.rodata.scale = 7  # .rodata is frozen at load
        assert err.value.errno == errno.EPERM
        assert obj.maps[".rodata"].frozen


def test_global_errors():
    obj = Object.open(EXAMPLES / "pipeline.o")
    with pytest.raises(AttributeError):
        _ = obj.rodata.nope
    with pytest.raises(AttributeError):
        _ = obj.nope
    with pytest.raises(InputError):
        obj.section(".nope")
    with pytest.raises(InputError):
        obj.bss.calls = 1 << 64
    with pytest.raises(InputError):
        obj.data.cfg = {"missing": 1}
    xdp = Object.open(EXAMPLES / "xdp_counter.o")
    assert xdp.data_tag.tag == "count"  # the custom section .data.tag
    xdp.data_tag.tag = "hello"
    assert xdp.data_tag.get_bytes("tag") == b"hello\0\0\0"


# ---- pins -------------------------------------------------------------------------------------
def _pinned_pipeline(**edits) -> Object:
    obj = Object.open(EXAMPLES / "pipeline.o")
    obj.spec.maps["squares"].pinning = Pinning.BY_NAME
    for key, value in edits.items():
        setattr(obj.spec.maps["squares"], key, value)
    return obj


def test_maps_pinned_by_name_are_reopened_by_a_second_load():
    with _pinned_pipeline().load() as first:
        first.programs["start"].test_run(ctx_in=_args(3, 4, 1))
        with _pinned_pipeline().load() as second:
            assert second.maps["squares"].items() == [(3, 9), (4, 16)]
            second.maps["squares"][10] = 100
            assert first.maps["squares"][10] == 100  # one map, live
            assert second.maps["totals"][0] == 0  # unpinned maps are the object's own
    with _pinned_pipeline().load() as third:  # the pin outlives both objects
        assert dict(third.maps["squares"].items()) == {3: 9, 4: 16, 10: 100}


def test_a_second_process_sees_the_pinned_map(tmp_path):
    with _pinned_pipeline().load() as obj:
        obj.programs["start"].test_run(ctx_in=_args(6, 7, 1))
        script = (
            "import json, pybpf\n"
            "from pybpf.spec import Pinning\n"
            f"o = pybpf.Object.open({str(EXAMPLES / 'pipeline.o')!r})\n"
            "o.spec.maps['squares'].pinning = Pinning.BY_NAME\n"
            "with o.load():\n"
            "    print(json.dumps(sorted(o.maps['squares'].items())))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == [[6, 36], [7, 49]]


def test_a_pin_with_another_definition_is_refused():
    with _pinned_pipeline().load():
        before = len(live_maps())
        with pytest.raises(MapError) as err:
            _pinned_pipeline(max_entries=128).load()
        assert err.value.errno == errno.EINVAL and err.value.field == "max_entries"
        assert len(live_maps()) == before  # nothing left open


def test_no_pin_root_pins_nothing():
    with _pinned_pipeline().load(pin_maps_dir=None):
        assert list(StateDirectory().pinned()) == []
    with _pinned_pipeline().load():
        assert list(StateDirectory().pinned()) == ["/sys/fs/bpf/squares"]


# ---- refusals -----------------------------------------------------------------------------
def _one_program(text: str, license: str = "GPL", prog_type=ProgType.XDP) -> ObjectSpec:
    prog = ProgramSpec("p", "xdp", tuple(assemble(text)), type=prog_type, license=license)
    return ObjectSpec(name="one", programs={"p": prog}, license=license)


def test_a_helper_the_backend_lacks_is_refused_at_load_by_name():
    before = len(live_maps())
    with pytest.raises(NotSupportedError) as err:
        Object(_one_program("r0 = 0\ncall 69\nr0 = 0\nexit")).load()
    assert err.value.feature == "fib_lookup"
    assert err.value.program == "p" and err.value.pc == 1
    assert len(live_maps()) == before


def test_gpl_only_helpers_need_a_gpl_license():
    text = "r1 = r10\nr1 += -8\n*(u64 *)(r10 - 8) = r0\nr2 = 8\ncall 6\nr0 = 0\nexit"
    text = "r0 = 0\n" + text
    with pytest.raises(VerifierError) as err:
        Object(_one_program(text, license="Proprietary")).load()
    assert err.value.pc == 5 and err.value.program == "p"
    Object(_one_program(text, license="Dual MIT/GPL")).load().close()


def test_core_relocations_are_refused_on_the_portable_backend():
    with pytest.raises(NotSupportedError) as err:
        pybpf.load(CORE_FIXTURE)
    assert err.value.feature == "core_relo" and err.value.program == "core_probe"


def test_kernel_symbols_are_refused_on_the_portable_backend():
    obj = Object.open(EXAMPLES / "externs.o", kconfig={"LINUX_KERNEL_VERSION": 0x060100})
    with pytest.raises(NotSupportedError) as err:
        obj.load()
    assert err.value.feature == "ksym"
    assert not obj.loaded


def test_load_arguments_are_checked():
    obj = Object.open(EXAMPLES / "programs.o")
    with pytest.raises(InputError):
        obj.load(engine="fast")
    with pytest.raises(InputError):
        obj.load(backend="cloud")
    with pytest.raises(InputError):
        obj.load(programs=["missing"])
    with obj.load(programs=["xdp_pass"]):
        assert list(obj.programs) == ["xdp_pass"]
        with pytest.raises(InputError):
            obj.load()


# ---- lifetime --------------------------------------------------------------------------------
def test_with_closes_programs_then_maps():
    with _pipeline() as obj:
        prog = obj.programs["start"]
        maps = list(obj.maps.values())
    assert obj.closed and prog.closed and all(m.closed for m in maps)
    assert pybpf.objects.program.by_id(prog.id) is None
    with pytest.raises(InputError):
        prog.test_run(ctx_in=_args(1, 2, 1))
    with pytest.raises(InputError):
        obj.load()
    obj.close()  # idempotent


# ---- the JIT ------------------------------------------------------------------------------
def test_the_jit_runs_what_the_interpreter_runs():
    from pybpf.jit import available

    if not available():
        pytest.skip("llvmlite is not installed")
    results = {}
    for engine in ("interpreter", "jit"):
        with pybpf.load(EXAMPLES / "xdp_counter.o", engine=engine) as obj:
            prog = obj.programs["xdp_count"]
            assert prog.engine == engine
            results[engine] = (prog.test_run(bytes(64), repeat=3).retval, obj.bss.seen)
    assert results["jit"] == results["interpreter"] == (XDP_PASS, 3)


def test_the_jit_loads_tail_calls_and_callbacks():
    from pybpf.jit import available

    if not available():
        pytest.skip("llvmlite is not installed")
    with pybpf.load(EXAMPLES / "tail_calls.o", engine="jit", programs=["entry"]) as obj:
        assert obj.programs["entry"].engine == "jit"  # tests/test_jit_tail_calls.py runs them


# ---- against the kernel ---------------------------------------------------------------------
@requires_bpf
def test_the_kernel_backend_gives_the_same_pipeline_results():
    runs = [(3, 4, 1), (3, 5, 1), (1, 2, 0), (9, 1, 1)]
    seen = {}
    for backend in ("portable", "kernel"):
        with _pipeline(backend=backend, pin_maps_dir=None) as obj:
            start = obj.programs["start"]
            retvals = [start.test_run(ctx_in=_args(*r)).retval for r in runs]
            maps = {}
            for name in ("totals", "squares", ".bss", ".data"):
                m = obj.maps[name]
                if backend == "kernel":
                    maps[name] = sorted((k, m.lookup(k)) for k in m.keys())
                else:
                    maps[name] = sorted((k, m.lookup_raw(k)) for k in m.keys_raw())
            seen[backend] = (retvals, maps, obj.bss.as_dict())
    assert seen["portable"] == seen["kernel"]


@requires_bpf
@pytest.mark.parametrize(
    "name", ["pipeline.o", "programs.o", "tail_calls.o", "xdp_counter.o", "legacy_maps.o"]
)
def test_tags_equal_the_kernels(name):
    with pybpf.load(EXAMPLES / name, backend="kernel", pin_maps_dir=None) as kernel:
        with pybpf.load(EXAMPLES / name, pin_maps_dir=None) as portable:
            assert {n: p.tag for n, p in portable.programs.items()} == {
                n: p.tag for n, p in kernel.programs.items()
            }


def test_tag_algorithm_can_be_forced():
    insns = assemble("r0 = 0\nexit")
    assert calc_tag(insns, sha256=True) != calc_tag(insns, sha256=False)
    # Map immediates do not count: two map numbers, one tag.
    spec_a = _one_program("r1 = 0x1 ll\nr0 = 0\nexit").programs["p"].instructions
    spec_b = _one_program("r1 = 0x2 ll\nr0 = 0\nexit").programs["p"].instructions
    assert calc_tag(spec_a) != calc_tag(spec_b)  # plain lddw: the value counts
    as_maps = [
        [i.__class__(i.code, i.dst, 1, i.off, i.imm, i.imm_hi) if i.is_lddw else i for i in s]
        for s in (spec_a, spec_b)
    ]
    assert calc_tag(as_maps[0]) == calc_tag(as_maps[1])


def test_map_types_the_backend_lacks_are_named():
    spec = ObjectSpec(
        name="m",
        maps={"st": MapSpec("st", MapType.STACK_TRACE, 4, 8, 4)},
        programs={"p": ProgramSpec("p", "xdp", tuple(assemble("r0 = 0\nexit")))},
        license="GPL",
    )
    with pytest.raises(NotSupportedError) as err:
        Object(spec).load()
    assert err.value.feature == "stack_trace"
