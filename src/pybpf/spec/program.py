"""ProgramSpec: one function of an object file, its instructions and what they refer to.

A program's instructions are kept as clang wrote them; what the ELF relocations said about
them is a tuple of :class:`Reference` records (the ``lddw`` at pc 4 loads map ``counts``,
the call at pc 9 calls ``parse_ip``). :func:`pybpf.spec.link` turns a program and the
functions it calls into one self-contained instruction stream.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum

from pybpf.btf import CoreRelo, FuncInfo, LineInfo
from pybpf.isa import Instruction, program_slots
from pybpf.progtypes import AttachType, ProgType

__all__ = ["RefKind", "Reference", "ProgramSpec"]


class RefKind(Enum):
    """What an instruction refers to, as its relocation says."""

    MAP = "map"  # lddw: the map itself (a map fd for the kernel)
    MAP_VALUE = "map_value"  # lddw: an address inside a map's value (global data, kconfig)
    CALL = "call"  # call: a bpf-to-bpf call to another function
    FUNC_ADDR = "func_addr"  # lddw: the address of a function (a callback)
    KSYM = "ksym"  # lddw: a kernel variable (``__ksym``), resolved against kernel BTF
    KFUNC = "kfunc"  # call: a kernel function (``__ksym``), resolved against kernel BTF


@dataclass(frozen=True, slots=True)
class Reference:
    """The instruction at slot ``pc`` refers to ``target`` (a map, function or extern name).

    ``offset`` is the byte offset inside the map value for :attr:`RefKind.MAP_VALUE`.
    """

    pc: int
    kind: RefKind
    target: str
    offset: int = 0


@dataclass(slots=True)
class ProgramSpec:
    """One function of an object: an entry program, or a subprogram that others call.

    - ``name``: its symbol name (the section name in objects without function symbols);
      ``section`` and ``offset`` (bytes) locate it in the ELF file.
    - ``instructions``: as in the file; ``references`` say what relocations bind.
    - ``type`` / ``attach_type`` / ``attach_to``: from the section name (``None`` when no
      rule knows it: set it before loading); ``flags`` are ``BPF_F_SLEEPABLE`` and
      ``BPF_F_XDP_HAS_FRAGS``.
    - ``subprogram``: a ``.text`` function, loaded only as part of its callers;
      ``autoload`` says whether ``Object.load`` loads it as a program of its own.
    - ``btf_func_id``, ``func_info``, ``line_info``, ``core_relos``: from ``.BTF.ext``, with
      ``insn_off`` relative to the start of this function.
    """

    name: str
    section: str
    instructions: tuple[Instruction, ...]
    offset: int = 0
    references: tuple[Reference, ...] = ()
    type: ProgType | None = None
    attach_type: AttachType | None = None
    attach_to: str = ""
    flags: int = 0
    license: str = ""
    kernel_version: int = 0
    subprogram: bool = False
    autoload: bool = True
    global_function: bool = True
    btf_func_id: int = 0
    func_info: tuple[FuncInfo, ...] = ()
    line_info: tuple[LineInfo, ...] = ()
    core_relos: tuple[CoreRelo, ...] = field(default=())

    @property
    def slots(self) -> int:
        """Number of 8-byte instruction slots (``lddw`` counts two)."""
        return program_slots(self.instructions)

    @property
    def calls(self) -> tuple[str, ...]:
        """Names of the functions this one calls or takes the address of, in pc order."""
        out: list[str] = []
        for ref in self.references:
            if ref.kind in (RefKind.CALL, RefKind.FUNC_ADDR) and ref.target not in out:
                out.append(ref.target)
        return tuple(out)

    @property
    def maps_used(self) -> tuple[str, ...]:
        """Names of the maps this function refers to, in pc order."""
        out: list[str] = []
        for ref in self.references:
            if ref.kind in (RefKind.MAP, RefKind.MAP_VALUE) and ref.target not in out:
                out.append(ref.target)
        return tuple(out)

    def copy(self) -> ProgramSpec:
        """A copy that can be edited independently (instructions are immutable already)."""
        return dataclasses.replace(self)
