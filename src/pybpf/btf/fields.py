"""BTF special fields: the ``bpf_spin_lock``, ``bpf_timer``, kptrs, ... a map value's type holds.

:func:`special_fields` walks a value type as Linux's ``btf_parse_fields`` does
(``kernel/bpf/btf.c``): every member of the struct, looking into nested structs and arrays,
whose type is a struct named ``bpf_spin_lock``, ``bpf_res_spin_lock``, ``bpf_timer``,
``bpf_wq``, ``bpf_task_work``, ``bpf_refcount``, ``bpf_list_head``, ``bpf_list_node``,
``bpf_rb_root`` or ``bpf_rb_node`` of the expected size, or a pointer whose first type tag
is ``kptr``, ``kptr_untrusted``, ``percpu_kptr`` or ``uptr``, is one
:class:`SpecialField` (``kind``, byte ``offset``, ``size``). A field not aligned to its
alignment is ignored, as Linux ignores it.

Linux's refusals come back as :class:`~pybpf.errors.MapError` (``operation="create"``):
a second lock, timer, work queue, task work or refcount is ``E2BIG``; an array of fields
that may not repeat (anything but kptrs, list and rb-tree nodes), or a member at a bit
offset, is ``EINVAL``. A datasec (a global data map's value) is walked the same way over
its variables (``btf_find_datasec_var``: ``struct bpf_spin_lock glock;`` in ``.bss``);
other value types hold none.
"""

from __future__ import annotations

import errno
from typing import NamedTuple

from pybpf.btf.spec import Spec
from pybpf.btf.types import Array, Datasec, Member, Pointer, Struct, TypeTag, Var
from pybpf.errors import MapError

__all__ = ["SpecialField", "special_fields", "STRUCT_FIELDS", "KPTR_TAGS", "SINGLETONS"]

# name -> (size, alignment): the structs Linux treats as special fields
STRUCT_FIELDS: dict[str, tuple[int, int]] = {
    "bpf_spin_lock": (4, 4),
    "bpf_res_spin_lock": (4, 4),
    "bpf_timer": (16, 8),
    "bpf_wq": (16, 8),
    "bpf_task_work": (8, 8),
    "bpf_refcount": (4, 4),
    "bpf_list_head": (16, 8),
    "bpf_list_node": (24, 8),
    "bpf_rb_root": (16, 8),
    "bpf_rb_node": (32, 8),
}
KPTR_TAGS = ("kptr", "kptr_untrusted", "percpu_kptr", "uptr")
SINGLETONS = frozenset(
    {"bpf_spin_lock", "bpf_res_spin_lock", "bpf_timer", "bpf_wq", "bpf_task_work", "bpf_refcount"}
)
_REPEATABLE = frozenset({"bpf_list_node", "bpf_rb_node", *KPTR_TAGS})
_MAX_DEPTH = 32  # Linux's MAX_RESOLVE_DEPTH


class SpecialField(NamedTuple):
    """One special field of a map value: ``kind`` (the struct's name, or the kptr's tag),
    its byte ``offset`` in the value and its ``size``."""

    kind: str
    offset: int
    size: int


def _error(err: int, message: str) -> MapError:
    return MapError(message, errno=err, operation="create")


def _kptr_tag(btf: Spec, t: Pointer) -> str | None:
    target = btf.types[t.type_id]
    if isinstance(target, TypeTag) and target.name in KPTR_TAGS:
        return target.name
    return None


def special_fields(btf: Spec, type_id: int) -> tuple[SpecialField, ...]:
    """The special fields of value type ``type_id`` in ``btf``, by offset (see the module
    docstring; MapError with Linux's errno for what Linux refuses)."""
    root = btf.resolve(type_id)
    if isinstance(root, Datasec):
        members = []
        for vsi in root.vars:
            var = btf.types[vsi.type_id]
            if isinstance(var, Var):
                members.append(Member(var.name, var.type_id, vsi.offset * 8))
        root = Struct(root.id, root.name, root.size, tuple(members))
    if not isinstance(root, Struct):
        return ()
    found: list[SpecialField] = []
    seen: set[str] = set()
    _walk(btf, root, 0, 0, found, seen)
    return tuple(sorted(found, key=lambda f: f.offset))


def _walk(
    btf: Spec, t: Struct, base: int, depth: int, found: list[SpecialField], seen: set[str]
) -> None:
    if depth > _MAX_DEPTH:
        raise _error(errno.E2BIG, "value type nests too deeply")
    for member in t.members:
        var = btf.types[member.type_id]
        nelems = 1
        for _ in range(_MAX_DEPTH):
            if not isinstance(var, Array):
                break
            nelems *= var.nelems
            var = btf.types[var.type_id]
        kind, size, align = _field_kind(btf, var)
        if kind is None and not isinstance(var, Struct):
            continue
        if member.bit_offset % 8:
            raise _error(errno.EINVAL, f"member {member.name!r} is at a bit offset")
        off = base + member.bit_offset // 8
        if kind is None:  # a nested struct: its fields, once per element
            assert isinstance(var, Struct)
            before = len(found)
            _walk(btf, var, off, depth + 1, found, seen)
            if nelems > 1 and len(found) > before:
                _repeat(found, before, var.size, nelems)
            continue
        if kind in SINGLETONS:
            if kind in seen:
                raise _error(errno.E2BIG, f"more than one {kind} in the value")
            seen.add(kind)
        if off % align:
            continue
        if nelems > 1 and kind not in _REPEATABLE:
            raise _error(errno.EINVAL, f"an array of {kind}")
        found.extend(SpecialField(kind, off + i * size, size) for i in range(nelems))


def _repeat(found: list[SpecialField], start: int, stride: int, nelems: int) -> None:
    """Linux's ``btf_repeat_fields``: the fields from ``start`` again in every element."""
    fields = found[start:]
    for f in fields:
        if f.kind not in _REPEATABLE:
            raise _error(errno.EINVAL, f"an array of structs holding a {f.kind}")
    for i in range(1, nelems):
        found.extend(SpecialField(f.kind, f.offset + i * stride, f.size) for f in fields)


def _field_kind(btf: Spec, t: object) -> tuple[str | None, int, int]:
    if isinstance(t, Struct) and t.name in STRUCT_FIELDS:
        size, align = STRUCT_FIELDS[t.name]
        if t.size == size:
            return t.name, size, align
        return None, 0, 0
    if isinstance(t, Pointer):
        tag = _kptr_tag(btf, t)
        if tag is not None:
            return tag, 8, 8
    return None, 0, 0
