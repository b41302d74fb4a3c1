"""BTF-defined maps: the variables of the ``.maps`` section, described by their BTF types.

Each variable's type is a struct whose members encode the definition, as libbpf's macros
write them: ``__uint(name, N)`` is a pointer to an array of ``N`` elements, ``__type(name,
T)`` a pointer to ``T`` (its size gives ``key_size``/``value_size``), ``__ulong`` a
one-value enum, and ``__array(values, T)`` a zero-length array of pointers to ``T``: an
inner map definition (map-in-map, whose template becomes ``MapSpec.inner``) or a function
prototype (prog array). Initial ``values`` come from the relocations of ``.maps``. The
rules and error cases follow libbpf's ``parse_btf_map_def``.
"""

from __future__ import annotations

from pybpf.btf import Array, Datasec, Enum, Enum64, FuncProto, Pointer, Struct, Var
from pybpf.btf import Spec as BTFSpec
from pybpf.elf.container import SHN_UNDEF, STT_FUNC, ElfFile, Section
from pybpf.errors import BTFError, ElfError, NotSupportedError
from pybpf.maptypes import MapType, map_type_from_windows
from pybpf.spec import MapKind, MapSpec, Pinning

__all__ = ["BTF_MAPS_SECTION", "read_btf_maps", "read_map_values"]

BTF_MAPS_SECTION = ".maps"
_INT_FIELDS = ("type", "max_entries", "map_flags", "numa_node", "key_size", "value_size")
_MAX_U32 = 0xFFFFFFFF


class _Parser:
    def __init__(self, btf: BTFSpec, windows: bool) -> None:
        self.btf = btf
        self.windows = windows

    def error(self, map_name: str, message: str) -> ElfError:
        return ElfError(f"map {map_name!r}: {message}", section=BTF_MAPS_SECTION)

    def field_int(self, map_name: str, field: str, type_id: int) -> int:
        t = self.btf.skip_modifiers(type_id)
        if not isinstance(t, Pointer):
            raise self.error(map_name, f"{field} is not a __uint() pointer")
        arr = self.btf.types[t.type_id]
        if not isinstance(arr, Array):
            raise self.error(map_name, f"{field} does not point at an array")
        return arr.nelems

    def field_long(self, map_name: str, field: str, type_id: int) -> int:
        t = self.btf.skip_modifiers(type_id)
        if isinstance(t, Enum | Enum64) and len(t.values) == 1:
            return t.values[0].value & 0xFFFFFFFFFFFFFFFF
        return self.field_int(map_name, field, type_id)

    def sized_type(self, map_name: str, field: str, type_id: int) -> tuple[int, int]:
        t = self.btf.types[type_id]
        if not isinstance(t, Pointer):
            raise self.error(map_name, f"{field} is not a __type() pointer")
        try:
            return t.type_id, self.btf.size_of(t.type_id)
        except BTFError as exc:
            raise self.error(map_name, f"{field} type has no size: {exc.message}") from None

    def parse(self, name: str, def_type_id: int, inner_allowed: bool = True) -> MapSpec:
        btf = self.btf
        t = btf.resolve(def_type_id)
        if not isinstance(t, Struct):
            raise self.error(name, f"definition is a {t.kind.name}, not a struct")
        fields: dict[str, int] = {}
        key_type_id = value_type_id = 0
        map_extra = 0
        pinning = Pinning.NONE
        inner: MapSpec | None = None
        has_values = False
        for i, m in enumerate(t.members):
            if m.name in _INT_FIELDS:
                fields[m.name] = self.field_int(name, m.name, m.type_id)
            elif m.name in ("key", "value"):
                tid, size = self.sized_type(name, m.name, m.type_id)
                sized = f"{m.name}_size"
                if sized in fields and fields[sized] != size:
                    raise self.error(name, f"{sized} {fields[sized]} contradicts its type ({size})")
                fields[sized] = size
                if m.name == "key":
                    key_type_id = tid
                else:
                    value_type_id = tid
            elif m.name == "map_extra":
                map_extra = self.field_long(name, m.name, m.type_id)
            elif m.name == "pinning":
                value = self.field_int(name, m.name, m.type_id)
                if value not in (0, 1):
                    raise self.error(name, f"invalid pinning value {value}")
                pinning = Pinning.BY_NAME if value else Pinning.NONE
            elif m.name == "values":
                if not inner_allowed:
                    raise self.error(name, "multi-level inner maps are not supported")
                if i != len(t.members) - 1:
                    raise self.error(name, "'values' must be the last field")
                inner = self.values_field(name, m.type_id, self.map_type(name, fields))
                has_values = True
            else:
                raise self.error(name, f"unknown field {m.name!r}")
        map_type = self.map_type(name, fields)
        if has_values:
            if map_type.is_map_in_map:
                if fields.get("value_size", 4) != 4:
                    raise self.error(name, "map-in-map value size must be 4")
                fields["value_size"] = 4
            elif map_type == MapType.PROG_ARRAY:
                fields.setdefault("value_size", 4)  # program fds, as the kernel requires
            else:
                raise self.error(name, "'values' is for map-in-map and prog array maps only")
        return MapSpec(
            name,
            map_type,
            fields.get("key_size", 0),
            fields.get("value_size", 0),
            fields.get("max_entries", 0),
            fields.get("map_flags", 0),
            kind=MapKind.BTF,
            section=BTF_MAPS_SECTION,
            pinning=pinning,
            numa_node=fields.get("numa_node", 0),
            map_extra=map_extra,
            inner=inner,
            key_type_id=key_type_id,
            value_type_id=value_type_id,
            windows_type=fields.get("type") if self.windows else None,
        )

    def map_type(self, name: str, fields: dict[str, int]) -> MapType:
        raw = fields.get("type", 0)
        if self.windows:
            found = map_type_from_windows(raw)
            if found is None:
                raise NotSupportedError(
                    f"eBPF-for-Windows map {name!r} has type {raw}, which Linux has no match for",
                    feature=f"windows map type {raw}",
                    section=BTF_MAPS_SECTION,
                )
            return found
        try:
            return MapType(raw)
        except ValueError:
            raise self.error(name, f"unknown map type {raw}") from None

    def values_field(self, name: str, type_id: int, map_type: MapType) -> MapSpec | None:
        arr = self.btf.types[type_id]
        if not isinstance(arr, Array) or arr.nelems:
            raise self.error(name, "'values' must be a zero-length array")
        ptr = self.btf.skip_modifiers(arr.type_id)
        if not isinstance(ptr, Pointer):
            raise self.error(name, "'values' must be an array of pointers")
        target = self.btf.resolve(ptr.type_id)
        if map_type == MapType.PROG_ARRAY:
            if not isinstance(target, FuncProto):
                raise self.error(name, "prog array 'values' must point at functions")
            return None
        if not isinstance(target, Struct):
            raise self.error(name, f"inner map definition is a {target.kind.name}")
        return self.parse(f"{name}.inner", target.id, inner_allowed=False)


def read_btf_maps(
    elf: ElfFile, btf: BTFSpec | None, windows: bool
) -> list[tuple[MapSpec, int, int, int]]:
    """Every map of ``.maps`` as ``(spec, section index, offset, size)``, in offset order.

    ``btf`` must already have its DATASEC offsets fixed up; ``windows`` reads map type
    ids as eBPF for Windows numbers them.
    """
    sec = elf.section(BTF_MAPS_SECTION)
    if sec is None:
        return []
    if btf is None:
        raise ElfError("BTF-defined maps without a .BTF section", section=sec.name)
    datasec = btf.datasec(BTF_MAPS_SECTION)
    if not isinstance(datasec, Datasec):
        raise ElfError("no DATASEC describes the .maps section", section=sec.name)
    parser = _Parser(btf, windows)
    out = []
    for entry in datasec.vars:
        var = btf.types[entry.type_id]
        if not isinstance(var, Var):
            raise ElfError("a .maps entry is not a variable", section=sec.name)
        spec = parser.parse(var.name, var.type_id)
        out.append((spec, sec.index, entry.offset, entry.size))
    return out


def read_map_values(
    elf: ElfFile, maps: list[tuple[MapSpec, int, int, int]], btf: BTFSpec | None
) -> None:
    """Fill ``MapSpec.values`` from the relocations of ``.maps`` (``__array`` initialisers).

    Each relocation points a slot of a map's ``values`` array at a map (map-in-map) or a
    function (prog array); the slot index is its distance from the array, in pointers.
    """
    sec: Section | None = elf.section(BTF_MAPS_SECTION)
    if sec is None or btf is None or not maps:
        return
    slots: dict[str, list[tuple[int, str]]] = {}
    for rel in elf.relocations(sec.index):
        if rel.type not in (0, 1, 2):  # NONE (EM_NONE objects), 64_64, ABS64
            raise ElfError(f"relocation type {rel.type} in .maps", section=sec.name)
        sym = elf.symbols[rel.symbol]
        owner = next((m for m in maps if m[2] <= rel.offset < m[2] + m[3]), None)
        if owner is None:
            raise ElfError("relocation outside every map", section=sec.name, offset=rel.offset)
        spec, _, var_offset, _ = owner
        struct_t = btf.resolve(_var_type(btf, spec.name))
        member = None
        if isinstance(struct_t, Struct):
            member = next((m for m in struct_t.members if m.name == "values"), None)
        if member is None:
            raise ElfError(
                f"map {spec.name!r} has initial values but no 'values' field",
                section=sec.name,
                offset=rel.offset,
            )
        delta = rel.offset - var_offset - member.bit_offset // 8
        if delta < 0 or delta % 8:
            raise ElfError(
                f"relocation of map {spec.name!r} is not on a 'values' slot",
                section=sec.name,
                offset=rel.offset,
            )
        index = delta // 8
        if index >= spec.max_entries:
            raise ElfError(
                f"initial value {index} of map {spec.name!r} is past max_entries",
                section=sec.name,
                offset=rel.offset,
            )
        if spec.type == MapType.PROG_ARRAY:
            target_sec = elf.section_at(sym.shndx) if sym.shndx != SHN_UNDEF else None
            if sym.type != STT_FUNC or target_sec is None or not target_sec.executable:
                raise ElfError(
                    f"prog array {spec.name!r} slot {index} is not a function",
                    section=sec.name,
                    offset=rel.offset,
                    symbol=sym.name,
                )
        elif sym.shndx != sec.index:
            raise ElfError(
                f"map-in-map {spec.name!r} slot {index} is not a map of .maps",
                section=sec.name,
                offset=rel.offset,
                symbol=sym.name,
            )
        slots.setdefault(spec.name, []).append((index, sym.name))
    for spec, _, _, _ in maps:
        if spec.name in slots:
            spec.values = tuple(sorted(slots[spec.name]))


def _var_type(btf: BTFSpec, name: str) -> int:
    datasec = btf.datasec(BTF_MAPS_SECTION)
    for entry in datasec.vars if datasec is not None else ():
        var = btf.types[entry.type_id]
        if isinstance(var, Var) and var.name == name:
            return var.type_id
    raise ElfError(f"no variable {name!r} in .maps", section=BTF_MAPS_SECTION)
