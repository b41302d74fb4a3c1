"""BTF.ext decoding: func_info, line_info and CO-RE relocation records, keyed by ELF section.

A ``.BTF.ext`` section has a header (``hdr_len`` says how long; older objects stop before
the CO-RE fields) and up to three info blocks. Each block starts with its record size and
holds, per ELF section, the section name (an offset in the ``.BTF`` string table), a record
count and the records. Record offsets (``insn_off``) are in bytes from the start of the ELF
section, as clang writes them; ``insn_index`` gives the instruction slot. Bad input raises
:class:`~pybpf.errors.BTFError` with ``section=".BTF.ext"`` and the byte offset.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeVar

from pybpf.btf.parse import byte_order_of
from pybpf.btf.spec import Spec
from pybpf.btf.types import Func
from pybpf.errors import BTFError

__all__ = [
    "CoreReloKind",
    "FuncInfo",
    "LineInfo",
    "CoreRelo",
    "Ext",
    "parse_ext",
    "EXT_HEADER_MIN",
    "EXT_HEADER_CORE",
]

EXT_HEADER_MIN = 24  # up to line_info_len
EXT_HEADER_CORE = 32  # with core_relo_off/core_relo_len
_INSN_SIZE = 8
R = TypeVar("R")


class CoreReloKind(IntEnum):
    """``enum bpf_core_relo_kind`` from ``linux/bpf.h``."""

    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12


@dataclass(frozen=True, slots=True)
class FuncInfo:
    """``bpf_func_info``: the function (FUNC ``type_id``) starting at byte ``insn_off``."""

    insn_off: int
    type_id: int

    @property
    def insn_index(self) -> int:
        """The instruction slot (``insn_off / 8``)."""
        return self.insn_off // _INSN_SIZE


@dataclass(frozen=True, slots=True)
class LineInfo:
    """``bpf_line_info``: the source line of the instruction at byte ``insn_off``.

    ``file_name`` and ``line`` (the source text) come from the string table, ``line_number``
    and ``column`` from ``line_col`` (22 and 10 bits).
    """

    insn_off: int
    file_name: str
    line: str
    line_number: int
    column: int

    @property
    def insn_index(self) -> int:
        """The instruction slot (``insn_off / 8``)."""
        return self.insn_off // _INSN_SIZE


@dataclass(frozen=True, slots=True)
class CoreRelo:
    """``bpf_core_relo``: a CO-RE relocation of the instruction at byte ``insn_off``.

    ``type_id`` is the local root type, ``access`` the access string (``"0:1:2"``) and
    ``accessors`` its numbers.
    """

    insn_off: int
    type_id: int
    access: str
    kind: CoreReloKind
    accessors: tuple[int, ...] = ()

    @property
    def insn_index(self) -> int:
        """The instruction slot (``insn_off / 8``)."""
        return self.insn_off // _INSN_SIZE


@dataclass(frozen=True, repr=False)
class Ext:
    """A decoded ``.BTF.ext``: records per ELF section name, in file order.

    ``*_rec_size`` are the record sizes found (records may be longer than the fields
    pybpf reads; the extra bytes are skipped, as libbpf does).
    """

    func_info: Mapping[str, tuple[FuncInfo, ...]] = field(default_factory=dict)
    line_info: Mapping[str, tuple[LineInfo, ...]] = field(default_factory=dict)
    core_relos: Mapping[str, tuple[CoreRelo, ...]] = field(default_factory=dict)
    func_info_rec_size: int = 8
    line_info_rec_size: int = 16
    core_relo_rec_size: int = 16
    _line_index: dict[str, tuple[list[int], list[LineInfo]]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def __repr__(self) -> str:
        counts = [
            f"{sum(map(len, block.values()))} {what}"
            for what, block in (
                ("func_info", self.func_info),
                ("line_info", self.line_info),
                ("core_relo", self.core_relos),
            )
        ]
        return f"Ext({', '.join(counts)})"

    def line_at(self, section: str, insn_off: int) -> LineInfo | None:
        """The line_info record in effect at byte ``insn_off`` of ``section``, or ``None``.

        That is the last record at or before the instruction, as a disassembler shows it.
        """
        cached = self._line_index.get(section)
        if cached is None:
            ordered = sorted(self.line_info.get(section, ()), key=lambda r: r.insn_off)
            cached = self._line_index[section] = ([r.insn_off for r in ordered], ordered)
        offsets, ordered = cached
        i = bisect.bisect_right(offsets, insn_off)
        return ordered[i - 1] if i else None


def parse_ext(data: bytes | bytearray | memoryview, spec: Spec) -> Ext:
    """Decode a ``.BTF.ext`` section whose strings and types live in ``spec``."""
    return _ExtParser(bytes(data), spec).parse()


class _ExtParser:
    def __init__(self, data: bytes, spec: Spec) -> None:
        self.data = data
        self.spec = spec
        order = byte_order_of(data, ".BTF.ext")
        e = "<" if order == "little" else ">"
        self.endian = e
        self.header = struct.Struct(e + "HBBIIIII").unpack_from
        self.core_header = struct.Struct(e + "II").unpack_from
        self.u32 = struct.Struct(e + "I").unpack_from
        self.pair = struct.Struct(e + "II").unpack_from
        self.quad = struct.Struct(e + "IIII").unpack_from
        self.strings: dict[int, str] = {}

    def error(self, message: str, offset: int) -> BTFError:
        return BTFError(message, section=".BTF.ext", offset=offset)

    def string(self, offset: int, pos: int) -> str:
        cached = self.strings.get(offset)
        if cached is None:
            try:
                cached = self.spec.string(offset)
            except BTFError:
                raise self.error(f"string offset {offset} is outside .BTF's strings", pos) from None
            self.strings[offset] = cached
        return cached

    def parse(self) -> Ext:
        data = self.data
        if len(data) < 8:
            raise self.error(f"{len(data)} bytes is too short for a .BTF.ext header", 0)
        _, version, flags, hdr_len = struct.unpack_from(self.endian + "HBBI", data, 0)
        if version != 1:
            raise self.error(f"unsupported .BTF.ext version {version}", 2)
        if flags != 0:
            raise self.error(f"unsupported .BTF.ext flags {flags:#x}", 3)
        if hdr_len < EXT_HEADER_MIN or hdr_len > len(data):
            raise self.error(f"bad header length {hdr_len}", 4)
        _, _, _, _, fi_off, fi_len, li_off, li_len = self.header(data, 0)
        func_info = self.blocks("func_info", fi_off, fi_len, hdr_len, 8, self.func_record)
        line_info = self.blocks("line_info", li_off, li_len, hdr_len, 16, self.line_record)
        core_relos: dict[str, tuple[CoreRelo, ...]] = {}
        cr_size = 16
        if hdr_len >= EXT_HEADER_CORE:
            cr_off, cr_len = self.core_header(data, EXT_HEADER_MIN)
            core_relos, cr_size = self.blocks(
                "core_relo", cr_off, cr_len, hdr_len, 16, self.core_record
            )
        return Ext(func_info[0], line_info[0], core_relos, func_info[1], line_info[1], cr_size)

    def blocks(
        self,
        what: str,
        off: int,
        length: int,
        hdr_len: int,
        min_rec: int,
        decode: Callable[[int], R],
    ) -> tuple[dict[str, tuple[R, ...]], int]:
        """The records of one info block by section name, and its record size."""
        data = self.data
        out: dict[str, tuple[R, ...]] = {}
        if length == 0:
            return out, min_rec
        start = hdr_len + off
        if off % 4:
            raise self.error(f"{what} block is not 4-byte aligned", start)
        end = start + length
        if end > len(data):
            raise self.error(f"{what} block runs past the end of .BTF.ext", start)
        if length < 4:
            raise self.error(f"{what} block has no record size", start)
        (rec_size,) = self.u32(data, start)
        if rec_size < min_rec or rec_size % 4:
            raise self.error(f"{what} record size {rec_size} is invalid", start)
        pos = start + 4
        if pos == end:
            raise self.error(f"{what} block has no records", start)
        while pos < end:
            if end - pos < 8:
                raise self.error(f"{what} section header is truncated", pos)
            name_off, count = self.pair(data, pos)
            if count == 0 or count * rec_size > end - pos - 8:
                raise self.error(f"{what} section has a bad record count {count}", pos + 4)
            name = self.string(name_off, pos)
            if name in out:
                raise self.error(f"{what} lists section {name!r} twice", pos)
            pos += 8
            records = []
            for _ in range(count):
                records.append(decode(pos))
                pos += rec_size
            out[name] = tuple(records)
        return out, rec_size

    def check_insn_off(self, insn_off: int, pos: int) -> None:
        if insn_off % _INSN_SIZE:
            raise self.error(f"instruction offset {insn_off} is not a multiple of 8", pos)

    def func_record(self, pos: int) -> FuncInfo:
        insn_off, type_id = self.pair(self.data, pos)
        self.check_insn_off(insn_off, pos)
        if type_id >= len(self.spec) or not isinstance(self.spec.types[type_id], Func):
            raise self.error(f"func_info type {type_id} is not a FUNC", pos + 4)
        return FuncInfo(insn_off, type_id)

    def line_record(self, pos: int) -> LineInfo:
        insn_off, file_off, line_off, line_col = self.quad(self.data, pos)
        self.check_insn_off(insn_off, pos)
        return LineInfo(
            insn_off,
            self.string(file_off, pos + 4),
            self.string(line_off, pos + 8),
            line_col >> 10,
            line_col & 0x3FF,
        )

    def core_record(self, pos: int) -> CoreRelo:
        insn_off, type_id, access_off, kind = self.quad(self.data, pos)
        self.check_insn_off(insn_off, pos)
        if type_id >= len(self.spec):
            raise self.error(f"CO-RE relocation names missing type {type_id}", pos + 4)
        if kind > max(CoreReloKind):
            raise self.error(f"unknown CO-RE relocation kind {kind}", pos + 12)
        access = self.string(access_off, pos + 8)
        parts = access.split(":")
        if not access or not all(p.isdigit() and p.isascii() for p in parts):
            raise self.error(f"bad CO-RE access string {access!r}", pos + 8)
        return CoreRelo(insn_off, type_id, access, CoreReloKind(kind), tuple(map(int, parts)))
