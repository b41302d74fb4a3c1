"""Code sections: functions split at their symbols, decoded, and their relocations as references.

Every executable section is cut at its named ``STT_FUNC`` symbols; a section without one
at its start begins with a function named after the section (old clang emitted none). Each
function is decoded strictly (:func:`pybpf.isa.decode`), and every relocation of the
section becomes a :class:`~pybpf.spec.Reference` on the instruction it patches, decided
by the instruction (``lddw`` or ``call``, as libbpf does) and the symbol's section: a map
record or ``.maps`` variable, a global data section, a function, or an extern. Local
calls that leave their function without a relocation name the function they land on.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pybpf.btf import CoreRelo, Ext, FuncInfo, LineInfo
from pybpf.elf.container import (
    SHN_UNDEF,
    STB_LOCAL,
    STT_FUNC,
    STT_SECTION,
    ElfFile,
    Relocation,
    Section,
    Symbol,
)
from pybpf.elf.data import KCONFIG_MAP
from pybpf.elf.windows import translate_helper
from pybpf.errors import DecodeError, ElfError
from pybpf.isa import CallKind, Instruction, decode
from pybpf.progtypes import match_section
from pybpf.spec import ExternKind, ExternSpec, ProgramSpec, Reference, RefKind

__all__ = ["Targets", "Function", "split_functions", "read_references", "program_specs"]

TEXT_SECTION = ".text"
_INSN = 8
R_BPF_NONE = 0
R_BPF_64_64 = 1
R_BPF_64_32 = 10
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5
R = TypeVar("R", FuncInfo, LineInfo, CoreRelo)


@dataclass
class Targets:
    """What relocations may point at.

    ``maps``: section index -> {offset: map name} (legacy records and ``.maps`` variables);
    ``data``: section index -> global data map name; ``externs`` by name.
    """

    maps: dict[int, dict[int, str]] = field(default_factory=dict)
    data: dict[int, str] = field(default_factory=dict)
    externs: Mapping[str, ExternSpec] = field(default_factory=dict)


@dataclass
class Function:
    """One function of a code section while it is being read."""

    name: str
    section: Section
    start: int
    end: int
    symbol: Symbol | None
    instructions: tuple[Instruction, ...]
    by_pc: dict[int, int]
    references: dict[int, Reference] = field(default_factory=dict)

    def error(self, message: str, pc: int | None = None, **extra: object) -> ElfError:
        offset = self.start + pc * _INSN if pc is not None else self.start
        return ElfError(
            message, section=self.section.name, program=self.name, offset=offset, pc=pc, **extra
        )


def split_functions(elf: ElfFile, windows: bool) -> list[Function]:
    """Every function of every executable section, decoded (Windows helper ids translated)."""
    out = []
    for sec in elf.sections:
        if not sec.executable or sec.size == 0 or sec.nobits:
            continue
        if sec.size % _INSN:
            raise ElfError(f"code size {sec.size} is not a multiple of 8", section=sec.name)
        starts: dict[int, Symbol] = {}
        for sym in elf.symbols_in(sec.index):
            if sym.type != STT_FUNC or not sym.name:
                continue
            if sym.value % _INSN or sym.value >= sec.size:
                raise ElfError(
                    f"function {sym.name!r} starts at {sym.value}, not on an instruction",
                    section=sec.name,
                    offset=sym.value,
                    symbol=sym.name,
                )
            starts.setdefault(sym.value, sym)
        bounds = sorted(set(starts) | {0}) + [sec.size]
        for start, end in zip(bounds, bounds[1:], strict=False):
            sym = starts.get(start)
            name = sym.name if sym is not None else sec.name
            try:
                insns = decode(sec.data[start:end])
            except DecodeError as exc:
                exc.section, exc.program = sec.name, name
                exc.offset = start + (exc.pc or 0) * _INSN
                raise
            by_pc, pc = {}, 0
            for i, insn in enumerate(insns):
                by_pc[pc] = i
                pc += insn.slots
            if windows:
                insns = _translate_helpers(insns, sec.name, name)
            out.append(Function(name, sec, start, end, sym, tuple(insns), by_pc))
    return out


def _translate_helpers(insns: list[Instruction], section: str, name: str) -> list[Instruction]:
    out = []
    pc = 0
    for insn in insns:
        if insn.is_call and insn.call_kind == CallKind.HELPER:
            linux_id = translate_helper(insn.imm, section=section, program=name, pc=pc)
            insn = dataclasses.replace(insn, imm=linux_id)
        out.append(insn)
        pc += insn.slots
    return out


def read_references(elf: ElfFile, functions: list[Function], targets: Targets) -> None:
    """Attach a :class:`Reference` to every relocated instruction and every outbound call."""
    by_section: dict[int, list[Function]] = {}
    for f in functions:
        by_section.setdefault(f.section.index, []).append(f)
    for index, funcs in by_section.items():
        starts = [f.start for f in funcs]
        for rel in elf.relocations(index):
            if rel.type == R_BPF_NONE and rel.symbol == 0:
                continue
            func = funcs[bisect.bisect_right(starts, rel.offset) - 1]
            if rel.offset % _INSN or rel.offset >= func.end:
                raise ElfError(
                    "relocation is not on an instruction",
                    section=func.section.name,
                    offset=rel.offset,
                )
            pc = (rel.offset - func.start) // _INSN
            if pc not in func.by_pc:
                raise func.error("relocation patches the second half of an lddw", pc)
            if rel.type not in (R_BPF_NONE, R_BPF_64_64, R_BPF_64_32):
                raise func.error(f"relocation type {rel.type} cannot patch an instruction", pc)
            ref = _reference(elf, func, pc, rel, targets, by_section)
            func.references[pc] = ref
        for func in funcs:
            _local_calls(func, funcs)


def _function_at(funcs: list[Function], offset: int) -> Function | None:
    """The function of ``funcs`` (sorted by start) that starts exactly at ``offset``."""
    i = bisect.bisect_left(funcs, offset, key=lambda f: f.start)
    return funcs[i] if i < len(funcs) and funcs[i].start == offset else None


def _reference(
    elf: ElfFile,
    func: Function,
    pc: int,
    rel: Relocation,
    targets: Targets,
    by_section: dict[int, list[Function]],
) -> Reference:
    insn = func.instructions[func.by_pc[pc]]
    sym = elf.symbols[rel.symbol]
    addend = insn.imm if rel.addend is None else rel.addend
    where = {"symbol": sym.name or None}
    if insn.is_call:
        if sym.shndx == SHN_UNDEF:
            ext = targets.externs.get(sym.name)
            if ext is not None and ext.kind == ExternKind.KFUNC:
                return Reference(pc, RefKind.KFUNC, sym.name)
            raise func.error(f"call to unresolved external function {sym.name!r}", pc, **where)
        funcs = by_section.get(sym.shndx)
        if rel.addend is None or rel.addend == 0:
            target = sym.value + (insn.imm + 1) * _INSN
        else:
            target = sym.value + rel.addend
        callee = _function_at(funcs or [], target)
        if callee is None:
            raise func.error(f"call target {target} of {sym.name!r} is not a function", pc, **where)
        return Reference(pc, RefKind.CALL, callee.name)
    if not insn.is_lddw:
        raise func.error(f"relocation against {sym.name!r} patches neither lddw nor call", pc)
    if sym.shndx == SHN_UNDEF:
        ext = targets.externs.get(sym.name)
        if ext is None:
            raise func.error(f"reference to unresolved external symbol {sym.name!r}", pc, **where)
        if ext.kind == ExternKind.KCONFIG:
            return Reference(pc, RefKind.MAP_VALUE, KCONFIG_MAP, ext.offset + addend)
        return Reference(pc, RefKind.KSYM, sym.name)
    if sym.shndx in targets.maps:
        offset = addend if sym.type == STT_SECTION else sym.value
        name = targets.maps[sym.shndx].get(offset)
        if name is None:
            raise func.error(f"map reference at offset {offset} names no map", pc, **where)
        return Reference(pc, RefKind.MAP, name)
    if sym.shndx in targets.data:
        name = targets.data[sym.shndx]
        base = 0 if sym.type == STT_SECTION else sym.value
        offset = base + addend
        size = elf.sections[sym.shndx].size
        if not 0 <= offset <= size:
            raise func.error(f"offset {offset} is outside {name} ({size} bytes)", pc, **where)
        return Reference(pc, RefKind.MAP_VALUE, name, offset)
    if sym.shndx in by_section:
        target = (0 if sym.type == STT_SECTION else sym.value) + addend
        callee = _function_at(by_section[sym.shndx], target)
        if callee is None:
            raise func.error(f"function address {target} is not a function", pc, **where)
        return Reference(pc, RefKind.FUNC_ADDR, callee.name)
    section = elf.section_at(sym.shndx)
    what = section.name if section is not None else str(sym.shndx)
    raise func.error(f"relocation against a symbol of section {what!r}", pc, **where)


def _local_calls(func: Function, funcs: list[Function]) -> None:
    pc = 0
    for insn in func.instructions:
        if insn.is_call and insn.call_kind == CallKind.LOCAL and pc not in func.references:
            target = func.start + (pc + 1 + insn.imm) * _INSN
            if not func.start <= target < func.end:
                if not 0 <= target < func.section.size:
                    raise func.error(f"local call target {target} is outside the section", pc)
                callee = _function_at(funcs, target)
                if callee is None:
                    raise func.error(f"local call target {target} is not a function", pc)
                func.references[pc] = Reference(pc, RefKind.CALL, callee.name)
        pc += insn.slots


def program_specs(
    functions: list[Function],
    ext: Ext | None,
    platform: str,
    license: str,
    kernel_version: int,
) -> dict[str, ProgramSpec]:
    """The ProgramSpecs, by name, with program types and ``.BTF.ext`` records attached."""
    out: dict[str, ProgramSpec] = {}
    for f in functions:
        if f.name in out:
            raise ElfError(
                f"two functions are named {f.name!r}", section=f.section.name, offset=f.start
            )
        sub = f.section.name == TEXT_SECTION
        spec = ProgramSpec(
            f.name,
            f.section.name,
            f.instructions,
            offset=f.start,
            references=tuple(f.references[pc] for pc in sorted(f.references)),
            license=license,
            kernel_version=kernel_version,
            subprogram=sub,
            autoload=not sub,
            global_function=f.symbol is None or f.symbol.bind != STB_LOCAL,
        )
        if not sub:
            match = match_section(f.section.name, platform=platform)
            if match is not None:
                rule = match.rule
                spec.type, spec.attach_type, spec.attach_to = rule.prog_type, rule.attach_type, ""
                if rule.plus or rule.prefix.endswith("/") or rule.attach_btf:
                    spec.attach_to = match.target
                spec.flags = (BPF_F_SLEEPABLE if rule.sleepable else 0) | (
                    BPF_F_XDP_HAS_FRAGS if rule.xdp_frags else 0
                )
        out[f.name] = spec
    if ext is not None:
        _attach_ext(out, functions, ext)
    return out


def _split(records: tuple[R, ...], funcs: list[Function]) -> dict[str, list[R]]:
    """``.BTF.ext`` records of one section by function, ``insn_off`` made function-relative."""
    starts = [f.start for f in funcs]
    out: dict[str, list[R]] = {}
    for r in records:
        i = bisect.bisect_right(starts, r.insn_off) - 1
        if i < 0 or r.insn_off >= funcs[i].end:
            continue  # outside the code: nothing to attach it to
        f = funcs[i]
        out.setdefault(f.name, []).append(dataclasses.replace(r, insn_off=r.insn_off - f.start))
    return out


def _attach_ext(specs: dict[str, ProgramSpec], functions: list[Function], ext: Ext) -> None:
    by_section: dict[str, list[Function]] = {}
    for f in functions:
        by_section.setdefault(f.section.name, []).append(f)
    for name, funcs in by_section.items():
        func_info = _split(ext.func_info.get(name, ()), funcs)
        line_info = _split(ext.line_info.get(name, ()), funcs)
        core_relos = _split(ext.core_relos.get(name, ()), funcs)
        for f in funcs:
            spec = specs[f.name]
            spec.func_info = tuple(func_info.get(f.name, ()))
            spec.line_info = tuple(line_info.get(f.name, ()))
            spec.core_relos = tuple(core_relos.get(f.name, ()))
            first = next((r for r in spec.func_info if r.insn_off == 0), None)
            spec.btf_func_id = first.type_id if first is not None else 0
