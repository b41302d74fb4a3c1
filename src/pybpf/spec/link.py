"""Linking: one program and the functions it calls, as one self-contained instruction stream.

:func:`link` does what libbpf does before ``BPF_PROG_LOAD``: it appends every function the
entry program calls (directly or through other functions, or takes the address of) after
it, in first-use order, and patches the references:

- bpf-to-bpf calls get their pc-relative ``imm``; function addresses become
  ``lddw src=BPF_PSEUDO_FUNC``;
- map references become ``lddw src=BPF_PSEUDO_MAP_IDX imm=i`` and map value references
  ``src=BPF_PSEUDO_MAP_IDX_VALUE imm=i`` with the value offset in the second slot, where
  ``i`` indexes :attr:`LinkedProgram.maps` (the fd_array of the kernel backend);
- kernel symbols stay as they are and are listed in :attr:`LinkedProgram.ksyms`.

``func_info``/``line_info``/``core_relos`` are merged with pc-based offsets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

from pybpf.btf import CoreRelo, FuncInfo, LineInfo
from pybpf.errors import InputError
from pybpf.isa import Instruction, Pseudo
from pybpf.progtypes import AttachType, ProgType
from pybpf.spec.object import ExternKind, ObjectSpec
from pybpf.spec.program import ProgramSpec, RefKind

__all__ = ["LinkedProgram", "link"]

_INSN = 8
KCONFIG_MAP = ".kconfig"
R = TypeVar("R", FuncInfo, LineInfo, CoreRelo)


@dataclass(frozen=True)
class LinkedProgram:
    """A program ready for the verifier and the engines.

    ``functions`` maps each function placed to its first pc (the entry at 0);
    ``maps`` lists the maps that ``MAP_IDX`` immediates index; ``ksyms`` lists the
    ``(pc, name)`` of instructions that still name a kernel symbol. ``type``,
    ``attach_type``, ``flags`` and ``license`` are the entry program's.
    """

    name: str
    instructions: tuple[Instruction, ...]
    functions: tuple[tuple[str, int], ...]
    maps: tuple[str, ...]
    ksyms: tuple[tuple[int, str], ...] = ()
    func_info: tuple[FuncInfo, ...] = ()
    line_info: tuple[LineInfo, ...] = ()
    core_relos: tuple[CoreRelo, ...] = ()
    type: ProgType | None = None
    attach_type: AttachType | None = None
    flags: int = 0
    license: str = ""


def _index_by_pc(insns: tuple[Instruction, ...]) -> dict[int, int]:
    out = {}
    pc = 0
    for i, insn in enumerate(insns):
        out[pc] = i
        pc += insn.slots
    return out


def _shift(records: tuple[R, ...], shift: int) -> list[R]:
    return [dataclasses.replace(r, insn_off=r.insn_off + shift) for r in records]


def _check_kconfig(obj: ObjectSpec, offset: int, prog: ProgramSpec, pc: int) -> None:
    """Refuse a use of a strong ``.kconfig`` extern that was given no value."""
    for ext in obj.externs.values():
        if ext.kind != ExternKind.KCONFIG or not ext.offset <= offset < ext.offset + ext.size:
            continue
        if ext.value is None and not ext.weak:
            raise InputError(
                f"kconfig extern {ext.name!r} has no value (pass it in kconfig=)",
                program=prog.name,
                section=prog.section,
                pc=pc,
            )


def link(obj: ObjectSpec, name: str) -> LinkedProgram:
    """Link program ``name`` of ``obj`` with every function it reaches."""
    entry = obj.program(name)
    order: list[ProgramSpec] = [entry]
    placed: dict[str, int] = {entry.name: 0}
    total = entry.slots
    i = 0
    while i < len(order):
        for target in order[i].calls:
            if target in placed:
                continue
            callee = obj.programs.get(target)
            if callee is None:
                raise InputError(
                    f"{order[i].name} calls missing function {target!r}",
                    program=order[i].name,
                    section=order[i].section,
                )
            placed[target] = total
            total += callee.slots
            order.append(callee)
        i += 1

    map_index: dict[str, int] = {}
    insns: list[Instruction] = []
    ksyms: list[tuple[int, str]] = []
    func_info: list[FuncInfo] = []
    line_info: list[LineInfo] = []
    core_relos: list[CoreRelo] = []
    for func in order:
        base = placed[func.name]
        body = list(func.instructions)
        by_pc = _index_by_pc(func.instructions)
        for ref in func.references:
            j = by_pc[ref.pc]
            insn = body[j]
            pc = base + ref.pc
            if ref.kind == RefKind.CALL:
                body[j] = dataclasses.replace(insn, imm=placed[ref.target] - pc - 1)
            elif ref.kind == RefKind.FUNC_ADDR:
                rel = placed[ref.target] - pc - 1
                body[j] = dataclasses.replace(insn, src=Pseudo.FUNC, imm=rel, imm_hi=0)
            elif ref.kind in (RefKind.MAP, RefKind.MAP_VALUE):
                if ref.target not in obj.maps:
                    raise InputError(
                        f"reference to missing map {ref.target!r}",
                        program=func.name,
                        section=func.section,
                        pc=ref.pc,
                    )
                if ref.target == KCONFIG_MAP:
                    _check_kconfig(obj, ref.offset, func, ref.pc)
                idx = map_index.setdefault(ref.target, len(map_index))
                if ref.kind == RefKind.MAP:
                    body[j] = dataclasses.replace(insn, src=Pseudo.MAP_IDX, imm=idx, imm_hi=0)
                else:
                    body[j] = dataclasses.replace(
                        insn, src=Pseudo.MAP_IDX_VALUE, imm=idx, imm_hi=ref.offset
                    )
            else:
                ksyms.append((pc, ref.target))
        insns.extend(body)
        shift = base * _INSN
        func_info.extend(_shift(func.func_info, shift))
        line_info.extend(_shift(func.line_info, shift))
        core_relos.extend(_shift(func.core_relos, shift))
    return LinkedProgram(
        name=entry.name,
        instructions=tuple(insns),
        functions=tuple((f.name, placed[f.name]) for f in order),
        maps=tuple(map_index),
        ksyms=tuple(ksyms),
        func_info=tuple(func_info),
        line_info=tuple(line_info),
        core_relos=tuple(core_relos),
        type=entry.type,
        attach_type=entry.attach_type,
        flags=entry.flags,
        license=entry.license,
    )
