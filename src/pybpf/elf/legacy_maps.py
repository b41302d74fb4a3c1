"""Legacy map records: the ``maps`` (and ``maps/NAME``) sections of pre-BTF objects.

Such a section is an array of fixed-size records, one per map symbol; the record size is
the section size divided by the number of map symbols. The layouts seen in the wild:

- 20 bytes: libbpf 0.x's ``struct bpf_map_def`` (type, key_size, value_size,
  max_entries, map_flags); smaller records leave the missing fields at zero;
- 28 bytes: samples/bpf's ``bpf_load_map_def`` (+ inner_map_idx, numa_node), which old
  iproute2's ``bpf_elf_map`` (+ id, pinning) shares in size: the two extra words are read
  as inner_map_idx (map-in-map types only) and numa_node (with ``BPF_F_NUMA_NODE`` only);
- 36 bytes: iproute2's ``bpf_elf_map`` (+ id, pinning, inner_id, inner_idx): a
  map-in-map's inner template is the record whose ``id`` is its ``inner_id`` (as
  iproute2's loader finds it; ``inner_idx`` is the outer slot an inner map record asks
  to be placed in, not a record index);
- 32 bytes: eBPF for Windows' ``ebpf_map_definition_in_file_t`` (type, key_size,
  value_size, max_entries, inner_map_idx, pinning, id, inner_id), with its map type ids.

The raw words stay in :attr:`MapSpec.record`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pybpf.elf.container import STT_SECTION, ElfFile, Section, Symbol
from pybpf.elf.windows import WINDOWS_MAP_RECORD_SIZE
from pybpf.errors import ElfError, NotSupportedError
from pybpf.maptypes import MapFlag, MapType, map_type_from_windows
from pybpf.spec import MapKind, MapSpec, Pinning

__all__ = ["LegacyMapSection", "find_legacy_map_sections", "read_legacy_maps"]

_MIN_RECORD = 16  # type, key_size, value_size, max_entries
_PINNING = {0: Pinning.NONE, 1: Pinning.OBJECT_NS, 2: Pinning.GLOBAL_NS, 3: Pinning.CUSTOM_NS}


@dataclass(frozen=True)
class LegacyMapSection:
    """A legacy map section, its map symbols (by offset) and its record size."""

    section: Section
    symbols: tuple[Symbol, ...]
    record_size: int


def is_legacy_map_section(name: str) -> bool:
    """``maps`` or ``maps/NAME``: where pre-BTF objects keep map records."""
    return name == "maps" or name.startswith("maps/")


def find_legacy_map_sections(elf: ElfFile) -> list[LegacyMapSection]:
    """Every legacy map section with its symbols, checked: whole records, aligned offsets."""
    out = []
    for sec in elf.sections:
        if not is_legacy_map_section(sec.name) or sec.size == 0:
            continue
        syms = sorted(
            (s for s in elf.symbols_in(sec.index) if s.type != STT_SECTION and s.name),
            key=lambda s: (s.value, s.index),
        )
        if not syms:
            continue
        if sec.nobits:
            raise ElfError("map records cannot be SHT_NOBITS", section=sec.name)
        size = sec.size // len(syms)
        if sec.size % len(syms) or size < _MIN_RECORD or size % 4:
            raise ElfError(
                f"{sec.size} bytes do not split into {len(syms)} map records",
                section=sec.name,
                offset=0,
            )
        seen = set()
        for s in syms:
            if s.value % size or s.value + size > sec.size or s.value in seen:
                raise ElfError(
                    f"map symbol {s.name!r} at {s.value} is not the start of a {size}-byte record",
                    section=sec.name,
                    offset=s.value,
                    symbol=s.name,
                )
            seen.add(s.value)
        out.append(LegacyMapSection(sec, tuple(syms), size))
    return out


def _linux_map(name: str, words: tuple[int, ...], sec: str, offset: int) -> MapSpec:
    w = words + (0,) * max(0, 9 - len(words))
    try:
        map_type = MapType(w[0])
    except ValueError:
        raise ElfError(
            f"map {name!r} has unknown type {w[0]}", section=sec, offset=offset
        ) from None
    spec = MapSpec(
        name, map_type, w[1], w[2], w[3], w[4], kind=MapKind.LEGACY, section=sec, record=words
    )
    if len(words) == 7:  # bpf_load_map_def: inner_map_idx, numa_node
        if map_type.is_map_in_map:
            spec.inner_index = w[5]
        if w[4] & MapFlag.NUMA_NODE:
            spec.numa_node = w[6]
    elif len(words) == 9:  # iproute2 bpf_elf_map: id, pinning, inner_id, inner_idx
        spec.pinning = _PINNING.get(w[6], Pinning.NONE)
        # a map-in-map's template is found by id (read_legacy_maps), not by index
    return spec


def _iproute2_inner(spec: MapSpec, specs: list[MapSpec]) -> int | None:
    """The index of the record an iproute2 map-in-map names by ``inner_id`` (or None)."""
    words = spec.record
    if len(words) != 9 or not spec.type.is_map_in_map:
        return None
    wanted = words[7]
    if not wanted:
        raise ElfError(
            f"map {spec.name!r} is a map of maps with no inner map id (inner_id 0)",
            section=spec.section,
        )
    for index, other in enumerate(specs):
        record = other.record
        if other is not spec and len(record) == 9 and record[5] == wanted:
            return index
    raise ElfError(
        f"map {spec.name!r} names inner map id {wanted}, which no map record has",
        section=spec.section,
    )


def _windows_map(name: str, words: tuple[int, ...], sec: str, offset: int) -> MapSpec:
    win_type, key_size, value_size, max_entries, inner_idx, pinning = words[:6]
    map_type = map_type_from_windows(win_type)
    if map_type is None:
        raise NotSupportedError(
            f"eBPF-for-Windows map {name!r} has type {win_type}, which Linux has no match for",
            feature=f"windows map type {win_type}",
            section=sec,
            offset=offset,
        )
    spec = MapSpec(
        name,
        map_type,
        key_size,
        value_size,
        max_entries,
        kind=MapKind.LEGACY,
        section=sec,
        pinning=_PINNING.get(pinning, Pinning.NONE),
        windows_type=win_type,
        record=words,
    )
    if map_type.is_map_in_map:
        spec.inner_index = inner_idx
    return spec


def read_legacy_maps(
    sections: list[LegacyMapSection], windows: bool
) -> list[tuple[MapSpec, int, int]]:
    """MapSpecs for every record, with the section index and offset each came from.

    ``windows`` reads 32-byte records as eBPF for Windows' layout. Map-in-map records get
    their ``inner`` template from ``inner_index`` (an index into all records, in section
    then offset order; for iproute2's records, the record whose ``id`` is the map's
    ``inner_id``).
    """
    out: list[tuple[MapSpec, int, int]] = []
    for ms in sections:
        sec = ms.section
        nwords = ms.record_size // 4
        for sym in ms.symbols:
            words = struct.unpack_from(f"<{nwords}I", sec.data, sym.value)
            if windows and ms.record_size == WINDOWS_MAP_RECORD_SIZE:
                spec = _windows_map(sym.name, words, sec.name, sym.value)
            else:
                spec = _linux_map(sym.name, words, sec.name, sym.value)
            out.append((spec, sec.index, sym.value))
    specs = [m for m, _, _ in out]
    for m in specs:
        by_id = _iproute2_inner(m, specs)
        if by_id is not None:
            m.inner_index = by_id
        if m.inner_index is None:
            continue
        if not 0 <= m.inner_index < len(specs) or specs[m.inner_index] is m:
            raise ElfError(
                f"map {m.name!r} names inner map record {m.inner_index}, which does not exist",
                section=m.section,
            )
        m.inner = specs[m.inner_index].copy()
    return out
