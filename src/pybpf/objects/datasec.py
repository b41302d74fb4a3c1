"""Data sections: an object's global variables as attributes, like a libbpf skeleton's.

``obj.rodata.min_len = 20`` before load edits the spec
(:meth:`~pybpf.spec.ObjectSpec.set_variable`); ``obj.bss.total`` after load reads the live
map (``obj.data.x = 1`` writes it; the frozen ``.rodata`` refuses with
:class:`~pybpf.errors.MapError` EPERM, as Linux refuses writes to a frozen map). Values
are decoded and encoded by the variable's BTF type (:mod:`pybpf.objects.values`):
integers as ints, ``char`` arrays as strings, structs as dicts; without BTF a variable of
1, 2, 4 or 8 bytes is an unsigned int and others are bytes. Static variables whose names
are not identifiers (``func.____fmt``) are reachable with :meth:`DataSection.get`.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.errors import InputError, MapError
from pybpf.objects import values
from pybpf.spec import VariableSpec

if TYPE_CHECKING:
    from pybpf.objects.object import Object

__all__ = ["DataSection", "section_attribute"]


def section_attribute(section: str) -> str:
    """The attribute a data section has on an object: ``.data.tag`` -> ``data_tag``."""
    return section.lstrip(".").replace(".", "_").replace("-", "_")


class DataSection:
    """The variables of one global data section (``.rodata``, ``.bss``, ...) as attributes."""

    def __init__(self, obj: Object, section: str) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_section", section)

    # ---- lookups -------------------------------------------------------------------------
    def variables(self) -> dict[str, VariableSpec]:
        """This section's variables, by name."""
        spec = self._obj.spec
        return {n: v for n, v in spec.variables.items() if v.map == self._section}

    def _var(self, name: str) -> VariableSpec:
        var = self.variables().get(name)
        if var is None:
            raise AttributeError(f"{self._section} has no variable {name!r}")
        return var

    def _raw(self, var: VariableSpec) -> bytes:
        obj = self._obj
        if not obj.loaded:
            return obj.spec.get_variable(var.name)
        m = obj.maps[self._section]
        raw = m.lookup_raw(bytes(4)) if hasattr(m, "lookup_raw") else m.lookup(bytes(4))
        if raw is None:
            raise InputError(f"map {self._section!r} has no value", field="variable")
        return raw[var.offset : var.offset + var.size]

    def _decode(self, var: VariableSpec, raw: bytes) -> Any:
        btf = self._obj.spec.btf
        if btf is not None and var.type_id:
            return values.decode(btf, var.type_id, raw)
        if var.size in (1, 2, 4, 8):
            return int.from_bytes(raw, "little")
        return raw

    def _encode(self, var: VariableSpec, value: Any) -> bytes:
        btf = self._obj.spec.btf
        if btf is not None and var.type_id:
            return values.encode(btf, var.type_id, value, var.name)
        if isinstance(value, bool | int):
            if not -(1 << (8 * var.size - 1)) <= int(value) < 1 << (8 * var.size):
                raise InputError(f"{value} does not fit in the {var.size} bytes of {var.name!r}")
            return (int(value) & ((1 << (8 * var.size)) - 1)).to_bytes(var.size, "little")
        raw = bytes(value)
        if len(raw) > var.size:
            raise InputError(f"{len(raw)} bytes do not fit in the {var.size} of {var.name!r}")
        return raw + bytes(var.size - len(raw))

    # ---- access --------------------------------------------------------------------------
    def get(self, name: str) -> Any:
        """The value of variable ``name`` (the spec's before load, the map's after)."""
        var = self._var(name)
        return self._decode(var, self._raw(var))

    def get_bytes(self, name: str) -> bytes:
        """The raw bytes of variable ``name``."""
        return self._raw(self._var(name))

    def set(self, name: str, value: Any) -> None:
        """Set variable ``name``: in the spec before load, in the live map after."""
        var = self._var(name)
        raw = self._encode(var, value)
        obj = self._obj
        if not obj.loaded:
            obj.spec.set_variable(name, raw)
            return
        m = obj.maps[self._section]
        if getattr(m, "frozen", False):
            raise MapError(
                f"{self._section} is frozen: set {name!r} before load",
                errno=errno.EPERM,
                operation="update",
                map_name=self._section,
            )
        memory = getattr(m, "memory", None)
        if memory is not None:  # the portable array: write in place, like an mmap()ed map
            view = memory()
            try:
                view[var.offset : var.offset + var.size] = raw
            finally:
                view.release()
            return
        image = bytearray(m.lookup(bytes(4)))
        image[var.offset : var.offset + var.size] = raw
        m.update(bytes(4), bytes(image))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self.set(name, value)

    def __dir__(self) -> list[str]:
        return sorted(n for n in self.variables() if n.isidentifier())

    def as_dict(self) -> dict[str, Any]:
        """Every variable of the section, decoded."""
        return {n: self.get(n) for n in self.variables()}

    def __repr__(self) -> str:
        return f"<DataSection {self._section} {sorted(self.variables())}>"
