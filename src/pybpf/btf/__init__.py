"""BTF: the .BTF and .BTF.ext sections of eBPF objects, as plain, immutable specs.

- :func:`parse` turns ``.BTF`` bytes into a :class:`Spec` (types by id and name, sizes,
  alignments, the loader's DATASEC fix-ups); :func:`encode` turns a spec back into bytes.
- :func:`parse_ext` turns ``.BTF.ext`` bytes into an :class:`Ext` (func_info, line_info and
  CO-RE relocations per ELF section).
- :func:`format_raw` and :func:`format_c` print a spec as ``bpftool btf dump file X``
  does, raw or as a C header.

Bad bytes raise :class:`pybpf.errors.BTFError` (an ``InputError``) with the section and offset.
"""

from __future__ import annotations

from pybpf.btf.encode import encode
from pybpf.btf.ext import CoreRelo, CoreReloKind, Ext, FuncInfo, LineInfo, parse_ext
from pybpf.btf.format_c import format_c
from pybpf.btf.format_raw import format_raw, format_type
from pybpf.btf.parse import parse
from pybpf.btf.spec import KCONFIG_SECTION, KSYMS_SECTION, Spec, references
from pybpf.btf.types import (
    Array,
    Composite,
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
    Reference,
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

__all__ = [
    "parse",
    "parse_ext",
    "encode",
    "format_raw",
    "format_type",
    "format_c",
    "references",
    "Spec",
    "Ext",
    "FuncInfo",
    "LineInfo",
    "CoreRelo",
    "CoreReloKind",
    "KCONFIG_SECTION",
    "KSYMS_SECTION",
    "Kind",
    "IntEncoding",
    "FuncLinkage",
    "VarLinkage",
    "Type",
    "Void",
    "Int",
    "Pointer",
    "Array",
    "Member",
    "Composite",
    "Struct",
    "Union",
    "EnumValue",
    "Enum",
    "Enum64",
    "Fwd",
    "Reference",
    "Typedef",
    "Volatile",
    "Const",
    "Restrict",
    "TypeTag",
    "Func",
    "Param",
    "FuncProto",
    "Var",
    "VarSecinfo",
    "Datasec",
    "Float",
    "DeclTag",
]
