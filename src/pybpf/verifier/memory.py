"""Memory: how loads, stores, atomics and pseudo loads (``lddw`` of maps) change the state.

Only the stack's contents are tracked (byte-precise initialisation, typed cells for
spilled registers and stored numbers). Loads from the context give packet pointers for
the data/data_end/meta fields and numbers elsewhere; loads from packets and map values
give numbers, bounded by the access width. Stores elsewhere than the stack leave the
state unchanged (their safety is the checker's business).
"""

from __future__ import annotations

from pybpf.progtypes.contexts import FieldKind
from pybpf.verifier import ir
from pybpf.verifier.domains import arith
from pybpf.verifier.domains.interval import INF, signed_range, unsigned_range
from pybpf.verifier.domains.stack import TOTAL_STACK, cell_name
from pybpf.verifier.domains.state import State
from pybpf.verifier.domains.types import ALL, T
from pybpf.verifier.program import ProgramInfo
from pybpf.verifier.values import const_pair

__all__ = [
    "transform",
    "recompute_numeric_size",
    "recompute_all_numeric_sizes",
    "PTR_MAX",
    "assign_pointer",
]

PTR_MAX = 0x7FFF0000  # abstract addresses of non-null pointers lie in [1, PTR_MAX]


def assign_pointer(s: State, loc: str, maybe_null: bool) -> None:
    """Give a pointer its abstract address (0 stands for null)."""
    s.zone.set(f"{loc}.addr", 0 if maybe_null else 1, PTR_MAX)


def _number(s: State, loc: str, width: int, signed: bool) -> None:
    s.havoc(loc, int(T.NUM))
    if width == 8:
        return
    bits = 8 * width
    if signed:
        r = signed_range(bits)
        s.set_values(loc, r, arith.from_signed(r))
    else:
        r = unsigned_range(bits)
        s.set_values(loc, r, r)


def recompute_numeric_size(s: State, loc: str) -> None:
    """Raise ``stack_numeric_size`` of a stack pointer to what the stack now guarantees.

    It is the number of numeric bytes surely starting at the pointer: for an offset in
    ``[lo, hi]`` that is the run from ``hi`` when all of ``[lo, hi]`` is numeric.
    """
    if not s.may_be(loc, int(T.STACK)):
        return
    lo, hi = s.zone.bounds(f"{loc}.stack_offset")
    if lo == -INF or hi == INF or lo < 0 or hi >= TOTAL_STACK:
        return
    if not s.stack.all_numeric(int(lo), int(hi) + 1):
        return
    run = s.stack.numeric_run(int(hi))
    var = f"{loc}.stack_numeric_size"
    if run > s.zone.bounds(var)[0]:
        s.zone.meet_interval(var, run, INF)


def recompute_all_numeric_sizes(s: State) -> None:
    """After numbers were written to the stack: every stack pointer may see more of them."""
    for loc, t in list(s.types.items()):
        if t & T.STACK:
            recompute_numeric_size(s, loc)


_SIZE = ".stack_numeric_size"


def _forget_numeric_sizes(s: State, start: int = 0, end: int = TOTAL_STACK) -> None:
    """Bytes ``[start, end)`` may no longer hold numbers: cut each stack pointer's
    ``stack_numeric_size`` to the bytes that surely still do (a pointer whose known numeric
    run cannot reach the range keeps it). Only the bound is kept: a relation between two
    sizes may have stood for bytes past the bound."""
    z = s.zone
    for var in [v for v in z.variables() if v.endswith(_SIZE)]:
        lo, hi = z.bounds(var[: -len(_SIZE)] + ".stack_offset")
        size = z.bounds(var)[0]
        z.forget(var)
        if size <= 0 or hi == INF:
            continue
        if lo != -INF and (end <= lo or hi + size <= start):
            z.set(var, size, INF)
        elif start > hi:
            z.set(var, min(size, start - hi), INF)


# ---- stack -------------------------------------------------------------------------------------
def _load_stack(
    s: State,
    dst: str,
    lo: int | float,
    hi: int | float,
    width: int,
    signed: bool,
    base: str,
    offset: int,
) -> None:
    if lo != -INF and hi + width <= TOTAL_STACK and s.stack.all_numeric(int(lo), int(hi) + width):
        numeric = True
    else:
        size_lo = s.zone.bounds(f"{base}.stack_numeric_size")[0]
        numeric = base != "r10" and offset >= 0 and size_lo >= offset + width
    cell = s.stack.cell(int(lo), width) if lo == hi else None
    if cell is not None and (not numeric or s.type_of(cell) == T.NUM):
        s.copy_loc(dst, cell)
        if numeric:
            s.set_type(dst, int(T.NUM))
        if signed and width < 8:
            pair = arith.sign_extend(s.values(dst), 8 * width, 64)
            s.havoc(dst, int(T.NUM))
            s.set_values(dst, *pair)
        return
    if numeric:
        _number(s, dst, width, signed)
    else:
        s.havoc(dst, ALL)


def _store_stack(s: State, lo: int | float, hi: int | float, width: int, value: ir.Value) -> None:
    is_number = isinstance(value, ir.Imm) or s.has_type(f"r{value}", int(T.NUM))
    if lo == -INF or hi == INF:
        start, end = 0, TOTAL_STACK
    else:
        start, end = max(int(lo), 0), min(int(hi) + width, TOTAL_STACK)
    s.kill_cells(start, end)
    if lo != hi:
        if not is_number:
            s.stack.clear_numeric(start, end)
            _forget_numeric_sizes(s, start, end)
        return
    a = int(lo)
    cell = cell_name(a, width)
    if is_number:
        s.stack.set_numeric(a, a + width)
        recompute_all_numeric_sizes(s)
        if isinstance(value, ir.Imm):
            pair = const_pair(value.value)
        else:
            pair = s.values(f"r{value}")
        if width < 8:
            u = arith.truncate(pair[1], 8 * width)
            pair = (u, u)
        s.stack.cells[a] = width
        if width == 8 and not isinstance(value, ir.Imm):
            s.copy_loc(cell, f"r{value}")
        else:
            s.havoc(cell, int(T.NUM))
            s.set_values(cell, *pair)
        return
    s.stack.clear_numeric(a, a + width)
    _forget_numeric_sizes(s, a, a + width)
    if width == 8 and s.type_of(f"r{value}") != T.UNINIT:
        s.stack.cells[a] = width
        s.copy_loc(cell, f"r{value}")


def _stack_range(s: State, base: str, offset: int) -> tuple[int | float, int | float]:
    lo, hi = s.zone.bounds(f"{base}.stack_offset")
    return lo + offset, hi + offset


# ---- context -----------------------------------------------------------------------------------
def _load_ctx(
    s: State, dst: str, base: str, offset: int, width: int, signed: bool, info: ProgramInfo
) -> None:
    layout = info.context
    lo, hi = s.zone.bounds(f"{base}.ctx_offset")
    lo, hi = lo + offset, hi + offset
    pointers = layout.pointer_fields()
    touched = [f for f in pointers if lo < f.end and f.offset < hi + width]
    if not touched:
        _number(s, dst, width, signed)
        return
    f = touched[0]
    exact = lo == hi and len(touched) == 1 and f.offset == lo and f.size == width
    if not exact or signed or f.kind == FieldKind.POINTER:
        s.havoc(dst, ALL)  # a pointer read partly, or a pointer we do not model: unusable
        return
    s.havoc(dst, int(T.PACKET))
    z = s.zone
    target = f"{dst}.packet_offset"
    if f.kind == FieldKind.PACKET:
        z.set(target, 0, 0)
    elif f.kind == FieldKind.PACKET_END:
        z.assign(target, "packet_size")
        z.meet_interval(target, -INF, info.options.max_packet_size - 1)
    else:
        z.assign(target, "meta_offset")
    z.assign(f"{dst}.packet_limit", "packet_size")
    assign_pointer(s, dst, False)


# ---- instructions -----------------------------------------------------------------------------
def _load(s: State, ins: ir.Mem, info: ProgramInfo) -> State:
    assert not isinstance(ins.value, ir.Imm)
    dst, base = f"r{ins.value}", f"r{ins.base}"
    if ins.base == 10:
        lo, hi = _stack_range(s, base, ins.offset)
        _load_stack(s, dst, lo, hi, ins.width, ins.is_signed, base, ins.offset)
        return s
    parts = []
    for t, part in s.split(base):
        if t == T.CTX:
            _load_ctx(part, dst, base, ins.offset, ins.width, ins.is_signed, info)
        elif t == T.STACK:
            lo, hi = _stack_range(part, base, ins.offset)
            _load_stack(part, dst, lo, hi, ins.width, ins.is_signed, base, ins.offset)
        elif t in (T.PACKET, T.SHARED, T.ALLOC_MEM, T.SOCKET, T.BTF_ID):
            _number(part, dst, ins.width, ins.is_signed)
        else:
            part.set_bottom()
        parts.append(part)
    return _join(parts)


def _store(s: State, ins: ir.Mem) -> State:
    base = f"r{ins.base}"
    if ins.base == 10 or s.type_of(base) == T.STACK:
        lo, hi = _stack_range(s, base, ins.offset)
        _store_stack(s, lo, hi, ins.width, ins.value)
        return s
    if not s.may_be(base, int(T.STACK)):
        return s
    parts = []
    for t, part in s.split(base):
        if t == T.STACK:
            lo, hi = _stack_range(part, base, ins.offset)
            _store_stack(part, lo, hi, ins.width, ins.value)
        parts.append(part)
    return _join(parts)


def _atomic(s: State, ins: ir.Atomic) -> State:
    base, src = f"r{ins.base}", f"r{ins.src}"
    old = "r11"  # scratch location for the old value
    parts = []
    for t, part in s.split(base):
        if t == T.STACK:
            lo, hi = _stack_range(part, base, ins.offset)
            _load_stack(part, old, lo, hi, ins.width, False, base, ins.offset)
            numeric = part.type_of(old) == T.NUM
            start = max(int(lo), 0) if lo != -INF else 0
            end = min(int(hi) + ins.width, TOTAL_STACK) if hi != INF else TOTAL_STACK
            part.kill_cells(start, end)
            if lo == hi and (numeric or ins.op == ir.AtomicOp.XCHG):
                part.stack.set_numeric(start, end)  # a number is written back
            elif not numeric:
                part.stack.clear_numeric(start, end)  # arithmetic on a non-number
                _forget_numeric_sizes(part, start, end)
        else:
            _number(part, old, ins.width, False)
        if ins.op == ir.AtomicOp.CMPXCHG:
            part.copy_loc("r0", old)
        elif ins.fetch:
            part.copy_loc(src, old)
        part.havoc(old)
        parts.append(part)
    return _join(parts)


def _join(parts: list[State]) -> State:
    live = [p for p in parts if not p.bottom]
    if not live:
        return State.make_bottom()
    out = live[0]
    for p in live[1:]:
        out = out.join(p)
    return out


def transform(s: State, ins: ir.IrInstruction, info: ProgramInfo) -> State:
    """The state after a memory instruction or an ``lddw`` pseudo load."""
    if isinstance(ins, ir.Mem):
        return _load(s, ins, info) if ins.is_load else _store(s, ins)
    if isinstance(ins, ir.Atomic):
        return _atomic(s, ins)
    if isinstance(ins, ir.Packet):
        _number(s, "r0", ins.width, False)
        for r in range(1, 6):
            s.havoc(f"r{r}", int(T.UNINIT))
        return s
    if isinstance(ins, ir.LoadMapFd):
        dst = f"r{ins.dst}"
        desc = info.map(ins.fd)
        kind = T.MAP_FD_PROGRAMS if desc is not None and desc.holds_programs else T.MAP_FD
        s.havoc(dst, int(kind))
        name = "map_fd_programs" if kind == T.MAP_FD_PROGRAMS else "map_fd"
        s.zone.set(f"{dst}.{name}", ins.fd, ins.fd)
        s.fds[dst] = frozenset((ins.fd,))
        assign_pointer(s, dst, False)
        return s
    if isinstance(ins, ir.LoadMapValue):
        dst = f"r{ins.dst}"
        desc = info.map(ins.fd)
        s.havoc(dst, int(T.SHARED))
        s.zone.set(f"{dst}.shared_offset", ins.offset, ins.offset)
        if desc is not None:
            s.zone.set(f"{dst}.shared_region_size", desc.value_size, desc.value_size)
            s.zone.set(f"{dst}.shared_readonly", int(desc.readonly), int(desc.readonly))
        assign_pointer(s, dst, False)
        return s
    if isinstance(ins, ir.LoadFunc):
        dst = f"r{ins.dst}"
        s.havoc(dst, int(T.FUNC))
        s.set_values(dst, *const_pair(ins.target))
        return s
    s.set_bottom()
    return s
