"""Assertions: the safety conditions the verifier proves, as plain records.

:mod:`pybpf.verifier.preconditions` says which of them each instruction needs;
:mod:`pybpf.verifier.checker` decides whether each holds in an abstract state and
:mod:`pybpf.verifier.transformer` computes the state after the instruction assuming they
all hold. ``str()`` of an assertion is the condition in PREVAIL's notation, quoted by the
diagnostics (``valid_access(r1.offset+4, width=2) for read``, ``r3.type == number``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.verifier.domains.types import format_types

__all__ = [
    "TypeConstraint",
    "ValidAccess",
    "ValidStore",
    "Addable",
    "Comparable",
    "ValidDivisor",
    "ValidSize",
    "ValidMapKeyValue",
    "ZeroCtxOffset",
    "FuncConstraint",
    "ValidHelper",
    "ValidReturn",
    "BoundedLoopCount",
    "NonNullArithmetic",
    "NoLeakedReferences",
    "ReleasesReference",
    "Unsupported",
    "Forbidden",
    "WritableMemory",
    "Assertion",
]


@dataclass(frozen=True, slots=True)
class TypeConstraint:
    """``reg`` has one of the types of ``group``."""

    reg: int
    group: int

    def __str__(self) -> str:
        names = format_types(self.group)
        op = "in" if names.startswith("{") else "=="
        return f"r{self.reg}.type {op} {names}"


@dataclass(frozen=True, slots=True)
class ValidAccess:
    """``[reg + offset, reg + offset + width)`` is accessible (``width`` 0: a comparison).

    ``width`` is a byte count or, when ``width_reg`` is set, the value of that register.
    ``access`` is ``"read"``, ``"write"`` or ``"compare"``; ``or_null`` lets a null
    pointer (number 0) through with nothing to access.
    """

    reg: int
    offset: int = 0
    width: int = 0
    access: str = "compare"
    width_reg: int | None = None
    or_null: bool = False

    def __str__(self) -> str:
        off = f"r{self.reg}.offset"
        if self.offset > 0:
            off += f"+{self.offset}"
        elif self.offset < 0:
            off += str(self.offset)
        if self.access == "compare":
            return f"valid_access({off}) for comparison/subtraction"
        width = f"r{self.width_reg}" if self.width_reg is not None else str(self.width)
        return f"valid_access({off}, width={width}) for {self.access}"


@dataclass(frozen=True, slots=True)
class ValidStore:
    """A value stored through ``mem`` is a number unless ``mem`` points to the stack."""

    mem: int
    val: int

    def __str__(self) -> str:
        return f"r{self.mem}.type != stack -> r{self.val}.type == number"


@dataclass(frozen=True, slots=True)
class Addable:
    """If ``ptr`` is a pointer then ``num`` is a number."""

    ptr: int
    num: int

    def __str__(self) -> str:
        return f"r{self.ptr}.type in {{ctx, stack, packet, shared}} -> r{self.num}.type == number"


@dataclass(frozen=True, slots=True)
class Comparable:
    """``r1`` and ``r2`` are both numbers or point into the same singleton region."""

    r1: int
    r2: int
    or_r2_is_number: bool

    def __str__(self) -> str:
        return (
            f"r{self.r2}.type == number or r{self.r1}.type == r{self.r2}.type "
            "in {ctx, stack, packet}"
        )


@dataclass(frozen=True, slots=True)
class ValidDivisor:
    """``reg`` is a number (and not 0 when division by zero is forbidden)."""

    reg: int
    is_signed: bool
    is64: bool = True

    def __str__(self) -> str:
        return f"{'r' if self.is64 else 'w'}{self.reg} != 0"


@dataclass(frozen=True, slots=True)
class ValidSize:
    """``reg`` is a positive size (or zero when ``can_be_zero``)."""

    reg: int
    can_be_zero: bool

    def __str__(self) -> str:
        return f"r{self.reg}.value {'>=' if self.can_be_zero else '>'} 0"


@dataclass(frozen=True, slots=True)
class ValidMapKeyValue:
    """``access_reg`` points to a whole key (or value) of the map in ``map_fd_reg``."""

    access_reg: int
    map_fd_reg: int
    key: bool
    write: bool = False

    def __str__(self) -> str:
        what = "key_size" if self.key else "value_size"
        return f"within(r{self.access_reg}:{what}(r{self.map_fd_reg}))"


@dataclass(frozen=True, slots=True)
class ZeroCtxOffset:
    """``reg`` points to the start of the context."""

    reg: int
    or_null: bool = False

    def __str__(self) -> str:
        return f"r{self.reg}.ctx_offset == 0"


@dataclass(frozen=True, slots=True)
class FuncConstraint:
    """``reg`` holds the id of a helper the program may call (``callx``)."""

    reg: int

    def __str__(self) -> str:
        return f"r{self.reg}.type is helper"


@dataclass(frozen=True, slots=True)
class ValidHelper:
    """Helper ``func`` exists, has a known prototype and suits the program type."""

    func: int

    def __str__(self) -> str:
        return f"helper {self.func} is usable"


@dataclass(frozen=True, slots=True)
class ValidReturn:
    """``r0`` at program exit lies in ``[lo, hi]``."""

    lo: int
    hi: int

    def __str__(self) -> str:
        return f"r0.value in [{self.lo}, {self.hi}]"


@dataclass(frozen=True, slots=True)
class BoundedLoopCount:
    """The loop headed at ``head`` runs at most ``limit`` times (checked after the fixpoint)."""

    head: str
    limit: int

    def __str__(self) -> str:
        return f"pc[{self.head}] < {self.limit}"


@dataclass(frozen=True, slots=True)
class NonNullArithmetic:
    """Pointer arithmetic on ``reg`` only once it is known not to be null."""

    reg: int

    def __str__(self) -> str:
        return f"r{self.reg} is not a maybe-null pointer"


@dataclass(frozen=True, slots=True)
class NoLeakedReferences:
    """No acquired reference (socket, ring-buffer record) or spin lock is still held."""

    def __str__(self) -> str:
        return "no reference or lock is held"


@dataclass(frozen=True, slots=True)
class ReleasesReference:
    """``reg`` holds exactly one reference the program still holds."""

    reg: int

    def __str__(self) -> str:
        return f"r{self.reg} is a held reference"


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A construct pybpf does not model (kfuncs, arena casts, ...): refused, flagged as such.

    Its diagnostic has ``unsupported`` set: the program may be safe, pybpf cannot tell.
    """

    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class WritableMemory:
    """What ``reg`` points to may be written: not the value of a read-only map."""

    reg: int

    def __str__(self) -> str:
        return f"r{self.reg} is not a read-only map value"


@dataclass(frozen=True, slots=True)
class Forbidden:
    """An instruction a rule forbids outright (a write to ``r10``, a helper the program
    type may not call, a read-only map written): always refused, a proven violation."""

    reason: str

    def __str__(self) -> str:
        return self.reason


Assertion = (
    TypeConstraint
    | ValidAccess
    | ValidStore
    | Addable
    | Comparable
    | ValidDivisor
    | ValidSize
    | ValidMapKeyValue
    | ZeroCtxOffset
    | FuncConstraint
    | ValidHelper
    | ValidReturn
    | BoundedLoopCount
    | NonNullArithmetic
    | NoLeakedReferences
    | ReleasesReference
    | Unsupported
    | Forbidden
    | WritableMemory
)
