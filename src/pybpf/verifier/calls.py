"""Calls: how helper calls, ``callx``, bpf-to-bpf calls and returns change the state.

A helper call writes the memory its contract says it writes (stack bytes become numbers),
leaves ``r0`` as the contract's return kind (a map value pointer, possibly null, whose
region size is the map's value size; a socket; ring-buffer memory; a number) and makes
``r1``-``r5`` unreadable. A call that may move packet data invalidates every packet
pointer. A bpf-to-bpf call saves ``r6``-``r9`` under the callee's frame prefix and moves
``r10`` down one frame; the callee's ``exit`` restores them, moves ``r10`` back and
forgets the callee's stack.
"""

from __future__ import annotations

from pybpf.verifier import ir
from pybpf.verifier.contracts import ArgKind, Contract, RetKind, contract_for
from pybpf.verifier.domains.interval import INF
from pybpf.verifier.domains.stack import FRAME_SIZE, TOTAL_STACK
from pybpf.verifier.domains.state import State
from pybpf.verifier.domains.types import ALL, T
from pybpf.verifier.functions import GlobalFunction, ParamKind
from pybpf.verifier.memory import (
    assign_pointer,
    recompute_all_numeric_sizes,
    recompute_numeric_size,
)
from pybpf.verifier.program import MapDescriptor, ProgramInfo

__all__ = ["transform", "forget_packet_pointers", "LEAKED", "LOCK"]


def forget_packet_pointers(s: State, info: ProgramInfo | None = None) -> None:
    """Every location that may hold a packet pointer becomes unusable; packet bounds reset.

    The metadata start resets too (``xdp_adjust_meta`` moves it): what was learnt about
    it (``meta + 8 <= data``) no longer holds.
    """
    for loc in [loc for loc, t in s.types.items() if t & T.PACKET]:
        s.havoc(loc, ALL)
    for r in range(11):
        if f"r{r}" not in s.types:
            s.havoc(f"r{r}", ALL)
    s.zone.forget("packet_size")
    s.zone.set("packet_size", 0, 65534)
    s.zone.forget("meta_offset")
    if info is None or info.context.meta >= 0:
        s.zone.set("meta_offset", -4098, 0)
    else:
        s.zone.set("meta_offset", 0, 0)


def _write_stack(s: State, reg: str, size_lo: int | float, size_hi: int | float) -> None:
    """A helper filled ``[reg, reg + size)`` of the stack with numbers."""
    if not s.may_be(reg, int(T.STACK)):
        return
    lo, hi = s.zone.bounds(f"{reg}.stack_offset")
    if lo == -INF or hi == INF or size_hi == INF:
        return
    start, end = max(int(lo), 0), min(int(hi + size_hi), TOTAL_STACK)
    s.kill_cells(start, end)
    if s.type_of(reg) == T.STACK:
        s.stack.set_numeric(int(hi), min(int(lo + size_lo), TOTAL_STACK))
        recompute_all_numeric_sizes(s)


def _maps_of(s: State, contract: Contract, info: ProgramInfo) -> list[MapDescriptor]:
    """The maps the call's map argument may be (empty when unknown or absent)."""
    for arg in contract.args:
        if arg.kind == ArgKind.MAP_FD:
            loc = f"r{arg.reg}"
            return info.maps_of(s.map_fds(loc), *s.zone.bounds(f"{loc}.map_fd")) or []
    return []


def _map_value(s: State, descs: list[MapDescriptor], nullable: bool) -> None:
    """``r0`` = a value of one of ``descs`` (an inner map for maps of maps), maybe null."""
    if descs and all(d.holds_maps for d in descs):
        inner = {d.inner_map_fd for d in descs}
        if None not in inner:
            s.havoc("r0", int(T.MAP_FD))
            s.zone.set("r0.map_fd", min(inner), max(inner))
            s.fds["r0"] = frozenset(inner)
            assign_pointer(s, "r0", nullable)
            return
    s.havoc("r0", int(T.SHARED))
    s.zone.set("r0.shared_offset", 0, 0)
    if descs and not any(d.holds_maps for d in descs):
        sizes = [d.value_size for d in descs]
        s.zone.set("r0.shared_region_size", min(sizes), max(sizes))
        readonly = [int(d.readonly) for d in descs]
        s.zone.set("r0.shared_readonly", min(readonly), max(readonly))
    assign_pointer(s, "r0", nullable)


LEAKED = -1  # a reference acquired again before the previous one was released
LOCK = -2  # the spin lock is held


def _release(s: State, reg: str) -> None:
    """The object ``reg`` refers to is gone: forget the reference and every copy of it."""
    ids = s.refs.get(reg, frozenset())
    if len(ids) != 1:
        return  # the checker refused it
    s.held = s.held - ids
    for loc, held in list(s.refs.items()):
        if held & ids:
            s.havoc(loc)


def _acquire(s: State, site: int) -> None:
    s.refs["r0"] = frozenset((site,))
    s.held = s.held | ({site, LEAKED} if site in s.held else {site})


def _callback_wrote(s: State, contract: Contract) -> None:
    """A callback may have stored other numbers in the caller's frame it was handed (its
    ``callback_ctx``): the values kept for those bytes are forgotten (which bytes are
    initialised does not change: the callback cannot make them less so)."""
    for arg in contract.args:
        reg = f"r{arg.reg}"
        if arg.kind != ArgKind.STACK or not s.may_be(reg, int(T.STACK)):
            continue
        lo = s.zone.bounds(f"{reg}.stack_offset")[0]
        top = s.zone.bounds(f"{reg}.stack_frame")[1]
        if lo == -INF or top == INF:
            s.kill_cells(0, TOTAL_STACK)
        else:
            s.kill_cells(max(int(lo), 0), min(int(top), TOTAL_STACK))


def _helper(s: State, contract: Contract, info: ProgramInfo, site: int) -> None:
    descs = _maps_of(s, contract, info)
    for arg in contract.args:
        if arg.release:
            _release(s, f"r{arg.reg}")
    if contract.lock > 0:
        s.held = s.held | {LOCK}
    elif contract.lock < 0:
        s.held = s.held - {LOCK}
    for arg in contract.args:
        reg = f"r{arg.reg}"
        if arg.kind == ArgKind.MEM and arg.writes:
            size = s.zone.bounds(f"r{arg.size_reg}.svalue")
            _write_stack(s, reg, size[0], size[1])
        elif arg.kind == ArgKind.FIXED_MEM and arg.writes:
            _write_stack(s, reg, arg.size, arg.size)
        elif arg.kind == ArgKind.MAP_VALUE_OUT and descs:
            sizes = [d.value_size for d in descs]
            _write_stack(s, reg, min(sizes), max(sizes))
    if any(arg.kind == ArgKind.FUNC for arg in contract.args):
        _callback_wrote(s, contract)
    alloc = None
    if contract.alloc_size_reg is not None:
        alloc = s.zone.bounds(f"r{contract.alloc_size_reg}.uvalue")
    r0 = "r0"
    ret = contract.ret
    if ret == RetKind.NUMBER:
        s.havoc(r0, int(T.NUM))
    elif ret == RetKind.VOID:  # e.g. tail_call falling through: Linux's "R0 !read_ok"
        s.havoc(r0, int(T.UNINIT if info.options.linux_rules else T.NUM))
    elif ret == RetKind.MAP_VALUE:
        _map_value(s, descs, contract.ret_nullable)
    elif ret == RetKind.ALLOC_MEM:
        s.havoc(r0, int(T.ALLOC_MEM))
        s.zone.set("r0.alloc_mem_offset", 0, 0)
        if alloc is not None:
            s.zone.set("r0.alloc_mem_size", *alloc)
        assign_pointer(s, r0, contract.ret_nullable)
    else:
        kind = T.SOCKET if ret == RetKind.SOCKET else T.BTF_ID
        s.havoc(r0, int(kind))
        s.zone.set("r0.socket_offset" if kind == T.SOCKET else "r0.btf_id_offset", 0, 0)
        assign_pointer(s, r0, contract.ret_nullable)
    if contract.acquires:
        _acquire(s, site)
    for r in range(1, 6):
        s.havoc(f"r{r}", int(T.UNINIT))
    if contract.changes_packet:
        forget_packet_pointers(s, info)


def _call_global(s: State, fn: GlobalFunction, info: ProgramInfo) -> None:
    """After a call of a global function: memory it was given may hold other numbers,
    ``r0`` is a number, ``r1``-``r5`` are gone, packet pointers die if it moves the packet."""
    for i, param in enumerate(fn.params):
        if param.kind == ParamKind.MEM:
            _write_stack(s, f"r{i + 1}", param.size, param.size)
    s.havoc("r0", int(T.NUM))
    for r in range(1, 6):
        s.havoc(f"r{r}", int(T.UNINIT))
    if fn.changes_packet:
        forget_packet_pointers(s, info)


def _move_r10(s: State, delta: int) -> None:
    s.zone.shift("r10.stack_offset", delta)
    s.zone.shift("r10.stack_frame", delta)
    recompute_numeric_size(s, "r10")


def _call_local(s: State, prefix: str) -> None:
    for r in range(6, 10):
        s.copy_loc(f"r{r}@{prefix}", f"r{r}")
    _move_r10(s, -FRAME_SIZE)


def _return(s: State, prefix: str) -> None:
    top = s.zone.interval("r10.stack_offset").singleton()
    if top is not None:
        start = max(top - FRAME_SIZE, 0)
        s.kill_cells(start, top)
        s.stack.clear_numeric(start, top)
    for r in range(6, 10):
        saved = f"r{r}@{prefix}"
        s.copy_loc(f"r{r}", saved)
        s.havoc(saved)
    _move_r10(s, FRAME_SIZE)
    for r in range(1, 6):
        s.havoc(f"r{r}", int(T.UNINIT))


def transform(
    s: State, ins: ir.IrInstruction, info: ProgramInfo, frame: str, site: int = 0
) -> State:
    """The state after a call or an exit (``frame``: the node's call-frame prefix; ``site``:
    the node's id, which names the references a helper call acquires)."""
    if isinstance(ins, ir.Call):
        contract = contract_for(ins.func, info)
        if contract is None:
            s.set_bottom()
        else:
            _helper(s, contract, info, site)
    elif isinstance(ins, ir.Callx):
        func = s.zone.interval(f"r{ins.reg}.uvalue").singleton()
        contract = None if func is None else contract_for(func, info)
        if contract is None:
            s.set_bottom()
        else:
            _helper(s, contract, info, site)
    elif isinstance(ins, ir.CallLocal) and ins.target in info.global_functions:
        _call_global(s, info.global_functions[ins.target], info)
    elif isinstance(ins, ir.CallLocal):
        _call_local(s, frame)
    elif isinstance(ins, ir.Exit) and frame:
        _return(s, frame)
    return s
