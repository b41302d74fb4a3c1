"""Global data and externs: data sections as maps, their variables, and ``.kconfig``/``.ksyms``.

Each non-empty global data section (``.data``, ``.rodata``, ``.bss`` and their ``.data.*``,
``.rodata.*``, ``.bss.*`` siblings, ``.rodata.str1.1`` included) becomes a one-element
array map named after the section, as libbpf does (``BPF_F_MMAPABLE``; read-only
sections add ``BPF_F_RDONLY_PROG`` and are frozen). Its variables come from BTF (the
section's DATASEC) or, without BTF, from the ELF object symbols. Externs come from the
``.kconfig`` and ``.ksyms`` DATASECs: kconfig values are laid out in a ``.kconfig`` map
(libbpf's order: alignment down, size up, then name) and filled from the values given.
"""

from __future__ import annotations

from collections.abc import Mapping

from pybpf.btf import KCONFIG_SECTION, KSYMS_SECTION, Array, Datasec, Func, Int, Var, VarLinkage
from pybpf.btf import Spec as BTFSpec
from pybpf.elf.container import (
    SHT_NOBITS,
    SHT_PROGBITS,
    STB_WEAK,
    STT_OBJECT,
    ElfFile,
    Section,
)
from pybpf.errors import ElfError, InputError
from pybpf.maptypes import MapFlag, MapType
from pybpf.spec import ExternKind, ExternSpec, MapKind, MapSpec, VariableSpec

__all__ = [
    "KCONFIG_MAP",
    "KconfigValue",
    "is_data_section",
    "read_data_maps",
    "read_externs",
]

KCONFIG_MAP = KCONFIG_SECTION
KconfigValue = int | bool | str | bytes
_DATA_NAMES = (".data", ".rodata", ".bss")
_MAX_VALUE_SIZE = 0xFFFFFFFF
_TRISTATE = {"y": 1, "n": 0, "m": 2}


def is_data_section(name: str) -> bool:
    """True for the global data sections libbpf turns into maps."""
    return name in _DATA_NAMES or name.startswith((".data.", ".rodata.", ".bss."))


def _readonly(name: str) -> bool:
    return name == ".rodata" or name.startswith(".rodata.")


def read_data_maps(
    elf: ElfFile, btf: BTFSpec | None
) -> tuple[list[tuple[MapSpec, int]], dict[str, VariableSpec]]:
    """The global data maps (with their section index) and the variables in them."""
    maps: list[tuple[MapSpec, int]] = []
    variables: dict[str, VariableSpec] = {}
    for sec in elf.sections:
        if not is_data_section(sec.name) or sec.size == 0:
            continue
        if sec.type not in (SHT_PROGBITS, SHT_NOBITS):
            continue
        if sec.size > _MAX_VALUE_SIZE:
            raise ElfError(f"{sec.size} bytes is too large for a map value", section=sec.name)
        readonly = _readonly(sec.name)
        datasec = btf.datasec(sec.name) if btf is not None else None
        spec = MapSpec(
            sec.name,
            MapType.ARRAY,
            4,
            sec.size,
            1,
            int(MapFlag.MMAPABLE | (MapFlag.RDONLY_PROG if readonly else 0)),
            kind=MapKind.DATA,
            section=sec.name,
            contents=None if sec.nobits else sec.data,
            frozen=readonly,
            value_type_id=datasec.id if datasec is not None else 0,
        )
        maps.append((spec, sec.index))
        found = (
            _btf_variables(btf, datasec, sec) if datasec is not None else _elf_variables(elf, sec)
        )
        for var in found:
            variables.setdefault(var.name, var)
    return maps, variables


def _btf_variables(btf: BTFSpec | None, datasec: Datasec, sec: Section) -> list[VariableSpec]:
    assert btf is not None
    out = []
    for entry in datasec.vars:
        var = btf.types[entry.type_id]
        if not isinstance(var, Var):
            continue
        out.append(
            VariableSpec(
                var.name,
                sec.name,
                entry.offset,
                entry.size,
                var.type_id,
                readonly=_readonly(sec.name),
                static=var.linkage == VarLinkage.STATIC,
            )
        )
    return out


def _elf_variables(elf: ElfFile, sec: Section) -> list[VariableSpec]:
    out = []
    for sym in elf.symbols_in(sec.index):
        if sym.type != STT_OBJECT or not sym.name or sym.size == 0:
            continue
        if sym.value + sym.size > sec.size:
            raise ElfError(
                f"variable {sym.name!r} ends past its section",
                section=sec.name,
                offset=sym.value,
                symbol=sym.name,
            )
        out.append(
            VariableSpec(sym.name, sec.name, sym.value, sym.size, readonly=_readonly(sec.name))
        )
    return out


def read_externs(
    elf: ElfFile, btf: BTFSpec | None, kconfig: Mapping[str, KconfigValue] | None
) -> tuple[dict[str, ExternSpec], MapSpec | None]:
    """The object's externs and, when it has kconfig externs, the ``.kconfig`` map."""
    if btf is None:
        return {}, None
    weak = {s.name for s in elf.symbols if s.bind == STB_WEAK and not s.defined}
    externs: dict[str, ExternSpec] = {}
    ksyms = btf.datasec(KSYMS_SECTION)
    for entry in ksyms.vars if ksyms is not None else ():
        t = btf.types[entry.type_id]
        kind = ExternKind.KFUNC if isinstance(t, Func) else ExternKind.KSYM
        type_id = t.type_id if isinstance(t, Var | Func) else 0
        externs[t.name] = ExternSpec(t.name, kind, type_id, weak=t.name in weak)
    kcfg = btf.datasec(KCONFIG_SECTION)
    if kcfg is None:
        return externs, None
    found = []
    for entry in kcfg.vars:
        var = btf.types[entry.type_id]
        if not isinstance(var, Var):
            raise ElfError(".kconfig holds something other than variables", section=".BTF")
        size = btf.size_of(var.type_id)
        align = btf.try_align_of(var.type_id) or 1
        found.append((var, size, align))
    found.sort(key=lambda x: (-x[2], x[1], x[0].name))
    offset = 0
    for var, size, align in found:
        offset = (offset + align - 1) // align * align
        externs[var.name] = ExternSpec(
            var.name,
            ExternKind.KCONFIG,
            var.type_id,
            weak=var.name in weak,
            offset=offset,
            size=size,
        )
        offset += size
    values = dict(kconfig or {})
    image = bytearray(max(offset, 1))
    for ext in externs.values():
        if ext.kind != ExternKind.KCONFIG or ext.name not in values:
            continue
        ext.value = _encode(btf, ext, values[ext.name])
        image[ext.offset : ext.offset + ext.size] = ext.value
    spec = MapSpec(
        KCONFIG_MAP,
        MapType.ARRAY,
        4,
        len(image),
        1,
        int(MapFlag.MMAPABLE | MapFlag.RDONLY_PROG),
        kind=MapKind.DATA,
        section=KCONFIG_SECTION,
        contents=bytes(image),
        frozen=True,
        value_type_id=kcfg.id,
    )
    return externs, spec


def _encode(btf: BTFSpec, ext: ExternSpec, value: KconfigValue) -> bytes:
    """The bytes of kconfig extern ``ext`` holding ``value`` (int, bool, y/n/m or a string)."""
    target = btf.resolve(ext.type_id)
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, str) and isinstance(target, Array):
        raw = value.encode() + b"\0"
    else:
        if isinstance(value, str):
            if value in _TRISTATE:
                number = _TRISTATE[value]
            else:
                try:
                    number = int(value, 0)
                except ValueError:
                    raise InputError(
                        f"kconfig value {value!r} for {ext.name} is not a number", field="kconfig"
                    ) from None
        else:
            number = int(value)
        signed = number < 0 or (isinstance(target, Int) and target.is_signed)
        try:
            raw = number.to_bytes(ext.size, "little", signed=signed)
        except OverflowError:
            raise InputError(
                f"kconfig value {value!r} does not fit {ext.name}", field="kconfig"
            ) from None
    if len(raw) > ext.size:
        raise InputError(f"kconfig value for {ext.name} is longer than it", field="kconfig")
    return raw + bytes(ext.size - len(raw))
