"""CO-RE relocations computed as libbpf computes them, checked without loading anything.

``fixtures/kernel/core.c`` uses every relocation kind. Against the object's own BTF every
instruction must stay as clang wrote it; against an edited copy of that BTF (a field
moved, types renamed away, an enumerator changed) the patched values follow the edits;
against the running kernel's BTF they are the kernel's own layout facts. (That the kernel
accepts the result, with the same instructions as libbpf's, is in test_kernel_load.py.)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pybpf.btf import Composite, CoreReloKind, Enum, EnumValue, Struct
from pybpf.btf import Spec as BTFSpec
from pybpf.errors import InputError, NotSupportedError
from pybpf.isa import Class, Instruction
from pybpf.kernel.core import POISON_HELPER, apply_core_relos
from pybpf.kernel.core_match import essential_name
from pybpf.kernel.vmlinux import kernel_btf
from pybpf.objects import Object
from pybpf.spec import LinkedProgram, ObjectSpec, link

FIXTURE = Path(__file__).parent / "fixtures" / "kernel" / "core.o"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
K = CoreReloKind


def _program() -> tuple[ObjectSpec, LinkedProgram]:
    spec = Object.open(FIXTURE).spec
    return spec, link(spec, "core_probe")


def _value(insn: Instruction) -> int:
    """The relocatable value an instruction holds (lddw: 64 bits; load/store: the offset)."""
    if insn.is_lddw:
        return (insn.imm & 0xFFFFFFFF) | ((insn.imm_hi & 0xFFFFFFFF) << 32)
    if insn.cls in (Class.LDX, Class.ST, Class.STX):
        return insn.off
    return insn.imm & 0xFFFFFFFF


def _values(
    prog: LinkedProgram, local: BTFSpec, target: BTFSpec
) -> dict[tuple[CoreReloKind, str, str], list[Instruction]]:
    """Relocated instructions keyed by (kind, local root type name, access string)."""
    insns = apply_core_relos(list(prog.instructions), prog.core_relos, local, target)
    by_pc = {}
    pc = 0
    for insn in insns:
        by_pc[pc] = insn
        pc += insn.slots
    out: dict[tuple[CoreReloKind, str, str], list[Instruction]] = {}
    for r in prog.core_relos:
        key = (r.kind, local.types[r.type_id].name, r.access)
        out.setdefault(key, []).append(by_pc[r.insn_index])
    return out


def test_essential_names_drop_the_flavor() -> None:
    assert essential_name("task_struct___old") == "task_struct"
    assert essential_name("a___b___c") == "a___b"
    assert essential_name("task_struct") == "task_struct"
    assert essential_name("x____y") == "x____y"  # "___" must sit between non-underscores
    assert essential_name("___x") == "___x"


def test_the_fixture_has_every_relocation_kind() -> None:
    _, prog = _program()
    assert {r.kind for r in prog.core_relos} == set(CoreReloKind)


def _renamed(btf: BTFSpec, renames: dict[str, str]) -> BTFSpec:
    types = tuple(
        dataclasses.replace(t, name=renames[t.name]) if t.name in renames else t for t in btf.types
    )
    return BTFSpec(types, btf.strings, btf.byte_order, btf.pointer_size)


FLAVORS = {"task_struct___old": "gone_a", "pid_type___missing": "gone_b"}


def test_own_btf_leaves_the_instructions_unchanged() -> None:
    # With its ___flavors left out (as flavors of each other they would make type sizes
    # ambiguous, which libbpf refuses too), the object's own BTF relocates every
    # instruction to itself, except the existence checks of the flavors left out and the
    # bitfield (sk_buff.pkt_type), whose load size libbpf computes its own way (1 byte
    # where clang wrote 4) without checking clang's value.
    spec, prog = _program()
    assert spec.btf is not None
    got = _values(prog, spec.btf, _renamed(spec.btf, FLAVORS))
    for (kind, root, access), insns in got.items():
        relo = next(
            r
            for r in prog.core_relos
            if (r.kind, spec.btf.types[r.type_id].name, r.access) == (kind, root, access)
        )
        before = _insn_at(prog, relo.insn_index)
        for insn in insns:
            if root == "sk_buff":
                continue
            if root in FLAVORS:
                assert _value(insn) == 0 and kind in (K.FIELD_EXISTS, K.ENUMVAL_EXISTS)
            else:
                assert insn == before, (kind, root, access)


def _insn_at(prog: LinkedProgram, pc: int) -> Instruction:
    at = 0
    for insn in prog.instructions:
        if at == pc:
            return insn
        at += insn.slots
    raise KeyError(pc)


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")
def test_corpus_objects_relocate_to_themselves() -> None:
    checked = 0
    for path in sorted((CORPUS / "cilium-examples").glob("tcprtt*.o")):
        spec = Object.open(path).spec
        assert spec.btf is not None
        for name in spec.entry_programs:
            prog = link(spec, name)
            if prog.core_relos:
                out = apply_core_relos(list(prog.instructions), prog.core_relos, spec.btf, spec.btf)
                assert out == list(prog.instructions)
                checked += 1
    assert checked


def _edited(btf: BTFSpec) -> BTFSpec:
    """``btf`` with task_struct.tgid moved to byte 64 (struct grown to 128 bytes), the
    ``___old``/``___missing`` flavors and not_a_kernel_type renamed away, PIDTYPE_SID = 9."""
    types = list(_renamed(btf, {**FLAVORS, "not_a_kernel_type": "gone_c"}).types)
    for i, t in enumerate(types):
        if isinstance(t, Struct) and t.name == "task_struct":
            members = tuple(
                dataclasses.replace(m, bit_offset=64 * 8) if m.name == "tgid" else m
                for m in t.members
            )
            types[i] = dataclasses.replace(t, size=128, members=members)
        elif isinstance(t, Enum) and t.name == "pid_type":
            values = tuple(EnumValue(v.name, 9) if v.name == "PIDTYPE_SID" else v for v in t.values)
            types[i] = dataclasses.replace(t, values=values)
    return BTFSpec(tuple(types), btf.strings, btf.byte_order, btf.pointer_size)


def test_edited_target_moves_the_patched_values() -> None:
    spec, prog = _program()
    assert spec.btf is not None
    got = _values(prog, spec.btf, _edited(spec.btf))
    assert _value(got[(K.FIELD_BYTE_OFFSET, "task_struct", "0:1")][0]) == 64
    assert _value(got[(K.TYPE_SIZE, "task_struct", "0")][0]) == 128
    assert _value(got[(K.FIELD_EXISTS, "task_struct___old", "0:1")][0]) == 0
    assert _value(got[(K.TYPE_EXISTS, "not_a_kernel_type", "0")][0]) == 0
    assert _value(got[(K.ENUMVAL_VALUE, "pid_type", "3")][0]) == 9
    assert _value(got[(K.ENUMVAL_EXISTS, "pid_type___missing", "0")][0]) == 0
    # Untouched facts keep their values.
    assert _value(got[(K.FIELD_BYTE_SIZE, "task_struct", "0:3")][0]) == 16
    assert _value(got[(K.ENUMVAL_EXISTS, "pid_type", "3")][0]) == 1


def test_a_field_found_nowhere_poisons_its_instruction() -> None:
    spec, prog = _program()
    assert spec.btf is not None
    target = _renamed(spec.btf, {"task_struct": "gone", "task_struct___old": "gone_a"})
    got = _values(prog, spec.btf, target)
    poisoned = got[(K.FIELD_BYTE_OFFSET, "task_struct", "0:1")][0]
    assert poisoned.is_call and poisoned.imm == POISON_HELPER
    assert _value(got[(K.TYPE_EXISTS, "task_struct", "0")][0]) == 0  # type kinds give 0
    assert _value(got[(K.TYPE_ID_TARGET, "task_struct", "0")][0]) == 0


def test_an_instruction_that_disagrees_with_the_local_btf_is_refused() -> None:
    spec, prog = _program()
    assert spec.btf is not None
    relo = next(r for r in prog.core_relos if r.kind == K.FIELD_BYTE_OFFSET)
    insns = list(prog.instructions)
    pc = 0
    for i, insn in enumerate(insns):
        if pc == relo.insn_index:
            insns[i] = dataclasses.replace(insn, imm=insn.imm + 1)
        pc += insn.slots
    with pytest.raises(InputError) as info:
        apply_core_relos(insns, prog.core_relos, spec.btf, spec.btf, program="p")
    assert (info.value.program, info.value.pc) == ("p", relo.insn_index)


def _vmlinux() -> BTFSpec:
    try:
        return kernel_btf()
    except NotSupportedError as exc:
        pytest.skip(str(exc))


def test_kernel_btf_gives_the_kernels_layout() -> None:
    vmlinux = _vmlinux()
    spec, prog = _program()
    assert spec.btf is not None
    got = _values(prog, spec.btf, vmlinux)
    task = vmlinux.find("task_struct", Struct)
    assert isinstance(task, Struct)
    tgid = next(m for m in task.members if m.name == "tgid")
    assert _value(got[(K.FIELD_BYTE_OFFSET, "task_struct", "0:1")][0]) == tgid.bit_offset // 8
    assert _value(got[(K.TYPE_SIZE, "task_struct", "0")][0]) == task.size
    assert _value(got[(K.TYPE_ID_TARGET, "task_struct", "0")][0]) == task.id
    assert _value(got[(K.TYPE_ID_LOCAL, "task_struct", "0")][0]) == prog.core_relos[0].type_id
    assert _value(got[(K.FIELD_SIGNED, "task_struct", "0:0")][0]) == 1  # int pid
    assert _value(got[(K.FIELD_EXISTS, "task_struct___old", "0:1")][0]) == 0
    assert _value(got[(K.TYPE_EXISTS, "not_a_kernel_type", "0")][0]) == 0
    assert _value(got[(K.TYPE_MATCHES, "list_head", "0")][0]) == 1
    pid_type = vmlinux.find("pid_type", Enum)
    assert isinstance(pid_type, Enum)
    sid = next(v.value for v in pid_type.values if v.name == "PIDTYPE_SID")
    assert _value(got[(K.ENUMVAL_VALUE, "pid_type", "3")][0]) == sid
    # children.next->prev: list_head's second pointer.
    assert _value(got[(K.FIELD_BYTE_OFFSET, "list_head", "0:1")][0]) == 8
    # The 3-bit pkt_type bitfield of sk_buff: shifts from its bit offset in the kernel.
    skb = vmlinux.find("sk_buff", Struct)
    assert isinstance(skb, Struct)
    bit_off = _member_bit_offset(vmlinux, skb, "pkt_type")
    byte_off = _value(got[(K.FIELD_BYTE_OFFSET, "sk_buff", "0:1")][0])
    size = _value(got[(K.FIELD_BYTE_SIZE, "sk_buff", "0:1")][0])
    assert byte_off * 8 <= bit_off and bit_off + 3 <= (byte_off + size) * 8
    lshift = got[(K.FIELD_LSHIFT_U64, "sk_buff", "0:1")][0]
    assert _value(lshift) == 64 - (bit_off + 3 - byte_off * 8)
    assert {_value(i) for i in got[(K.FIELD_RSHIFT_U64, "sk_buff", "0:1")]} == {61}
    assert _value(got[(K.FIELD_SIGNED, "sk_buff", "0:1")][0]) == 0  # __u8 pkt_type:3


def _member_bit_offset(btf: BTFSpec, struct: Composite, name: str, base: int = 0) -> int:
    """The bit offset of field ``name`` in ``struct``, looking into anonymous members."""
    for m in struct.members:
        if m.name == name:
            return base + m.bit_offset
        inner = btf.resolve(m.type_id)
        if not m.name and isinstance(inner, Composite):
            try:
                return _member_bit_offset(btf, inner, name, base + m.bit_offset)
            except KeyError:
                continue
    raise KeyError(name)
