"""ELF container: an object file's sections, symbols and relocations, read once into plain records.

pyelftools identifies the file and decodes the ELF and section headers; the symbol and
relocation arrays (fixed ELF64 little-endian layouts) are unpacked directly. Every read is
bounds-checked against the input first, and every exception pyelftools (or a malformed
structure) can raise becomes one :class:`~pybpf.errors.ElfError` naming the section and
offset. Only
64-bit little-endian files whose machine is ``EM_BPF`` (or ``EM_NONE``, as old Cilium and
OVS builds have) are accepted; big-endian eBPF is :class:`~pybpf.errors.NotSupportedError`.
Everything above this module sees :class:`Section`, :class:`Symbol` and
:class:`Relocation` records only.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from elftools.common.exceptions import ELFError as _PyelftoolsError
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import (
    ENUM_SH_TYPE_BASE,
    ENUM_ST_INFO_BIND,
    ENUM_ST_INFO_TYPE,
    ENUM_ST_SHNDX,
    ENUM_ST_VISIBILITY,
)

from pybpf.errors import ElfError, NotSupportedError

__all__ = [
    "ElfFile",
    "Section",
    "Symbol",
    "Relocation",
    "MAX_OBJECT_SIZE",
    "SHF_WRITE",
    "SHF_ALLOC",
    "SHF_EXECINSTR",
    "SHT_PROGBITS",
    "SHT_NOBITS",
    "SHT_SYMTAB",
    "SHT_STRTAB",
    "SHT_REL",
    "SHT_RELA",
    "STT_NOTYPE",
    "STT_OBJECT",
    "STT_FUNC",
    "STT_SECTION",
    "STT_FILE",
    "STB_LOCAL",
    "STB_GLOBAL",
    "STB_WEAK",
    "SHN_UNDEF",
    "SHN_ABS",
    "SHN_COMMON",
    "STV_HIDDEN",
    "STV_INTERNAL",
]

MAX_OBJECT_SIZE = 1 << 30  # larger inputs are refused before parsing

SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHT_PROGBITS = ENUM_SH_TYPE_BASE["SHT_PROGBITS"]
SHT_SYMTAB = ENUM_SH_TYPE_BASE["SHT_SYMTAB"]
SHT_STRTAB = ENUM_SH_TYPE_BASE["SHT_STRTAB"]
SHT_RELA = ENUM_SH_TYPE_BASE["SHT_RELA"]
SHT_NOBITS = ENUM_SH_TYPE_BASE["SHT_NOBITS"]
SHT_REL = ENUM_SH_TYPE_BASE["SHT_REL"]
STT_NOTYPE = ENUM_ST_INFO_TYPE["STT_NOTYPE"]
STT_OBJECT = ENUM_ST_INFO_TYPE["STT_OBJECT"]
STT_FUNC = ENUM_ST_INFO_TYPE["STT_FUNC"]
STT_SECTION = ENUM_ST_INFO_TYPE["STT_SECTION"]
STT_FILE = ENUM_ST_INFO_TYPE["STT_FILE"]
STB_LOCAL = ENUM_ST_INFO_BIND["STB_LOCAL"]
STB_GLOBAL = ENUM_ST_INFO_BIND["STB_GLOBAL"]
STB_WEAK = ENUM_ST_INFO_BIND["STB_WEAK"]
SHN_UNDEF = ENUM_ST_SHNDX["SHN_UNDEF"]
SHN_ABS = ENUM_ST_SHNDX["SHN_ABS"]
SHN_COMMON = ENUM_ST_SHNDX["SHN_COMMON"]
SHN_LORESERVE = 0xFF00
STV_INTERNAL = ENUM_ST_VISIBILITY["STV_INTERNAL"]
STV_HIDDEN = ENUM_ST_VISIBILITY["STV_HIDDEN"]

_SHDR_SIZE = 64
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym
_REL = struct.Struct("<QQ")  # Elf64_Rel: offset, info (symbol << 32 | type)
_RELA = struct.Struct("<QQq")  # Elf64_Rela: + addend
_SYM_SIZE = _SYM.size
_REL_SIZE = _REL.size
_RELA_SIZE = _RELA.size
_MACHINES = ("EM_BPF", "EM_NONE")
# Everything pyelftools (and its construct structs) raises on malformed input.
_PARSE_ERRORS = (
    _PyelftoolsError,
    struct.error,
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    AttributeError,
    UnicodeDecodeError,
    OverflowError,
    RecursionError,
    EOFError,
)


def _number(value: object, table: dict) -> int:
    """pyelftools gives enum fields as names where it knows them: back to numbers."""
    if isinstance(value, int):
        return value
    number = table.get(value)
    if not isinstance(number, int):
        raise ValueError(f"unknown enum value {value!r}")
    return number


def _cstring(table: bytes, offset: int) -> str | None:
    """The NUL-terminated name at ``offset`` of a string table (``None`` if out of range)."""
    if not 0 <= offset < len(table):
        return None
    end = table.find(b"\0", offset)
    if end < 0:
        return None
    return table[offset:end].decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class Section:
    """One section header and its bytes (``data`` is empty for ``SHT_NOBITS``)."""

    index: int
    name: str
    type: int
    flags: int
    size: int
    link: int
    info: int
    entsize: int
    data: bytes

    @property
    def executable(self) -> bool:
        """``SHF_EXECINSTR``: the section holds code."""
        return bool(self.flags & SHF_EXECINSTR)

    @property
    def writable(self) -> bool:
        """``SHF_WRITE``."""
        return bool(self.flags & SHF_WRITE)

    @property
    def nobits(self) -> bool:
        """``SHT_NOBITS`` (``.bss``): a size, no bytes in the file."""
        return self.type == SHT_NOBITS


@dataclass(frozen=True, slots=True)
class Symbol:
    """One ``.symtab`` entry (``shndx`` is numeric: ``SHN_UNDEF`` 0, ``SHN_ABS``, ...)."""

    index: int
    name: str
    value: int
    size: int
    type: int
    bind: int
    visibility: int
    shndx: int

    @property
    def defined(self) -> bool:
        """True when the symbol lives in a section of this file."""
        return SHN_UNDEF < self.shndx < SHN_LORESERVE


@dataclass(frozen=True, slots=True)
class Relocation:
    """One REL or RELA entry: patch ``offset`` of the target section with ``symbol``.

    ``addend`` is ``None`` for REL entries (the addend is in the patched bytes).
    """

    offset: int
    symbol: int
    type: int
    addend: int | None


class ElfFile:
    """An eBPF object file's sections, symbols and relocations, checked and decoded.

    ``sections`` is indexed by section number; ``symbols`` by symbol number (index 0 is the
    null symbol). ``relocations(i)`` lists the entries of every REL/RELA section whose
    target (``sh_info``) is section ``i``, in file order.
    """

    def __init__(self, data: bytes) -> None:
        if len(data) > MAX_OBJECT_SIZE:
            raise ElfError(f"{len(data)} bytes is larger than the {MAX_OBJECT_SIZE} bytes allowed")
        self.data = data
        try:
            self._elf = ELFFile(io.BytesIO(data))
            self.machine = self._read_header()
            self.sections: tuple[Section, ...] = self._read_sections()
            self._by_name = {}
            for s in self.sections:
                self._by_name.setdefault(s.name, s)
            self.symbols: tuple[Symbol, ...] = self._read_symbols()
            self._by_section: dict[int, list[Symbol]] = {}
            for sym in self.symbols:
                self._by_section.setdefault(sym.shndx, []).append(sym)
            self._relocations = self._read_relocations()
        except (ElfError, NotSupportedError):
            raise
        except _PARSE_ERRORS as exc:
            raise ElfError(f"malformed ELF file: {type(exc).__name__}: {exc}") from None

    # ---- lookups -----------------------------------------------------------------------
    def section(self, name: str) -> Section | None:
        """The first section called ``name``, or ``None``."""
        return self._by_name.get(name)

    def section_at(self, index: int) -> Section | None:
        """Section number ``index``, or ``None`` when out of range."""
        return self.sections[index] if 0 <= index < len(self.sections) else None

    def relocations(self, index: int) -> tuple[Relocation, ...]:
        """The relocation entries that patch section ``index``."""
        return self._relocations.get(index, ())

    def symbols_in(self, index: int) -> Iterator[Symbol]:
        """The symbols defined in section ``index``, in table order."""
        return iter(self._by_section.get(index, ()) if index != SHN_UNDEF else ())

    # ---- reading -----------------------------------------------------------------------
    def _read_header(self) -> str:
        header = self._elf.header
        ident = header["e_ident"]
        if ident["EI_CLASS"] != "ELFCLASS64":
            raise ElfError(f"{ident['EI_CLASS']} file: eBPF objects are 64-bit", offset=4)
        if ident["EI_DATA"] != "ELFDATA2LSB":
            raise NotSupportedError(
                "big-endian eBPF objects (bpfeb) are not supported", feature="bpfeb"
            )
        machine = header["e_machine"]
        if machine not in _MACHINES:
            raise ElfError(f"e_machine is {machine}, not EM_BPF", offset=18)
        if header["e_shnum"] and header["e_shentsize"] != _SHDR_SIZE:
            raise ElfError(f"section header size {header['e_shentsize']}", offset=58)
        return str(machine)

    def _slice(self, offset: int, size: int, what: str, section: str | None = None) -> bytes:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise ElfError(
                f"{what} ({size} bytes at file offset {offset:#x}) runs past the end of the file",
                section=section,
                offset=offset,
            )
        return self.data[offset : offset + size]

    def _read_sections(self) -> tuple[Section, ...]:
        header = self._elf.header
        count, shoff = header["e_shnum"], header["e_shoff"]
        table = self._slice(shoff, count * _SHDR_SIZE, "section header table")
        parse = self._elf.structs.Elf_Shdr.parse
        raw = [parse(table[i * _SHDR_SIZE : (i + 1) * _SHDR_SIZE]) for i in range(count)]
        strndx = header["e_shstrndx"]
        if count and not 0 <= strndx < count:
            raise ElfError(f"section name table index {strndx} is out of range", offset=62)
        names = b""
        if count:
            h = raw[strndx]
            names = self._slice(h["sh_offset"], h["sh_size"], "section name table")
        sections = []
        for i, h in enumerate(raw):
            # A name outside the table (fuzzers make them) leaves the section nameless: it
            # then matches no section pybpf reads by name, as ELF readers other than libbpf do.
            name = _cstring(names, h["sh_name"]) or ""
            sh_type = _number(h["sh_type"], ENUM_SH_TYPE_BASE)
            if i == 0 or sh_type == SHT_NOBITS:
                data = b""
            else:
                data = self._slice(h["sh_offset"], h["sh_size"], "section data", name or str(i))
            sections.append(
                Section(
                    i,
                    name,
                    sh_type,
                    h["sh_flags"],
                    h["sh_size"],
                    h["sh_link"],
                    h["sh_info"],
                    h["sh_entsize"],
                    data,
                )
            )
        return tuple(sections)

    def _read_symbols(self) -> tuple[Symbol, ...]:
        tables = [s for s in self.sections if s.type == SHT_SYMTAB]
        if not tables:
            raise ElfError("no symbol table (.symtab)")
        if len(tables) > 1:
            raise ElfError("more than one symbol table", section=tables[1].name)
        symtab = tables[0]
        if symtab.entsize != _SYM_SIZE or symtab.size % _SYM_SIZE:
            raise ElfError(
                f"symbol table entry size {symtab.entsize} / size {symtab.size} is invalid",
                section=symtab.name,
            )
        strtab = self.section_at(symtab.link)
        if strtab is None or strtab.type != SHT_STRTAB:
            raise ElfError("symbol table is not linked to a string table", section=symtab.name)
        symbols = []
        # ELF64 little-endian Elf64_Sym: name, info, other, shndx, value, size (the only
        # layout accepted above); unpacked directly, as pyelftools' structs are 10x slower.
        for i, (st_name, info, other, shndx, value, size) in enumerate(
            _SYM.iter_unpack(symtab.data)
        ):
            name = _cstring(strtab.data, st_name)
            pos = i * _SYM_SIZE
            if name is None:
                raise ElfError(
                    f"symbol {i} has a name offset {st_name} outside {strtab.name}",
                    section=symtab.name,
                    offset=pos,
                )
            if SHN_UNDEF < shndx < SHN_LORESERVE and shndx >= len(self.sections):
                raise ElfError(
                    f"symbol {name or i!r} is in section {shndx}, which does not exist",
                    section=symtab.name,
                    offset=pos,
                    symbol=name,
                )
            symbols.append(Symbol(i, name, value, size, info & 0xF, info >> 4, other & 0x3, shndx))
        return tuple(symbols)

    def _read_relocations(self) -> dict[int, tuple[Relocation, ...]]:
        out: dict[int, list[Relocation]] = {}
        for sec in self.sections:
            if sec.type not in (SHT_REL, SHT_RELA):
                continue
            target = self.section_at(sec.info)
            if target is None or not self._wanted(target):
                continue  # debug info, BTF, .eh_frame: not ours to apply
            rela = sec.type == SHT_RELA
            size = _RELA_SIZE if rela else _REL_SIZE
            if sec.size % size:
                raise ElfError(f"size {sec.size} is not a multiple of {size}", section=sec.name)
            layout = _RELA if rela else _REL
            entries = out.setdefault(target.index, [])
            for n, raw in enumerate(layout.iter_unpack(sec.data)):
                offset, info = raw[0], raw[1]
                sym, rtype = info >> 32, info & 0xFFFFFFFF
                if sym >= len(self.symbols):
                    raise ElfError(
                        f"relocation names symbol {sym}; the table has {len(self.symbols)}",
                        section=sec.name,
                        offset=n * size,
                    )
                entries.append(Relocation(offset, sym, rtype, raw[2] if rela else None))
        return {k: tuple(v) for k, v in out.items()}

    @staticmethod
    def _wanted(target: Section) -> bool:
        """Relocations pybpf applies: those of code and of the ``.maps`` section."""
        return target.executable or target.name == ".maps"
