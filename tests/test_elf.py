"""ELF objects into specs: the project's example objects and fixtures, read exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

import pybpf
from pybpf.btf import Func
from pybpf.elf import read_object
from pybpf.isa import AluOp, CallKind, Class, Pseudo
from pybpf.maptypes import MapFlag, MapType
from pybpf.progtypes import AttachType, ProgType
from pybpf.spec import ExternKind, MapKind, Pinning, RefKind, link

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "c"
FIXTURES = ROOT / "tests" / "fixtures" / "elf"


def _open(name: str, **kw) -> pybpf.spec.ObjectSpec:
    base = FIXTURES if (FIXTURES / name).exists() else EXAMPLES
    return pybpf.Object.open(base / name, **kw).spec


def test_every_example_object_opens():
    objects = sorted(EXAMPLES.glob("*.o"))
    assert len(objects) >= 8
    for path in objects:
        spec = pybpf.Object.open(path, kconfig={"LINUX_KERNEL_VERSION": 0x060100}).spec
        assert spec.name == path.stem and spec.programs and spec.license
        for name in spec.entry_programs:
            link(spec, name)


def test_xdp_counter_programs_and_subprograms():
    spec = _open("xdp_counter.o")
    assert spec.license == "GPL" and spec.platform == "linux"
    assert list(spec.programs) == ["count", "parse_proto", "xdp_count"]
    main = spec.programs["xdp_count"]
    assert (main.section, main.type, main.attach_type) == ("xdp", ProgType.XDP, AttachType.XDP)
    assert not main.subprogram and main.autoload
    count, parse = spec.programs["count"], spec.programs["parse_proto"]
    assert count.subprogram and not count.autoload and count.type is None
    assert count.global_function and not parse.global_function  # global vs static
    calls = [r for r in main.references if r.kind == RefKind.CALL]
    assert [r.target for r in calls] == ["parse_proto", "count"]
    for ref in calls:
        insn = main.instructions[_index(main, ref.pc)]
        assert insn.is_call and insn.call_kind == CallKind.LOCAL
    # BTF: the FUNC of each function, and line info relative to the function.
    assert isinstance(spec.btf.type(main.btf_func_id), Func)
    assert spec.btf.type(main.btf_func_id).name == "xdp_count"
    assert spec.btf.type(count.btf_func_id).name == "count"
    assert main.line_info and main.line_info[0].insn_off == 0
    assert all(0 <= li.insn_off < main.slots * 8 for li in main.line_info)
    assert any("parse_proto" in li.line for li in main.line_info)


def test_xdp_counter_maps_and_globals():
    spec = _open("xdp_counter.o")
    counts = spec.maps["proto_count"]
    assert (counts.type, counts.key_size, counts.value_size, counts.max_entries) == (
        MapType.HASH,
        4,
        8,
        256,
    )
    assert counts.kind == MapKind.BTF and counts.key_type_id and counts.value_type_id
    assert spec.maps["verdicts"].type == MapType.PERCPU_ARRAY
    rodata, bss, data = spec.maps[".rodata"], spec.maps[".bss"], spec.maps[".data"]
    assert rodata.flags == MapFlag.MMAPABLE | MapFlag.RDONLY_PROG and rodata.frozen
    assert bss.flags == MapFlag.MMAPABLE and bss.contents is None and not bss.frozen
    assert (data.type, data.key_size, data.max_entries, data.kind) == (
        MapType.ARRAY,
        4,
        1,
        MapKind.DATA,
    )
    assert spec.maps[".data.tag"].initial_value() == b"count\0\0\0"
    assert int.from_bytes(spec.get_variable("drop_proto"), "little") == 17
    drop = spec.variable("drop_proto")
    assert (drop.map, drop.offset, drop.size, drop.readonly) == (".rodata", 0, 4, True)
    spec.set_variable("drop_proto", 6)
    assert rodata.initial_value()[:4] == (6).to_bytes(4, "little")
    assert spec.get_variable("verbose") == (1).to_bytes(4, "little")
    main = spec.programs["xdp_count"]
    values = {(r.target, r.offset) for r in main.references if r.kind == RefKind.MAP_VALUE}
    assert (".bss", 0) in values and (".rodata", 0) in values and (".data.tag", 0) in values
    assert set(main.maps_used) >= {".bss", ".rodata", ".data", ".data.tag", "verdicts"}


def test_xdp_counter_links_like_libbpf():
    spec = _open("xdp_counter.o")
    linked = link(spec, "xdp_count")
    names = dict(linked.functions)
    main = spec.programs["xdp_count"]
    assert names["xdp_count"] == 0 and names["parse_proto"] == main.slots
    assert names["count"] == main.slots + spec.programs["parse_proto"].slots
    pcs = _pcs(linked.instructions)
    for ref in main.references:
        insn = linked.instructions[pcs[ref.pc]]
        if ref.kind == RefKind.CALL:
            assert ref.pc + 1 + insn.imm == names[ref.target]
        elif ref.kind == RefKind.MAP:
            assert insn.src == Pseudo.MAP_IDX and linked.maps[insn.imm] == ref.target
        elif ref.kind == RefKind.MAP_VALUE:
            assert insn.src == Pseudo.MAP_IDX_VALUE and linked.maps[insn.imm] == ref.target
            assert insn.imm_hi == ref.offset
    # count's own map references are patched too, at its new place.
    count_refs = [r for r in spec.programs["count"].references if r.kind == RefKind.MAP]
    base = names["count"]
    assert all(linked.instructions[pcs[base + r.pc]].src == Pseudo.MAP_IDX for r in count_refs)
    func_offsets = [fi.insn_off for fi in linked.func_info]
    assert func_offsets == [8 * names[n] for n, _ in linked.functions]
    # the spec itself is untouched by linking
    assert all(i.src == 0 for i in main.instructions if i.is_lddw)


def test_cpu_v3_and_v4_builds_decode():
    v3 = _open("xdp_counter.v3.o").programs["xdp_count"]
    assert any(i.cls == Class.JMP32 for i in v3.instructions)
    v4 = _open("cpu_v4.v4.o").programs["newer_insns"]
    assert any(i.is_signed_divmod for i in v4.instructions)
    assert any(i.is_alu and i.alu_op == AluOp.MOV and i.movsx_bits for i in v4.instructions)
    assert any(i.is_bswap for i in v4.instructions)
    assert any(i.is_atomic for i in v4.instructions)


def test_many_program_types_and_two_programs_per_section():
    spec = _open("programs.o")
    assert spec.license == "Dual BSD/GPL" and spec.kernel_version == 0x050A00
    by_name = {p.name: p for p in spec.programs.values()}
    assert [p.name for p in by_name.values() if p.section == "xdp"] == ["xdp_pass", "xdp_drop"]
    assert by_name["xdp_drop"].offset > 0 and by_name["xdp_pass"].offset == 0
    expected = {
        "tc_ok": (ProgType.SCHED_CLS, None, ""),
        "socket_all": (ProgType.SOCKET_FILTER, None, ""),
        "kprobe_open": (ProgType.KPROBE, None, "do_sys_openat2"),
        "tp_write": (ProgType.TRACEPOINT, None, "syscalls/sys_enter_write"),
        "bind4_allow": (ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_BIND, ""),
        "egress_allow": (ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS, ""),
    }
    for name, want in expected.items():
        p = by_name[name]
        assert (p.type, p.attach_type, p.attach_to) == want, name
        assert p.kernel_version == 0x050A00 and p.license == "Dual BSD/GPL"


def test_map_initial_values_and_callbacks():
    spec = _open("tail_calls.o")
    outer = spec.maps["outer"]
    assert outer.type == MapType.ARRAY_OF_MAPS and outer.value_size == 4
    assert outer.inner is not None and outer.inner.name == "outer.inner"
    assert (outer.inner.type, outer.inner.max_entries, outer.inner.value_size) == (
        MapType.ARRAY,
        4,
        8,
    )
    assert outer.values == ((0, "inner_a"), (2, "inner_b"))
    table = spec.maps["jump_table"]
    assert table.type == MapType.PROG_ARRAY and table.value_size == 4
    assert table.values == ((1, "stage_one"), (3, "stage_two"))
    entry = spec.programs["entry"]
    callback = [r for r in entry.references if r.kind == RefKind.FUNC_ADDR]
    assert [r.target for r in callback] == ["add_index"]
    linked = link(spec, "entry")
    start = dict(linked.functions)["add_index"]
    insn = linked.instructions[_pcs(linked.instructions)[callback[0].pc]]
    assert insn.is_lddw and insn.src == Pseudo.FUNC
    assert callback[0].pc + 1 + insn.imm == start


def test_legacy_20_byte_records():
    spec = _open("legacy_maps.o")
    counters, flows = spec.maps["counters"], spec.maps["flows"]
    assert counters.kind == MapKind.LEGACY and counters.section == "maps"
    assert (counters.type, counters.key_size, counters.value_size, counters.max_entries) == (
        MapType.ARRAY,
        4,
        8,
        256,
    )
    assert flows.flags == MapFlag.NO_PREALLOC and len(flows.record) == 5
    prog = spec.programs["count_len"]
    assert prog.type == ProgType.SOCKET_FILTER  # "socket1": the legacy prefix rule
    assert [r.target for r in prog.references if r.kind == RefKind.MAP] == ["counters", "flows"]


def test_legacy_28_and_36_byte_records():
    spec = _open("legacy_records.o")
    inner, outer, pinned = spec.maps["inner"], spec.maps["outer"], spec.maps["pinned"]
    assert inner.numa_node == 1 and inner.flags == MapFlag.NUMA_NODE
    assert outer.inner_index == 0 and outer.inner is not None
    assert (outer.inner.type, outer.inner.value_size) == (MapType.ARRAY, 8)
    assert pinned.pinning == Pinning.GLOBAL_NS and len(pinned.record) == 9
    assert spec.programs["cls"].type == ProgType.SCHED_CLS


def test_kconfig_and_ksym_externs():
    spec = _open("externs.o", kconfig={"LINUX_KERNEL_VERSION": 0x060100, "CONFIG_HZ": 250})
    ext = spec.externs
    assert ext["bpf_prog_active"].kind == ExternKind.KSYM
    kver, hz, syscall = ext["LINUX_KERNEL_VERSION"], ext["CONFIG_HZ"], ext["CONFIG_BPF_SYSCALL"]
    assert (kver.kind, kver.weak, hz.weak, syscall.weak) == (ExternKind.KCONFIG, False, True, True)
    # libbpf's layout: alignment down, size up, then name.
    assert (hz.offset, kver.offset, syscall.offset) == (0, 4, 8)
    kconfig = spec.maps[".kconfig"]
    assert kconfig.frozen and kconfig.value_size == 9
    assert kconfig.contents[4:8] == (0x060100).to_bytes(4, "little")
    assert kconfig.contents[0:4] == (250).to_bytes(4, "little")
    prog = spec.programs["kconfig_probe"]
    refs = {(r.kind, r.target, r.offset) for r in prog.references}
    assert (RefKind.MAP_VALUE, ".kconfig", 4) in refs
    assert (RefKind.KSYM, "bpf_prog_active", 0) in refs
    linked = link(spec, "kconfig_probe")
    assert [name for _, name in linked.ksyms] == ["bpf_prog_active"]


def test_missing_strong_kconfig_value_fails_at_link():
    spec = _open("externs.o")
    with pytest.raises(pybpf.errors.InputError) as err:
        link(spec, "kconfig_probe")
    assert err.value.program == "kconfig_probe" and err.value.pc is not None
    with pytest.raises(pybpf.errors.InputError):
        _open("externs.o", kconfig={"LINUX_KERNEL_VERSION": "not a number"})
    with pytest.raises(pybpf.errors.InputError):
        _open("externs.o", kconfig={"LINUX_KERNEL_VERSION": 1 << 40})


def test_windows_object_is_translated():
    spec = _open("windows_bind.o")
    assert spec.platform == "windows"
    monitor = spec.programs["BindMonitor"]
    assert monitor.type == ProgType.BIND and monitor.attach_type == AttachType.WINDOWS_BIND
    assert spec.programs["BindStage"].type == ProgType.BIND  # "bind/0"
    helpers = [i.imm for i in monitor.instructions if i.is_call]
    # efW ids 19, 1, 12, 5 are Linux's get_current_pid_tgid, map_lookup_elem,
    # trace_printk and tail_call.
    assert helpers == [14, 1, 6, 12]
    process = spec.maps["process_map"]
    assert process.type == MapType.LRU_HASH and process.windows_type == 8
    assert process.pinning == Pinning.GLOBAL_NS and len(process.record) == 8
    assert spec.maps["next_stage"].type == MapType.PROG_ARRAY
    forced = _open("windows_bind.o", platform="linux")
    assert forced.platform == "linux" and forced.programs["BindMonitor"].type is None


def test_same_bytes_give_equal_specs():
    data = (EXAMPLES / "xdp_counter.o").read_bytes()
    assert read_object(data, name="a") == read_object(bytearray(data), name="a")
    a = read_object(data)
    b = a.copy()
    b.maps["proto_count"].max_entries = 1
    b.programs["xdp_count"].autoload = False
    assert a.maps["proto_count"].max_entries == 256 and a.programs["xdp_count"].autoload


def _pcs(insns) -> dict[int, int]:
    out, pc = {}, 0
    for i, insn in enumerate(insns):
        out[pc] = i
        pc += insn.slots
    return out


def _index(prog, pc: int) -> int:
    return _pcs(prog.instructions)[pc]


CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def test_iproute2_map_of_maps_finds_its_inner_template_by_id():
    # cilium's maglev maps: bpf_elf_map records, inner_id 3/4 naming the records whose
    # id is 3/4 (inner_idx, word 8, is an outer slot, not a record index)
    path = CORPUS / "cilium" / "bpf_xdp_dsr_linux.o"
    if not path.exists():
        pytest.skip(f"the corpus is not beside the clone ({path} is missing)")
    spec = pybpf.Object.open(path).spec
    for family, inner_id in (("lb4", 3), ("lb6", 4)):
        outer = spec.maps[f"cilium_{family}_maglev"]
        assert outer.record[7] == inner_id and outer.inner is not None
        template = spec.maps[outer.inner.name]
        assert template.record[5] == inner_id and template is not outer
        assert outer.inner.name == f"cilium_{family}_maglev_inner"
        assert (outer.inner.type, outer.inner.value_size) == (template.type, template.value_size)
