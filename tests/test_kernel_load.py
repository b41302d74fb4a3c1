"""The kernel backend loads ObjectSpecs into Linux: what bpftool loads, pybpf loads the same way.

``fixtures/kernel/bpftool_loads.txt`` lists the programs Debian's bpftool (libbpf 1.1) got
accepted from the examples and ``../shared/corpus``, with the kernel's tag of each (a hash
of the instructions the kernel was given, map fds left out). pybpf must load every one of
them with the same tag, i.e. the same relocated instructions, and loads more: legacy
``maps`` sections and older section names, which libbpf 1.x refuses. Tests skip where
``bpf()`` does not work.
"""

from __future__ import annotations

import dataclasses
import errno
import platform
import struct
from collections import Counter
from pathlib import Path

import pytest

from kernel import open_fds, private_bpffs, requires_bpf
from pybpf.btf import Func, FuncLinkage
from pybpf.btf import Spec as BTFSpec
from pybpf.errors import InputError, NotSupportedError, PybpfError, SyscallError
from pybpf.kernel import KernelObject
from pybpf.maptypes import MapType
from pybpf.objects import Object
from pybpf.progtypes import ProgType
from pybpf.spec import ObjectSpec, Pinning

pytestmark = requires_bpf

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "c"
SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPUS = SHARED / "corpus"
FIXTURE = Path(__file__).parent / "fixtures" / "kernel" / "bpftool_loads.txt"

XDP_DROP, XDP_PASS = 1, 2


@dataclasses.dataclass
class Bpftool:
    """The fixture: programs loaded (object -> {program: tag}), objects accepted with no
    program in them, objects refused (object -> libbpf's reason), the kernel it ran on."""

    loaded: dict[str, dict[str, str]]
    empty: set[str]
    refused: dict[str, str]
    release: str


def _bpftool() -> Bpftool:
    out = Bpftool({}, set(), {}, "")
    for line in FIXTURE.read_text().splitlines():
        if line.startswith("kernel "):
            out.release = line.split()[1]
        elif line.startswith("loaded "):
            _, obj, prog, tag = line.split()
            out.loaded.setdefault(obj, {})[prog] = tag
        elif line.startswith("empty "):
            out.empty.add(line.split()[1])
        elif line.startswith("refused "):
            _, obj, reason = line.split(" ", 2)
            out.refused[obj] = reason
    return out


def _path(rel: str) -> Path:
    return SHARED / rel if rel.startswith("corpus/") else ROOT / rel


# Large preallocated maps (Cilium's, prototype-kernel's) cost the kernel seconds to allocate;
# their size changes neither the instructions (the tag) nor, for these types, the verdict.
_SHRINK = frozenset(
    {
        MapType.HASH,
        MapType.PERCPU_HASH,
        MapType.LRU_HASH,
        MapType.LRU_PERCPU_HASH,
        MapType.PERCPU_ARRAY,
        MapType.LPM_TRIE,
    }
)
_MAX_ENTRIES = 1024


def _shrink(spec: ObjectSpec) -> ObjectSpec:
    for m in spec.maps.values():
        if m.type in _SHRINK and m.max_entries > _MAX_ENTRIES:
            m.max_entries = _MAX_ENTRIES
    return spec


def _last_line(err: PybpfError) -> str:
    return f"{type(err).__name__}: {err}"  # a SyscallError's ends with the verifier's reason


def _compare(
    objects: list[str], *, kernel_dependent: bool = False
) -> tuple[list[str], Counter[str], list[str]]:
    """Load ``objects`` with pybpf; return (problems, counts, summary lines).

    ``kernel_dependent`` objects (CO-RE) have comparable tags only on the fixture's kernel.
    """
    bpftool = _bpftool()
    check_tags = bpftool.release == platform.release() or not kernel_dependent
    problems: list[str] = []
    counts: Counter[str] = Counter()
    notes: list[str] = []
    for rel in objects:
        want = bpftool.loaded.get(rel, {})
        counts["bpftool_programs"] += len(want)
        counts["bpftool_objects"] += bool(want)
        try:
            spec = _shrink(Object.open(_path(rel)).spec)
        except PybpfError as err:
            counts["open_errors"] += 1
            problems.extend(f"{rel}: {p}: open failed: {err}" for p in want)
            continue
        try:
            obj = KernelObject.load(spec, keep_going=True)
        except PybpfError as err:
            counts["object_errors"] += 1
            notes.append(f"{rel}: object refused: {_last_line(err)}")
            problems.extend(f"{rel}: {p}: {_last_line(err)}" for p in want)
            continue
        with obj:
            counts["pybpf_programs"] += len(obj.programs)
            counts["pybpf_objects"] += bool(obj.programs)
            counts["skipped_no_type"] += len(obj.skipped)
            counts["kernel_refused"] += len(obj.failures)
            if obj.programs and rel in bpftool.refused:
                counts["objects_bpftool_refused_pybpf_loads"] += 1
            if obj.programs and rel in bpftool.empty:
                counts["objects_bpftool_empty_pybpf_loads"] += 1
            for name, err in obj.failures.items():
                notes.append(f"{rel}: {name}: {_last_line(err)}")
            for name, tag in want.items():
                if name in obj.failures:
                    problems.append(f"{rel}: {name}: {_last_line(obj.failures[name])}")
                elif name not in obj.programs:
                    problems.append(f"{rel}: {name}: not loaded by pybpf")
                elif check_tags and obj.programs[name].info().tag != tag:
                    got = obj.programs[name].info().tag
                    problems.append(f"{rel}: {name}: tag {got}, bpftool's {tag}")
    return problems, counts, notes


def _summary(counts: Counter[str], notes: list[str]) -> str:
    figures = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    return figures + "\n" + "\n".join(notes)


def test_fixture_lists_examples_and_corpus() -> None:
    bpftool = _bpftool()
    assert any(k.startswith("examples/") for k in bpftool.loaded)
    assert any(k.startswith("corpus/") for k in bpftool.loaded | bpftool.refused)
    assert "examples/c/legacy_maps.o" in bpftool.refused  # libbpf 1.x refuses legacy maps
    assert bpftool.release


def test_examples_load_as_bpftool_loads_them() -> None:
    objects = sorted(f"examples/c/{p.name}" for p in EXAMPLES.glob("*.o"))
    problems, counts, notes = _compare(objects)
    assert not problems, "\n".join(problems) + "\n" + _summary(counts, notes)
    assert counts["pybpf_programs"] > counts["bpftool_programs"], _summary(counts, notes)
    print(_summary(counts, notes))


def test_core_fixture_loads_as_libbpf_relocates_it() -> None:
    objects = sorted(f"tests/fixtures/kernel/{p.name}" for p in FIXTURE.parent.glob("*.o"))
    problems, counts, notes = _compare(objects, kernel_dependent=True)
    assert not problems, "\n".join(problems) + "\n" + _summary(counts, notes)
    assert counts["pybpf_programs"] == counts["bpftool_programs"] > 0


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")
def test_corpus_loads_what_bpftool_loads_and_more() -> None:
    objects = sorted(f"corpus/{p.relative_to(CORPUS)}" for p in CORPUS.rglob("*.o"))
    problems, counts, notes = _compare(objects)
    assert not problems, "\n".join(problems) + "\n" + _summary(counts, notes)
    assert counts["pybpf_programs"] > counts["bpftool_programs"], _summary(counts, notes)
    assert counts["pybpf_objects"] > counts["bpftool_objects"], _summary(counts, notes)
    assert counts["objects_bpftool_refused_pybpf_loads"] > 0
    print(_summary(counts, notes))


# ---- one object at a time ------------------------------------------------------------------
def _udp_packet(proto: int) -> bytes:
    eth = b"\xff" * 6 + b"\x02" * 6 + struct.pack(">H", 0x0800)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, proto, 0, b"\x0a\0\0\1", b"\x0a\0\0\2")
    return eth + ip + bytes(8)


def test_xdp_counter_runs_with_globals_and_maps() -> None:
    spec = Object.open(EXAMPLES / "xdp_counter.o").spec
    spec.set_variable("drop_proto", 6)  # a .rodata constant, set before load
    with KernelObject.load(spec) as obj:
        prog = obj.program("xdp_count")
        assert prog.test_run(_udp_packet(17)).retval == XDP_PASS
        assert prog.test_run(_udp_packet(6)).retval == XDP_DROP
        assert prog.test_run(b"\0" * 14).retval == XDP_PASS  # not IPv4
        counts = obj.map("proto_count")
        assert struct.unpack("<Q", counts.lookup(struct.pack("<I", 17)))[0] == 1
        assert struct.unpack("<Q", counts.lookup(struct.pack("<I", 6)))[0] == 1
        assert struct.unpack("<Q", obj.map(".bss").lookup(bytes(4)))[0] == 3  # seen
        assert obj.map(".rodata").kernel_name == "xdp_coun.rodata"
        assert obj.map(".data.tag").lookup(bytes(4)).startswith(b"count\0")
        with pytest.raises(SyscallError) as info:  # .rodata is frozen, as libbpf does
            obj.map(".rodata").update(bytes(4), bytes(obj.map(".rodata").spec.value_size))
        assert info.value.errno == errno.EPERM
        verdicts = obj.map("verdicts")
        drops = verdicts.lookup(struct.pack("<I", 0))
        total = sum(struct.unpack(f"<{len(drops) // 8}Q", drops))
        assert total == 1
        info_ = prog.info()
        assert info_.nr_func_info == 3 and info_.nr_line_info > 0
        assert info_.btf_id > 0


def test_func_and_line_info_are_given_per_instruction_index() -> None:
    spec = Object.open(EXAMPLES / "xdp_counter.o").spec
    with KernelObject.load(spec) as obj:
        prog = obj.program("xdp_count")
        assert obj.btf is not None and obj.btf.loaded
        records = obj.btf.func_info(prog.linked)
        starts = [struct.unpack_from("<I", records, i)[0] for i in range(0, len(records), 8)]
        assert starts == sorted(pc for _, pc in prog.linked.functions)
        info = prog.info()
        assert info.nr_func_info == len(starts) == len(prog.linked.functions)
        assert 0 < info.nr_line_info <= len(prog.linked.line_info)


def test_btf_the_kernel_refuses_is_left_out_as_libbpf_does() -> None:
    spec = Object.open(EXAMPLES / "xdp_counter.o").spec
    assert spec.btf is not None
    types = tuple(
        dataclasses.replace(t, linkage=FuncLinkage.EXTERN) if isinstance(t, Func) else t
        for t in spec.btf.types
    )  # extern FUNCs: the kernel refuses the whole blob
    spec.btf = BTFSpec(types, spec.btf.strings)
    with KernelObject.load(spec) as obj:
        assert obj.btf is not None and isinstance(obj.btf.error, SyscallError)
        assert obj.program("xdp_count").info().nr_func_info == 0
        assert obj.map("proto_count").info().btf_id == 0
        assert obj.program("xdp_count").test_run(_udp_packet(17)).retval == XDP_DROP


def test_tail_calls_prog_array_and_map_in_map_are_filled() -> None:
    with KernelObject.load(Object.open(EXAMPLES / "tail_calls.o").spec) as obj:
        jump = obj.map("jump_table")
        ids = {name: obj.program(name).id for name in ("stage_one", "stage_two")}
        # Looking up a prog array / map-in-map slot from user space gives the object's id.
        assert struct.unpack("<I", jump.lookup(struct.pack("<I", 1)))[0] == ids["stage_one"]
        assert struct.unpack("<I", jump.lookup(struct.pack("<I", 3)))[0] == ids["stage_two"]
        assert jump.lookup(struct.pack("<I", 0)) is None
        outer = obj.map("outer")
        assert struct.unpack("<I", outer.lookup(struct.pack("<I", 2)))[0] == obj.map("inner_b").id
        # entry -> stage_one -> stage_two, which drops; entry stored sum(0..3) in inner_a[0].
        assert obj.program("entry").test_run(_udp_packet(17)).retval == XDP_DROP
        assert struct.unpack("<Q", obj.map("inner_a").lookup(bytes(4)))[0] == 6


def test_legacy_maps_load_where_libbpf_refuses() -> None:
    spec = Object.open(EXAMPLES / "legacy_maps.o").spec
    with KernelObject.load(spec) as obj:
        assert set(obj.programs) == {"count_len"}
        flows = obj.map("flows").info()
        assert (flows.key_size, flows.value_size, flows.max_entries) == (8, 8, 1024)
        assert flows.map_flags == spec.maps["flows"].flags
        skb = bytes(64)
        assert obj.program("count_len").test_run(skb).retval == 0


def test_refusal_carries_the_verifier_log_and_releases_everything() -> None:
    path = CORPUS / "build" / "ptr_arith.o"
    if not path.exists():
        pytest.skip(f"corpus not found at {CORPUS}")
    before = open_fds()
    with pytest.raises(SyscallError) as info:
        KernelObject.load(Object.open(path).spec)
    assert info.value.errno == errno.EACCES
    assert info.value.program == "test_ptr_arith"
    assert info.value.log.strip()
    assert open_fds() == before


def test_close_releases_every_fd() -> None:
    before = open_fds()
    obj = KernelObject.load(Object.open(EXAMPLES / "xdp_counter.o").spec)
    assert len(open_fds() - before) >= len(obj.maps) + len(obj.programs) + 1  # + BTF
    obj.close()
    assert open_fds() == before


def test_programs_without_a_type_are_skipped_or_refused() -> None:
    spec = Object.open(EXAMPLES / "programs.o").spec
    name = next(iter(spec.entry_programs))
    spec.programs[name].type = None
    with KernelObject.load(spec) as obj:
        assert name in obj.skipped and name not in obj.programs
    with pytest.raises(NotSupportedError) as info:
        KernelObject.load(spec, programs=[name])
    assert info.value.feature == "program type"
    with pytest.raises(InputError):
        KernelObject.load(spec, programs=["no_such_program"])


def test_a_text_function_named_in_programs_loads_on_its_own() -> None:
    spec = Object.open(EXAMPLES / "xdp_counter.o").spec
    prog = spec.programs["xdp_count"]
    prog.subprogram, prog.autoload = True, False  # as a .text function would be
    with KernelObject.load(spec) as obj:
        assert not obj.programs and not obj.skipped
    with KernelObject.load(spec, programs=["xdp_count"]) as obj:
        assert set(obj.programs) == {"xdp_count"}


def test_text_only_objects_load_given_a_program_type() -> None:
    # libbpf 1.x loads nothing from these (bpftool: "empty"); pybpf takes a lone .text
    # function for the program, as libbpf once did, and loads it once it has a type.
    rels = [r for r in sorted(_bpftool().empty) if r.startswith("corpus/build/map_in_map")]
    if not CORPUS.is_dir() or not rels:
        pytest.skip(f"corpus not found at {CORPUS}")
    for rel in rels:
        spec = Object.open(_path(rel)).spec
        with KernelObject.load(spec) as obj:
            assert not obj.programs and set(obj.skipped) == set(spec.programs)
        with KernelObject.load(spec, prog_type="socket_filter") as obj:
            assert set(obj.programs) == set(spec.programs)
            assert obj.programs["func"].type == ProgType.SOCKET_FILTER
        assert spec.programs["func"].type is None  # the spec is left as it was


def test_pinned_maps_are_pinned_then_reused() -> None:
    spec = Object.open(EXAMPLES / "xdp_counter.o").spec
    spec.maps["proto_count"].pinning = Pinning.BY_NAME
    with private_bpffs() as pins:
        with KernelObject.load(spec, pin_maps_dir=pins) as first:
            assert first.map("proto_count").pinned == str(pins / "proto_count")
            map_id = first.map("proto_count").id
            first.map("proto_count").update(struct.pack("<I", 1), struct.pack("<Q", 7))
        with KernelObject.load(spec, pin_maps_dir=pins) as second:
            pinned = second.map("proto_count")
            assert pinned.reused and pinned.id == map_id
            assert pinned.lookup(struct.pack("<I", 1)) == struct.pack("<Q", 7)
        spec.maps["proto_count"].max_entries += 1
        with pytest.raises(InputError):
            KernelObject.load(spec, pin_maps_dir=pins)


def test_windows_objects_are_refused() -> None:
    spec = Object.open(EXAMPLES / "xdp_counter.o").spec
    spec.platform = "windows"
    with pytest.raises(NotSupportedError):
        KernelObject.load(spec)
