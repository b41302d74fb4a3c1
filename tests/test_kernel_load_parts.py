"""The kernel backend's preparation steps, checked without the kernel: names, map fix-ups,
the BTF made loadable and ``.kconfig`` values."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pybpf.btf import KCONFIG_SECTION, KSYMS_SECTION, Datasec, Func, FuncLinkage, Var, VarLinkage
from pybpf.errors import InputError, NotSupportedError
from pybpf.isa import Pseudo, slot_pcs
from pybpf.kernel.btf import loadable_spec
from pybpf.kernel.externs import fill_kconfig, kallsyms, resolve_ksyms
from pybpf.kernel.maps import internal_map_name, kernel_map_spec, object_name, possible_cpus
from pybpf.kernel.vmlinux import kernel_btf, kernel_version_code
from pybpf.maptypes import MapType
from pybpf.objects import Object
from pybpf.spec import MapKind, MapSpec, link

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "c"


def test_global_data_maps_get_libbpfs_names() -> None:
    assert internal_map_name("xdp_counter", ".rodata") == "xdp_coun.rodata"
    assert internal_map_name("xdp_counter", ".bss") == "xdp_coun.bss"  # 7 chars kept for it
    assert internal_map_name("externs", ".kconfig") == "externs.kconfig"
    assert internal_map_name("cpu_v4.v3", ".data") == "cpu_v4.data"  # name cut at its "."
    assert internal_map_name("xdp_counter", ".data.tag") == ".data.tag"  # custom: no prefix
    assert internal_map_name("x", ".rodata.str1.1") == ".rodata.str1.1"
    assert object_name("from-netdev/2") == "from_netdev_2"
    assert len(object_name("a_very_long_program_name")) == 15


def test_map_specs_get_libbpfs_fixups() -> None:
    perf = MapSpec("events", MapType.PERF_EVENT_ARRAY, 0, 84, 0, value_type_id=3)
    out, name = kernel_map_spec(perf, "obj")
    assert (out.key_size, out.value_size, out.max_entries) == (4, 4, possible_cpus())
    assert (out.key_type_id, out.value_type_id, name) == (0, 0, "events")

    ring = MapSpec("rb", MapType.RINGBUF, 0, 20, 5000, value_type_id=8)
    out, _ = kernel_map_spec(ring, "obj")
    assert (out.key_size, out.value_size, out.value_type_id) == (0, 0, 0)
    assert out.max_entries >= 5000 and out.max_entries & (out.max_entries - 1) == 0

    inner = MapSpec("inner", MapType.ARRAY, 4, 8, 4)
    outer = MapSpec("outer", MapType.ARRAY_OF_MAPS, 4, 0, 8, inner=inner)
    out, _ = kernel_map_spec(outer, "obj")
    assert out.value_size == 4 and out.inner is not None and out.inner.value_size == 8

    hashed = MapSpec("h", MapType.HASH, 4, 8, 16, key_type_id=0, value_type_id=5)
    out, _ = kernel_map_spec(hashed, "obj")
    assert out.value_type_id == 0  # a value type without a key type: no BTF, as the kernel wants

    data = MapSpec(".bss", MapType.ARRAY, 4, 8, 1, kind=MapKind.DATA, value_type_id=9)
    out, name = kernel_map_spec(data, "prog")
    assert (out.key_type_id, out.value_type_id, name) == (0, 9, "prog.bss")
    assert perf.value_size == 84  # the spec itself is left alone


def test_extern_sections_are_laid_out_as_libbpf_does() -> None:
    spec = Object.open(EXAMPLES / "externs.o").spec
    btf = loadable_spec(spec)
    assert btf is not None and btf is not spec.btf
    kconfig = btf.datasec(KCONFIG_SECTION)
    assert isinstance(kconfig, Datasec)
    assert kconfig.size == spec.maps[KCONFIG_SECTION].value_size
    for entry in kconfig.vars:
        var = btf.types[entry.type_id]
        assert isinstance(var, Var) and var.linkage == VarLinkage.GLOBAL
        assert entry.offset == spec.externs[var.name].offset
    ksyms = btf.datasec(KSYMS_SECTION)
    assert isinstance(ksyms, Datasec)
    assert [(e.offset, e.size) for e in ksyms.vars] == [(4 * i, 4) for i in range(len(ksyms.vars))]
    assert ksyms.size == 4 * len(ksyms.vars)
    assert all(
        btf.types[e.type_id].linkage == VarLinkage.GLOBAL for e in ksyms.vars
    )  # no extern linkage left: the kernel refuses it
    assert not any(isinstance(t, Func) and t.linkage == FuncLinkage.EXTERN for t in btf.types)
    # Objects without extern sections load their BTF as it is.
    plain = Object.open(EXAMPLES / "xdp_counter.o").spec
    assert loadable_spec(plain) is plain.btf


def test_kconfig_values_come_from_the_kernel_config() -> None:
    spec = Object.open(EXAMPLES / "externs.o").spec
    filled = fill_kconfig(spec, {"CONFIG_HZ": "250", "CONFIG_BPF_SYSCALL": "y"})
    assert filled is not spec and spec.externs["CONFIG_HZ"].value is None
    image = filled.maps[KCONFIG_SECTION].initial_value()
    ext = filled.externs
    assert image[ext["CONFIG_HZ"].offset : ext["CONFIG_HZ"].offset + 4] == struct.pack("<i", 250)
    at = ext["CONFIG_BPF_SYSCALL"].offset
    assert image[at] == 1
    at = ext["LINUX_KERNEL_VERSION"].offset
    assert struct.unpack_from("<I", image, at)[0] == kernel_version_code()
    # Missing weak values stay zero; a value that does not suit the type is refused.
    empty = fill_kconfig(spec, {})
    assert empty.externs["CONFIG_HZ"].value is None
    with pytest.raises(InputError):
        fill_kconfig(spec, {"CONFIG_HZ": "not a number"})


def test_kernel_version_code_is_a_linux_version_code() -> None:
    code = kernel_version_code()
    assert code == 0 or code >> 16 >= 2


def test_ksyms_bind_to_the_kernels_btf_and_kallsyms() -> None:
    spec = Object.open(EXAMPLES / "externs.o").spec
    prog = link(fill_kconfig(spec, {}), "kconfig_probe")
    ((pc, name),) = prog.ksyms
    try:
        vmlinux = kernel_btf()
    except NotSupportedError as exc:
        pytest.skip(str(exc))
    target = vmlinux.find(name, Var)
    insns = resolve_ksyms(list(prog.instructions), prog, spec, lambda: vmlinux)
    insn = dict(slot_pcs(insns))[pc]
    if target is None:
        pytest.skip(f"this kernel's BTF has no {name}")
    assert (insn.src, insn.imm, insn.imm_hi) == (Pseudo.BTF_ID, target.id, 0)
    # A typeless ksym (``extern const void x __ksym``) takes its address from kallsyms;
    # one the kernel lacks is refused, or zero when weak.
    spec.externs[name].type_id = 0
    address = kallsyms().get(name)
    if address is None:
        with pytest.raises(NotSupportedError):
            resolve_ksyms(list(prog.instructions), prog, spec, lambda: vmlinux)
        spec.externs[name].weak = True
    insns = resolve_ksyms(list(prog.instructions), prog, spec, lambda: vmlinux)
    insn = dict(slot_pcs(insns))[pc]
    assert insn.src == Pseudo.IMM64 and insn.imm64 == (address or 0)
