"""Program file: reads an eBPF program from raw bytecode, hex text or assembly text.

The format is chosen by content when not given: an ELF object (``\\x7fELF``) is refused here
(objects go through the loader), text made only of hex byte tokens (``b7 00 00 00 ...``, or
``0x``-prefixed u64 words) is hex, other text is assembly (llvm-objdump or bpf_conformance
syntax), and anything else is raw little-endian bytecode.
"""

from __future__ import annotations

import re
from pathlib import Path

from pybpf.errors import InputError, NotSupportedError
from pybpf.isa.codec import decode
from pybpf.isa.instruction import Instruction

__all__ = ["FORMATS", "detect_format", "parse_program", "read_program"]

FORMATS = ("auto", "bin", "hex", "asm")
_HEX_TOKEN = re.compile(r"^(?:[0-9a-fA-F]{2}|0[xX][0-9a-fA-F]{1,16})$")


def detect_format(data: bytes) -> str:
    """Guess ``"elf"``, ``"hex"``, ``"asm"`` or ``"bin"`` from a file's bytes."""
    if data.startswith(b"\x7fELF"):
        return "elf"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "bin"
    if any(ch < " " and ch not in "\t\r\n" for ch in text):
        return "bin"
    tokens = text.split()
    if tokens and all(_HEX_TOKEN.match(t) for t in tokens):
        return "hex"
    return "asm"


def _parse_hex(text: str) -> bytes:
    out = bytearray()
    for token in text.split():
        if token.lower().startswith("0x"):
            out += int(token, 16).to_bytes(8, "little")
        else:
            out += bytes.fromhex(token)
    return bytes(out)


def parse_program(data: bytes, *, fmt: str = "auto", name: str = "<input>") -> list[Instruction]:
    """Decode or assemble a program held in ``data`` (see the module doc for formats)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown program format {fmt!r} (use one of {', '.join(FORMATS)})")
    kind = detect_format(data) if fmt == "auto" else fmt
    if kind == "elf":
        raise NotSupportedError(
            "this is an ELF object: load it with the object loader, not as raw bytecode",
            feature="elf",
            path=name,
        )
    if kind == "bin":
        return decode(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("file is not text", path=name) from exc
    if kind == "hex":
        try:
            return decode(_parse_hex(text))
        except ValueError as exc:
            raise InputError(f"bad hex: {exc}", path=name) from exc
    from pybpf.isa.asm import assemble

    return assemble(text)


def read_program(path: str | Path, *, fmt: str = "auto") -> list[Instruction]:
    """Read a program file (raw, hex or assembly) into instructions."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=str(p)) from exc
    try:
        return parse_program(data, fmt=fmt, name=str(p))
    except InputError as exc:
        if exc.path is None:
            exc.path = str(p)
        raise
