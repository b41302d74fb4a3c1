"""btf: an object's BTF made loadable into the kernel, and its func/line info in kernel form.

What clang writes is not quite what the kernel accepts: libbpf lays out the extern
sections before loading (``.kconfig`` variables at their offsets in the ``.kconfig`` map,
``.ksyms`` variables and kfuncs as 4-byte placeholders, since the kernel refuses extern
linkage), and :func:`loadable_spec` does the same. :class:`ObjectBTF` is the loaded blob:
its fd, and the ``bpf_func_info``/``bpf_line_info`` records of a linked program with
instruction indexes (the kernel's unit) and string offsets into that blob.

The kernel may still refuse an object's BTF (old kernels lack newer kinds); as libbpf does,
the object then loads without BTF (:attr:`ObjectBTF.error` says why).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable

from pybpf.btf import (
    KCONFIG_SECTION,
    KSYMS_SECTION,
    Func,
    FuncLinkage,
    FuncProto,
    Int,
    IntEncoding,
    LineInfo,
    Param,
    Type,
    Var,
    VarLinkage,
    VarSecinfo,
    encode,
)
from pybpf.btf import Spec as BTFSpec
from pybpf.btf.encode import StringTable
from pybpf.errors import SyscallError
from pybpf.spec import ExternKind, LinkedProgram, ObjectSpec
from pybpf.syscall import Fd, btf_load

__all__ = ["loadable_spec", "ObjectBTF", "FUNC_INFO", "LINE_INFO"]

FUNC_INFO = struct.Struct("<II")  # struct bpf_func_info: insn_off (instructions), type_id
LINE_INFO = struct.Struct("<IIII")  # struct bpf_line_info: insn_off, file, line, line_col
_HEADER = struct.Struct("<HBBIIIII")
_INSN = 8
_DUMMY_KSYM = "dummy_ksym"


def _int_type(types: list[Type]) -> int:
    """A 32-bit INT of the spec (libbpf's find_int_btf_id), appended if there is none."""
    for t in types:
        if isinstance(t, Int) and t.bits == 32:
            return t.id
    types.append(Int(len(types), "int", 4, IntEncoding.SIGNED, 0, 32))
    return len(types) - 1


def loadable_spec(obj: ObjectSpec) -> BTFSpec | None:
    """``obj.btf`` with its ``.kconfig`` and ``.ksyms`` DATASECs laid out as libbpf does.

    ``.kconfig`` variables become allocated globals at their offsets in the ``.kconfig``
    map; ``.ksyms`` variables become allocated 4-byte ints and kfuncs point at a
    ``dummy_ksym`` variable (their unnamed parameters take its name), each entry 4 bytes
    apart. Other types are kept, so type ids do not change (new types are appended).
    """
    btf = obj.btf
    if btf is None:
        return None
    types = list(btf.types)
    kconfig = btf.datasec(KCONFIG_SECTION)
    if kconfig is not None:
        entries = []
        for entry in kconfig.vars:
            var = types[entry.type_id]
            ext = obj.externs.get(var.name)
            offset = ext.offset if ext is not None and ext.kind == ExternKind.KCONFIG else 0
            if isinstance(var, Var):
                types[var.id] = dataclasses.replace(var, linkage=VarLinkage.GLOBAL)
            entries.append(VarSecinfo(entry.type_id, offset, entry.size))
        entries.sort(key=lambda e: e.offset)
        size = obj.maps[KCONFIG_SECTION].value_size if KCONFIG_SECTION in obj.maps else 0
        end = max((e.offset + e.size for e in entries), default=0)
        types[kconfig.id] = dataclasses.replace(kconfig, size=max(size, end), vars=tuple(entries))
    ksyms = btf.datasec(KSYMS_SECTION)
    if ksyms is not None:
        int_id = _int_type(types)
        dummy_id = 0
        entries = []
        for i, entry in enumerate(ksyms.vars):
            t = types[entry.type_id]
            type_id = entry.type_id
            if isinstance(t, Func):
                if not dummy_id:
                    types.append(Var(len(types), _DUMMY_KSYM, int_id, VarLinkage.GLOBAL))
                    dummy_id = len(types) - 1
                proto = types[t.type_id]
                if isinstance(proto, FuncProto):
                    params = tuple(
                        Param(_DUMMY_KSYM, p.type_id) if p.type_id and not p.name else p
                        for p in proto.params
                    )
                    types[proto.id] = dataclasses.replace(proto, params=params)
                types[t.id] = dataclasses.replace(t, linkage=FuncLinkage.GLOBAL)
                type_id = dummy_id
            elif isinstance(t, Var):
                types[t.id] = dataclasses.replace(t, type_id=int_id, linkage=VarLinkage.GLOBAL)
            entries.append(VarSecinfo(type_id, 4 * i, 4))
        types[ksyms.id] = dataclasses.replace(ksyms, size=4 * len(entries), vars=tuple(entries))
    if types == list(btf.types):
        return btf
    return BTFSpec(tuple(types), btf.strings, btf.byte_order, btf.pointer_size)


def _with_strings(blob: bytes, extra: Iterable[str]) -> tuple[bytes, StringTable]:
    """``blob`` (an encoded little-endian .BTF) with ``extra`` strings in its string table."""
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(blob)
    start = hdr_len + str_off
    table = StringTable(blob[start : start + str_len])
    for text in extra:
        table.add(text)
    header = _HEADER.pack(
        magic, version, flags, hdr_len, type_off, type_len, str_off, len(table.data)
    )
    return header + blob[_HEADER.size : start] + bytes(table.data), table


class ObjectBTF:
    """An object's BTF loaded into the kernel (or the reason it could not be).

    ``fd`` is ``None`` when the object has no BTF or the kernel refused it (``error``).
    """

    def __init__(self, obj: ObjectSpec) -> None:
        self.fd: Fd | None = None
        self.error: SyscallError | None = None
        self.spec = loadable_spec(obj)
        self._strings: StringTable | None = None
        if self.spec is None:
            return
        texts: set[str] = set()
        for prog in obj.programs.values():
            for li in prog.line_info:
                texts.add(li.file_name)
                texts.add(li.line)
        blob, self._strings = _with_strings(encode(self.spec, byte_order="little"), sorted(texts))
        try:
            self.fd, _ = btf_load(blob)
        except SyscallError as err:
            self.error = err

    @property
    def loaded(self) -> bool:
        """True when the kernel holds this BTF."""
        return self.fd is not None and not self.fd.closed

    def func_info(self, prog: LinkedProgram) -> bytes:
        """``prog``'s func_info records, or ``b""`` unless every function has exactly one.

        The kernel wants one record per function, at the function's first instruction, in
        order; anything less and the program is loaded without BTF information.
        """
        if not self.loaded or self.spec is None:
            return b""
        starts = sorted(pc for _, pc in prog.functions)
        records = sorted(prog.func_info, key=lambda r: r.insn_off)
        if [r.insn_off // _INSN for r in records] != starts:
            return b""
        for r in records:
            if r.insn_off % _INSN or not isinstance(self.spec.types[r.type_id], Func):
                return b""
        return b"".join(FUNC_INFO.pack(r.insn_off // _INSN, r.type_id) for r in records)

    def line_info(self, prog: LinkedProgram, slots: list[bool]) -> bytes:
        """``prog``'s line_info records (strictly increasing, one at each function start).

        ``slots[pc]`` says whether ``pc`` starts an instruction (not an ``lddw``'s second
        half). Returns ``b""`` when the records do not satisfy the kernel's rules.
        """
        if not self.loaded or self._strings is None or not prog.line_info:
            return b""
        chosen: list[LineInfo] = []
        last = -1
        for li in sorted(prog.line_info, key=lambda r: r.insn_off):
            pc = li.insn_off // _INSN
            if li.insn_off % _INSN or pc <= last or pc >= len(slots) or not slots[pc]:
                continue
            chosen.append(li)
            last = pc
        covered = {li.insn_off // _INSN for li in chosen}
        if any(pc not in covered for _, pc in prog.functions):
            return b""
        offsets = self._strings.offsets
        out = bytearray()
        for li in chosen:
            if li.file_name not in offsets or li.line not in offsets:
                return b""  # not in the loaded blob (cannot happen for the object's own)
            line_col = (li.line_number << 10) | (li.column & 0x3FF)
            out += LINE_INFO.pack(
                li.insn_off // _INSN, offsets[li.file_name], offsets[li.line], line_col & 0xFFFFFFFF
            )
        return bytes(out)

    def close(self) -> None:
        """Release the BTF fd."""
        if self.fd is not None:
            self.fd.close()
