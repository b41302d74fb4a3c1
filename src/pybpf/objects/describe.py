"""Describe: an object spec as bpftool-like records and annotated listings, for tools and CLI.

:func:`describe` gives JSON-ready records of an object's programs and maps (bpftool's keys
where bpftool has the same data: ``type``, ``bytes_key``, ``bytes_value``,
``max_entries``, ``flags``); :func:`listing` disassembles programs with their source lines
(BTF line_info) above the instructions and relocation targets after them, like
``llvm-objdump -dr -l`` and ``bpftool prog dump xlated linum``; :func:`read_btf` reads the
raw BTF of an object file (or of a raw BTF file such as ``/sys/kernel/btf/vmlinux``) as
``bpftool btf dump file`` does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pybpf import btf as _btf
from pybpf.elf import ElfFile
from pybpf.errors import InputError
from pybpf.isa.disasm import disassemble
from pybpf.spec import ObjectSpec, ProgramSpec, RefKind

__all__ = ["describe", "listing", "program_listing", "read_btf"]


def _type_name(value: Any) -> str | None:
    if value is None:
        return None
    return getattr(value, "type_name", None) or value.name.lower()


def describe(spec: ObjectSpec) -> dict[str, Any]:
    """Programs (entry points and subprograms) and maps of an object, as plain records."""
    programs = []
    for prog in spec.programs.values():
        programs.append(
            {
                "name": prog.name,
                "section": prog.section,
                "type": _type_name(prog.type),
                "attach_type": _type_name(prog.attach_type),
                "subprogram": prog.subprogram,
                "insns": prog.slots,
                "calls": list(prog.calls),
                "maps": list(prog.maps_used),
            }
        )
    maps = []
    for m in spec.maps.values():
        maps.append(
            {
                "name": m.name,
                "type": _type_name(m.type),
                "bytes_key": m.key_size,
                "bytes_value": m.value_size,
                "max_entries": m.max_entries,
                "flags": int(m.flags),
                "kind": m.kind.name.lower(),
                "pinning": m.pinning.name.lower(),
            }
        )
    return {
        "name": spec.name,
        "license": spec.license,
        "platform": spec.platform,
        "programs": programs,
        "maps": maps,
    }


_REF_WORDS = {
    RefKind.MAP: "map",
    RefKind.MAP_VALUE: "map value",
    RefKind.CALL: "call",
    RefKind.FUNC_ADDR: "function",
}


def program_listing(prog: ProgramSpec, *, raw: bool = False) -> str:
    """One program's listing: source lines before instructions, relocation targets after."""
    before: dict[int, list[str]] = {}
    last = None
    for info in prog.line_info:
        text = info.line.strip()
        key = (info.file_name, info.line_number)
        if not text or key == last:
            continue
        last = key
        where = f" @ {info.file_name.rsplit('/', 1)[-1]}:{info.line_number}"
        before.setdefault(info.insn_index, []).append(text + where)
    comments = {}
    for ref in prog.references:
        word = _REF_WORDS.get(ref.kind, ref.kind.name.lower())
        offset = f"+{ref.offset}" if ref.offset else ""
        comments[ref.pc] = f"{word} {ref.target}{offset}"
    return disassemble(prog.instructions, raw=raw, before=before, comments=comments)


def listing(spec: ObjectSpec, program: str | None = None, *, raw: bool = False) -> str:
    """Listings of every program (or only ``program``), each under a ``name (section):`` header."""
    programs = [spec.program(program)] if program else list(spec.programs.values())
    parts = []
    for prog in programs:
        kind = "subprogram" if prog.subprogram else _type_name(prog.type) or "unknown type"
        parts.append(f"{prog.name} ({prog.section}, {kind}):\n" + program_listing(prog, raw=raw))
    return "\n".join(parts)


_BTF_MAGIC = (b"\x9f\xeb", b"\xeb\x9f")


def read_btf(path: str | os.PathLike[str]) -> _btf.Spec:
    """The BTF of a file: an object's ``.BTF`` section as stored, or a raw BTF file."""
    p = os.fspath(path)
    try:
        data = Path(p).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=p) from None
    try:
        if data[:2] in _BTF_MAGIC:
            return _btf.parse(data)
        section = ElfFile(data).section(".BTF")
        if section is None:
            raise InputError("the object has no .BTF section", section=".BTF")
        return _btf.parse(section.data)
    except InputError as exc:
        if exc.path is None:
            exc.path = p
        raise
