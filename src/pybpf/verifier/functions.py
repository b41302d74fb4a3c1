"""Global functions: non-static subprograms, verified on their own from their BTF signature.

A subprogram whose BTF ``FUNC`` has global linkage is not inlined at its call sites: like
Linux (``btf_prepare_func_args``), pybpf verifies it once, from the registers its
``FUNC_PROTO`` describes, and checks every call against that signature. Each parameter is

- a scalar (an integer, enum or anything that is not a pointer): any number;
- the program type's context (a pointer to its context struct, e.g. ``struct xdp_md *``):
  the context at offset 0;
- a pointer to sized memory (``int *``, ``struct hdr *``): ``size`` readable and writable
  bytes, maybe null (the function must check).

The function returns a number. A call makes ``r0`` a number and ``r1``-``r5`` unreadable;
the memory it passed may have been overwritten with numbers, and packet pointers die if the
function can move the packet. A signature pybpf cannot read (``void *``, more than five
parameters, no BTF) leaves the function static: inlined as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from pybpf.btf import Spec as BTFSpec
from pybpf.btf.types import Composite, Enum64, Func, FuncLinkage, FuncProto, Int, Pointer
from pybpf.btf.types import Enum as BTFEnum
from pybpf.verifier import ir

__all__ = ["ParamKind", "Param", "GlobalFunction", "read_signatures"]


class ParamKind(Enum):
    """What one global-function parameter is."""

    SCALAR = "scalar"
    CTX = "ctx"
    MEM = "mem"


@dataclass(frozen=True)
class Param:
    """One parameter (register ``r<i+1>``): its kind and, for memory, its size in bytes."""

    kind: ParamKind
    size: int = 0


@dataclass(frozen=True)
class GlobalFunction:
    """A global subprogram: where it starts, its name and its parameters."""

    pc: int
    name: str
    params: tuple[Param, ...]
    changes_packet: bool = False


def _param(btf: BTFSpec, type_id: int, ctx_name: str) -> Param | None:
    t = btf.resolve(type_id)
    if isinstance(t, (Int, BTFEnum, Enum64)):
        return Param(ParamKind.SCALAR)
    if not isinstance(t, Pointer):
        return None
    target = btf.resolve(t.type_id)
    if isinstance(target, Composite) and target.name == ctx_name:
        return Param(ParamKind.CTX)
    try:
        size = btf.size_of(t.type_id)
    except Exception:  # void, FWD, FUNC: no size to check
        return None
    return Param(ParamKind.MEM, size) if size > 0 else None


def _signature(btf: BTFSpec, func_id: int, ctx_name: str) -> tuple[Param, ...] | None:
    func = btf.type(func_id)
    if not isinstance(func, Func) or func.linkage != FuncLinkage.GLOBAL:
        return None
    proto = btf.type(func.type_id)
    if not isinstance(proto, FuncProto) or proto.variadic or len(proto.params) > 5:
        return None
    ret = btf.resolve(proto.return_type_id) if proto.return_type_id else None
    if not isinstance(ret, (Int, BTFEnum, Enum64)):
        return None  # Linux: "doesn't return scalar"
    params = [_param(btf, p.type_id, ctx_name) for p in proto.params]
    if any(p is None for p in params):
        return None
    return tuple(p for p in params if p is not None)


def read_signatures(
    btf: BTFSpec | None,
    functions: Sequence[tuple[str, int, int]],
    ctx_name: str,
) -> dict[int, GlobalFunction]:
    """The global functions among ``functions`` (``(name, pc, btf_func_id)``; the entry
    program, at pc 0, is never one), by first pc."""
    out: dict[int, GlobalFunction] = {}
    if btf is None:
        return out
    for name, pc, func_id in functions:
        if pc == 0 or not func_id:
            continue
        try:
            params = _signature(btf, func_id, ctx_name)
        except Exception:  # a malformed BTF reference: leave the function static
            params = None
        if params is not None:
            out[pc] = GlobalFunction(pc, name, params)
    return out


def may_change_packet(
    program: Sequence[tuple[int, ir.IrInstruction]],
    start: int,
    packet_helpers: Mapping[int, bool],
) -> bool:
    """Whether code reachable from ``start`` (following jumps and local calls) calls a
    helper that may move packet data (``packet_helpers``: helper id -> moves it)."""
    by_pc = dict(program)
    order = [pc for pc, _ in program]
    following = {pc: order[i + 1] for i, pc in enumerate(order[:-1])}
    seen: set[int] = set()
    work = [start]
    while work:
        pc = work.pop()
        if pc in seen or pc not in by_pc:
            continue
        seen.add(pc)
        ins = by_pc[pc]
        if isinstance(ins, ir.Call) and packet_helpers.get(ins.func, False):
            return True
        if isinstance(ins, ir.Exit):
            continue
        if isinstance(ins, ir.Jmp):
            work.append(ins.target)
            if ins.cond is None:
                continue
        if isinstance(ins, ir.CallLocal):
            work.append(ins.target)
        nxt = following.get(pc)
        if nxt is not None:
            work.append(nxt)
    return False
