"""Helper types: Linux's vocabulary for helper arguments and return values.

Linux describes each helper argument and return value as a *base type* plus *type flags*
(``include/linux/bpf.h``: ``enum bpf_arg_type``, ``enum bpf_return_type``,
``enum bpf_type_flag``). The same model is kept here:

- :class:`ArgType` and :class:`RetType`: the base types, with Linux's names;
- :class:`TypeFlag`: the flags (``PTR_MAYBE_NULL``, ``MEM_RDONLY``, ``MEM_UNINIT``, ...),
  with Linux's bit positions (bit ``n + 8``);
- :class:`ArgSpec` and :class:`RetSpec`: a base type with flags (and, for fixed-size memory,
  the size), combined with ``|`` exactly as the kernel writes them, e.g.
  ``ARG_PTR_TO_MEM | MEM_RDONLY``;
- module constants for every base type and for Linux's composite names
  (``ARG_PTR_TO_UNINIT_MEM`` = ``ARG_PTR_TO_MEM | MEM_UNINIT | MEM_WRITE``,
  ``RET_PTR_TO_MAP_VALUE_OR_NULL`` = ``RET_PTR_TO_MAP_VALUE | PTR_MAYBE_NULL``, ...).

The base-type numbering follows Linux 6.x; it is a kernel-internal value, not an ABI.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum, IntFlag

__all__ = [
    "ArgType",
    "RetType",
    "TypeFlag",
    "ArgSpec",
    "RetSpec",
    "BASE_TYPE_BITS",
    "ARG_NAMES",
    "RET_NAMES",
]

BASE_TYPE_BITS = 8


class TypeFlag(IntFlag):
    """Linux's ``enum bpf_type_flag``: modifiers of a base type (bit ``n + 8``)."""

    PTR_MAYBE_NULL = 1 << (0 + BASE_TYPE_BITS)
    MEM_RDONLY = 1 << (1 + BASE_TYPE_BITS)
    MEM_RINGBUF = 1 << (2 + BASE_TYPE_BITS)
    MEM_USER = 1 << (3 + BASE_TYPE_BITS)
    MEM_PERCPU = 1 << (4 + BASE_TYPE_BITS)
    OBJ_RELEASE = 1 << (5 + BASE_TYPE_BITS)
    PTR_UNTRUSTED = 1 << (6 + BASE_TYPE_BITS)
    MEM_UNINIT = 1 << (7 + BASE_TYPE_BITS)
    DYNPTR_TYPE_LOCAL = 1 << (8 + BASE_TYPE_BITS)
    DYNPTR_TYPE_RINGBUF = 1 << (9 + BASE_TYPE_BITS)
    MEM_FIXED_SIZE = 1 << (10 + BASE_TYPE_BITS)
    MEM_ALLOC = 1 << (11 + BASE_TYPE_BITS)
    PTR_TRUSTED = 1 << (12 + BASE_TYPE_BITS)
    MEM_RCU = 1 << (13 + BASE_TYPE_BITS)
    NON_OWN_REF = 1 << (14 + BASE_TYPE_BITS)
    DYNPTR_TYPE_SKB = 1 << (15 + BASE_TYPE_BITS)
    DYNPTR_TYPE_XDP = 1 << (16 + BASE_TYPE_BITS)
    MEM_ALIGNED = 1 << (17 + BASE_TYPE_BITS)
    MEM_WRITE = 1 << (18 + BASE_TYPE_BITS)


class ArgType(IntEnum):
    """Linux's ``enum bpf_arg_type`` base types (what one helper argument must be)."""

    ARG_DONTCARE = 0  # unused argument
    ARG_CONST_MAP_PTR = 1  # a map (the lddw map pseudo value)
    ARG_PTR_TO_MAP_KEY = 2  # pointer to a key of the map in the previous argument
    ARG_PTR_TO_MAP_VALUE = 3  # pointer to a value of that map
    ARG_PTR_TO_MEM = 4  # pointer to valid memory (stack, packet, map value)
    ARG_PTR_TO_ARENA = 5
    ARG_CONST_SIZE = 6  # number of bytes accessed by the previous pointer argument, > 0
    ARG_CONST_SIZE_OR_ZERO = 7  # the same, may be 0
    ARG_PTR_TO_CTX = 8  # the program's context
    ARG_ANYTHING = 9  # any initialised value
    ARG_PTR_TO_SPIN_LOCK = 10  # a struct bpf_spin_lock inside a map value
    ARG_PTR_TO_SOCK_COMMON = 11
    ARG_PTR_TO_SOCKET = 12
    ARG_PTR_TO_BTF_ID = 13  # pointer to an in-kernel struct (BTF typed)
    ARG_PTR_TO_RINGBUF_MEM = 14  # memory reserved in a ring buffer
    ARG_CONST_ALLOC_SIZE_OR_ZERO = 15  # number of bytes to allocate
    ARG_PTR_TO_BTF_ID_SOCK_COMMON = 16
    ARG_PTR_TO_PERCPU_BTF_ID = 17
    ARG_PTR_TO_FUNC = 18  # a BPF subprogram (callback)
    ARG_PTR_TO_STACK = 19
    ARG_PTR_TO_CONST_STR = 20  # a NUL-terminated string in read-only map data
    ARG_PTR_TO_TIMER = 21
    ARG_KPTR_XCHG_DEST = 22
    ARG_PTR_TO_DYNPTR = 23


class RetType(IntEnum):
    """Linux's ``enum bpf_return_type`` base types (what a helper leaves in r0)."""

    RET_INTEGER = 0
    RET_VOID = 1
    RET_PTR_TO_MAP_VALUE = 2
    RET_PTR_TO_SOCKET = 3
    RET_PTR_TO_TCP_SOCK = 4
    RET_PTR_TO_SOCK_COMMON = 5
    RET_PTR_TO_MEM = 6
    RET_PTR_TO_MEM_OR_BTF_ID = 7
    RET_PTR_TO_BTF_ID = 8


def _flag_names(flags: TypeFlag) -> list[str]:
    # The order the kernel sources write them in, then bit order.
    first = ("PTR_MAYBE_NULL", "MEM_RDONLY", "MEM_UNINIT", "MEM_WRITE", "MEM_ALIGNED")
    names = [f.name for f in TypeFlag if f in flags and f.name]
    return [n for n in first if n in names] + [n for n in names if n not in first]


def _spell(base: IntEnum, flags: TypeFlag, composites: dict) -> str:
    exact = composites.get((base, flags))
    if exact:
        return exact
    if TypeFlag.MEM_FIXED_SIZE in flags and (base, TypeFlag.MEM_FIXED_SIZE) in composites:
        rest = flags & ~TypeFlag.MEM_FIXED_SIZE
        return " | ".join([composites[(base, TypeFlag.MEM_FIXED_SIZE)], *_flag_names(rest)])
    return " | ".join([str(base.name), *_flag_names(flags)])


@dataclass(frozen=True)
class ArgSpec:
    """One argument type: a base type, flags, and the fixed size of ``MEM_FIXED_SIZE`` memory.

    ``ARG_PTR_TO_MEM | MEM_RDONLY`` builds one; :attr:`name` spells it as Linux does.
    """

    base: ArgType
    flags: TypeFlag = TypeFlag(0)
    size: int | None = None  # Linux's argN_size, for ARG_PTR_TO_FIXED_SIZE_MEM
    btf_id: str | None = None  # Linux's argN_btf_id (the kernel symbol), when it has one
    alias: str | None = field(default=None, compare=False)

    def __or__(self, flag: TypeFlag) -> ArgSpec:
        return replace(self, flags=self.flags | flag, alias=None)

    def sized(self, size: int) -> ArgSpec:
        """The same type with a fixed size (``.argN_size``)."""
        return replace(self, size=size)

    def with_btf_id(self, btf_id: str) -> ArgSpec:
        """The same type with its BTF id symbol (``.argN_btf_id``)."""
        return replace(self, btf_id=btf_id)

    @property
    def value(self) -> int:
        """Linux's integer encoding: base | flags."""
        return int(self.base) | int(self.flags)

    @property
    def name(self) -> str:
        """Linux's spelling: the composite name when there is one, else ``BASE | FLAG``."""
        return self.alias or _spell(self.base, self.flags, ARG_NAMES)

    @property
    def maybe_null(self) -> bool:
        """``PTR_MAYBE_NULL``: the argument may be NULL."""
        return TypeFlag.PTR_MAYBE_NULL in self.flags

    @property
    def readonly(self) -> bool:
        """``MEM_RDONLY``: the helper only reads the memory."""
        return TypeFlag.MEM_RDONLY in self.flags

    @property
    def uninit(self) -> bool:
        """``MEM_UNINIT``: the memory need not be initialised (the helper fills it)."""
        return TypeFlag.MEM_UNINIT in self.flags

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class RetSpec:
    """A return type: a base type and flags; ``RET_PTR_TO_MEM | MEM_RDONLY`` builds one."""

    base: RetType
    flags: TypeFlag = TypeFlag(0)
    btf_id: str | None = None  # Linux's ret_btf_id symbol, when it has one
    alias: str | None = field(default=None, compare=False)

    def __or__(self, flag: TypeFlag) -> RetSpec:
        return replace(self, flags=self.flags | flag, alias=None)

    def with_btf_id(self, btf_id: str) -> RetSpec:
        """The same type with its BTF id symbol (``.ret_btf_id``)."""
        return replace(self, btf_id=btf_id)

    @property
    def value(self) -> int:
        """Linux's integer encoding: base | flags."""
        return int(self.base) | int(self.flags)

    @property
    def name(self) -> str:
        """Linux's spelling: the composite name when there is one, else ``BASE | FLAG``."""
        return self.alias or _spell(self.base, self.flags, RET_NAMES)

    @property
    def maybe_null(self) -> bool:
        """``PTR_MAYBE_NULL``: the program must test r0 against NULL before use."""
        return TypeFlag.PTR_MAYBE_NULL in self.flags

    @property
    def is_void(self) -> bool:
        """The helper returns nothing (r0 is unspecified after the call)."""
        return self.base == RetType.RET_VOID

    def __str__(self) -> str:
        return self.name


# Linux's composite names (include/linux/bpf.h, "Extended arg_types" / "Extended ret_types").
_F = TypeFlag
ARG_NAMES: dict[tuple[ArgType, TypeFlag], str] = {
    (ArgType.ARG_PTR_TO_MAP_VALUE, _F.PTR_MAYBE_NULL): "ARG_PTR_TO_MAP_VALUE_OR_NULL",
    (ArgType.ARG_PTR_TO_MEM, _F.PTR_MAYBE_NULL): "ARG_PTR_TO_MEM_OR_NULL",
    (ArgType.ARG_PTR_TO_CTX, _F.PTR_MAYBE_NULL): "ARG_PTR_TO_CTX_OR_NULL",
    (ArgType.ARG_PTR_TO_SOCKET, _F.PTR_MAYBE_NULL): "ARG_PTR_TO_SOCKET_OR_NULL",
    (ArgType.ARG_PTR_TO_STACK, _F.PTR_MAYBE_NULL): "ARG_PTR_TO_STACK_OR_NULL",
    (ArgType.ARG_PTR_TO_BTF_ID, _F.PTR_MAYBE_NULL): "ARG_PTR_TO_BTF_ID_OR_NULL",
    (ArgType.ARG_PTR_TO_MEM, _F.MEM_UNINIT | _F.MEM_WRITE): "ARG_PTR_TO_UNINIT_MEM",
    (ArgType.ARG_PTR_TO_MEM, _F.MEM_FIXED_SIZE): "ARG_PTR_TO_FIXED_SIZE_MEM",
}
RET_NAMES: dict[tuple[RetType, TypeFlag], str] = {
    (RetType.RET_PTR_TO_MAP_VALUE, _F.PTR_MAYBE_NULL): "RET_PTR_TO_MAP_VALUE_OR_NULL",
    (RetType.RET_PTR_TO_SOCKET, _F.PTR_MAYBE_NULL): "RET_PTR_TO_SOCKET_OR_NULL",
    (RetType.RET_PTR_TO_TCP_SOCK, _F.PTR_MAYBE_NULL): "RET_PTR_TO_TCP_SOCK_OR_NULL",
    (RetType.RET_PTR_TO_SOCK_COMMON, _F.PTR_MAYBE_NULL): "RET_PTR_TO_SOCK_COMMON_OR_NULL",
    (RetType.RET_PTR_TO_MEM, _F.PTR_MAYBE_NULL | _F.MEM_RINGBUF): "RET_PTR_TO_RINGBUF_MEM_OR_NULL",
    (RetType.RET_PTR_TO_MEM, _F.PTR_MAYBE_NULL): "RET_PTR_TO_DYNPTR_MEM_OR_NULL",
    (RetType.RET_PTR_TO_BTF_ID, _F.PTR_MAYBE_NULL): "RET_PTR_TO_BTF_ID_OR_NULL",
    (RetType.RET_PTR_TO_BTF_ID, _F.PTR_TRUSTED): "RET_PTR_TO_BTF_ID_TRUSTED",
}


# ---- Linux's names as constants ---------------------------------------------------------
# Base types.
ARG_DONTCARE = ArgSpec(ArgType.ARG_DONTCARE)
ARG_CONST_MAP_PTR = ArgSpec(ArgType.ARG_CONST_MAP_PTR)
ARG_PTR_TO_MAP_KEY = ArgSpec(ArgType.ARG_PTR_TO_MAP_KEY)
ARG_PTR_TO_MAP_VALUE = ArgSpec(ArgType.ARG_PTR_TO_MAP_VALUE)
ARG_PTR_TO_MEM = ArgSpec(ArgType.ARG_PTR_TO_MEM)
ARG_PTR_TO_ARENA = ArgSpec(ArgType.ARG_PTR_TO_ARENA)
ARG_CONST_SIZE = ArgSpec(ArgType.ARG_CONST_SIZE)
ARG_CONST_SIZE_OR_ZERO = ArgSpec(ArgType.ARG_CONST_SIZE_OR_ZERO)
ARG_PTR_TO_CTX = ArgSpec(ArgType.ARG_PTR_TO_CTX)
ARG_ANYTHING = ArgSpec(ArgType.ARG_ANYTHING)
ARG_PTR_TO_SPIN_LOCK = ArgSpec(ArgType.ARG_PTR_TO_SPIN_LOCK)
ARG_PTR_TO_SOCK_COMMON = ArgSpec(ArgType.ARG_PTR_TO_SOCK_COMMON)
ARG_PTR_TO_SOCKET = ArgSpec(ArgType.ARG_PTR_TO_SOCKET)
ARG_PTR_TO_BTF_ID = ArgSpec(ArgType.ARG_PTR_TO_BTF_ID)
ARG_PTR_TO_RINGBUF_MEM = ArgSpec(ArgType.ARG_PTR_TO_RINGBUF_MEM)
ARG_CONST_ALLOC_SIZE_OR_ZERO = ArgSpec(ArgType.ARG_CONST_ALLOC_SIZE_OR_ZERO)
ARG_PTR_TO_BTF_ID_SOCK_COMMON = ArgSpec(ArgType.ARG_PTR_TO_BTF_ID_SOCK_COMMON)
ARG_PTR_TO_PERCPU_BTF_ID = ArgSpec(ArgType.ARG_PTR_TO_PERCPU_BTF_ID)
ARG_PTR_TO_FUNC = ArgSpec(ArgType.ARG_PTR_TO_FUNC)
ARG_PTR_TO_STACK = ArgSpec(ArgType.ARG_PTR_TO_STACK)
ARG_PTR_TO_CONST_STR = ArgSpec(ArgType.ARG_PTR_TO_CONST_STR)
ARG_PTR_TO_TIMER = ArgSpec(ArgType.ARG_PTR_TO_TIMER)
ARG_KPTR_XCHG_DEST = ArgSpec(ArgType.ARG_KPTR_XCHG_DEST)
ARG_PTR_TO_DYNPTR = ArgSpec(ArgType.ARG_PTR_TO_DYNPTR)
RET_INTEGER = RetSpec(RetType.RET_INTEGER)
RET_VOID = RetSpec(RetType.RET_VOID)
RET_PTR_TO_MAP_VALUE = RetSpec(RetType.RET_PTR_TO_MAP_VALUE)
RET_PTR_TO_SOCKET = RetSpec(RetType.RET_PTR_TO_SOCKET)
RET_PTR_TO_TCP_SOCK = RetSpec(RetType.RET_PTR_TO_TCP_SOCK)
RET_PTR_TO_SOCK_COMMON = RetSpec(RetType.RET_PTR_TO_SOCK_COMMON)
RET_PTR_TO_MEM = RetSpec(RetType.RET_PTR_TO_MEM)
RET_PTR_TO_MEM_OR_BTF_ID = RetSpec(RetType.RET_PTR_TO_MEM_OR_BTF_ID)
RET_PTR_TO_BTF_ID = RetSpec(RetType.RET_PTR_TO_BTF_ID)
# Flags.
PTR_MAYBE_NULL = TypeFlag.PTR_MAYBE_NULL
MEM_RDONLY = TypeFlag.MEM_RDONLY
MEM_RINGBUF = TypeFlag.MEM_RINGBUF
MEM_USER = TypeFlag.MEM_USER
MEM_PERCPU = TypeFlag.MEM_PERCPU
OBJ_RELEASE = TypeFlag.OBJ_RELEASE
PTR_UNTRUSTED = TypeFlag.PTR_UNTRUSTED
MEM_UNINIT = TypeFlag.MEM_UNINIT
DYNPTR_TYPE_LOCAL = TypeFlag.DYNPTR_TYPE_LOCAL
DYNPTR_TYPE_RINGBUF = TypeFlag.DYNPTR_TYPE_RINGBUF
MEM_FIXED_SIZE = TypeFlag.MEM_FIXED_SIZE
MEM_ALLOC = TypeFlag.MEM_ALLOC
PTR_TRUSTED = TypeFlag.PTR_TRUSTED
MEM_RCU = TypeFlag.MEM_RCU
NON_OWN_REF = TypeFlag.NON_OWN_REF
DYNPTR_TYPE_SKB = TypeFlag.DYNPTR_TYPE_SKB
DYNPTR_TYPE_XDP = TypeFlag.DYNPTR_TYPE_XDP
MEM_ALIGNED = TypeFlag.MEM_ALIGNED
MEM_WRITE = TypeFlag.MEM_WRITE
# Composite names.
ARG_PTR_TO_MAP_VALUE_OR_NULL = ArgSpec(
    ArgType.ARG_PTR_TO_MAP_VALUE, _F.PTR_MAYBE_NULL, alias="ARG_PTR_TO_MAP_VALUE_OR_NULL"
)
ARG_PTR_TO_MEM_OR_NULL = ArgSpec(
    ArgType.ARG_PTR_TO_MEM, _F.PTR_MAYBE_NULL, alias="ARG_PTR_TO_MEM_OR_NULL"
)
ARG_PTR_TO_CTX_OR_NULL = ArgSpec(
    ArgType.ARG_PTR_TO_CTX, _F.PTR_MAYBE_NULL, alias="ARG_PTR_TO_CTX_OR_NULL"
)
ARG_PTR_TO_SOCKET_OR_NULL = ArgSpec(
    ArgType.ARG_PTR_TO_SOCKET, _F.PTR_MAYBE_NULL, alias="ARG_PTR_TO_SOCKET_OR_NULL"
)
ARG_PTR_TO_STACK_OR_NULL = ArgSpec(
    ArgType.ARG_PTR_TO_STACK, _F.PTR_MAYBE_NULL, alias="ARG_PTR_TO_STACK_OR_NULL"
)
ARG_PTR_TO_BTF_ID_OR_NULL = ArgSpec(
    ArgType.ARG_PTR_TO_BTF_ID, _F.PTR_MAYBE_NULL, alias="ARG_PTR_TO_BTF_ID_OR_NULL"
)
ARG_PTR_TO_UNINIT_MEM = ArgSpec(
    ArgType.ARG_PTR_TO_MEM, _F.MEM_UNINIT | _F.MEM_WRITE, alias="ARG_PTR_TO_UNINIT_MEM"
)
ARG_PTR_TO_FIXED_SIZE_MEM = ArgSpec(
    ArgType.ARG_PTR_TO_MEM, _F.MEM_FIXED_SIZE, alias="ARG_PTR_TO_FIXED_SIZE_MEM"
)
RET_PTR_TO_MAP_VALUE_OR_NULL = RetSpec(
    RetType.RET_PTR_TO_MAP_VALUE, _F.PTR_MAYBE_NULL, alias="RET_PTR_TO_MAP_VALUE_OR_NULL"
)
RET_PTR_TO_SOCKET_OR_NULL = RetSpec(
    RetType.RET_PTR_TO_SOCKET, _F.PTR_MAYBE_NULL, alias="RET_PTR_TO_SOCKET_OR_NULL"
)
RET_PTR_TO_TCP_SOCK_OR_NULL = RetSpec(
    RetType.RET_PTR_TO_TCP_SOCK, _F.PTR_MAYBE_NULL, alias="RET_PTR_TO_TCP_SOCK_OR_NULL"
)
RET_PTR_TO_SOCK_COMMON_OR_NULL = RetSpec(
    RetType.RET_PTR_TO_SOCK_COMMON, _F.PTR_MAYBE_NULL, alias="RET_PTR_TO_SOCK_COMMON_OR_NULL"
)
RET_PTR_TO_RINGBUF_MEM_OR_NULL = RetSpec(
    RetType.RET_PTR_TO_MEM,
    _F.PTR_MAYBE_NULL | _F.MEM_RINGBUF,
    alias="RET_PTR_TO_RINGBUF_MEM_OR_NULL",
)
RET_PTR_TO_DYNPTR_MEM_OR_NULL = RetSpec(
    RetType.RET_PTR_TO_MEM, _F.PTR_MAYBE_NULL, alias="RET_PTR_TO_DYNPTR_MEM_OR_NULL"
)
RET_PTR_TO_BTF_ID_OR_NULL = RetSpec(
    RetType.RET_PTR_TO_BTF_ID, _F.PTR_MAYBE_NULL, alias="RET_PTR_TO_BTF_ID_OR_NULL"
)
RET_PTR_TO_BTF_ID_TRUSTED = RetSpec(
    RetType.RET_PTR_TO_BTF_ID, _F.PTR_TRUSTED, alias="RET_PTR_TO_BTF_ID_TRUSTED"
)

__all__ += [
    "ARG_DONTCARE",
    "ARG_CONST_MAP_PTR",
    "ARG_PTR_TO_MAP_KEY",
    "ARG_PTR_TO_MAP_VALUE",
    "ARG_PTR_TO_MEM",
    "ARG_PTR_TO_ARENA",
    "ARG_CONST_SIZE",
    "ARG_CONST_SIZE_OR_ZERO",
    "ARG_PTR_TO_CTX",
    "ARG_ANYTHING",
    "ARG_PTR_TO_SPIN_LOCK",
    "ARG_PTR_TO_SOCK_COMMON",
    "ARG_PTR_TO_SOCKET",
    "ARG_PTR_TO_BTF_ID",
    "ARG_PTR_TO_RINGBUF_MEM",
    "ARG_CONST_ALLOC_SIZE_OR_ZERO",
    "ARG_PTR_TO_BTF_ID_SOCK_COMMON",
    "ARG_PTR_TO_PERCPU_BTF_ID",
    "ARG_PTR_TO_FUNC",
    "ARG_PTR_TO_STACK",
    "ARG_PTR_TO_CONST_STR",
    "ARG_PTR_TO_TIMER",
    "ARG_KPTR_XCHG_DEST",
    "ARG_PTR_TO_DYNPTR",
    "RET_INTEGER",
    "RET_VOID",
    "RET_PTR_TO_MAP_VALUE",
    "RET_PTR_TO_SOCKET",
    "RET_PTR_TO_TCP_SOCK",
    "RET_PTR_TO_SOCK_COMMON",
    "RET_PTR_TO_MEM",
    "RET_PTR_TO_MEM_OR_BTF_ID",
    "RET_PTR_TO_BTF_ID",
    "PTR_MAYBE_NULL",
    "MEM_RDONLY",
    "MEM_RINGBUF",
    "MEM_USER",
    "MEM_PERCPU",
    "OBJ_RELEASE",
    "PTR_UNTRUSTED",
    "MEM_UNINIT",
    "DYNPTR_TYPE_LOCAL",
    "DYNPTR_TYPE_RINGBUF",
    "MEM_FIXED_SIZE",
    "MEM_ALLOC",
    "PTR_TRUSTED",
    "MEM_RCU",
    "NON_OWN_REF",
    "DYNPTR_TYPE_SKB",
    "DYNPTR_TYPE_XDP",
    "MEM_ALIGNED",
    "MEM_WRITE",
    "ARG_PTR_TO_MAP_VALUE_OR_NULL",
    "ARG_PTR_TO_MEM_OR_NULL",
    "ARG_PTR_TO_CTX_OR_NULL",
    "ARG_PTR_TO_SOCKET_OR_NULL",
    "ARG_PTR_TO_STACK_OR_NULL",
    "ARG_PTR_TO_BTF_ID_OR_NULL",
    "ARG_PTR_TO_UNINIT_MEM",
    "ARG_PTR_TO_FIXED_SIZE_MEM",
    "RET_PTR_TO_MAP_VALUE_OR_NULL",
    "RET_PTR_TO_SOCKET_OR_NULL",
    "RET_PTR_TO_TCP_SOCK_OR_NULL",
    "RET_PTR_TO_SOCK_COMMON_OR_NULL",
    "RET_PTR_TO_RINGBUF_MEM_OR_NULL",
    "RET_PTR_TO_DYNPTR_MEM_OR_NULL",
    "RET_PTR_TO_BTF_ID_OR_NULL",
    "RET_PTR_TO_BTF_ID_TRUSTED",
]
