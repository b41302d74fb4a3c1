"""Object reader: the bytes of an eBPF object file into an :class:`~pybpf.spec.ObjectSpec`.

:func:`read_object` runs the steps a loader takes (libbpf's ``bpf_object__open``): read
the ELF container, parse and fix up BTF, recognise eBPF-for-Windows objects, read the
maps (legacy records, ``.maps``, global data, ``.kconfig``), split and decode the code,
and bind every relocation to what it names. It never touches the host: the same bytes
give an equal spec everywhere. Malformed input raises one
:class:`~pybpf.errors.InputError` (``ElfError``, ``BTFError``, ``DecodeError``) naming the
section and offset; valid input that pybpf cannot represent raises
:class:`~pybpf.errors.NotSupportedError`.
"""

from __future__ import annotations

from collections.abc import Mapping

from pybpf import btf as _btf
from pybpf.elf.btf_maps import read_btf_maps, read_map_values
from pybpf.elf.container import (
    STB_LOCAL,
    STT_FILE,
    STT_SECTION,
    STV_HIDDEN,
    STV_INTERNAL,
    ElfFile,
)
from pybpf.elf.data import KconfigValue, read_data_maps, read_externs
from pybpf.elf.legacy_maps import find_legacy_map_sections, read_legacy_maps
from pybpf.elf.programs import Targets, program_specs, read_references, split_functions
from pybpf.elf.windows import is_windows_object
from pybpf.errors import ElfError
from pybpf.spec import MapSpec, ObjectSpec

__all__ = ["read_object"]

_LICENSE_SECTION = "license"
_VERSION_SECTION = "version"


def _read_btf(elf: ElfFile) -> tuple[_btf.Spec | None, _btf.Ext | None]:
    sec = elf.section(".BTF")
    if sec is None:
        return None, None
    spec = _btf.parse(sec.data)
    sizes = {s.name: s.size for s in elf.sections if s.name}
    offsets: dict[str, dict[str, int]] = {}
    hidden = []
    for sym in elf.symbols:
        if not sym.defined or not sym.name or sym.type in (STT_SECTION, STT_FILE):
            continue
        owner = elf.sections[sym.shndx].name
        offsets.setdefault(owner, {}).setdefault(sym.name, sym.value)
        if sym.bind != STB_LOCAL and sym.visibility in (STV_HIDDEN, STV_INTERNAL):
            hidden.append(sym.name)
    spec = spec.fix_data_sections(sizes, offsets, hidden)
    ext_sec = elf.section(".BTF.ext")
    ext = _btf.parse_ext(ext_sec.data, spec) if ext_sec is not None else None
    return spec, ext


def _license(elf: ElfFile) -> str:
    sec = elf.section(_LICENSE_SECTION)
    if sec is None:
        return ""
    return sec.data.split(b"\0", 1)[0].decode("ascii", "backslashreplace")


def _kernel_version(elf: ElfFile) -> int:
    sec = elf.section(_VERSION_SECTION)
    if sec is None:
        return 0
    if len(sec.data) != 4:
        raise ElfError(f"{len(sec.data)} bytes, not a u32", section=sec.name)
    return int.from_bytes(sec.data, "little")


def read_object(
    data: bytes | bytearray | memoryview,
    *,
    name: str = "",
    platform: str | None = None,
    kconfig: Mapping[str, KconfigValue] | None = None,
) -> ObjectSpec:
    """Read an eBPF object file into an :class:`ObjectSpec`.

    ``name`` names the object (usually the file's stem). ``platform`` forces ``"linux"``
    or ``"windows"`` (eBPF-for-Windows map types, helper ids and sections); by default it is
    recognised from the file. ``kconfig`` supplies values for ``.kconfig`` externs
    (``LINUX_KERNEL_VERSION``, ``CONFIG_*``).
    """
    if platform not in (None, "linux", "windows"):
        raise ValueError(f"unknown platform {platform!r}")
    elf = ElfFile(bytes(data))
    btf, ext = _read_btf(elf)
    legacy_sections = find_legacy_map_sections(elf)
    if platform is None:
        code_sections = (s.name for s in elf.sections if s.executable)
        sizes = (ms.record_size for ms in legacy_sections)
        platform = "windows" if is_windows_object(sizes, code_sections, btf) else "linux"
    windows = platform == "windows"

    targets = Targets()
    maps: dict[str, MapSpec] = {}

    def add(spec: MapSpec) -> None:
        if spec.name in maps:
            raise ElfError(f"two maps are named {spec.name!r}", section=spec.section)
        maps[spec.name] = spec

    for spec, index, offset in read_legacy_maps(legacy_sections, windows):
        add(spec)
        targets.maps.setdefault(index, {})[offset] = spec.name
    btf_maps = read_btf_maps(elf, btf, windows)
    read_map_values(elf, btf_maps, btf)
    for spec, index, offset, _ in btf_maps:
        add(spec)
        targets.maps.setdefault(index, {})[offset] = spec.name
    data_maps, variables = read_data_maps(elf, btf)
    for spec, index in data_maps:
        add(spec)
        targets.data[index] = spec.name
    externs, kconfig_map = read_externs(elf, btf, kconfig)
    if kconfig_map is not None:
        add(kconfig_map)
    targets.externs = externs

    license = _license(elf)
    kernel_version = _kernel_version(elf)
    functions = split_functions(elf, windows)
    read_references(elf, functions, targets)
    programs = program_specs(functions, ext, platform, license, kernel_version)
    return ObjectSpec(
        name=name,
        programs=programs,
        maps=maps,
        variables=variables,
        externs=externs,
        license=license,
        kernel_version=kernel_version,
        platform=platform,
        btf=btf,
    )
