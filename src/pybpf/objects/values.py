"""Values: bytes as Python values by BTF type and back, for map codecs, globals and bpftool output.

:func:`decode` turns the bytes of a BTF type into what ``bpftool``'s BTF dumper prints in
JSON: integers as ints (``_Bool`` as bools), ``char`` arrays holding a printable
NUL-terminated string as ``str``, other arrays as lists, structs and unions as dicts by
member name (bitfields extracted; anonymous members' fields merged in), enums as the
enumerator's name when one matches (else the number), pointers as ints, floats as floats.
:func:`encode` is the inverse for what can be written: ints, bools, enum names, floats,
``str``/``bytes`` for char arrays, lists for arrays, dicts for structs (members not given
are zero), and raw bytes of the type's size for anything.

:class:`BTFCodec` plugs this into a map (:mod:`pybpf.maps.codec`'s protocol): keys and
values go in as ints, dicts, ... and come out decoded.
"""

from __future__ import annotations

import struct
from typing import Any

from pybpf import btf as _btf
from pybpf.errors import InputError

__all__ = ["decode", "encode", "BTFCodec", "is_integer"]

_FLOATS = {4: "<f", 8: "<d"}


def is_integer(spec: _btf.Spec, type_id: int) -> bool:
    """True when ``type_id`` is (a typedef or qualifier of) an integer or enum type."""
    try:
        t = spec.resolve(type_id)
    except (InputError, KeyError, IndexError):
        return False
    return isinstance(t, _btf.Int | _btf.Enum | _btf.Enum64) and t.size <= 8


def _int(data: bytes, signed: bool) -> int:
    return int.from_bytes(data, "little", signed=signed)


def _is_char(spec: _btf.Spec, type_id: int) -> bool:
    t = spec.resolve(type_id)
    return isinstance(t, _btf.Int) and t.size == 1 and (t.is_char or t.name in ("char", "u8"))


def _string(data: bytes) -> str | None:
    end = data.find(b"\0")
    if end < 0:
        return None
    text = data[:end]
    if not all(32 <= b < 127 for b in text):
        return None
    return text.decode("ascii")


def decode(spec: _btf.Spec, type_id: int, data: bytes) -> Any:
    """``data`` (at least the type's size) as the Python value of BTF type ``type_id``."""
    t = spec.resolve(type_id)
    if isinstance(t, _btf.Int):
        raw = data[: t.size]
        if t.bits != t.size * 8 or t.offset:
            value = (_int(raw, False) >> t.offset) & ((1 << t.bits) - 1)
            if t.is_signed and value >> (t.bits - 1):
                value -= 1 << t.bits
        else:
            value = _int(raw, t.is_signed)
        return bool(value) if t.is_bool else value
    if isinstance(t, _btf.Enum | _btf.Enum64):
        value = _int(data[: t.size], t.signed)
        for v in t.values:
            if v.value == value:
                return v.name
        return value
    if isinstance(t, _btf.Pointer):
        return _int(data[: spec.pointer_size], False)
    if isinstance(t, _btf.Float) and t.size in _FLOATS:
        return struct.unpack(_FLOATS[t.size], data[: t.size])[0]
    if isinstance(t, _btf.Array):
        size = spec.size_of(t.type_id) if t.nelems else 0
        if _is_char(spec, t.type_id):
            text = _string(data[: t.nelems])
            if text is not None:
                return text
        return [decode(spec, t.type_id, data[i * size : (i + 1) * size]) for i in range(t.nelems)]
    if isinstance(t, _btf.Composite):
        out: dict[str, Any] = {}
        for m in t.members:
            value = _member(spec, m, data)
            if not m.name and isinstance(value, dict):
                out.update(value)
            else:
                out[m.name] = value
        return out
    if isinstance(t, _btf.Datasec):
        out = {}
        for v in t.vars:
            var = spec.type(v.type_id)
            if isinstance(var, _btf.Var):
                out[var.name] = decode(spec, var.type_id, data[v.offset : v.offset + v.size])
        return out
    return bytes(data)


def _member(spec: _btf.Spec, m: _btf.Member, data: bytes) -> Any:
    if not m.bitfield_size:
        start = m.bit_offset // 8
        size = spec.size_of(m.type_id)
        return decode(spec, m.type_id, data[start : start + size])
    t = spec.resolve(m.type_id)
    whole = _int(bytes(data), False)
    value = (whole >> m.bit_offset) & ((1 << m.bitfield_size) - 1)
    signed = isinstance(t, _btf.Int) and t.is_signed
    if signed and value >> (m.bitfield_size - 1):
        value -= 1 << m.bitfield_size
    return value


def _fit(value: int, size: int, what: str) -> bytes:
    if not -(1 << (8 * size - 1)) <= value < 1 << (8 * size):
        raise InputError(f"{value} does not fit in the {size} bytes of {what}", field="value")
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def encode(spec: _btf.Spec, type_id: int, value: Any, what: str = "value") -> bytes:
    """``value`` as the bytes of BTF type ``type_id`` (see the module docstring)."""
    size = spec.size_of(type_id)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if len(raw) == size:
            return raw
    t = spec.resolve(type_id)
    if isinstance(t, _btf.Int | _btf.Enum | _btf.Enum64 | _btf.Pointer):
        if isinstance(value, str) and isinstance(t, _btf.Enum | _btf.Enum64):
            for v in t.values:
                if v.name == value:
                    return _fit(v.value, size, what)
            raise InputError(f"{value!r} is not an enumerator of {t.name or 'the enum'}")
        if isinstance(value, bool | int):
            return _fit(int(value), size, what)
    elif isinstance(t, _btf.Float) and isinstance(value, int | float) and size in _FLOATS:
        return struct.pack(_FLOATS[size], float(value))
    elif isinstance(t, _btf.Array):
        elem = spec.size_of(t.type_id) if t.nelems else 0
        if isinstance(value, str | bytes | bytearray) and _is_char(spec, t.type_id):
            raw = value.encode() if isinstance(value, str) else bytes(value)
            if len(raw) > size:
                raise InputError(f"{len(raw)} bytes do not fit in the {size} of {what}")
            return raw + bytes(size - len(raw))
        if isinstance(value, list | tuple):
            if len(value) > t.nelems:
                raise InputError(f"{len(value)} elements do not fit in the {t.nelems} of {what}")
            parts = [encode(spec, t.type_id, v, what) for v in value]
            return b"".join(parts) + bytes(elem * (t.nelems - len(value)))
    elif isinstance(t, _btf.Composite) and isinstance(value, dict):
        return _encode_composite(spec, t, value, what)
    raise InputError(
        f"cannot store {type(value).__name__} {value!r} in the {size}-byte {what}", field="value"
    )


def _members(spec: _btf.Spec, t: _btf.Composite, base: int = 0):
    """``(name, member, bit offset)`` of every named member, anonymous ones flattened."""
    for m in t.members:
        inner = spec.resolve(m.type_id)
        if not m.name and isinstance(inner, _btf.Composite):
            yield from _members(spec, inner, base + m.bit_offset)
        else:
            yield m.name, m, base + m.bit_offset


def _encode_composite(spec: _btf.Spec, t: _btf.Composite, value: dict, what: str) -> bytes:
    image = bytearray(t.size)
    known = {}
    for name, m, bit in _members(spec, t):
        known[name] = (m, bit)
    unknown = set(value) - set(known)
    if unknown:
        raise InputError(f"{t.name or 'the struct'} has no member {sorted(unknown)[0]!r}")
    for name, item in value.items():
        m, bit = known[name]
        if m.bitfield_size:
            if not isinstance(item, int):
                raise InputError(f"bitfield {name!r} takes an int, not {item!r}")
            whole = int.from_bytes(image, "little")
            mask = ((1 << m.bitfield_size) - 1) << bit
            whole = (whole & ~mask) | ((item << bit) & mask)
            image[:] = whole.to_bytes(t.size, "little")
        else:
            raw = encode(spec, m.type_id, item, f"{what}.{name}")
            image[bit // 8 : bit // 8 + len(raw)] = raw
    return bytes(image)


class BTFCodec:
    """A map codec for one BTF type: Python values in and out (see :func:`encode`)."""

    def __init__(self, spec: _btf.Spec, type_id: int) -> None:
        self.spec = spec
        self.type_id = type_id
        self.size = spec.size_of(type_id)

    def encode(self, obj: Any, size: int) -> bytes:
        """``obj`` (an int, dict, list, ... or raw bytes) as ``size`` bytes."""
        return encode(self.spec, self.type_id, obj)

    def decode(self, data: bytes) -> Any:
        """``data`` decoded by the type."""
        return decode(self.spec, self.type_id, data)

    def __repr__(self) -> str:
        return f"BTFCodec({self.spec.type(self.type_id).name or self.type_id})"
