"""ObjectSpec: everything an object file holds, as plain data to inspect and edit before load.

An :class:`ObjectSpec` lists the object's programs (every function, entry programs and
subprograms), maps (legacy, BTF-defined and global data), global variables, externs
(``.kconfig`` values and ``__ksym`` kernel symbols), license, kernel version and BTF. The
same bytes always give an equal spec. Editing before load: map sizes
(``spec.maps["x"].max_entries = ...``), global variables including ``.rodata`` constants
(:meth:`ObjectSpec.set_variable`), ``autoload`` and program types
(:meth:`ObjectSpec.set_program_type`).
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field
from enum import Enum

from pybpf.btf import Spec as BTFSpec
from pybpf.errors import InputError
from pybpf.progtypes import AttachType, ProgType
from pybpf.spec.map import MapSpec
from pybpf.spec.program import ProgramSpec

__all__ = ["ExternKind", "ExternSpec", "VariableSpec", "ObjectSpec"]


class ExternKind(Enum):
    """What an ``extern`` declaration names."""

    KCONFIG = "kconfig"  # a ``.kconfig`` value (CONFIG_*, LINUX_KERNEL_VERSION, ...)
    KSYM = "ksym"  # a kernel variable (``__ksym``)
    KFUNC = "kfunc"  # a kernel function (``__ksym``)


@dataclass(slots=True)
class ExternSpec:
    """An extern the object uses: a ``.kconfig`` value or a kernel symbol.

    A ``.kconfig`` extern lives at ``offset`` of the ``.kconfig`` map, ``size`` bytes;
    ``value`` is what was supplied for it (``None``: not supplied, so zero if ``weak``,
    else an error at link time). ``type_id`` is its BTF type.
    """

    name: str
    kind: ExternKind
    type_id: int = 0
    weak: bool = False
    offset: int = 0
    size: int = 0
    value: bytes | None = None


@dataclass(slots=True)
class VariableSpec:
    """A global variable: ``size`` bytes at ``offset`` of the global data map ``map``.

    ``type_id`` is its BTF type (0 without BTF), ``readonly`` true for ``.rodata``
    constants (editable only before load), ``static`` for file-scope ``static`` variables.
    """

    name: str
    map: str
    offset: int
    size: int
    type_id: int = 0
    readonly: bool = False
    static: bool = False


@dataclass(slots=True)
class ObjectSpec:
    """An object file as plain data: programs, maps, variables, externs and BTF.

    ``platform`` is ``"linux"``, or ``"windows"`` for an eBPF-for-Windows object whose map
    types, helper ids and program types were translated to pybpf's tables.
    """

    name: str = ""
    programs: dict[str, ProgramSpec] = field(default_factory=dict)
    maps: dict[str, MapSpec] = field(default_factory=dict)
    variables: dict[str, VariableSpec] = field(default_factory=dict)
    externs: dict[str, ExternSpec] = field(default_factory=dict)
    license: str = ""
    kernel_version: int = 0
    platform: str = "linux"
    btf: BTFSpec | None = None

    # ---- lookups -----------------------------------------------------------------------
    @property
    def entry_programs(self) -> dict[str, ProgramSpec]:
        """The programs that are not subprograms, by name."""
        return {k: p for k, p in self.programs.items() if not p.subprogram}

    def program(self, name: str) -> ProgramSpec:
        """The program (or subprogram) called ``name``; :class:`InputError` if none."""
        try:
            return self.programs[name]
        except KeyError:
            raise InputError(f"no program named {name!r}", program=name) from None

    def map(self, name: str) -> MapSpec:
        """The map called ``name``; :class:`InputError` if none."""
        try:
            return self.maps[name]
        except KeyError:
            raise InputError(f"no map named {name!r}", field="map") from None

    def variable(self, name: str) -> VariableSpec:
        """The global variable called ``name``; :class:`InputError` if none."""
        try:
            return self.variables[name]
        except KeyError:
            raise InputError(f"no global variable named {name!r}", field="variable") from None

    # ---- edits -------------------------------------------------------------------------
    def get_variable(self, name: str) -> bytes:
        """The current initial bytes of global variable ``name``."""
        var = self.variable(name)
        value = self.maps[var.map].initial_value()
        return value[var.offset : var.offset + var.size]

    def set_variable(self, name: str, value: int | bool | bytes) -> None:
        """Set the initial value of global variable ``name`` (``.rodata`` included).

        An ``int`` (or ``bool``) is stored little-endian in the variable's size, signed if
        negative; ``bytes`` must not be longer than the variable (shorter is zero-padded).
        """
        var = self.variable(name)
        if isinstance(value, bool | int):
            try:
                raw = int(value).to_bytes(var.size, "little", signed=int(value) < 0)
            except OverflowError:
                raise InputError(
                    f"{value} does not fit in the {var.size} bytes of {name!r}", field="variable"
                ) from None
        elif isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            if len(raw) > var.size:
                raise InputError(
                    f"{len(raw)} bytes do not fit in the {var.size} bytes of {name!r}",
                    field="variable",
                )
            raw = raw + bytes(var.size - len(raw))
        else:
            raise InputError(f"cannot store a {type(value).__name__} in {name!r}", field="variable")
        m = self.maps[var.map]
        image = bytearray(m.initial_value())
        image[var.offset : var.offset + var.size] = raw
        m.contents = bytes(image)

    def set_program_type(
        self,
        name: str,
        prog_type: ProgType | str,
        attach_type: AttachType | None = None,
    ) -> None:
        """Override the program type (and optionally the attach type) of program ``name``."""
        prog = self.program(name)
        prog.type = prog_type if isinstance(prog_type, ProgType) else ProgType.from_name(prog_type)
        if attach_type is not None:
            prog.attach_type = attach_type

    def copy(self) -> ObjectSpec:
        """A deep copy that can be edited independently (the BTF spec is shared: immutable)."""
        memo = {id(self.btf): self.btf}
        return _copy.deepcopy(self, memo)
