"""BTF types: one frozen record per BTF kind, plus the kind, encoding and linkage enums.

Records hold decoded values (names as ``str``, type references as ids), never raw bytes or
string offsets, so two specs with the same types compare equal whatever their string table
layout. Every record has ``id`` (its type id; 0 is ``void``) and ``name`` (``""`` when
anonymous). Numbers follow ``linux/btf.h``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import ClassVar

__all__ = [
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
    "Struct",
    "Union",
    "EnumValue",
    "Enum",
    "Enum64",
    "Fwd",
    "Typedef",
    "Volatile",
    "Const",
    "Restrict",
    "Func",
    "Param",
    "FuncProto",
    "Var",
    "VarSecinfo",
    "Datasec",
    "Float",
    "DeclTag",
    "TypeTag",
    "Composite",
    "Reference",
    "MODIFIER_KINDS",
]


class Kind(IntEnum):
    """``BTF_KIND_*``: the kind field of a type's ``info`` word."""

    VOID = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


class IntEncoding(IntFlag):
    """``BTF_INT_*``: how an INT is interpreted (at most one bit is set)."""

    NONE = 0
    SIGNED = 1
    CHAR = 2
    BOOL = 4


class FuncLinkage(IntEnum):
    """``BTF_FUNC_*``: linkage of a FUNC (stored in its vlen field)."""

    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


class VarLinkage(IntEnum):
    """``BTF_VAR_*``: linkage of a VAR."""

    STATIC = 0
    GLOBAL = 1  # BTF_VAR_GLOBAL_ALLOCATED
    EXTERN = 2  # BTF_VAR_GLOBAL_EXTERN


@dataclass(frozen=True, slots=True)
class Type:
    """Base of every BTF type record: its id and name (``""`` if anonymous)."""

    kind: ClassVar[Kind] = Kind.VOID
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class Void(Type):
    """Type id 0: ``void``. Never stored in a .BTF section."""

    kind: ClassVar[Kind] = Kind.VOID
    id: int = 0
    name: str = ""


@dataclass(frozen=True, slots=True)
class Int(Type):
    """INT: ``size`` bytes, of which ``bits`` bits starting at bit ``offset`` are used."""

    kind: ClassVar[Kind] = Kind.INT
    size: int
    encoding: IntEncoding
    offset: int
    bits: int

    @property
    def is_signed(self) -> bool:
        """True for signed integers."""
        return bool(self.encoding & IntEncoding.SIGNED)

    @property
    def is_char(self) -> bool:
        """True when the encoding says char."""
        return bool(self.encoding & IntEncoding.CHAR)

    @property
    def is_bool(self) -> bool:
        """True for ``_Bool``."""
        return bool(self.encoding & IntEncoding.BOOL)


@dataclass(frozen=True, slots=True)
class Reference(Type):
    """Base of the kinds that only point at another type (``type_id``)."""

    type_id: int


@dataclass(frozen=True, slots=True)
class Pointer(Reference):
    """PTR to ``type_id``."""

    kind: ClassVar[Kind] = Kind.PTR


@dataclass(frozen=True, slots=True)
class Typedef(Reference):
    """TYPEDEF ``name`` for ``type_id``."""

    kind: ClassVar[Kind] = Kind.TYPEDEF


@dataclass(frozen=True, slots=True)
class Volatile(Reference):
    """VOLATILE ``type_id``."""

    kind: ClassVar[Kind] = Kind.VOLATILE


@dataclass(frozen=True, slots=True)
class Const(Reference):
    """CONST ``type_id``."""

    kind: ClassVar[Kind] = Kind.CONST


@dataclass(frozen=True, slots=True)
class Restrict(Reference):
    """RESTRICT ``type_id``."""

    kind: ClassVar[Kind] = Kind.RESTRICT


@dataclass(frozen=True, slots=True)
class TypeTag(Reference):
    """TYPE_TAG ``name`` on ``type_id``; ``kind_flag`` marks a plain attribute (newer BTF)."""

    kind: ClassVar[Kind] = Kind.TYPE_TAG
    kind_flag: bool = False


@dataclass(frozen=True, slots=True)
class Array(Type):
    """ARRAY of ``nelems`` elements of ``type_id``, indexed by ``index_type_id``."""

    kind: ClassVar[Kind] = Kind.ARRAY
    type_id: int
    index_type_id: int
    nelems: int


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a STRUCT or UNION: offsets in bits, ``bitfield_size`` 0 if not a bitfield."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass(frozen=True, slots=True)
class Composite(Type):
    """Base of STRUCT and UNION: ``size`` bytes, ``members`` in order.

    ``kind_flag`` is the encoding bit that splits each member's offset word into a 24-bit
    offset and an 8-bit bitfield size; the decoded values are in each :class:`Member`.
    """

    size: int
    members: tuple[Member, ...]
    kind_flag: bool = False


@dataclass(frozen=True, slots=True)
class Struct(Composite):
    """STRUCT."""

    kind: ClassVar[Kind] = Kind.STRUCT


@dataclass(frozen=True, slots=True)
class Union(Composite):
    """UNION."""

    kind: ClassVar[Kind] = Kind.UNION


@dataclass(frozen=True, slots=True)
class EnumValue:
    """One enumerator: ``value`` already signed or unsigned as its enum says."""

    name: str
    value: int


@dataclass(frozen=True, slots=True)
class Enum(Type):
    """ENUM of ``size`` bytes with 32-bit ``values``; ``signed`` is the kind_flag."""

    kind: ClassVar[Kind] = Kind.ENUM
    size: int
    values: tuple[EnumValue, ...]
    signed: bool = False


@dataclass(frozen=True, slots=True)
class Enum64(Type):
    """ENUM64 of ``size`` bytes with 64-bit ``values``; ``signed`` is the kind_flag."""

    kind: ClassVar[Kind] = Kind.ENUM64
    size: int
    values: tuple[EnumValue, ...]
    signed: bool = False


@dataclass(frozen=True, slots=True)
class Fwd(Type):
    """FWD: a forward declaration of a struct, or of a union when ``is_union``."""

    kind: ClassVar[Kind] = Kind.FWD
    is_union: bool = False


@dataclass(frozen=True, slots=True)
class Func(Type):
    """FUNC ``name`` whose prototype is the FUNC_PROTO ``type_id``."""

    kind: ClassVar[Kind] = Kind.FUNC
    type_id: int
    linkage: FuncLinkage = FuncLinkage.STATIC


@dataclass(frozen=True, slots=True)
class Param:
    """One FUNC_PROTO parameter; a last parameter of type 0 means ``...``."""

    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class FuncProto(Type):
    """FUNC_PROTO returning ``return_type_id`` (0: void) with ``params``."""

    kind: ClassVar[Kind] = Kind.FUNC_PROTO
    return_type_id: int
    params: tuple[Param, ...]

    @property
    def variadic(self) -> bool:
        """True when the prototype ends with ``...``."""
        return bool(self.params) and self.params[-1].type_id == 0


@dataclass(frozen=True, slots=True)
class Var(Type):
    """VAR ``name`` of ``type_id``."""

    kind: ClassVar[Kind] = Kind.VAR
    type_id: int
    linkage: VarLinkage = VarLinkage.STATIC


@dataclass(frozen=True, slots=True)
class VarSecinfo:
    """One DATASEC entry: the VAR (or extern FUNC) ``type_id`` at ``offset`` for ``size`` bytes."""

    type_id: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Datasec(Type):
    """DATASEC: an ELF data section of ``size`` bytes and the variables in it."""

    kind: ClassVar[Kind] = Kind.DATASEC
    size: int
    vars: tuple[VarSecinfo, ...]


@dataclass(frozen=True, slots=True)
class Float(Type):
    """FLOAT of ``size`` bytes."""

    kind: ClassVar[Kind] = Kind.FLOAT
    size: int


@dataclass(frozen=True, slots=True)
class DeclTag(Type):
    """DECL_TAG ``name`` on ``type_id``: the whole type if ``component_idx`` is -1, else
    its member or parameter number ``component_idx``; ``kind_flag`` marks a plain attribute."""

    kind: ClassVar[Kind] = Kind.DECL_TAG
    type_id: int
    component_idx: int = -1
    kind_flag: bool = False


# Kinds that qualify another type without changing its layout.
MODIFIER_KINDS = frozenset({Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG})
