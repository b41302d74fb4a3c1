"""Raw BTF listing: one line per type (plus member lines), as ``bpftool btf dump file X``.

``[14] VAR 'stats' type_id=13, linkage=global`` and friends, byte for byte the text that
bpftool prints for the same section, so the two can be compared directly.
"""

from __future__ import annotations

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
    FuncLinkage,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Reference,
    Type,
    Var,
    VarLinkage,
)

__all__ = ["format_raw", "format_type"]

_ENCODINGS = {
    IntEncoding.NONE: "(none)",
    IntEncoding.SIGNED: "SIGNED",
    IntEncoding.CHAR: "CHAR",
    IntEncoding.BOOL: "BOOL",
}
_FUNC_LINKAGE = {
    FuncLinkage.STATIC: "static",
    FuncLinkage.GLOBAL: "global",
    FuncLinkage.EXTERN: "extern",
}
_VAR_LINKAGE = {
    VarLinkage.STATIC: "static",
    VarLinkage.GLOBAL: "global",
    VarLinkage.EXTERN: "extern",
}


def _name(name: str) -> str:
    return name if name else "(anon)"


def format_type(spec: Spec, t: Type) -> str:
    """The lines bpftool prints for one type, without the final newline."""
    out = [f"[{t.id}] {t.kind.name} '{_name(t.name)}'"]
    if isinstance(t, Int):
        encoding = _ENCODINGS.get(t.encoding, "UNKN")
        out.append(f" size={t.size} bits_offset={t.offset} nr_bits={t.bits} encoding={encoding}")
    elif isinstance(t, Reference):
        out.append(f" type_id={t.type_id}")
    elif isinstance(t, Array):
        out.append(f" type_id={t.type_id} index_type_id={t.index_type_id} nr_elems={t.nelems}")
    elif isinstance(t, Composite):
        out.append(f" size={t.size} vlen={len(t.members)}")
        for m in t.members:
            out.append(f"\n\t'{_name(m.name)}' type_id={m.type_id} bits_offset={m.bit_offset}")
            if m.bitfield_size:
                out.append(f" bitfield_size={m.bitfield_size}")
    elif isinstance(t, Enum | Enum64):
        encoding = "SIGNED" if t.signed else "UNSIGNED"
        out.append(f" encoding={encoding} size={t.size} vlen={len(t.values)}")
        suffix = ("LL" if t.signed else "ULL") if isinstance(t, Enum64) else ""
        for v in t.values:
            out.append(f"\n\t'{_name(v.name)}' val={v.value}{suffix}")
    elif isinstance(t, Fwd):
        out.append(f" fwd_kind={'union' if t.is_union else 'struct'}")
    elif isinstance(t, Func):
        out.append(f" type_id={t.type_id} linkage={_FUNC_LINKAGE[t.linkage]}")
    elif isinstance(t, FuncProto):
        out.append(f" ret_type_id={t.return_type_id} vlen={len(t.params)}")
        for p in t.params:
            out.append(f"\n\t'{_name(p.name)}' type_id={p.type_id}")
    elif isinstance(t, Var):
        out.append(f" type_id={t.type_id}, linkage={_VAR_LINKAGE[t.linkage]}")
    elif isinstance(t, Datasec):
        out.append(f" size={t.size} vlen={len(t.vars)}")
        for v in t.vars:
            out.append(f"\n\ttype_id={v.type_id} offset={v.offset} size={v.size}")
            if v.type_id < len(spec):
                target = spec.types[v.type_id]
                out.append(f" ({target.kind.name} '{_name(target.name)}')")
    elif isinstance(t, Float):
        out.append(f" size={t.size}")
    elif isinstance(t, DeclTag):
        out.append(f" type_id={t.type_id} component_idx={t.component_idx}")
    return "".join(out)


def format_raw(spec: Spec) -> str:
    """Every type of ``spec`` in id order, as ``bpftool btf dump file X`` prints them."""
    return "".join(format_type(spec, t) + "\n" for t in spec)
