"""Specs as plain data: linking references, editing globals and types, copies."""

from __future__ import annotations

import pytest

from pybpf.errors import InputError
from pybpf.isa import Instruction, Pseudo
from pybpf.maptypes import MapType
from pybpf.progtypes import AttachType, ProgType
from pybpf.spec import (
    ExternKind,
    ExternSpec,
    MapKind,
    MapSpec,
    ObjectSpec,
    ProgramSpec,
    Reference,
    RefKind,
    VariableSpec,
    link,
)

LDDW = Instruction(0x18, dst=1)
CALL = Instruction(0x85, src=1, imm=-1)
EXIT = Instruction(0x95)
MOV0 = Instruction(0xB7)


def _object() -> ObjectSpec:
    main = ProgramSpec(
        "main",
        "xdp",
        (LDDW, CALL, LDDW, LDDW, MOV0, EXIT),
        references=(
            Reference(0, RefKind.MAP, "counts"),
            Reference(2, RefKind.CALL, "helper"),
            Reference(3, RefKind.MAP_VALUE, ".data", 4),
            Reference(5, RefKind.FUNC_ADDR, "callback"),
        ),
        type=ProgType.XDP,
    )
    helper = ProgramSpec(
        "helper",
        ".text",
        (LDDW, CALL, EXIT),
        references=(Reference(0, RefKind.MAP, ".data"), Reference(2, RefKind.CALL, "callback")),
        subprogram=True,
    )
    callback = ProgramSpec("callback", ".text", (MOV0, EXIT), subprogram=True)
    data = MapSpec(".data", MapType.ARRAY, 4, 8, 1, kind=MapKind.DATA, contents=b"\1\2")
    counts = MapSpec("counts", MapType.HASH, 4, 8, 16)
    return ObjectSpec(
        name="t",
        programs={"main": main, "helper": helper, "callback": callback},
        maps={"counts": counts, ".data": data},
        variables={
            "x": VariableSpec("x", ".data", 4, 4),
            "flag": VariableSpec("flag", ".data", 0, 1),
        },
    )


def test_link_appends_callees_in_first_use_order_and_patches_references():
    linked = link(_object(), "main")
    assert linked.type == ProgType.XDP and linked.name == "main"
    assert linked.functions == (("main", 0), ("helper", 9), ("callback", 13))
    assert linked.maps == ("counts", ".data")
    insns = linked.instructions
    assert (insns[0].src, insns[0].imm) == (Pseudo.MAP_IDX, 0)
    assert insns[1].imm == 9 - 2 - 1  # call at pc 2 -> helper at pc 9
    assert (insns[2].src, insns[2].imm, insns[2].imm_hi) == (Pseudo.MAP_IDX_VALUE, 1, 4)
    # the lddw at pc 5 takes callback's address (pc 13)
    assert (insns[3].src, insns[3].imm) == (Pseudo.FUNC, 13 - 5 - 1)
    # helper's own references, relocated to its place at pc 9
    assert (insns[6].src, insns[6].imm) == (Pseudo.MAP_IDX, 1)
    assert insns[7].imm == 13 - 11 - 1


def test_link_any_function_as_entry():
    assert link(_object(), "helper").functions == (("helper", 0), ("callback", 4))
    assert link(_object(), "callback").instructions == (MOV0, EXIT)


def test_link_errors_name_the_program():
    spec = _object()
    spec.programs["helper"].references += (Reference(3, RefKind.CALL, "nowhere"),)
    with pytest.raises(InputError) as err:
        link(spec, "main")
    assert err.value.program == "helper"
    spec = _object()
    del spec.maps["counts"]
    with pytest.raises(InputError) as err:
        link(spec, "main")
    assert (err.value.program, err.value.pc) == ("main", 0)
    with pytest.raises(InputError):
        link(spec, "missing")


def test_ksyms_are_reported_and_kconfig_needs_values():
    spec = _object()
    spec.programs["callback"].references = (Reference(0, RefKind.KSYM, "jiffies"),)
    assert link(spec, "callback").ksyms == ((0, "jiffies"),)
    spec.maps[".kconfig"] = MapSpec(".kconfig", MapType.ARRAY, 4, 4, 1, kind=MapKind.DATA)
    spec.externs["CONFIG_X"] = ExternSpec("CONFIG_X", ExternKind.KCONFIG, offset=0, size=4)
    spec.programs["callback"].references = (Reference(0, RefKind.MAP_VALUE, ".kconfig", 0),)
    with pytest.raises(InputError):
        link(spec, "callback")
    spec.externs["CONFIG_X"].weak = True
    link(spec, "callback")


def test_variables_edit_the_initial_value():
    spec = _object()
    assert spec.get_variable("x") == b"\0\0\0\0"
    spec.set_variable("x", -2)
    assert spec.maps[".data"].initial_value() == b"\1\2\0\0" + (-2).to_bytes(
        4, "little", signed=True
    )
    spec.set_variable("flag", True)
    assert spec.get_variable("flag") == b"\1"
    spec.set_variable("x", b"ab")
    assert spec.get_variable("x") == b"ab\0\0"
    for bad in (1 << 40, b"12345", 1.5):
        with pytest.raises(InputError):
            spec.set_variable("x", bad)
    with pytest.raises(InputError):
        spec.set_variable("nope", 1)


def test_program_type_override_and_lookups():
    spec = _object()
    spec.set_program_type("main", "sched_cls")
    assert spec.programs["main"].type == ProgType.SCHED_CLS
    spec.set_program_type("helper", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_BIND)
    assert spec.programs["helper"].attach_type == AttachType.CGROUP_INET4_BIND
    with pytest.raises(InputError):
        spec.set_program_type("main", "no_such_type")
    assert list(spec.entry_programs) == ["main"]
    assert spec.program("helper").calls == ("callback",)
    assert spec.program("main").maps_used == ("counts", ".data")
    with pytest.raises(InputError):
        spec.map("missing")


def test_copies_are_independent_and_equal():
    spec = _object()
    other = spec.copy()
    assert other == spec
    other.maps["counts"].max_entries = 1
    other.programs["main"].autoload = False
    other.set_variable("x", 7)
    assert spec.maps["counts"].max_entries == 16 and spec.programs["main"].autoload
    assert spec.get_variable("x") == b"\0\0\0\0" and other != spec
    assert spec.maps["counts"].copy() == spec.maps["counts"]
