"""BTF decoding: the bytes of a ``.BTF`` section (header, type section, strings) into a Spec.

Both byte orders are read (the header magic ``0xeB9F`` tells which). Everything is checked
before it is used, so that truncated, corrupted or fuzzed input raises one
:class:`~pybpf.errors.BTFError` naming the byte offset in the section: header fields and
section bounds, each record's kind, flags and length (a ``vlen`` cannot claim more records
than the section holds), string offsets, INT/ENUM/FLOAT sizes and linkages. Reference and
cycle checks follow in :class:`~pybpf.btf.spec.Spec`.
"""

from __future__ import annotations

import struct

from pybpf.btf.spec import Spec
from pybpf.btf.types import (
    Array,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    EnumValue,
    Float,
    Func,
    FuncLinkage,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Kind,
    Member,
    Param,
    Pointer,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarLinkage,
    VarSecinfo,
    Void,
    Volatile,
)
from pybpf.errors import BTFError

__all__ = ["parse", "BTF_MAGIC", "HEADER_SIZE", "byte_order_of"]

BTF_MAGIC = 0xEB9F
HEADER_SIZE = 24  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_MAX_STR_LEN = 0x7FFFFFFF

# Bytes that follow the 12-byte common part, per kind (per vlen entry where marked).
_EXTRA_FIXED = {Kind.INT: 4, Kind.ARRAY: 12, Kind.VAR: 4, Kind.DECL_TAG: 4}
_EXTRA_PER_VLEN = {
    Kind.STRUCT: 12,
    Kind.UNION: 12,
    Kind.ENUM: 8,
    Kind.ENUM64: 12,
    Kind.FUNC_PROTO: 8,
    Kind.DATASEC: 12,
}
_KIND_FLAG_OK = frozenset(
    {Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FWD, Kind.TYPE_TAG, Kind.DECL_TAG}
)
_VLEN_OK = frozenset(_EXTRA_PER_VLEN) | {Kind.FUNC}
_INFO_UNUSED = 0x60FF0000  # bits 16-23 and 29-30 of a type's info word
_INT_UNUSED = 0xF000FF00  # bits of an INT's data word outside encoding, offset and nr_bits
_INT_SIZES = frozenset({1, 2, 4, 8, 16})
_ENUM_SIZES = frozenset({1, 2, 4, 8})
_FLOAT_SIZES = frozenset({2, 4, 8, 12, 16})
_REFERENCE_CLASSES = {
    Kind.PTR: Pointer,
    Kind.TYPEDEF: Typedef,
    Kind.VOLATILE: Volatile,
    Kind.CONST: Const,
    Kind.RESTRICT: Restrict,
}


def byte_order_of(data: bytes, section: str = ".BTF") -> str:
    """``"little"`` or ``"big"`` from the 0xeB9F magic that starts ``data``."""
    if len(data) < 2:
        raise BTFError("too short for a BTF magic", section=section, offset=0)
    if data[0] == 0x9F and data[1] == 0xEB:
        return "little"
    if data[0] == 0xEB and data[1] == 0x9F:
        return "big"
    raise BTFError(f"bad magic {data[0]:02x}{data[1]:02x}", section=section, offset=0)


def parse(data: bytes | bytearray | memoryview, *, pointer_size: int = 8) -> Spec:
    """Decode a ``.BTF`` section into a :class:`Spec` (raises :class:`BTFError`)."""
    return _Parser(bytes(data)).parse(pointer_size)


class _Parser:
    """One pass over a .BTF section; ``pos`` values are offsets in the whole section."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.order = byte_order_of(data)
        e = "<" if self.order == "little" else ">"
        self.u32 = struct.Struct(e + "I").unpack_from
        self.i32 = struct.Struct(e + "i").unpack_from
        self.common = struct.Struct(e + "III").unpack_from
        self.triple = struct.Struct(e + "III").iter_unpack
        self.pair = struct.Struct(e + "II").iter_unpack
        self.pair_signed = struct.Struct(e + "Ii").iter_unpack
        self.header = struct.Struct(e + "HBBIIIII").unpack_from
        self.names: dict[int, str] = {0: ""}
        self.strings = b""

    def error(self, message: str, offset: int, type_id: int | None = None) -> BTFError:
        return BTFError(message, section=".BTF", offset=offset, type_id=type_id)

    def parse(self, pointer_size: int) -> Spec:
        data = self.data
        if len(data) < HEADER_SIZE:
            raise self.error(f"{len(data)} bytes is too short for a BTF header", 0)
        _, version, flags, hdr_len, type_off, type_len, str_off, str_len = self.header(data, 0)
        if version != 1:
            raise self.error(f"unsupported BTF version {version}", 2)
        if flags != 0:
            raise self.error(f"unsupported BTF flags {flags:#x}", 3)
        if hdr_len < HEADER_SIZE or hdr_len > len(data):
            raise self.error(f"bad header length {hdr_len}", 4)
        body = len(data) - hdr_len
        if str_off + str_len > body:
            raise self.error("string section runs past the end of .BTF", 16)
        if type_off + type_len > str_off:
            raise self.error("type section overlaps the string section", 8)
        if type_off % 4 or type_len % 4:
            raise self.error("type section is not 4-byte aligned", 8)
        if str_len == 0 or str_len > _MAX_STR_LEN:
            raise self.error(f"bad string section length {str_len}", 20)
        start = hdr_len + str_off
        self.strings = data[start : start + str_len]
        self.str_start = start
        if self.strings[0] != 0:
            raise self.error("string section does not start with an empty string", start)
        if self.strings[-1] != 0:
            raise self.error("string section is not NUL-terminated", start + str_len - 1)
        types, offsets = self.parse_types(hdr_len + type_off, hdr_len + type_off + type_len)
        return Spec(tuple(types), self.strings, self.order, pointer_size, tuple(offsets))

    def name(self, offset: int, pos: int, type_id: int) -> str:
        cached = self.names.get(offset)
        if cached is not None:
            return cached
        strings = self.strings
        if offset >= len(strings):
            raise self.error(f"name offset {offset} is outside the string section", pos, type_id)
        text = strings[offset : strings.index(b"\0", offset)].decode("utf-8", "surrogateescape")
        self.names[offset] = text
        return text

    def parse_types(self, pos: int, end: int) -> tuple[list[Type], list[int]]:
        data = self.data
        types: list[Type] = [Void()]
        offsets = [0]
        while pos < end:
            tid = len(types)
            if end - pos < 12:
                raise self.error("truncated type record", pos, tid)
            name_off, info, size_type = self.common(data, pos)
            raw_kind = (info >> 24) & 0x1F
            if raw_kind == 0 or raw_kind > max(Kind):
                raise self.error(f"unknown BTF kind {raw_kind}", pos, tid)
            kind = Kind(raw_kind)
            vlen = info & 0xFFFF
            kind_flag = bool(info >> 31)
            if info & _INFO_UNUSED:
                raise self.error(f"unused bits set in info word {info:#x}", pos + 4, tid)
            if kind_flag and kind not in _KIND_FLAG_OK:
                raise self.error(f"{kind.name} cannot have kind_flag set", pos + 4, tid)
            if vlen and kind not in _VLEN_OK:
                raise self.error(f"{kind.name} cannot have vlen {vlen}", pos + 4, tid)
            length = 12 + _EXTRA_FIXED.get(kind, 0) + _EXTRA_PER_VLEN.get(kind, 0) * vlen
            if length > end - pos:
                raise self.error(f"{kind.name} record runs past the type section", pos, tid)
            name = self.name(name_off, pos, tid)
            types.append(self.decode(kind, tid, name, kind_flag, vlen, size_type, pos))
            offsets.append(pos)
            pos += length
        return types, offsets

    def decode(
        self, kind: Kind, tid: int, name: str, kind_flag: bool, vlen: int, st: int, pos: int
    ) -> Type:
        data = self.data
        body = pos + 12
        if kind in _REFERENCE_CLASSES:
            return _REFERENCE_CLASSES[kind](tid, name, st)
        if kind == Kind.TYPE_TAG:
            return TypeTag(tid, name, st, kind_flag)
        if kind == Kind.INT:
            (word,) = self.u32(data, body)
            encoding, offset, bits = (word >> 24) & 0x0F, (word >> 16) & 0xFF, word & 0xFF
            if word & _INT_UNUSED or encoding not in (0, 1, 2, 4):
                raise self.error(f"bad INT data word {word:#x}", body, tid)
            if st not in _INT_SIZES or bits > 128 or offset + bits > st * 8:
                raise self.error(f"bad INT size {st} / bits {offset}+{bits}", pos + 8, tid)
            return Int(tid, name, st, IntEncoding(encoding), offset, bits)
        if kind == Kind.ARRAY:
            elem, index, nelems = self.common(data, body)
            return Array(tid, name, elem, index, nelems)
        if kind in (Kind.STRUCT, Kind.UNION):
            members = []
            for i, (m_name, m_type, m_off) in enumerate(self.triple(data[body : body + 12 * vlen])):
                mname = self.name(m_name, body + 12 * i, tid)
                if kind_flag:
                    members.append(Member(mname, m_type, m_off & 0xFFFFFF, m_off >> 24))
                else:
                    members.append(Member(mname, m_type, m_off, 0))
            cls = Struct if kind == Kind.STRUCT else Union
            return cls(tid, name, st, tuple(members), kind_flag)
        if kind == Kind.ENUM:
            if st not in _ENUM_SIZES:
                raise self.error(f"bad ENUM size {st}", pos + 8, tid)
            rows = self.pair_signed if kind_flag else self.pair
            values = tuple(
                EnumValue(self.name(v_name, body + 8 * i, tid), val)
                for i, (v_name, val) in enumerate(rows(data[body : body + 8 * vlen]))
            )
            return Enum(tid, name, st, values, kind_flag)
        if kind == Kind.ENUM64:
            if st not in _ENUM_SIZES:
                raise self.error(f"bad ENUM64 size {st}", pos + 8, tid)
            values64 = []
            for i, (v_name, lo, hi) in enumerate(self.triple(data[body : body + 12 * vlen])):
                val = (hi << 32) | lo
                if kind_flag and val >> 63:
                    val -= 1 << 64
                values64.append(EnumValue(self.name(v_name, body + 12 * i, tid), val))
            return Enum64(tid, name, st, tuple(values64), kind_flag)
        if kind == Kind.FWD:
            return Fwd(tid, name, kind_flag)
        if kind == Kind.FUNC:
            if vlen > max(FuncLinkage):
                raise self.error(f"bad FUNC linkage {vlen}", pos + 4, tid)
            return Func(tid, name, st, FuncLinkage(vlen))
        if kind == Kind.FUNC_PROTO:
            params = tuple(
                Param(self.name(p_name, body + 8 * i, tid), p_type)
                for i, (p_name, p_type) in enumerate(self.pair(data[body : body + 8 * vlen]))
            )
            return FuncProto(tid, name, st, params)
        if kind == Kind.VAR:
            (linkage,) = self.u32(data, body)
            if linkage > max(VarLinkage):
                raise self.error(f"bad VAR linkage {linkage}", body, tid)
            return Var(tid, name, st, VarLinkage(linkage))
        if kind == Kind.DATASEC:
            entries = tuple(VarSecinfo(*row) for row in self.triple(data[body : body + 12 * vlen]))
            return Datasec(tid, name, st, entries)
        if kind == Kind.FLOAT:
            if st not in _FLOAT_SIZES:
                raise self.error(f"bad FLOAT size {st}", pos + 8, tid)
            return Float(tid, name, st)
        # DECL_TAG, the last kind
        (component,) = self.i32(data, body)
        return DeclTag(tid, name, st, component, kind_flag)
