"""Codecs: how the Python map API turns keys and values into bytes and back.

Maps store bytes. On the way in, every map accepts bytes-like objects of the exact size
and integers (stored little-endian; negative ones as two's complement). On the way out a
map's ``key_codec`` / ``value_codec`` decide the Python form: :data:`BYTES` (the default),
:data:`UINT` or :data:`INT` (little-endian integers), or any object with
``encode(obj, size) -> bytes`` and ``decode(data) -> obj`` (the loader plugs in codecs
generated from BTF types).
"""

from __future__ import annotations

from typing import Any, Protocol

from pybpf.errors import InputError

__all__ = ["Codec", "BytesCodec", "IntCodec", "BYTES", "UINT", "INT", "to_bytes", "codec"]


def to_bytes(obj: Any, size: int, what: str = "value") -> bytes:
    """``obj`` (bytes-like of ``size`` bytes, or an int that fits) as ``size`` bytes."""
    if isinstance(obj, int) and not isinstance(obj, bool):
        if size == 0 or not -(1 << (8 * size - 1)) <= obj < 1 << (8 * size):
            raise InputError(f"{what} {obj} does not fit in {size} bytes", field=what)
        return (obj & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    try:
        data = bytes(memoryview(obj).cast("B"))
    except TypeError:
        raise InputError(
            f"{what} must be bytes or an int, not {type(obj).__name__}", field=what
        ) from None
    if len(data) != size:
        raise InputError(f"{what} has {len(data)} bytes, the map wants {size}", field=what)
    return data


class Codec(Protocol):
    """Turns a Python object into ``size`` bytes and back."""

    def encode(self, obj: Any, size: int) -> bytes:
        """``obj`` as ``size`` bytes (InputError when it does not fit)."""
        ...

    def decode(self, data: bytes) -> Any:
        """``data`` as a Python object."""
        ...


class BytesCodec:
    """Bytes out; bytes-like or ints in."""

    def encode(self, obj: Any, size: int) -> bytes:
        """``obj`` as ``size`` bytes."""
        return to_bytes(obj, size)

    def decode(self, data: bytes) -> bytes:
        """``data`` itself."""
        return bytes(data)

    def __repr__(self) -> str:
        return "BYTES"


class IntCodec:
    """Little-endian integers out (``signed`` or not); bytes-like or ints in."""

    def __init__(self, signed: bool = False) -> None:
        self.signed = signed

    def encode(self, obj: Any, size: int) -> bytes:
        """``obj`` as ``size`` little-endian bytes."""
        return to_bytes(obj, size)

    def decode(self, data: bytes) -> int:
        """``data`` as a little-endian integer."""
        return int.from_bytes(data, "little", signed=self.signed)

    def __repr__(self) -> str:
        return "INT" if self.signed else "UINT"


BYTES = BytesCodec()
UINT = IntCodec()
INT = IntCodec(signed=True)

_NAMED = {"bytes": BYTES, "uint": UINT, "int": INT, None: BYTES}


def codec(spec: Any) -> Codec:
    """A codec from ``"bytes"``, ``"uint"``, ``"int"``, ``None`` (bytes) or a codec object."""
    if isinstance(spec, str) or spec is None:
        try:
            return _NAMED[spec]
        except KeyError:
            raise InputError(f"unknown codec {spec!r}", field="codec") from None
    if not (hasattr(spec, "encode") and hasattr(spec, "decode")):
        raise InputError(f"{spec!r} has no encode/decode", field="codec")
    return spec
