"""BTF encoding: a Spec back into ``.BTF`` section bytes, in either byte order.

The spec's own string table is kept as it is (so ``.BTF.ext`` string offsets stay valid)
and names it does not hold are appended; for a section as clang writes it,
``encode(parse(data)) == data``. The kernel backend loads the encoded, fixed-up spec.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from pybpf.btf.parse import BTF_MAGIC, HEADER_SIZE
from pybpf.btf.spec import Spec
from pybpf.btf.types import (
    Array,
    Composite,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Reference,
    Type,
    TypeTag,
    Var,
)
from pybpf.errors import InternalError

__all__ = ["encode", "StringTable"]


class StringTable:
    """A string section under construction: the original bytes plus appended strings."""

    def __init__(self, base: bytes = b"\0") -> None:
        self.data = bytearray(base if base.endswith(b"\0") else base + b"\0")
        self.offsets: dict[str, int] = {}
        start = 0
        for piece in bytes(self.data).split(b"\0")[:-1]:
            self.offsets.setdefault(piece.decode("utf-8", "surrogateescape"), start)
            start += len(piece) + 1

    def add(self, text: str) -> int:
        """The offset of ``text``, appending it if it is not there yet."""
        offset = self.offsets.get(text)
        if offset is None:
            offset = len(self.data)
            self.data += text.encode("utf-8", "surrogateescape") + b"\0"
            self.offsets[text] = offset
        return offset


def encode(spec: Spec, *, byte_order: str | None = None) -> bytes:
    """The ``.BTF`` section for ``spec`` (in its own byte order unless ``byte_order`` is given)."""
    order = byte_order or spec.byte_order
    e = "<" if order == "little" else ">"
    strings = StringTable(spec.strings)
    u32 = struct.Struct(e + "I").pack
    common = struct.Struct(e + "III").pack
    out = bytearray()
    for t in spec:
        out += _encode_type(t, strings, common, u32, e)
    header = struct.pack(
        e + "HBBIIIII", BTF_MAGIC, 1, 0, HEADER_SIZE, 0, len(out), len(out), len(strings.data)
    )
    return header + bytes(out) + bytes(strings.data)


def _info(t: Type, vlen: int = 0, kind_flag: bool = False) -> int:
    return (int(kind_flag) << 31) | (int(t.kind) << 24) | vlen


def _encode_type(
    t: Type,
    strings: StringTable,
    common: Callable[[int, int, int], bytes],
    u32: Callable[[int], bytes],
    e: str,
) -> bytes:
    name = strings.add(t.name)
    if isinstance(t, TypeTag):
        return common(name, _info(t, 0, t.kind_flag), t.type_id)
    if isinstance(t, Reference):
        return common(name, _info(t), t.type_id)
    if isinstance(t, Int):
        word = (int(t.encoding) << 24) | (t.offset << 16) | t.bits
        return common(name, _info(t), t.size) + u32(word)
    if isinstance(t, Array):
        return common(name, _info(t), 0) + common(t.type_id, t.index_type_id, t.nelems)
    if isinstance(t, Composite):
        body = bytearray(common(name, _info(t, len(t.members), t.kind_flag), t.size))
        for m in t.members:
            offset = (m.bitfield_size << 24 | m.bit_offset) if t.kind_flag else m.bit_offset
            body += common(strings.add(m.name), m.type_id, offset)
        return bytes(body)
    if isinstance(t, Enum):
        body = bytearray(common(name, _info(t, len(t.values), t.signed), t.size))
        for v in t.values:
            body += struct.pack(e + "II", strings.add(v.name), v.value & 0xFFFFFFFF)
        return bytes(body)
    if isinstance(t, Enum64):
        body = bytearray(common(name, _info(t, len(t.values), t.signed), t.size))
        for v in t.values:
            value = v.value & 0xFFFFFFFFFFFFFFFF
            body += common(strings.add(v.name), value & 0xFFFFFFFF, value >> 32)
        return bytes(body)
    if isinstance(t, Fwd):
        return common(name, _info(t, 0, t.is_union), 0)
    if isinstance(t, Func):
        return common(name, _info(t, int(t.linkage)), t.type_id)
    if isinstance(t, FuncProto):
        body = bytearray(common(name, _info(t, len(t.params)), t.return_type_id))
        for p in t.params:
            body += struct.pack(e + "II", strings.add(p.name), p.type_id)
        return bytes(body)
    if isinstance(t, Var):
        return common(name, _info(t), t.type_id) + u32(int(t.linkage))
    if isinstance(t, Datasec):
        body = bytearray(common(name, _info(t, len(t.vars)), t.size))
        for v in t.vars:
            body += common(v.type_id, v.offset, v.size)
        return bytes(body)
    if isinstance(t, Float):
        return common(name, _info(t), t.size)
    if isinstance(t, DeclTag):
        return common(name, _info(t, 0, t.kind_flag), t.type_id) + struct.pack(
            e + "i", t.component_idx
        )
    raise InternalError(f"cannot encode {type(t).__name__}")  # pragma: no cover
