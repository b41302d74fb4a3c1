"""Call contracts: each helper's prototype restated as what the analysis checks and assumes.

A :class:`Contract` is read from :mod:`pybpf.helpers`' Linux prototypes: one
:class:`Arg` per used register (a memory pointer and the size after it become one ``MEM``
argument), the kind of value left in ``r0``, and whether the call may move packet data
(Linux's ``bpf_helper_changes_pkt_data``), which invalidates packet pointers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cache

from pybpf.helpers import ArgSpec, ArgType, RetType, lookup
from pybpf.helpers.types import TypeFlag
from pybpf.verifier.program import ProgramInfo

__all__ = [
    "ArgKind",
    "RetKind",
    "Arg",
    "Contract",
    "contract_for",
    "PACKET_CHANGING",
    "ACQUIRING",
]


class ArgKind(Enum):
    """What one helper argument must be."""

    ANYTHING = "anything"
    MAP_FD = "map_fd"
    MAP_FD_PROGRAMS = "map_fd_programs"
    MAP_KEY = "map_key"
    MAP_VALUE = "map_value"
    MAP_VALUE_OUT = "map_value_out"  # the helper writes a whole value there
    STACK = "stack"
    CTX = "ctx"
    FUNC = "func"
    SOCKET = "socket"
    SOCK_COMMON = "sock_common"  # a socket, or the context of socket program types
    BTF_ID = "btf_id"
    ALLOC_MEM = "alloc_mem"
    SHARED_MEM = "shared_mem"  # spin locks, timers: inside a map value
    SIZE = "size"  # a size not paired with a pointer (allocation sizes)
    FIXED_MEM = "fixed_mem"  # a pointer to ``size`` bytes
    MEM = "mem"  # a pointer to ``size_reg`` bytes
    UNSUPPORTED = "unsupported"


class RetKind(Enum):
    """What a helper leaves in ``r0``."""

    NUMBER = "number"
    VOID = "void"  # Linux leaves r0 unreadable (mark_reg_not_init); PREVAIL: a number
    MAP_VALUE = "map_value"
    SOCKET = "socket"
    BTF_ID = "btf_id"
    ALLOC_MEM = "alloc_mem"


@dataclass(frozen=True)
class Arg:
    """One argument register and what it must hold."""

    reg: int
    kind: ArgKind
    or_null: bool = False
    size: int = 0
    size_reg: int | None = None
    size_can_be_zero: bool = False
    reads: bool = True
    writes: bool = False
    release: bool = False  # the helper releases the reference this argument holds


@dataclass(frozen=True)
class Contract:
    """A helper's checked arguments and modelled effects."""

    func: int
    name: str
    args: tuple[Arg, ...]
    ret: RetKind
    ret_nullable: bool = False
    alloc_size_reg: int | None = None
    changes_packet: bool = False
    is_tail_call: bool = False
    acquires: bool = False  # r0 (when not null) is a reference the program must release
    lock: int = 0  # 1: takes the spin lock, -1: releases it


# Linux's bpf_helper_changes_pkt_data().
PACKET_CHANGING = frozenset(
    {
        "skb_store_bytes",
        "skb_change_head",
        "skb_change_tail",
        "skb_pull_data",
        "skb_change_proto",
        "skb_vlan_push",
        "skb_vlan_pop",
        "skb_adjust_room",
        "xdp_adjust_head",
        "xdp_adjust_meta",
        "xdp_adjust_tail",
        "l3_csum_replace",
        "l4_csum_replace",
        "clone_redirect",
        "msg_pull_data",
        "msg_push_data",
        "msg_pop_data",
        "lwt_push_encap",
        "lwt_seg6_store_bytes",
        "lwt_seg6_adjust_srh",
        "lwt_seg6_action",
        "store_hdr_opt",
        "skb_change_type",
    }
)

# Linux's is_acquire_function(): r0 is a reference to release (sk_release, ringbuf_submit...).
ACQUIRING = frozenset({"sk_lookup_tcp", "sk_lookup_udp", "skc_lookup_tcp", "ringbuf_reserve"})

_SINGLE = {
    ArgType.ARG_ANYTHING: ArgKind.ANYTHING,
    ArgType.ARG_PTR_TO_MAP_KEY: ArgKind.MAP_KEY,
    ArgType.ARG_PTR_TO_CTX: ArgKind.CTX,
    ArgType.ARG_PTR_TO_STACK: ArgKind.STACK,
    ArgType.ARG_PTR_TO_FUNC: ArgKind.FUNC,
    ArgType.ARG_PTR_TO_SOCK_COMMON: ArgKind.SOCKET,
    ArgType.ARG_PTR_TO_SOCKET: ArgKind.SOCKET,
    ArgType.ARG_PTR_TO_BTF_ID_SOCK_COMMON: ArgKind.SOCK_COMMON,
    ArgType.ARG_PTR_TO_BTF_ID: ArgKind.BTF_ID,
    ArgType.ARG_PTR_TO_PERCPU_BTF_ID: ArgKind.BTF_ID,
    ArgType.ARG_PTR_TO_RINGBUF_MEM: ArgKind.ALLOC_MEM,
    ArgType.ARG_PTR_TO_SPIN_LOCK: ArgKind.SHARED_MEM,
    ArgType.ARG_PTR_TO_TIMER: ArgKind.SHARED_MEM,
    ArgType.ARG_PTR_TO_CONST_STR: ArgKind.SHARED_MEM,
    ArgType.ARG_CONST_ALLOC_SIZE_OR_ZERO: ArgKind.SIZE,
}

_RET = {
    RetType.RET_INTEGER: RetKind.NUMBER,
    RetType.RET_VOID: RetKind.VOID,
    RetType.RET_PTR_TO_MAP_VALUE: RetKind.MAP_VALUE,
    RetType.RET_PTR_TO_SOCKET: RetKind.SOCKET,
    RetType.RET_PTR_TO_SOCK_COMMON: RetKind.SOCKET,
    RetType.RET_PTR_TO_TCP_SOCK: RetKind.BTF_ID,
    RetType.RET_PTR_TO_MEM_OR_BTF_ID: RetKind.BTF_ID,
    RetType.RET_PTR_TO_BTF_ID: RetKind.BTF_ID,
}


def _args(specs: tuple[ArgSpec, ...], name: str) -> tuple[tuple[Arg, ...], int | None]:
    out: list[Arg] = []
    alloc: int | None = None
    skip = False
    for i, spec in enumerate(specs):
        reg = i + 1
        if skip:
            skip = False
            continue
        base, flags = spec.base, spec.flags
        nullable = TypeFlag.PTR_MAYBE_NULL in flags
        uninit = TypeFlag.MEM_UNINIT in flags
        if base == ArgType.ARG_CONST_MAP_PTR:
            kind = ArgKind.MAP_FD_PROGRAMS if name == "tail_call" else ArgKind.MAP_FD
            out.append(Arg(reg, kind))
        elif base == ArgType.ARG_PTR_TO_MAP_VALUE:
            out.append(Arg(reg, ArgKind.MAP_VALUE_OUT if uninit else ArgKind.MAP_VALUE))
        elif base == ArgType.ARG_PTR_TO_MEM and TypeFlag.MEM_FIXED_SIZE in flags:
            size = spec.size or 0
            reads, writes = not uninit, TypeFlag.MEM_RDONLY not in flags
            out.append(Arg(reg, ArgKind.FIXED_MEM, nullable, size, reads=reads, writes=writes))
        elif base == ArgType.ARG_PTR_TO_MEM:
            nxt = specs[i + 1] if i + 1 < len(specs) else None
            if nxt is None or nxt.base not in (
                ArgType.ARG_CONST_SIZE,
                ArgType.ARG_CONST_SIZE_OR_ZERO,
            ):
                out.append(Arg(reg, ArgKind.UNSUPPORTED))
                continue
            out.append(
                Arg(
                    reg,
                    ArgKind.MEM,
                    nullable,
                    size_reg=reg + 1,
                    size_can_be_zero=nxt.base == ArgType.ARG_CONST_SIZE_OR_ZERO,
                    reads=not uninit,
                    writes=TypeFlag.MEM_RDONLY not in flags,
                )
            )
            skip = True
        elif base in (ArgType.ARG_CONST_SIZE, ArgType.ARG_CONST_SIZE_OR_ZERO):
            out.append(Arg(reg, ArgKind.SIZE, base == ArgType.ARG_CONST_SIZE_OR_ZERO))
        elif base in _SINGLE:
            kind = _SINGLE[base]
            if kind == ArgKind.SIZE:
                alloc = reg
                out.append(Arg(reg, kind, True))
            else:
                out.append(Arg(reg, kind, nullable, release=TypeFlag.OBJ_RELEASE in flags))
        else:
            out.append(Arg(reg, ArgKind.UNSUPPORTED))
    return tuple(out), alloc


@cache
def _contract(func: int) -> Contract | None:
    proto = lookup(func)
    if proto is None or not proto.known or proto.ret is None or func == 0:
        return None
    args, alloc = _args(proto.args, proto.name)
    ret = proto.ret
    if ret.base == RetType.RET_PTR_TO_MEM:
        kind = RetKind.ALLOC_MEM if TypeFlag.MEM_RINGBUF in ret.flags else RetKind.BTF_ID
    else:
        kind = _RET.get(ret.base, RetKind.BTF_ID)
    return Contract(
        func=func,
        name=proto.name,
        args=args,
        ret=kind,
        ret_nullable=ret.maybe_null,
        alloc_size_reg=alloc if kind == RetKind.ALLOC_MEM else None,
        changes_packet=proto.name in PACKET_CHANGING,
        is_tail_call=proto.name == "tail_call",
        acquires=proto.name in ACQUIRING,
        lock={"spin_lock": 1, "spin_unlock": -1}.get(proto.name, 0),
    )


def contract_for(func: int, info: ProgramInfo) -> Contract | None:
    """The contract of helper ``func``, or ``None`` when it is unknown or has no prototype."""
    return _contract(func)
