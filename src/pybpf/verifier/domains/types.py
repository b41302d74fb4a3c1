"""Types: what a register or stack cell may hold, as a set of type bits, and each type's variables.

A type set is an ``int`` bit mask of :class:`T` members; an absent entry means *any type,
uninitialised included*. Each pointer type carries its own numeric variables (its *kinds*):
a packet pointer has ``packet_offset``, a map value (``shared``) has ``shared_offset`` and
``shared_region_size``, and so on. Numbers have ``svalue`` and ``uvalue`` (their signed and
unsigned views); pointers have ``addr``, an abstract address whose only use is the null
test (0 is null). Named groups (``NUMBER``, ``POINTER``, ``MEM``, ...) are the sets that
assertions require, printed the way PREVAIL prints them.
"""

from __future__ import annotations

from enum import IntFlag

__all__ = [
    "T",
    "ALL",
    "KINDS",
    "OFFSET_KIND",
    "VALUE_KINDS",
    "ADDRESS_KIND",
    "ADDRESSED",
    "Group",
    "type_names",
    "format_types",
    "parse_type",
    "kinds_of",
    "single",
]


class T(IntFlag):
    """One possible type of a value."""

    UNINIT = 1 << 0
    NUM = 1 << 1
    CTX = 1 << 2
    STACK = 1 << 3
    PACKET = 1 << 4
    SHARED = 1 << 5  # a map value (or global data): offset and region size are tracked
    MAP_FD = 1 << 6
    MAP_FD_PROGRAMS = 1 << 7
    SOCKET = 1 << 8
    BTF_ID = 1 << 9
    ALLOC_MEM = 1 << 10  # ring buffer records and other helper-allocated memory
    FUNC = 1 << 11  # a code address (callback)


ALL = (1 << 12) - 1
INITIALIZED = ALL & ~int(T.UNINIT)

# The numeric variables each type carries besides svalue/uvalue.
KINDS: dict[int, tuple[str, ...]] = {
    T.CTX: ("ctx_offset",),
    # stack_frame: the top (r10) of the frame the pointer was derived from; each frame is
    # its own region at run time, so an access must stay inside that frame
    T.STACK: ("stack_offset", "stack_numeric_size", "stack_frame"),
    # packet_limit: a ghost copy of packet_size taken when the pointer was read from the
    # context (packet_size is one number until a helper moves the packet, which kills every
    # packet pointer). A join with a side where the location is not a packet keeps the
    # pointer's own bounds (``packet_offset + 20 <= packet_limit``) though not their relation
    # to the shared packet_size; a test that makes the location a packet again restores
    # ``packet_size == packet_limit`` (a "packet or null" pointer kept across paths).
    T.PACKET: ("packet_offset", "packet_limit"),
    # shared_readonly: 1 for a value of a read-only map (.rodata, BPF_F_RDONLY_PROG), else 0
    T.SHARED: ("shared_offset", "shared_region_size", "shared_readonly"),
    T.MAP_FD: ("map_fd",),
    T.MAP_FD_PROGRAMS: ("map_fd_programs",),
    T.SOCKET: ("socket_offset",),
    T.BTF_ID: ("btf_id_offset",),
    T.ALLOC_MEM: ("alloc_mem_offset", "alloc_mem_size"),
}
OFFSET_KIND: dict[int, str] = {
    T.CTX: "ctx_offset",
    T.STACK: "stack_offset",
    T.PACKET: "packet_offset",
    T.SHARED: "shared_offset",
    T.SOCKET: "socket_offset",
    T.BTF_ID: "btf_id_offset",
    T.ALLOC_MEM: "alloc_mem_offset",
}
VALUE_KINDS = ("svalue", "uvalue")  # numbers (and code addresses): the value itself
# Pointers carry an abstract address instead: 0 for null, positive otherwise. Keeping it apart
# from numbers' values lets a join of "number 0" and "packet pointer" still tell them apart.
ADDRESS_KIND = "addr"
_VALUED = int(T.NUM | T.FUNC)
ADDRESSED = int(
    T.CTX
    | T.STACK
    | T.PACKET
    | T.SHARED
    | T.MAP_FD
    | T.MAP_FD_PROGRAMS
    | T.SOCKET
    | T.BTF_ID
    | T.ALLOC_MEM
)

_NAMES = {
    T.UNINIT: "uninit",
    T.NUM: "number",
    T.CTX: "ctx",
    T.STACK: "stack",
    T.PACKET: "packet",
    T.SHARED: "shared",
    T.MAP_FD: "map_fd",
    T.MAP_FD_PROGRAMS: "map_fd_programs",
    T.SOCKET: "socket",
    T.BTF_ID: "btf_id",
    T.ALLOC_MEM: "alloc_mem",
    T.FUNC: "func",
}
_BY_NAME = {name: bit for bit, name in _NAMES.items()}
_BY_NAME["num"] = T.NUM
_ORDER = list(_NAMES)


class Group:
    """The type sets assertions require."""

    NUMBER = int(T.NUM)
    CTX = int(T.CTX)
    STACK = int(T.STACK)
    PACKET = int(T.PACKET)
    SHARED = int(T.SHARED)
    SOCKET = int(T.SOCKET)
    BTF_ID = int(T.BTF_ID)
    ALLOC_MEM = int(T.ALLOC_MEM)
    FUNC = int(T.FUNC)
    MAP_FD = int(T.MAP_FD)
    MAP_FD_PROGRAMS = int(T.MAP_FD_PROGRAMS)
    CTX_OR_NUM = int(T.CTX | T.NUM)
    STACK_OR_NUM = int(T.STACK | T.NUM)
    MEM = int(T.STACK | T.PACKET | T.SHARED)
    MEM_OR_NUM = MEM | int(T.NUM)
    # Linux's mem_types for ARG_PTR_TO_MEM helper arguments: also PTR_TO_MEM (ring buffer
    # records), bounded by the record's size
    HELPER_MEM = MEM | int(T.ALLOC_MEM)
    HELPER_MEM_OR_NUM = HELPER_MEM | int(T.NUM)
    POINTER = int(T.CTX | T.STACK | T.PACKET | T.SHARED | T.SOCKET | T.ALLOC_MEM)
    PTR_OR_NUM = int(T.NUM | T.CTX | T.STACK | T.PACKET | T.SHARED | T.ALLOC_MEM)
    SINGLETON_PTR = int(T.CTX | T.STACK | T.PACKET)
    ANY_POINTER = INITIALIZED & ~int(T.NUM)
    ANY_INITIALIZED = INITIALIZED


def type_names(types: int) -> list[str]:
    """The names of the types in a set, in PREVAIL's order."""
    return [_NAMES[bit] for bit in _ORDER if types & bit]


def format_types(types: int) -> str:
    """``number`` for a singleton, ``{ctx, packet}`` for a set."""
    names = type_names(types)
    return names[0] if len(names) == 1 else "{" + ", ".join(names) + "}"


def parse_type(name: str) -> int:
    """The type bit of a name (``"packet"``); ``KeyError`` if unknown."""
    return int(_BY_NAME[name.strip()])


def kinds_of(types: int) -> list[str]:
    """Every numeric variable kind meaningful for some type in the set."""
    out: list[str] = []
    if types & _VALUED:
        out.extend(VALUE_KINDS)
    if types & ADDRESSED:
        out.append(ADDRESS_KIND)
    for bit, kinds in KINDS.items():
        if types & bit:
            out.extend(kinds)
    return out


def single(types: int) -> int | None:
    """The only type of a singleton set, else ``None``."""
    return types if types and types & (types - 1) == 0 else None


__all__ += ["INITIALIZED"]
