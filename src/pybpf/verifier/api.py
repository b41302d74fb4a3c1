"""Verification entry point: a program (IR, instructions, bytes or a linked spec) in, a Result out.

:func:`verify` lowers the program, builds its CFG, runs the fixpoint from the entry state
of its program type (``r1`` the context, ``r10`` the stack, packet bounds unknown) and
checks every assertion on the final invariants. :func:`analyze` does the same from a
given entry state (the PREVAIL test harness uses it with its ``pre`` constraints).
"""

from __future__ import annotations

import dataclasses
import os
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

from pybpf.elf.programs import BPF_F_SLEEPABLE
from pybpf.errors import VerifierError
from pybpf.helpers import lookup
from pybpf.isa import Instruction, decode
from pybpf.progtypes import ProgType
from pybpf.progtypes.contexts import rules_for
from pybpf.progtypes.sections import Loader, match_section
from pybpf.spec import ObjectSpec, link
from pybpf.verifier import assertions as A
from pybpf.verifier import ir
from pybpf.verifier.cfg import Label, build_cfg, first_unreachable
from pybpf.verifier.checker import check
from pybpf.verifier.contracts import ArgKind, contract_for
from pybpf.verifier.domains.stack import FRAME_SIZE, TOTAL_STACK
from pybpf.verifier.domains.state import State
from pybpf.verifier.domains.types import T
from pybpf.verifier.fixpoint import Analysis, counter_name
from pybpf.verifier.functions import (
    GlobalFunction,
    ParamKind,
    may_change_packet,
    read_signatures,
)
from pybpf.verifier.lower import lower
from pybpf.verifier.memory import assign_pointer
from pybpf.verifier.preconditions import CALLBACK_HELPERS
from pybpf.verifier.program import MapDescriptor, Options, ProgramInfo
from pybpf.verifier.result import Diagnostic, Result, describe_register

__all__ = ["verify", "verify_object", "analyze", "entry_state"]

_REG_FIELDS = (
    "reg",
    "r1",
    "r2",
    "mem",
    "val",
    "ptr",
    "num",
    "access_reg",
    "map_fd_reg",
    "width_reg",
)


def entry_state(info: ProgramInfo) -> State:
    """The state at a program's first instruction."""
    s = State()
    for r in range(11):
        s.havoc(f"r{r}", int(T.UNINIT))
    s.havoc("r1", int(T.CTX))
    s.zone.set("r1.ctx_offset", 0, 0)
    assign_pointer(s, "r1", False)
    s.havoc("r10", int(T.STACK))
    s.zone.set("r10.stack_offset", TOTAL_STACK, TOTAL_STACK)
    s.zone.set("r10.stack_frame", TOTAL_STACK, TOTAL_STACK)
    assign_pointer(s, "r10", False)
    s.zone.set("packet_size", 0, info.options.max_packet_size - 1)
    if info.context.meta >= 0:
        s.zone.set("meta_offset", -4098, 0)
    else:
        s.zone.set("meta_offset", 0, 0)
    return s


def _values(a: A.Assertion, state: State) -> str:
    regs: list[int] = []
    for name in _REG_FIELDS:
        value = getattr(a, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value not in regs:
            regs.append(value)
    return ", ".join(f"r{r} = {describe_register(state, r)}" for r in regs)


def _is_unsupported(a: A.Assertion | None) -> bool:
    """The assertion stands for a construct pybpf does not model, not a safety rule."""
    if isinstance(a, A.Unsupported):
        return True
    if isinstance(a, A.ValidHelper):  # a Linux helper whose prototype pybpf lacks
        row = lookup(a.func)
        return row is not None and a.func != 0 and not row.known
    return False


def _diagnostic(label: Label, message: str, a: A.Assertion | None, state: State) -> Diagnostic:
    text = f"{message} ({a})" if a is not None else message
    values = _values(a, state) if a is not None else ""
    return Diagnostic(str(label), label.pc, text, values, unsupported=_is_unsupported(a))


def _callback_entry(info: ProgramInfo, helper: str, call_pre: State) -> State:
    """The state a callback starts in: r1-r4 as Linux passes them (the caller's context
    pointer ``callback_ctx`` is a plain number here: the callback cannot reach the caller's
    stack), a fresh frame in r10."""
    s = entry_state(info)
    for r in range(1, 6):
        s.havoc(f"r{r}", int(T.UNINIT))
    if helper == "loop":
        s.havoc("r1", int(T.NUM))
        s.zone.set("r1.svalue", 0, 1 << 23)
        s.zone.set("r1.uvalue", 0, 1 << 23)
        s.havoc("r2", int(T.NUM))
        return s
    if helper == "for_each_map_elem":
        fds = call_pre.map_fds("r1")
        descs = info.maps_of(fds, *call_pre.zone.bounds("r1.map_fd")) or []
        s.havoc("r1", int(T.MAP_FD))
        lo, hi = call_pre.zone.bounds("r1.map_fd")
        s.zone.set("r1.map_fd", lo, hi)
        if fds is not None:
            s.fds["r1"] = fds
        assign_pointer(s, "r1", False)
        for reg, attr in (("r2", "key_size"), ("r3", "value_size")):
            s.havoc(reg, int(T.SHARED))
            s.zone.set(f"{reg}.shared_offset", 0, 0)
            if descs:
                sizes = [getattr(d, attr) for d in descs]
                s.zone.set(f"{reg}.shared_region_size", min(sizes), max(sizes))
                ro = [int(d.readonly or attr == "key_size") for d in descs]
                s.zone.set(f"{reg}.shared_readonly", min(ro), max(ro))
            assign_pointer(s, reg, False)
        s.havoc("r4", int(T.NUM))
        return s
    for r in (1, 2, 3):  # timer callbacks: map, key, value (which map is not known here)
        s.havoc(f"r{r}", int(T.NUM))
    return s


def _function_entry(info: ProgramInfo, fn: GlobalFunction) -> State:
    """The state a global function starts in: its parameters in r1-r5, a fresh frame."""
    s = entry_state(info)
    for r in range(1, 6):
        s.havoc(f"r{r}", int(T.UNINIT))
    for i, param in enumerate(fn.params):
        reg = f"r{i + 1}"
        if param.kind == ParamKind.SCALAR:
            s.havoc(reg, int(T.NUM))
        elif param.kind == ParamKind.CTX:
            s.havoc(reg, int(T.CTX))
            s.zone.set(f"{reg}.ctx_offset", 0, 0)
            assign_pointer(s, reg, False)
        else:
            s.havoc(reg, int(T.SHARED))
            s.zone.set(f"{reg}.shared_offset", 0, 0)
            s.zone.set(f"{reg}.shared_region_size", param.size, param.size)
            s.zone.set(f"{reg}.shared_readonly", 0, 0)
            assign_pointer(s, reg, True)
    return s


def _global_functions(
    program: Sequence[tuple[int, ir.IrInstruction]], info: ProgramInfo, result: Result
) -> None:
    """Verify each global function on its own (Linux's ``do_check_subprogs``)."""
    fn_info = dataclasses.replace(info, return_range=None)
    for fn in info.global_functions.values():
        sub = analyze(program, fn_info, _function_entry(info, fn), entry_pc=fn.pc)
        _merge_bounds(result, sub)
        for diag in sub.errors:
            label = f"{fn.name}: {diag.label}"
            result.errors.append(dataclasses.replace(diag, label=label))


def _merge_bounds(result: Result, sub: Result) -> None:
    """A function the program calls (a global function, a callback) terminates too, or not."""
    result.terminates = result.terminates and sub.terminates
    if not result.terminates:
        result.loop_bound = None
    else:
        result.loop_bound = max(result.loop_bound or 0, sub.loop_bound or 0)


def _caller_region(pre: State, reg: str) -> int | None:
    """The bytes from a stack pointer (a constant offset) to the top of its frame."""
    if pre.type_of(reg) != T.STACK:
        return None
    off = pre.zone.interval(f"{reg}.stack_offset").singleton()
    top = pre.zone.interval(f"{reg}.stack_frame").singleton()
    if off is None or top is None or not 0 < top - off <= FRAME_SIZE:
        return None
    return int(top - off)


def _callbacks(
    analysis: Analysis,
    program: Sequence[tuple[int, ir.IrInstruction]],
    info: ProgramInfo,
    result: Result,
    seen: frozenset[int],
) -> None:
    """Verify each callback a helper call passes (``bpf_loop``, ``bpf_for_each_map_elem``,
    ``bpf_timer_set_callback``) as a function of its own; its errors join ``result``."""
    done: set[tuple[int, str]] = set()
    for label in analysis.reachable():
        ins = analysis.cfg.instructions[label]
        if not isinstance(ins, ir.Call):
            continue
        contract = contract_for(ins.func, info)
        if contract is None or contract.name not in CALLBACK_HELPERS:
            continue
        pre = analysis.pre[label]
        arg = next(a.reg for a in contract.args if a.kind == ArgKind.FUNC)
        target = pre.zone.interval(f"r{arg}.svalue").singleton()
        if target is None or pre.type_of(f"r{arg}") != T.FUNC:
            message = f"callback of {contract.name} is not one known function"
            result.errors.append(Diagnostic(str(label), label.pc, message))
            continue
        key = (int(target), contract.name)
        if key in done:
            continue
        done.add(key)
        if target in seen:
            message = f"callback at {target} calls itself through {contract.name}"
            result.errors.append(Diagnostic(str(label), label.pc, message))
            continue
        cb_info = dataclasses.replace(info, return_range=CALLBACK_HELPERS[contract.name])
        entry = _callback_entry(cb_info, contract.name, pre)
        # callback_ctx: NULL, or a pointer into the caller's frame, which the callback sees
        # as memory from there to the frame's top (numbers only). Anything else (and a
        # timer's map value) is not modelled: the callback's failures are flagged so.
        modelled = contract.name != "timer_set_callback"
        ctx_reg = f"r{arg + 1}"
        cb_ctx = "r2" if contract.name == "loop" else "r4"
        region = _caller_region(pre, ctx_reg)
        if modelled and pre.type_of(ctx_reg) == T.NUM:
            if pre.zone.bounds(f"{ctx_reg}.svalue") == (0, 0):
                entry.zone.set(f"{cb_ctx}.svalue", 0, 0)
                entry.zone.set(f"{cb_ctx}.uvalue", 0, 0)
            else:
                modelled = False
        elif modelled and region is not None:
            entry.havoc(cb_ctx, int(T.SHARED))
            entry.zone.set(f"{cb_ctx}.shared_offset", 0, 0)
            entry.zone.set(f"{cb_ctx}.shared_region_size", region, region)
            entry.zone.set(f"{cb_ctx}.shared_readonly", 0, 0)
            assign_pointer(entry, cb_ctx, False)
        elif modelled:
            modelled = False
        sub = analyze(program, cb_info, entry, entry_pc=int(target), _seen=seen | {int(target)})
        _merge_bounds(result, sub)
        for diag in sub.errors:
            label_text = f"callback {target}: {diag.label}"
            flag = diag.unsupported or not modelled
            result.errors.append(dataclasses.replace(diag, label=label_text, unsupported=flag))


def analyze(
    program: Sequence[tuple[int, ir.IrInstruction]],
    info: ProgramInfo,
    entry: State,
    keep_invariants: bool = False,
    *,
    entry_pc: int | None = None,
    _seen: frozenset[int] = frozenset(),
) -> Result:
    """Verify IR ``program`` from ``entry``; every failed assertion becomes a diagnostic.

    ``entry_pc`` starts the analysis at that instruction (a callback). Callbacks passed to
    ``bpf_loop``, ``bpf_for_each_map_elem`` and ``bpf_timer_set_callback`` are verified as
    functions of their own from the registers Linux gives them, returning 0 or 1 (0 for
    timers).
    """
    result = Result(instructions=len(program))
    try:
        cfg = build_cfg(
            program,
            info.options.max_frames,
            info.options.must_exit,
            entry_pc,
            frozenset(info.global_functions),
        )
    except VerifierError as err:
        label = getattr(err, "label", None) or (str(err.pc) if err.pc is not None else "0")
        result.errors.append(Diagnostic(label, err.pc, err.message))
        return result
    if entry_pc is None and info.options.linux_rules:
        dead = first_unreachable(program)
        if dead is not None:
            result.errors.append(Diagnostic(str(dead), dead, f"unreachable insn {dead}"))
            return result
    analysis = Analysis(cfg, info, entry).run()
    for label in analysis.reachable():
        pre = analysis.pre[label]
        state = pre
        if label in analysis.counters:
            state = pre.copy()
            state.zone.shift(counter_name(label), 1)
        for a in analysis.assertions[label]:
            reason = check(a, state, info)
            if reason is not None:
                result.errors.append(_diagnostic(label, reason, a, state))
                break
    bounds: list[int] = []
    for head in analysis.counters:
        pre = analysis.pre.get(head)
        if pre is None or pre.bottom:
            continue
        state = pre.copy()
        state.zone.shift(counter_name(head), 1)
        a = A.BoundedLoopCount(str(head), info.options.loop_limit)
        reason = check(a, state, info)
        if reason is None:
            bounds.append(int(state.zone.bounds(counter_name(head))[1]))
            continue
        result.terminates = False
        if info.options.termination:
            diag = Diagnostic(f"{head} (counter)", head.pc, f"{reason} ({a})")
            result.errors.append(diag)
    if not analysis.counters and analysis.heads:
        result.terminates = False  # loops not counted: not proven
    result.loop_bound = max(bounds, default=0) if result.terminates else None
    _footprint(analysis, info, result)
    _callbacks(analysis, program, info, result, _seen)
    if entry_pc is None:  # the program itself: also each global function, once
        _global_functions(program, info, result)
    if keep_invariants:
        result.invariants = {str(label): s for label, s in analysis.pre.items()}
    return result


def _first(*choices: ProgType | None) -> ProgType:
    return next(c for c in choices if c is not None)


def _round16(n: int) -> int:
    return (n + 15) // 16 * 16


def _footprint(analysis: Analysis, info: ProgramInfo, result: Result) -> None:
    """Record the stack depth and the context accesses; check the combined stack size."""
    depths: dict[tuple[int, ...], int] = {}
    deepest: dict[tuple[int, ...], Label] = {}
    ctx: dict[int, tuple[int, int, bool]] = {}
    refused: set[int] = set()
    for label in analysis.reachable():
        ins = analysis.cfg.instructions[label]
        if not isinstance(ins, (ir.Mem, ir.Atomic)):
            continue
        pre = analysis.pre[label]
        base = f"r{ins.base}"
        top = pre.zone.interval("r10.stack_offset").singleton()
        if top is not None and pre.may_be(base, int(T.STACK)):
            lo = pre.zone.bounds(f"{base}.stack_offset")[0]
            if lo != float("-inf") and top - (lo + ins.offset) > depths.get(label.frame, 0):
                depths[label.frame] = int(top - (lo + ins.offset))
                deepest[label.frame] = label
        if pre.type_of(base) == T.CTX:
            off = pre.zone.interval(f"{base}.ctx_offset").singleton()
            is_load = isinstance(ins, ir.Mem) and ins.is_load
            access = (-1 if off is None else off + ins.offset, ins.width, is_load)
            if ctx.setdefault(label.pc, access) != access:
                ctx[label.pc] = (-1, ins.width, is_load)
            if not is_load and off is not None and label.pc not in refused:
                message = _read_only_field(info, access[0], ins.width)
                if message is not None:
                    refused.add(label.pc)
                    result.errors.append(Diagnostic(str(label), label.pc, message))
    total, where = 0, None
    for frame in depths:
        chain = sum(_round16(depths.get(frame[:i], 0)) for i in range(len(frame) + 1))
        if chain > total:
            total, where = chain, deepest[frame]
    result.stack_depth = total
    result.ctx_accesses = ctx
    limit = info.options.combined_stack
    if info.options.linux_rules and total > limit and where is not None:
        message = f"combined stack size of all frames is {total} bytes, more than {limit}"
        result.errors.append(Diagnostic(str(where), where.pc, message))


def _read_only_field(info: ProgramInfo, offset: int, width: int) -> str | None:
    """Linux's ``is_valid_access`` for a store: the message when ``[offset, offset+width)``
    lies in a context field the program type may only read (``None``: writable, or not
    one field: the access checks say so)."""
    layout = info.context
    if not info.options.linux_rules or not layout.fields:
        return None
    for f in layout.fields:
        if f.offset <= offset and offset + width <= f.end:
            if f.write:
                return None
            return (
                f"write to read-only context field {layout.name}.{f.name} "
                f"(offset {offset}, {width} bytes)"
            )
    return None


def _resolve_indexes(
    program: list[tuple[int, ir.IrInstruction]],
) -> list[tuple[int, ir.IrInstruction]]:
    out: list[tuple[int, ir.IrInstruction]] = []
    for pc, ins in program:
        if isinstance(ins, ir.LoadMapByIndex):
            ins = (
                ir.LoadMapValue(ins.dst, ins.index, ins.offset)
                if ins.value
                else ir.LoadMapFd(ins.dst, ins.index)
            )
        out.append((pc, ins))
    return out


def verify(
    program: Sequence[Instruction] | bytes | Any,
    prog_type: ProgType | None = None,
    *,
    maps: Mapping[int, MapDescriptor] | Sequence[MapDescriptor] | None = None,
    options: Options | None = None,
    info: ProgramInfo | None = None,
    name: str | None = None,
    section: str | None = None,
    keep_invariants: bool = False,
    functions: Mapping[int, GlobalFunction] | None = None,
    sleepable: bool | None = None,
) -> Result:
    """Verify a program; the :class:`Result` says accept or reject and why.

    ``sleepable``: loaded with ``BPF_F_SLEEPABLE`` (helpers that might sleep are forbidden
    otherwise); by default read from a linked program's ``flags``, else from ``section``
    (libbpf's ``.s`` sections), else not known (those helpers are not checked).

    ``functions``: the global functions (by first pc) to verify on their own
    (:mod:`~pybpf.verifier.functions`); ``verify_object`` reads them from BTF.

    ``keep_invariants`` keeps the invariant at each instruction in ``Result.invariants``.
    ``program`` is a list of instructions, raw bytecode, or a linked program (anything
    with ``instructions`` and ``type``, such as :class:`pybpf.spec.LinkedProgram`).
    ``maps`` describe the maps by fd or, for linked programs, by index (``MAP_IDX``).
    ``prog_type`` defaults to the linked program's type, else a socket filter.
    """
    if isinstance(program, (bytes, bytearray, memoryview)):
        insns: Sequence[Instruction] = decode(bytes(program))
    elif hasattr(program, "instructions"):
        insns = program.instructions
        if prog_type is None:
            prog_type = getattr(program, "type", None)
        name = name or getattr(program, "name", None)
        flags = getattr(program, "flags", None)
        if sleepable is None and isinstance(flags, int):
            sleepable = bool(flags & BPF_F_SLEEPABLE)
    else:
        insns = program
    if isinstance(maps, Sequence):
        maps = {i: m for i, m in enumerate(maps)}
    if info is None:
        if prog_type is None:
            prog_type = ProgType.SOCKET_FILTER
        info = ProgramInfo.for_type(prog_type, maps, options)
    if sleepable is None and section is not None:
        match = match_section(section, loaders=Loader.LIBBPF)
        sleepable = match.rule.sleepable if match is not None else None
    if sleepable is not None:
        info = dataclasses.replace(info, sleepable=sleepable)
    lowered = _resolve_indexes(lower(insns))
    if functions:
        moves = {
            f: c.changes_packet
            for f in {i.func for _, i in lowered if isinstance(i, ir.Call)}
            if (c := contract_for(f, info)) is not None
        }
        info = dataclasses.replace(
            info,
            global_functions={
                pc: dataclasses.replace(fn, changes_packet=may_change_packet(lowered, pc, moves))
                for pc, fn in functions.items()
            },
        )
    result = analyze(lowered, info, entry_state(info), keep_invariants)
    result.program = name
    result.section = section
    return result


def _with_lines(result: Result, line_info: Sequence[Any]) -> None:
    """Attach the source line (BTF line_info) of each diagnostic's instruction."""
    records = sorted(line_info, key=lambda r: r.insn_off)
    offsets = [r.insn_off for r in records]
    for i, diag in enumerate(result.errors):
        if diag.pc is None or diag.pc < 0 or not records:
            continue
        j = bisect_right(offsets, diag.pc * 8) - 1
        if j < 0:
            continue
        rec = records[j]
        source = f"{rec.line.strip()} @ {os.path.basename(rec.file_name)}:{rec.line_number}"
        result.errors[i] = dataclasses.replace(diag, line=rec.line_number, source=source)


def verify_object(
    obj: ObjectSpec,
    name: str,
    prog_type: ProgType | None = None,
    *,
    options: Options | None = None,
    keep_invariants: bool = False,
) -> Result:
    """Verify program ``name`` of an object spec (linked with the functions it calls).

    The maps the program refers to are described from their specs (a map of maps also gets
    its inner map); diagnostics carry the BTF source line when the object has line info.
    """
    linked = link(obj, name)
    descs: list[MapDescriptor] = []
    for i, map_name in enumerate(linked.maps):
        spec = obj.maps[map_name]
        descs.append(
            MapDescriptor(
                i,
                int(spec.type),
                spec.key_size,
                spec.value_size,
                spec.max_entries,
                name=map_name,
                flags=int(spec.flags),
            )
        )
    for i, map_name in enumerate(linked.maps):
        inner = obj.maps[map_name].inner
        if inner is not None:
            fd = len(descs)
            descs.append(
                MapDescriptor(
                    fd,
                    int(inner.type),
                    inner.key_size,
                    inner.value_size,
                    inner.max_entries,
                    name=f"{map_name}.inner",
                    flags=int(inner.flags),
                )
            )
            descs[i] = dataclasses.replace(descs[i], inner_map_fd=fd)
    program = obj.program(name)
    placed = [
        (fname, pc, obj.programs[fname].btf_func_id)
        for fname, pc in linked.functions
        if fname in obj.programs
    ]
    prog_type = _first(prog_type, linked.type, ProgType.SOCKET_FILTER)
    rules = rules_for(prog_type)
    ctx_name = rules.context.name if rules is not None else ""
    functions = {}
    if options is None or options.global_functions:
        functions = read_signatures(obj.btf, placed, ctx_name)
    result = verify(
        linked,
        prog_type,
        maps=descs,
        options=options,
        name=name,
        section=program.section,
        keep_invariants=keep_invariants,
        functions=functions,
    )
    _with_lines(result, linked.line_info)
    return result
