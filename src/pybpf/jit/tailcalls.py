"""Tail calls: ``bpf_tail_call`` on a known prog array as native code, a native entry per slot.

A prog array slot holds a program id (:class:`pybpf.maps.ProgArray`, native memory).
Beside each prog array a JIT program tail-calls through, :func:`shadow_of` keeps a
native *shadow*: per slot, the program id it last saw there, that program's native tail
entry (:data:`TAIL_ENTRY`, ``i64 pybpf_tail(ctx, depth, r1)``, exported by every compiled
module) and the entry's *key*: what the target expects of its caller, the same reachable
maps (programs of one loaded object: ``tail_group``) and the same memory-check mode
(:func:`tail_key`). The Python path fills a slot's row when it runs a JIT target there
(:func:`remember`); a target's code frees its rows before it goes (:func:`forget`).
Program ids are never reused, so a row whose id is the slot's id names the program in the
slot now: writing another program into the slot, or deleting it, needs no update.

Where r2 surely holds what an ``lddw`` of a live prog array loaded
(:func:`pybpf.jit.mapcalls.map_registers`), :func:`lower_tail_call` emits Linux's checks
in Linux's order, all natively: an index outside the array falls through (r0 =
``-ENOENT``, the interpreter's value), as does a chain that already made
:data:`~pybpf.isa.opcodes.MAX_TAIL_CALLS` tail calls; then the count goes up and an empty
slot falls through; a slot whose row matches (same id, the caller's key) runs the
target's entry on the caller's context block and frame depth (Linux reuses the caller's
frame) with r1 = ctx and fresh budgets, and the calling function returns its r0.
Whatever the native path cannot decide (a row not filled yet or stale, a target that is
not JIT code of the same group and mode, a closed array) takes the Python path of
:mod:`pybpf.jit.calls` unchanged, so results and errors stay the interpreter's.
"""

from __future__ import annotations

import ctypes
import errno
import threading
import weakref
from typing import Any

from pybpf.isa.opcodes import MAX_TAIL_CALLS
from pybpf.jit.layout import Slot

try:  # the JIT is optional
    from llvmlite import ir
except ImportError:  # pragma: no cover - exercised only where llvmlite is missing
    ir = None  # type: ignore[assignment]

__all__ = [
    "TAIL_ENTRY",
    "shadow_of",
    "remember",
    "forget",
    "tail_key",
    "build_tail_entry",
    "lower_tail_call",
]

TAIL_ENTRY = "pybpf_tail"
_FIELDS = 3  # per slot: program id, entry address, key
_M64 = (1 << 64) - 1
_ENOENT = -errno.ENOENT
_LOCK = threading.Lock()
_SHADOWS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def tail_key(group: int, debug_checks: bool) -> int:
    """What a caller and its target must share: their group and their check mode
    (never 0, the key of an empty row)."""
    return ((int(group) << 1) | int(bool(debug_checks))) + 2


def shadow_of(prog_array: Any) -> Any:
    """The shadow rows of ``prog_array`` (a ctypes array of ``max_entries`` rows of
    (program id, entry, key)), made on first use and kept as long as the array."""
    with _LOCK:
        rows = _SHADOWS.get(prog_array)
        if rows is None:
            rows = _SHADOWS[prog_array] = (ctypes.c_uint64 * (prog_array.max_entries * _FIELDS))()
        return rows


def remember(prog_array: Any, index: int, prog_id: int, entry: int, key: int) -> None:
    """Slot ``index`` of ``prog_array`` holds program ``prog_id``, whose native tail
    entry is ``entry`` (``key``: :func:`tail_key`): later tail calls there run natively."""
    if not 0 <= index < prog_array.max_entries or not entry:
        return
    rows = shadow_of(prog_array)
    at = index * _FIELDS
    with _LOCK:
        rows[at] = 0  # a reader never pairs the new id with the old entry
        rows[at + 1] = entry & _M64
        rows[at + 2] = key & _M64
        rows[at] = prog_id & _M64


def forget(entry: int) -> None:
    """The code at ``entry`` is going away: every row naming it is emptied."""
    with _LOCK:
        for rows in list(_SHADOWS.values()):
            for at in range(0, len(rows), _FIELDS):
                if rows[at + 1] == entry:
                    rows[at] = rows[at + 1] = rows[at + 2] = 0


def _c(value: int):
    value &= _M64
    return ir.Constant(ir.IntType(64), value - (1 << 64) if value >> 63 else value)


def build_tail_entry(module, ctx_type, first_function) -> None:
    """Add :data:`TAIL_ENTRY` to ``module``: ``i64 pybpf_tail(ctx, depth, r1)`` runs the
    program's first function at frame ``depth`` with r1 = ``r1`` (other registers 0) after
    restarting the run's instruction and ``may_goto`` budgets, as a fresh run would."""
    i64 = ir.IntType(64)
    fn = ir.Function(module, ir.FunctionType(i64, [ctx_type, i64, i64]), name=TAIL_ENTRY)
    fn.attributes.add("nounwind")
    ctx, depth, r1 = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def slot(index):
        return b.gep(ctx, [_c(index)])

    b.store(b.load(slot(Slot.BUDGET_INIT)), slot(Slot.BUDGET))
    b.store(b.load(slot(Slot.MAY_GOTO_INIT)), slot(Slot.MAY_GOTO))
    b.ret(b.call(first_function, [ctx, depth, r1, _c(0), _c(0), _c(0), _c(0)]))


def lower_tail_call(fl: Any, site: Any, pc: int) -> None:
    """Emit ``bpf_tail_call`` at ``pc`` on ``site``'s prog array into the function being
    lowered (``fl``: a :class:`pybpf.jit.lower._FunctionLowering`); ``site`` is a
    :class:`pybpf.jit.mapcalls.MapSite` of kind ``"progarray"`` whose rows are (the slot
    values' address or 0, the array's shadow's address, the caller's key)."""
    b = fl.b
    i64, i32 = ir.IntType(64), ir.IntType(32)
    m = site.map
    r1, _r2, r3 = fl.call_args()[:3]

    def row(k: int):
        where = [ir.Constant(i32, 0), ir.Constant(i32, site.index + k)]
        return b.load(b.gep(fl.mod.site_table, where))

    def block(name: str):
        return fl.fn.append_basic_block(f"tail{pc}.{name}")

    slow, fall, cont = block("python"), block("enoent"), block("cont")
    values = row(0)
    index = b.and_(r3, _c(0xFFFFFFFF))
    checks = block("index")
    b.cbranch(b.icmp_unsigned("==", values, _c(0)), slow, checks)  # 0: the array closed
    b.position_at_end(checks)
    counted = block("count")
    b.cbranch(b.icmp_unsigned(">=", index, _c(m.max_entries)), fall, counted)
    b.position_at_end(counted)
    count_ptr = fl.slot(Slot.TAIL_COUNT)
    count = b.load(count_ptr)
    read = block("slot")
    b.cbranch(b.icmp_unsigned(">=", count, _c(MAX_TAIL_CALLS)), fall, read)
    b.position_at_end(read)
    address = b.add(values, b.mul(index, _c(site.stride)))
    prog_id = b.zext(b.load(b.inttoptr(address, i32.as_pointer()), align=4), i64)
    occupied = block("occupied")
    empty = block("empty")
    b.cbranch(b.icmp_unsigned("==", prog_id, _c(0)), empty, occupied)
    b.position_at_end(empty)
    b.store(b.add(count, _c(1)), count_ptr)  # Linux counts before it looks at the slot
    b.branch(fall)
    b.position_at_end(occupied)
    shadow = b.inttoptr(b.add(row(1), b.mul(index, _c(8 * _FIELDS))), i64.as_pointer())
    seen = b.load(shadow)
    entry = b.load(b.gep(shadow, [_c(1)]))
    key = b.load(b.gep(shadow, [_c(2)]))
    native = block("native")
    usable = b.and_(b.icmp_unsigned("==", seen, prog_id), b.icmp_unsigned("==", key, row(2)))
    b.cbranch(usable, native, slow)
    b.position_at_end(native)
    b.store(b.add(count, _c(1)), count_ptr)
    target_type = ir.FunctionType(i64, [fl.mod.ctx_type, i64, i64])
    r0 = b.call(b.inttoptr(entry, target_type.as_pointer()), [fl.ctx, fl.depth, r1])
    failed = b.icmp_unsigned("!=", b.load(fl.slot(Slot.STATUS)), _c(0))
    done = block("ran")
    b.cbranch(failed, fl.unwind, done)
    b.position_at_end(done)
    b.ret(r0)  # the target's r0 is the calling function's
    # everything else: the dispatcher's Python path (it counts, runs or falls through)
    before = dict(fl.known)
    b.position_at_end(slow)
    fl.tail_call(pc)
    slow_r0, slow_end = fl.get(0), b.block
    b.branch(cont)
    b.position_at_end(fall)
    b.branch(cont)
    b.position_at_end(cont)
    result = b.phi(i64)
    result.add_incoming(slow_r0, slow_end)
    result.add_incoming(_c(_ENOENT), fall)
    fl.known = {r: v for r, v in before.items() if r != 0}
    fl.set(0, result)
