"""Checker: whether an assertion holds in an abstract state, and if not, why (in words).

:func:`check` returns ``None`` when the assertion is proven for every concrete state the
abstract state describes, else the reason, e.g. ``"Upper bound must be at most
packet_size"``. Bounds are decided with the zone's difference bounds, so ``r3 + 8 <=
data_end`` learnt at a branch proves a later 8-byte access.
"""

from __future__ import annotations

from pybpf.progtypes.contexts import LAYOUTS, SOCK_LAYOUT, context_access_allowed
from pybpf.verifier import assertions as A
from pybpf.verifier.contracts import contract_for
from pybpf.verifier.domains.arith import low32
from pybpf.verifier.domains.interval import INF
from pybpf.verifier.domains.stack import FRAME_SIZE, TOTAL_STACK
from pybpf.verifier.domains.state import State
from pybpf.verifier.domains.types import Group, T
from pybpf.verifier.ir import Call
from pybpf.verifier.preconditions import assertions_for
from pybpf.verifier.program import ProgramInfo

__all__ = ["check"]


class _Fail(Exception):
    pass


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise _Fail(message)


def _le(s: State, x: str | None, y: str | None, k: int | float) -> bool:
    """``x - y <= k`` holds (``None`` is 0)."""
    return s.zone.diff(x, y) <= k


def _width_max(s: State, a: A.ValidAccess) -> int | float:
    if a.width_reg is None:
        return a.width
    return s.zone.bounds(f"r{a.width_reg}.svalue")[1]


def _check_frame(s: State, reg: int, offset: int, width: int | float) -> None:
    """A stack access stays inside the frame its pointer came from (frames are separate
    regions at run time: a caller's pointer moved below its frame does not reach the
    callee's). A pointer of unknown origin (a test's pre-state) is not checked here."""
    frame = f"r{reg}.stack_frame"
    lo, hi = s.zone.bounds(frame)
    if lo == -INF and hi == INF:
        return
    off = f"r{reg}.stack_offset"
    _require(_le(s, frame, off, offset + FRAME_SIZE), "Stack access below its frame")
    _require(_le(s, off, frame, -offset - width), "Stack access above its frame")


def _check_stack(s: State, a: A.ValidAccess, info: ProgramInfo) -> None:
    off = f"r{a.reg}.stack_offset"
    wmax = _width_max(s, a)
    # lb = off + offset >= r10.stack_offset - frame  <=>  r10.so - off <= offset + frame
    _require(
        _le(s, "r10.stack_offset", off, a.offset + info.options.subprogram_stack_size),
        "Lower bound must be at least r10.stack_offset - subprogram_stack_size",
    )
    _require(
        _le(s, off, None, TOTAL_STACK - a.offset - wmax),
        "Upper bound must be at most total_stack_size",
    )
    _check_frame(s, a.reg, a.offset, wmax)
    if a.access != "read":
        return
    lo, hi = s.zone.bounds(off)
    if lo != -INF and hi + wmax <= TOTAL_STACK:
        if s.stack.all_numeric(int(lo) + a.offset, int(hi + a.offset + wmax)):
            return
    if a.offset >= 0:
        # the pointer's own count of numeric bytes, related to the width when it is a register
        size = f"r{a.reg}.stack_numeric_size"
        width = None if a.width_reg is None else f"r{a.width_reg}.svalue"
        if s.zone.diff(width, size) <= -a.offset - (a.width if width is None else 0):
            return
    raise _Fail("Stack content is not numeric")


def _read_only_store(layout, access: str, start: int, width: int) -> bool:
    """A store inside one field the layout marks read-only: the verifier's post-pass
    (``api._read_only_field``) refuses it naming the field, so it is not refused twice."""
    if access != "write":
        return False
    fields = layout.fields_overlapping(start, start + width)
    return len(fields) == 1 and fields[0].offset <= start and start + width <= fields[0].end and (
        not fields[0].write
    )


def _check_ctx(s: State, a: A.ValidAccess, info: ProgramInfo) -> None:
    layout = info.context
    off = f"r{a.reg}.ctx_offset"
    wmax = _width_max(s, a)
    lo, hi = s.zone.bounds(off)
    if info.options.linux_rules and a.access != "compare":
        _require(lo == hi, "Context access at a variable offset")
    if a.access == "write":
        if layout.fields:
            first, last = lo + a.offset, hi + a.offset + wmax
            for f in layout.pointer_fields():
                _require(
                    not (first < f.end and f.offset < last), "Cannot write to context pointer field"
                )
        else:
            _require(layout.writable, "Cannot write to a read-only context")
    _require(lo + a.offset >= 0, "Lower bound must be at least 0")
    _require(hi + a.offset + wmax <= layout.size, f"Upper bound must be at most {layout.size}")
    known = LAYOUTS.get(layout.name) is layout  # a Linux (or Windows) struct, not a test's
    if (
        info.options.linux_rules
        and info.options.type_helpers  # the program type is known, not guessed
        and known
        and info.prog_type is not None
        and a.access != "compare"
        and a.width_reg is None  # an instruction's access, not a helper's memory argument
        and lo == hi
    ):
        # which offsets and sizes this type may load and store (the kernel's
        # *_is_valid_access, progtypes.contexts.ACCESS_BY_TYPE)
        start = int(lo) + a.offset
        if not _read_only_store(layout, a.access, start, int(wmax)):  # said by name later
            _require(
                context_access_allowed(info.prog_type, start, int(wmax), a.access == "write"),
                f"invalid bpf_context access off={start} size={int(wmax)}",
            )
    if info.options.linux_rules and known and layout.fields and a.access != "compare" and lo == hi:
        # the loader rewrites each access to one field of the runtime's context
        start = int(lo) + a.offset
        fields = layout.fields_overlapping(start, start + int(wmax))
        _require(
            len(fields) == 1 and fields[0].offset <= start and start + wmax <= fields[0].end,
            "Context access does not fall within one field",
        )


def _check_packet(s: State, a: A.ValidAccess, info: ProgramInfo) -> None:
    off = f"r{a.reg}.packet_offset"
    _require(_le(s, "meta_offset", off, a.offset), "Lower bound must be at least meta_offset")
    if a.access == "compare":
        limit = info.options.max_packet_size
        _require(_le(s, off, None, limit - a.offset), f"Upper bound must be at most {limit}")
        return
    wmax = _width_max(s, a)
    _require(
        _le(s, off, "packet_size", -a.offset - wmax), "Upper bound must be at most packet_size"
    )


def _check_region(s: State, a: A.ValidAccess, offset_kind: str, size_kind: str) -> None:
    off = f"r{a.reg}.{offset_kind}"
    size = f"r{a.reg}.{size_kind}"
    _require(_le(s, None, off, a.offset), "Lower bound must be at least 0")
    wmax = _width_max(s, a)
    _require(_le(s, off, size, -a.offset - wmax), f"Upper bound must be at most {size}")
    if a.access != "compare" and not a.or_null:
        _require(s.zone.bounds(f"r{a.reg}.addr")[0] > 0, "Possible null access")


def _check_socket(s: State, a: A.ValidAccess) -> None:
    lo, hi = s.zone.bounds(f"r{a.reg}.socket_offset")
    start = lo + a.offset if lo == hi else None
    width = a.width
    ok = start is not None and a.access == "read" and a.width_reg is None and width in (1, 2, 4)
    if ok:
        assert start is not None
        start = int(start)
        ok = start % width == 0 and not 8 <= start < 24  # sock_common hides type..priority
        fields = SOCK_LAYOUT.fields_overlapping(start, start + width)
        ok = ok and len(fields) == 1 and fields[0].offset <= start
        if ok:
            f = fields[0]
            field_size = (4 if width == 4 else 2) if f.name == "dst_port" else f.size
            narrow = f.name not in ("bound_dev_if", "mark", "priority")
            ok = start + width <= f.offset + field_size and (width == f.size or narrow)
    _require(ok, "Invalid socket access")
    _require(s.zone.bounds(f"r{a.reg}.addr")[0] > 0, "Possible null access")


def _valid_access(s: State, a: A.ValidAccess, info: ProgramInfo) -> None:
    compare = a.access == "compare"
    for bit in T:
        t = int(bit)
        if not s.type_of(f"r{a.reg}") & t:
            continue
        if t == T.STACK:
            _check_stack(s, a, info)
        elif t == T.CTX:
            _check_ctx(s, a, info)
        elif t == T.PACKET:
            _check_packet(s, a, info)
        elif t == T.SHARED:
            _check_region(s, a, "shared_offset", "shared_region_size")
        elif t == T.ALLOC_MEM:
            _check_region(s, a, "alloc_mem_offset", "alloc_mem_size")
        elif t == T.NUM:
            if compare:
                continue
            _require(a.or_null, "Only pointers can be dereferenced")
            _require(s.zone.bounds(f"r{a.reg}.svalue") == (0, 0), "Non-null number")
        elif t in (T.MAP_FD, T.MAP_FD_PROGRAMS):
            _require(compare, "FDs cannot be dereferenced directly")
        elif t == T.SOCKET:
            if not compare:
                _check_socket(s, a)
        elif t == T.BTF_ID:
            _require(compare, "Unsupported pointer type for memory access")
        elif t == T.FUNC:
            _require(compare, "Function pointers cannot be dereferenced")
        else:
            raise _Fail("Invalid type")


def _map_key_value(s: State, a: A.ValidMapKeyValue, info: ProgramInfo) -> None:
    loc = f"r{a.map_fd_reg}"
    descs = info.maps_of(s.map_fds(loc), *s.zone.bounds(f"{loc}.map_fd")) or []
    sizes = {d.key_size if a.key else d.value_size for d in descs}
    what = "key" if a.key else "value"
    _require(len(sizes) == 1, f"Map {what} size is not singleton")
    width = sizes.pop()
    reg = f"r{a.access_reg}"
    for bit in (T.STACK, T.PACKET, T.SHARED):
        if not s.type_of(reg) & bit:
            continue
        if bit == T.STACK:
            off = f"{reg}.stack_offset"
            olo, ohi = s.zone.bounds(off)
            _check_frame(s, a.access_reg, 0, width)
            if a.write:
                _require(
                    _le(s, "r10.stack_offset", off, info.options.subprogram_stack_size),
                    "Lower bound must be at least r10.stack_offset - subprogram_stack_size",
                )
                _require(ohi + width <= TOTAL_STACK, "Upper bound must be at most total_stack_size")
                continue
            if (
                olo == -INF
                or ohi + width > TOTAL_STACK
                or not s.stack.all_numeric(int(olo), int(ohi + width))
            ):
                left = str(int(olo)) if olo != -INF else "-oo"
                right = str(int(ohi + width)) if ohi != INF else "oo"
                raise _Fail(f"Illegal map update with a non-numerical value [{left}-{right})")
        elif bit == T.PACKET:
            off = f"{reg}.packet_offset"
            _require(_le(s, "meta_offset", off, 0), "Lower bound must be at least meta_offset")
            _require(_le(s, off, "packet_size", -width), "Upper bound must be at most packet_size")
        else:
            off = f"{reg}.shared_offset"
            size = f"{reg}.shared_region_size"
            _require(_le(s, None, off, 0), "Lower bound must be at least 0")
            _require(_le(s, off, size, -width), f"Upper bound must be at most {size}")
            _require(s.zone.bounds(f"{reg}.addr")[0] > 0, "Possible null access")
    if s.type_of(reg) & ~int(T.STACK | T.PACKET | T.SHARED):
        raise _Fail("Only stack, packet, or shared can be used as a parameter")


def _comparable(s: State, a: A.Comparable, info: ProgramInfo) -> None:
    r1, r2 = f"r{a.r1}", f"r{a.r2}"
    t2 = s.type_of(r2)
    if s.same_type(r1, r2):
        pointers = s.type_of(r1) & ~int(T.NUM)
        if not pointers:
            return
        _require(
            pointers & ~Group.SINGLETON_PTR == 0 or pointers == Group.MAP_FD,
            "Cannot subtract pointers to non-singleton regions",
        )
        _valid_access(s, A.ValidAccess(a.r1), info)
        _valid_access(s, A.ValidAccess(a.r2), info)
        return
    _require(t2 == T.NUM, "Cannot subtract pointers to different regions")


def _func(s: State, a: A.FuncConstraint, info: ProgramInfo) -> None:

    lo, hi = s.zone.bounds(f"r{a.reg}.uvalue")
    _require(
        lo == hi and lo < (1 << 31),
        "callx helper function id is not a valid singleton",
    )
    func = int(lo)
    _require(contract_for(func, info) is not None, f"invalid helper function id {func}")
    for sub in assertions_for(Call(func), info, 1):
        reason = check(sub, s, info)
        if reason is not None:
            raise _Fail(reason)


def _check(a: A.Assertion, s: State, info: ProgramInfo) -> None:
    if isinstance(a, A.TypeConstraint):
        _require(s.has_type(f"r{a.reg}", a.group), "Invalid type")
    elif isinstance(a, A.ValidAccess):
        _valid_access(s, a, info)
    elif isinstance(a, A.ValidStore):
        if s.type_of(f"r{a.mem}") & ~int(T.STACK):
            _require(
                s.has_type(f"r{a.val}", Group.NUMBER),
                "Only numbers can be stored to externally-visible regions",
            )
    elif isinstance(a, A.Addable):
        if s.type_of(f"r{a.ptr}") & Group.PTR_OR_NUM & ~int(T.NUM):
            _require(s.has_type(f"r{a.num}", Group.NUMBER), "Only numbers can be added to pointers")
    elif isinstance(a, A.Comparable):
        _comparable(s, a, info)
    elif isinstance(a, A.ValidDivisor):
        reg = f"r{a.reg}"
        _require(s.has_type(reg, Group.NUMBER), "Only numbers can be used as divisors")
        if not info.options.allow_division_by_zero:
            sv, uv = s.values(reg)
            if not a.is64:
                sv, uv = low32(sv, uv)
            _require(not (sv.contains(0) and uv.contains(0)), "Possible division by zero")
    elif isinstance(a, A.ValidSize):
        lo = s.zone.bounds(f"r{a.reg}.svalue")[0]
        _require(lo >= 0 if a.can_be_zero else lo > 0, "Invalid size")
    elif isinstance(a, A.ValidMapKeyValue):
        _map_key_value(s, a, info)
    elif isinstance(a, A.ZeroCtxOffset):
        reg = f"r{a.reg}"
        if a.or_null and s.type_of(reg) == T.NUM:
            _require(s.zone.bounds(f"{reg}.svalue") == (0, 0), "Nonzero context offset")
            return
        _require(s.zone.bounds(f"{reg}.ctx_offset") == (0, 0), "Nonzero context offset")
    elif isinstance(a, A.FuncConstraint):
        _func(s, a, info)
    elif isinstance(a, A.ValidHelper):
        raise _Fail(f"invalid helper function id {a.func}")
    elif isinstance(a, A.ValidReturn):
        lo, hi = s.zone.bounds("r0.svalue")
        _require(a.lo <= lo and hi <= a.hi, "Invalid return value")
    elif isinstance(a, A.BoundedLoopCount):
        _require(s.zone.bounds(f"pc[{a.head}]")[1] <= a.limit, "Loop counter is too large")
    elif isinstance(a, A.NonNullArithmetic):
        reg = f"r{a.reg}"
        nullable = int(T.SHARED | T.ALLOC_MEM | T.SOCKET | T.BTF_ID)
        if s.type_of(reg) & nullable:
            _require(
                s.zone.bounds(f"{reg}.addr")[0] > 0,
                "Pointer arithmetic on a possibly null pointer",
            )
    elif isinstance(a, A.NoLeakedReferences):
        _require(not s.held, "Unreleased reference or lock")
    elif isinstance(a, A.ReleasesReference):
        ids = s.refs.get(f"r{a.reg}")
        _require(
            ids is not None and len(ids) == 1 and ids <= s.held,
            "Release of a reference that is not held",
        )
    elif isinstance(a, A.WritableMemory):
        reg = f"r{a.reg}"
        if s.type_of(reg) & T.SHARED:
            lo, hi = s.zone.bounds(f"{reg}.shared_readonly")
            if not (lo == -INF and hi == INF):  # unknown only in a test's pre-state
                _require(hi <= 0, "Write to a read-only map value (.rodata or BPF_F_RDONLY_PROG)")
    elif isinstance(a, (A.Unsupported, A.Forbidden)):
        raise _Fail(a.reason)
    else:  # pragma: no cover - every assertion kind is handled above
        raise _Fail(f"unknown assertion {a!r}")


def check(assertion: A.Assertion, state: State, info: ProgramInfo) -> str | None:
    """``None`` when ``assertion`` holds in ``state`` (or it is unreachable), else the reason."""
    if state.bottom:
        return None
    try:
        _check(assertion, state, info)
    except _Fail as fail:
        return str(fail)
    return None
