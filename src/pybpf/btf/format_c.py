"""C header output: a spec's types as compilable C, like ``bpftool btf dump file X format c``.

This follows libbpf's ``btf_dump`` (as shipped with bpftool 7.1): types are emitted in id
order, each preceded by what it needs (a topological sort in which embedding is a strong
dependency and pointing a weak one, satisfied by a forward declaration), anonymous
structs, unions and enums are written inline, duplicate names get ``___N`` suffixes,
padding between members is made explicit (``long: 64;``) and packed structs are marked.
FUNC, VAR and DATASEC types are not written (they are not C types).
"""

from __future__ import annotations

from pybpf.btf.spec import Spec, references
from pybpf.btf.types import (
    Array,
    Composite,
    Enum,
    Enum64,
    Float,
    FuncProto,
    Fwd,
    Int,
    Kind,
    Pointer,
    Reference,
    Struct,
    Type,
    Typedef,
    TypeTag,
)
from pybpf.errors import BTFError

__all__ = ["format_c", "HEADER", "FOOTER"]

HEADER = (
    "#ifndef __VMLINUX_H__\n"
    "#define __VMLINUX_H__\n"
    "\n"
    "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
    "#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n"
    "#endif\n"
    "\n"
)
FOOTER = (
    "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
    "#pragma clang attribute pop\n"
    "#endif\n"
    "\n"
    "#endif /* __VMLINUX_H__ */\n"
)

_MAX_INDENT = 13  # libbpf's prefix string holds 13 tabs
# Bounds for hostile input (anonymous types are written inline at each use, so output can
# grow exponentially with nesting; a struct can claim gigabytes of padding): real headers
# stay far below them.
_MAX_PADDING_BITS = 1 << 20
_BASE_BUDGET = 1_000_000
_NOT_ORDERED, _ORDERING, _ORDERED = 0, 1, 2
_NOT_EMITTED, _EMITTING, _EMITTED = 0, 1, 2
_MODS = (Kind.VOLATILE, Kind.CONST, Kind.RESTRICT)
_CHAIN_THROUGH = (Kind.PTR, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG)
_CHAIN_END = (
    Kind.INT,
    Kind.ENUM,
    Kind.ENUM64,
    Kind.FWD,
    Kind.STRUCT,
    Kind.UNION,
    Kind.TYPEDEF,
    Kind.FLOAT,
)
_MISSING_BASE_TYPES = {
    "__Poly8_t": "unsigned char",
    "__Poly16_t": "unsigned short",
    "__Poly64_t": "unsigned long long",
    "__Poly128_t": "unsigned __int128",
}


def _pfx(lvl: int) -> str:
    return "\t" * min(lvl, _MAX_INDENT)


def _roundup(x: int, y: int) -> int:
    return -(-x // y) * y


def format_c(spec: Spec) -> str:
    """The whole spec as a C header, byte for byte what bpftool prints.

    A reference cycle that C cannot express (an anonymous struct reached again through a
    pointer from inside itself) is a :class:`BTFError`, as it is an error for bpftool; so
    are inputs whose C text would be absurdly large (more than 128 KiB of padding in one
    struct, or a work budget proportional to the spec's size exhausted by anonymous types
    nested inside each other).
    """
    dumper = _CDumper(spec)
    try:
        for type_id in range(1, len(spec)):
            dumper.dump_type(type_id)
    except RecursionError:
        raise BTFError("types are nested too deeply to write as C", section=".BTF") from None
    return HEADER + "".join(dumper.out) + FOOTER


class _CDumper:
    """The state of one dump: per-type ordering/emitting state and the names in use."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.types = spec.types
        n = len(spec)
        self.out: list[str] = []
        self.order_state = [_NOT_ORDERED] * n
        self.emit_state = [_NOT_EMITTED] * n
        self.fwd_emitted = [False] * n
        self.cached_names: dict[int, str] = {}
        self.type_names: dict[str, int] = {}
        self.ident_names: dict[str, int] = {}
        self.order_state[0] = _ORDERED
        self.emit_state[0] = _EMITTED
        self.referenced = [False] * n
        for t in spec:
            for ref in _referenced_ids(t):
                self.referenced[ref] = True
        self.queue: list[int] = []
        records = sum(len(getattr(t, "members", ())) for t in spec)
        self.budget = _BASE_BUDGET + 64 * (n + records)

    def spend(self, steps: int = 1) -> None:
        self.budget -= steps
        if self.budget < 0:
            raise BTFError("types would make an unbounded C header", section=".BTF")

    # ---- output and names --------------------------------------------------------------
    def emit(self, text: str) -> None:
        self.spend(len(text))
        self.out.append(text)

    def name_dups(self, names: dict[str, int], name: str) -> int:
        count = names.get(name, 0) + 1
        names[name] = count
        return count

    def resolve_name(self, type_id: int, names: dict[str, int]) -> str:
        t = self.types[type_id]
        if not t.name:
            return ""
        cached = self.cached_names.get(type_id)
        if cached is not None:
            return cached
        if isinstance(t, Fwd) or (isinstance(t, Enum) and not t.values):
            resolved = t.name
        else:
            dups = self.name_dups(names, t.name)
            resolved = f"{t.name}___{dups}" if dups > 1 else t.name
        self.cached_names[type_id] = resolved
        return resolved

    def type_name(self, type_id: int) -> str:
        return self.resolve_name(type_id, self.type_names)

    def ident_name(self, type_id: int) -> str:
        return self.resolve_name(type_id, self.ident_names)

    # ---- ordering ----------------------------------------------------------------------
    def dump_type(self, type_id: int) -> None:
        self.queue = []
        self.order_type(type_id, False)
        for queued in self.queue:
            self.emit_type(queued, 0)

    def order_type(self, type_id: int, through_ptr: bool) -> bool:
        """True when ``type_id`` is a strong dependency (must be defined before use)."""
        self.spend()
        state = self.order_state[type_id]
        if state == _ORDERED:
            return True
        t = self.types[type_id]
        if state == _ORDERING:
            if isinstance(t, Composite) and through_ptr and t.name:
                return False
            raise BTFError(
                f"unsatisfiable type cycle at type {type_id}", section=".BTF", type_id=type_id
            )
        kind = t.kind
        if kind in (Kind.INT, Kind.FLOAT):
            self.order_state[type_id] = _ORDERED
            return False
        if isinstance(t, Pointer):
            strong = self.order_type(t.type_id, True)
            self.order_state[type_id] = _ORDERED
            return strong
        if isinstance(t, Array):
            return self.order_type(t.type_id, False)
        if isinstance(t, Composite):
            if through_ptr and t.name:
                return False
            self.order_state[type_id] = _ORDERING
            for m in t.members:
                self.order_type(m.type_id, False)
            if t.name:
                self.queue.append(type_id)
            self.order_state[type_id] = _ORDERED
            return True
        if kind in (Kind.ENUM, Kind.ENUM64, Kind.FWD):
            if t.name or not self.referenced[type_id]:
                self.queue.append(type_id)
            self.order_state[type_id] = _ORDERED
            return True
        if isinstance(t, Typedef):
            strong = self.order_type(t.type_id, through_ptr)
            if through_ptr and not strong:
                return False
            self.queue.append(type_id)
            self.order_state[type_id] = _ORDERED
            return True
        if isinstance(t, Reference):  # the qualifiers and type tags (typedefs are above)
            return self.order_type(t.type_id, through_ptr)
        if isinstance(t, FuncProto):
            strong = self.order_type(t.return_type_id, through_ptr)
            for p in t.params:
                if self.order_type(p.type_id, through_ptr):
                    strong = True
            return strong
        # FUNC, VAR, DATASEC, DECL_TAG: not C types
        self.order_state[type_id] = _ORDERED
        return False

    # ---- emitting ----------------------------------------------------------------------
    def emit_type(self, type_id: int, cont_id: int) -> None:
        self.spend()
        if self.emit_state[type_id] == _EMITTED:
            return
        t = self.types[type_id]
        top_level = cont_id == 0
        if self.emit_state[type_id] == _EMITTING:
            if self.fwd_emitted[type_id]:
                return
            if isinstance(t, Composite):
                if type_id == cont_id or not t.name:
                    return  # self-reference, or an anonymous loop libbpf only warns about
                self.emit_struct_fwd(type_id, t)
                self.emit(";\n\n")
                self.fwd_emitted[type_id] = True
            elif isinstance(t, Typedef):
                if not self.is_blacklisted(t):
                    self.emit_typedef_def(type_id, t, 0)
                    self.emit(";\n\n")
                self.fwd_emitted[type_id] = True
            return
        if isinstance(t, Int):
            alias = _MISSING_BASE_TYPES.get(self.type_name(type_id))
            if alias is not None:
                self.emit(f"typedef {alias} {self.type_name(type_id)};\n\n")
            self.emit_state[type_id] = _EMITTED
        elif isinstance(t, Enum | Enum64):
            if top_level:
                self.emit_enum_def(type_id, t, 0)
                self.emit(";\n\n")
            self.emit_state[type_id] = _EMITTED
        elif isinstance(t, Array) or (isinstance(t, Reference) and t.kind in _CHAIN_THROUGH):
            self.emit_type(t.type_id, cont_id)  # pointers, qualifiers, type tags, arrays
        elif isinstance(t, Fwd):
            self.emit_fwd_def(type_id, t)
            self.emit(";\n\n")
            self.emit_state[type_id] = _EMITTED
        elif isinstance(t, Typedef):
            self.emit_state[type_id] = _EMITTING
            self.emit_type(t.type_id, type_id)
            if not self.fwd_emitted[type_id] and not self.is_blacklisted(t):
                self.emit_typedef_def(type_id, t, 0)
                self.emit(";\n\n")
            self.emit_state[type_id] = _EMITTED
        elif isinstance(t, Composite):
            self.emit_state[type_id] = _EMITTING
            if top_level or not t.name:
                new_cont = cont_id if not t.name else type_id
                for m in t.members:
                    self.emit_type(m.type_id, new_cont)
            elif not self.fwd_emitted[type_id] and type_id != cont_id:
                self.emit_struct_fwd(type_id, t)
                self.emit(";\n\n")
                self.fwd_emitted[type_id] = True
            if top_level:
                self.emit_struct_def(type_id, t, 0)
                self.emit(";\n\n")
                self.emit_state[type_id] = _EMITTED
            else:
                self.emit_state[type_id] = _NOT_EMITTED
        elif isinstance(t, FuncProto):
            self.emit_type(t.return_type_id, cont_id)
            for p in t.params:
                self.emit_type(p.type_id, cont_id)

    def is_blacklisted(self, t: Type) -> bool:
        return t.name == "__builtin_va_list"

    def emit_struct_fwd(self, type_id: int, t: Composite) -> None:
        keyword = "struct" if isinstance(t, Struct) else "union"
        self.emit(f"{keyword}{' ' if t.name else ''}{self.type_name(type_id)}")

    def is_struct_packed(self, t: Composite) -> bool:
        max_align = 1
        for m in t.members:
            align = self.spec.try_align_of(m.type_id)
            if align and m.bitfield_size == 0 and m.bit_offset % (8 * align):
                return True
            max_align = max(align, max_align)
        return t.size % max_align != 0

    def emit_bit_padding(
        self, cur_off: int, next_off: int, next_align: int, in_bitfield: bool, lvl: int
    ) -> None:
        if cur_off >= next_off:
            return
        if next_off - cur_off > _MAX_PADDING_BITS:
            raise BTFError(f"{next_off - cur_off} bits of padding in one struct", section=".BTF")
        pads = (("long", self.spec.pointer_size * 8), ("int", 32), ("short", 16), ("char", 8))
        new_off = 0
        pad_type, pad_bits = pads[-1]
        for candidate, bits in pads:
            pad_type, pad_bits = candidate, bits
            new_off = _roundup(cur_off, pad_bits)
            if new_off <= next_off:
                break
        if cur_off < new_off <= next_off:
            if (
                in_bitfield
                or (new_off == next_off and _roundup(cur_off, max(next_align, 1) * 8) != new_off)
                or (new_off != next_off and next_off - new_off <= new_off - cur_off)
            ):
                width = new_off - cur_off if in_bitfield else 0
                self.emit(f"\n{_pfx(lvl)}{pad_type}: {width};")
            cur_off = new_off
        while cur_off != next_off:
            bits = min(next_off - cur_off, pad_bits)
            if bits == pad_bits:
                self.emit(f"\n{_pfx(lvl)}{pad_type}: {pad_bits};")
                cur_off += bits
                continue
            for pad_type, pad_bits in reversed(pads):
                if pad_bits < bits:
                    continue
                self.emit(f"\n{_pfx(lvl)}{pad_type}: {bits};")
                cur_off += bits
                break

    def emit_struct_def(self, type_id: int, t: Composite, lvl: int) -> None:
        is_struct = isinstance(t, Struct)
        align = self.spec.try_align_of(type_id)
        packed = self.is_struct_packed(t) if is_struct else False
        keyword = "struct" if is_struct else "union"
        self.emit(f"{keyword}{' ' if t.name else ''}{self.type_name(type_id)} {{")
        off = 0
        prev_bitfield = False
        for m in t.members:
            m_sz = m.bitfield_size
            m_align = 1 if packed else self.spec.try_align_of(m.type_id)
            in_bitfield = prev_bitfield and m_sz != 0
            self.emit_bit_padding(off, m.bit_offset, m_align, in_bitfield, lvl + 1)
            self.emit(f"\n{_pfx(lvl + 1)}")
            self.emit_type_decl(m.type_id, m.name, lvl + 1)
            if m_sz:
                self.emit(f": {m_sz}")
                off = m.bit_offset + m_sz
                prev_bitfield = True
            else:
                off = m.bit_offset + self.try_size(m.type_id) * 8
                prev_bitfield = False
            self.emit(";")
        if is_struct:
            self.emit_bit_padding(off, t.size * 8, align, False, lvl + 1)
        if t.members or t.size:
            self.emit(f"\n{_pfx(lvl)}}}")
        else:
            self.emit("}")
        if packed:
            self.emit(" __attribute__((packed))")

    def try_size(self, type_id: int) -> int:
        try:
            return self.spec.size_of(type_id)
        except BTFError:
            return 0

    def emit_enum_def(self, type_id: int, t: Enum | Enum64, lvl: int) -> None:
        self.emit(f"enum{' ' if t.name else ''}{self.type_name(type_id)}")
        if not t.values:
            return
        self.emit(" {")
        suffix = ("LL" if t.signed else "ULL") if isinstance(t, Enum64) else ""
        for v in t.values:
            dups = self.name_dups(self.ident_names, v.name)
            name = f"{v.name}___{dups}" if dups > 1 else v.name
            self.emit(f"\n{_pfx(lvl + 1)}{name} = {v.value}{suffix},")
        self.emit(f"\n{_pfx(lvl)}}}")

    def emit_fwd_def(self, type_id: int, t: Fwd) -> None:
        self.emit(f"{'union' if t.is_union else 'struct'} {self.type_name(type_id)}")

    def emit_typedef_def(self, type_id: int, t: Typedef, lvl: int) -> None:
        name = self.ident_name(type_id)
        if t.type_id == 0 and name == "__gnuc_va_list":
            self.emit("typedef __builtin_va_list __gnuc_va_list")
            return
        self.emit("typedef ")
        self.emit_type_decl(t.type_id, name, lvl)

    # ---- declarations ------------------------------------------------------------------
    def emit_type_decl(self, type_id: int, fname: str, lvl: int) -> None:
        """Write ``type fname`` in C syntax (the chain of pointers, arrays, qualifiers)."""
        stack = []
        while True:
            stack.append(type_id)
            if type_id == 0:
                break
            t = self.types[type_id]
            if isinstance(t, FuncProto):
                type_id = t.return_type_id
            elif isinstance(t, Array) or (isinstance(t, Reference) and t.kind in _CHAIN_THROUGH):
                type_id = t.type_id
            else:
                break  # a chain end, or a kind that has no place here (libbpf warns)
        self.emit_type_chain(stack, fname, lvl)

    def emit_mods(self, stack: list[int]) -> None:
        while stack:
            kind = self.types[stack[-1]].kind
            if kind == Kind.VOLATILE:
                self.emit("volatile ")
            elif kind == Kind.CONST:
                self.emit("const ")
            elif kind == Kind.RESTRICT:
                self.emit("restrict ")
            else:
                return
            stack.pop()

    def drop_mods(self, stack: list[int]) -> None:
        while stack and self.types[stack[-1]].kind in _MODS + (Kind.TYPE_TAG,):
            stack.pop()

    def emit_name(self, name: str, last_was_ptr: bool) -> None:
        self.emit(f"{' ' if name and not last_was_ptr else ''}{name}")

    def emit_type_chain(self, stack: list[int], fname: str, lvl: int) -> None:
        last_was_ptr = True
        while stack:
            type_id = stack.pop()
            if type_id == 0:
                self.emit_mods(stack)
                self.emit("void")
                last_was_ptr = False
                continue
            t = self.types[type_id]
            kind = t.kind
            if isinstance(t, Int | Float):
                self.emit_mods(stack)
                self.emit(t.name)
            elif isinstance(t, Composite):
                self.emit_mods(stack)
                if not t.name:
                    self.emit_struct_def(type_id, t, lvl)
                else:
                    self.emit_struct_fwd(type_id, t)
            elif isinstance(t, Enum | Enum64):
                self.emit_mods(stack)
                if not t.name:
                    self.emit_enum_def(type_id, t, lvl)
                else:
                    self.emit(f"enum {self.type_name(type_id)}")
            elif isinstance(t, Fwd):
                self.emit_mods(stack)
                self.emit_fwd_def(type_id, t)
            elif isinstance(t, Typedef):
                self.emit_mods(stack)
                self.emit(self.ident_name(type_id))
            elif isinstance(t, Pointer):
                self.emit("*" if last_was_ptr else " *")
            elif kind == Kind.VOLATILE:
                self.emit(" volatile")
            elif kind == Kind.CONST:
                self.emit(" const")
            elif kind == Kind.RESTRICT:
                self.emit(" restrict")
            elif isinstance(t, TypeTag):
                self.emit_mods(stack)
                if t.kind_flag:
                    self.emit(f" __attribute__(({t.name}))")
                else:
                    self.emit(f' __attribute__((btf_type_tag("{t.name}")))')
            elif isinstance(t, Array):
                self.drop_mods(stack)
                if not stack:
                    self.emit_name(fname, last_was_ptr)
                    self.emit(f"[{t.nelems}]")
                    return
                multidim = isinstance(self.types[stack[-1]], Array)
                if fname and not last_was_ptr:
                    self.emit(" ")
                if not multidim:
                    self.emit("(")
                self.emit_type_chain(stack, fname, lvl)
                if not multidim:
                    self.emit(")")
                self.emit(f"[{t.nelems}]")
                return
            elif isinstance(t, FuncProto):
                self.emit_func_proto(t, stack, fname, lvl, last_was_ptr)
                return
            else:
                return  # a kind that has no place in a declaration (libbpf warns)
            last_was_ptr = kind == Kind.PTR
        self.emit_name(fname, last_was_ptr)

    def emit_func_proto(
        self, t: FuncProto, stack: list[int], fname: str, lvl: int, last_was_ptr: bool
    ) -> None:
        self.drop_mods(stack)
        if stack:
            self.emit(" (")
            self.emit_type_chain(stack, fname, lvl)
            self.emit(")")
        else:
            self.emit_name(fname, last_was_ptr)
        self.emit("(")
        params = t.params
        if not params or (len(params) == 1 and params[0].type_id == 0):
            self.emit("void)")
            return
        for i, p in enumerate(params):
            if i:
                self.emit(", ")
            if i == len(params) - 1 and p.type_id == 0:
                self.emit("...")
                break
            self.emit_type_decl(p.type_id, p.name, lvl)
        self.emit(")")


def _referenced_ids(t: Type) -> tuple[int, ...]:
    """The ids libbpf marks as referenced from ``t`` (array index types included)."""
    if isinstance(t, Array):
        return (t.index_type_id, t.type_id)
    if isinstance(t, FuncProto):
        return tuple(p.type_id for p in t.params)
    return references(t)
