"""Spec: the types of one BTF blob as plain, immutable data, with lookups and layout queries.

A :class:`Spec` is built by :func:`pybpf.btf.parse` (or directly from records) and checked
once on construction: every type reference points at an existing type, FUNCs point at
FUNC_PROTOs, DATASECs hold VARs (or extern FUNCs), DECL_TAGs name a real component, and
every reference cycle passes through both a pointer and a struct/union (``struct node {
struct node *next; }``), so that sizes, alignments and C declarations always resolve in
bounded time. It answers lookups by id and name, sizes and alignments as libbpf computes
them (``btf__resolve_size``, ``btf__align_of``), and returns fixed-up copies for the
loader (:meth:`Spec.fix_data_sections`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pybpf.btf.types import (
    MODIFIER_KINDS,
    Array,
    Composite,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    Float,
    Func,
    FuncProto,
    Int,
    Kind,
    Pointer,
    Reference,
    Type,
    Typedef,
    Var,
    VarLinkage,
    VarSecinfo,
    Void,
)
from pybpf.errors import BTFError

__all__ = ["Spec", "references", "KCONFIG_SECTION", "KSYMS_SECTION"]

KCONFIG_SECTION = ".kconfig"
KSYMS_SECTION = ".ksyms"
_U32_MAX = 0xFFFFFFFF
# Kinds that cannot be the type of a member, parameter or return value.
_NOT_VALUES = (Func, Var, Datasec, DeclTag, FuncProto)
T = TypeVar("T", bound=Type)


def references(t: Type) -> tuple[int, ...]:
    """Every type id that ``t`` refers to, in record order (0 stands for ``void``)."""
    if isinstance(t, Reference | Func | Var | DeclTag):
        return (t.type_id,)
    if isinstance(t, Array):
        return (t.type_id, t.index_type_id)
    if isinstance(t, Composite):
        return tuple(m.type_id for m in t.members)
    if isinstance(t, FuncProto):
        return (t.return_type_id, *(p.type_id for p in t.params))
    if isinstance(t, Datasec):
        return tuple(v.type_id for v in t.vars)
    return ()


@dataclass(frozen=True, repr=False)
class Spec:
    """The types of one BTF blob; ``types[i]`` is type id ``i`` and ``types[0]`` is void.

    ``strings`` is the raw string section (``.BTF.ext`` records point into it),
    ``byte_order`` the byte order it was encoded in (``"little"`` or ``"big"``) and
    ``pointer_size`` the target's pointer size (8 for BPF). ``offsets`` holds each type
    record's byte offset in the ``.BTF`` section, for error messages; it takes no part in
    equality.
    """

    types: tuple[Type, ...]
    strings: bytes = b"\0"
    byte_order: str = "little"
    pointer_size: int = 8
    offsets: tuple[int, ...] = field(default=(), compare=False, repr=False)
    _by_name: dict[str, tuple[Type, ...]] = field(
        init=False, default_factory=dict, compare=False, repr=False
    )
    _align_memo: dict[int, int] = field(init=False, default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.types or not isinstance(self.types[0], Void):
            raise BTFError("type 0 must be void", section=".BTF", type_id=0)
        if self.byte_order not in ("little", "big"):
            raise BTFError(f"unknown byte order {self.byte_order!r}", section=".BTF")
        if self.pointer_size not in (4, 8):
            raise BTFError(f"pointer size {self.pointer_size} is not 4 or 8", section=".BTF")
        for i, t in enumerate(self.types):
            if t.id != i:
                raise self._error(i, f"type record at index {i} has id {t.id}")
        self._check_references()
        self._check_cycles()
        index: dict[str, list[Type]] = {}
        for t in self.types[1:]:
            if t.name:
                index.setdefault(t.name, []).append(t)
        self._by_name.update({k: tuple(v) for k, v in index.items()})

    def __repr__(self) -> str:
        return f"Spec({len(self.types) - 1} types, {self.byte_order}-endian)"

    # ---- lookups -----------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of types, void included (the next free type id)."""
        return len(self.types)

    def __iter__(self) -> Iterator[Type]:
        """The types in id order, void excluded."""
        return iter(self.types[1:])

    def type(self, type_id: int) -> Type:
        """The type with id ``type_id``; :class:`BTFError` if there is none."""
        if not 0 <= type_id < len(self.types):
            raise BTFError(f"no type with id {type_id}", section=".BTF", type_id=type_id)
        return self.types[type_id]

    def find_all(self, name: str, kind: Kind | type[T] | None = None) -> tuple[Type, ...]:
        """Every type named ``name`` (optionally of one kind or record class), in id order."""
        found = self._by_name.get(name, ())
        if kind is None:
            return found
        if isinstance(kind, Kind):
            return tuple(t for t in found if t.kind == kind)
        return tuple(t for t in found if isinstance(t, kind))

    def find(self, name: str, kind: Kind | type[T] | None = None) -> Type | None:
        """The first type named ``name`` (optionally of one kind or class), or ``None``."""
        found = self.find_all(name, kind)
        return found[0] if found else None

    def of_kind(self, kind: Kind | type[T]) -> tuple[Type, ...]:
        """Every type of one kind (or record class), in id order."""
        if isinstance(kind, Kind):
            return tuple(t for t in self.types[1:] if t.kind == kind)
        return tuple(t for t in self.types[1:] if isinstance(t, kind))

    def datasec(self, name: str) -> Datasec | None:
        """The DATASEC describing ELF section ``name``, or ``None``."""
        found = self.find(name, Datasec)
        return found if isinstance(found, Datasec) else None

    def string(self, offset: int) -> str:
        """The NUL-terminated string at ``offset`` of the string section."""
        if not 0 <= offset < len(self.strings):
            raise BTFError(f"string offset {offset} is outside the string section", section=".BTF")
        end = self.strings.find(b"\0", offset)
        if end < 0:
            raise BTFError(f"string at {offset} is not NUL-terminated", section=".BTF")
        return self.strings[offset:end].decode("utf-8", "surrogateescape")

    # ---- resolution --------------------------------------------------------------------
    def skip_modifiers(self, type_id: int) -> Type:
        """The type under any const/volatile/restrict/type-tag qualifiers."""
        t = self.type(type_id)
        while isinstance(t, Reference) and t.kind in MODIFIER_KINDS:
            t = self.types[t.type_id]
        return t

    def resolve(self, type_id: int) -> Type:
        """The type under qualifiers and typedefs (``btf__resolve_type``)."""
        t = self.type(type_id)
        while isinstance(t, Reference) and (t.kind in MODIFIER_KINDS or t.kind == Kind.TYPEDEF):
            t = self.types[t.type_id]
        return t

    def size_of(self, type_id: int) -> int:
        """Size in bytes of a type, as ``btf__resolve_size`` computes it.

        Qualifiers, typedefs, VARs and DECL_TAGs are looked through and arrays multiply;
        void, FWD, FUNC and FUNC_PROTO have no size (:class:`BTFError`), nor has anything
        larger than 4 GiB.
        """
        t = self.type(type_id)
        nelems = 1
        while True:
            if isinstance(t, Int | Composite | Enum | Enum64 | Datasec | Float):
                size = t.size
                break
            if isinstance(t, Pointer):
                size = self.pointer_size
                break
            if isinstance(t, Array):
                nelems *= t.nelems
                if nelems > _U32_MAX:
                    raise self._error(type_id, "array is larger than 4 GiB")
                t = self.types[t.type_id]
            elif isinstance(t, Reference | Var | DeclTag):
                t = self.types[t.type_id]
            else:
                raise self._error(type_id, f"type {type_id} ({t.kind.name}) has no size")
        total = nelems * size
        if total > _U32_MAX:
            raise self._error(type_id, f"type {type_id} is larger than 4 GiB")
        return total

    def align_of(self, type_id: int) -> int:
        """Alignment in bytes of a type, as ``btf__align_of`` computes it.

        A struct or union whose members are not naturally aligned (or whose size is not a
        multiple of its alignment) was packed: its alignment is 1.
        """
        align = self.try_align_of(type_id)
        if align == 0:
            kind = self.type(type_id).kind.name
            raise self._error(type_id, f"type {type_id} ({kind}) has no alignment")
        return align

    def try_align_of(self, type_id: int) -> int:
        """Like :meth:`align_of`, but 0 where the type has no alignment (as libbpf returns)."""
        memo = self._align_memo
        self.type(type_id)
        stack = [type_id]
        while stack:
            tid = stack[-1]
            if tid in memo:
                stack.pop()
                continue
            t = self.types[tid]
            deps = self._align_deps(t)
            missing = [d for d in deps if d not in memo]
            if missing:
                stack.extend(missing)
                continue
            memo[tid] = self._align_from(t, memo)
            stack.pop()
        return memo[type_id]

    def _align_deps(self, t: Type) -> tuple[int, ...]:
        if isinstance(t, Reference) and not isinstance(t, Pointer):
            return (t.type_id,)
        if isinstance(t, Array):
            return (t.type_id,)
        if isinstance(t, Composite):
            return tuple(m.type_id for m in t.members)
        return ()

    def _align_from(self, t: Type, memo: dict[int, int]) -> int:
        if isinstance(t, Int | Enum | Enum64 | Float):
            return min(self.pointer_size, t.size)
        if isinstance(t, Pointer):
            return self.pointer_size
        if isinstance(t, Reference | Array):
            return memo[t.type_id]
        if isinstance(t, Composite):
            max_align = 1
            for m in t.members:
                align = memo[m.type_id]
                if align <= 0:
                    return 0
                max_align = max(max_align, align)
                if m.bitfield_size == 0 and m.bit_offset % (8 * align):
                    return 1
            return 1 if t.size % max_align else max_align
        return 0

    # ---- loader fix-ups ----------------------------------------------------------------
    def fix_data_sections(
        self,
        section_sizes: Mapping[str, int],
        symbol_offsets: Mapping[str, Mapping[str, int]],
        hidden: Collection[str] = (),
    ) -> Spec:
        """A copy with DATASEC sizes and variable offsets filled in, as libbpf does.

        clang leaves each DATASEC's size and its variables' offsets at 0; the loader takes
        them from the ELF file. ``section_sizes`` maps a section name to its size,
        ``symbol_offsets`` maps a section name to ``{symbol name: st_value}`` and
        ``hidden`` names global symbols with hidden or internal visibility, whose VARs
        become static. ``.kconfig`` and ``.ksyms`` are left alone (their layout is the
        loader's choice), sections whose size is already set keep their offsets, and each
        DATASEC's entries end up sorted by offset. A missing section size or a missing
        global variable symbol, or a variable that ends past its section, is a
        :class:`BTFError`.
        """
        types = list(self.types)
        hidden_set = set(hidden)
        for i, t in enumerate(self.types):
            if not isinstance(t, Datasec) or t.name in (KCONFIG_SECTION, KSYMS_SECTION):
                continue
            size = t.size
            fix_offsets = size == 0
            if fix_offsets:
                size = section_sizes.get(t.name, 0)
                if not size:
                    raise self._error(i, f"DATASEC {t.name!r}: no size for this ELF section")
            symbols = symbol_offsets.get(t.name, {})
            entries = []
            for entry in t.vars:
                var = types[entry.type_id]
                if not isinstance(var, Var):
                    raise self._error(i, f"DATASEC {t.name!r} holds a non-VAR type")
                offset = entry.offset
                if var.linkage != VarLinkage.EXTERN:
                    if var.name in symbols:
                        if fix_offsets:
                            offset = symbols[var.name]
                    elif var.linkage == VarLinkage.GLOBAL:
                        raise self._error(
                            i, f"DATASEC {t.name!r}: no ELF symbol for variable {var.name!r}"
                        )
                    if var.linkage == VarLinkage.GLOBAL and var.name in hidden_set:
                        types[var.id] = dataclasses.replace(var, linkage=VarLinkage.STATIC)
                if offset < 0 or offset + entry.size > size:
                    raise self._error(
                        i, f"DATASEC {t.name!r}: variable {var.name!r} ends past the section"
                    )
                entries.append(VarSecinfo(entry.type_id, offset, entry.size))
            entries.sort(key=lambda e: e.offset)
            types[i] = dataclasses.replace(t, size=size, vars=tuple(entries))
        return Spec(tuple(types), self.strings, self.byte_order, self.pointer_size, self.offsets)

    # ---- checks ------------------------------------------------------------------------
    def _error(self, type_id: int, message: str) -> BTFError:
        offset = self.offsets[type_id] if 0 <= type_id < len(self.offsets) else None
        return BTFError(message, section=".BTF", offset=offset, type_id=type_id)

    def _check_references(self) -> None:
        types = self.types
        n = len(types)
        for t in types[1:]:
            for ref in references(t):
                if not 0 <= ref < n:
                    raise self._error(t.id, f"type {t.id} refers to missing type {ref}")
            if isinstance(t, Func) and not isinstance(types[t.type_id], FuncProto):
                raise self._error(t.id, f"FUNC {t.name!r} does not point at a FUNC_PROTO")
            elif isinstance(t, Datasec):
                for v in t.vars:
                    if not isinstance(types[v.type_id], Var | Func):
                        raise self._error(t.id, f"DATASEC {t.name!r} holds a non-VAR type")
            elif isinstance(t, DeclTag):
                self._check_decl_tag(t)
            elif isinstance(t, Composite | FuncProto):
                for ref in references(t):
                    if isinstance(types[ref], _NOT_VALUES):
                        kind = types[ref].kind.name
                        raise self._error(t.id, f"type {t.id} uses a {kind} as a value")

    def _check_decl_tag(self, t: DeclTag) -> None:
        target = self.types[t.type_id]
        if isinstance(target, Composite):
            count = len(target.members)
        elif isinstance(target, Func):
            proto = self.types[target.type_id]
            count = len(proto.params) if isinstance(proto, FuncProto) else 0
        elif isinstance(target, Var | Typedef):
            count = 0
        else:
            raise self._error(t.id, f"DECL_TAG {t.name!r} tags a {target.kind.name}")
        if not -1 <= t.component_idx < count:
            idx = t.component_idx
            raise self._error(t.id, f"DECL_TAG {t.name!r} names missing component {idx}")

    def _check_cycles(self) -> None:
        """Refuse reference cycles that avoid every pointer, or every struct/union.

        The first kind would have infinite size (``struct a { struct a x; }``), the second
        is no C type at all (``typedef T *T``); both would make resolution loop.
        """
        succ = [references(t) for t in self.types]
        pointers = [isinstance(t, Pointer) for t in self.types]
        composites = [isinstance(t, Composite) for t in self.types]
        for cut, what in ((pointers, "pointer"), (composites, "struct or union")):
            bad = _find_cycle(succ, cut)
            if bad is not None:
                raise self._error(bad, f"type {bad} is on a reference cycle without a {what}")


def _find_cycle(succ: list[tuple[int, ...]], cut: list[bool]) -> int | None:
    """A node on a cycle of ``succ`` whose nodes all have ``cut`` false, or ``None``."""
    n = len(succ)
    state = bytearray(n)  # 0 new, 1 on the DFS path, 2 done
    for root in range(n):
        if state[root]:
            continue
        state[root] = 1
        stack = [(root, 0)]
        while stack:
            node, i = stack[-1]
            nexts = () if cut[node] else succ[node]
            if i < len(nexts):
                stack[-1] = (node, i + 1)
                nxt = nexts[i]
                if state[nxt] == 1:
                    return nxt
                if state[nxt] == 0:
                    state[nxt] = 1
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                stack.pop()
    return None
