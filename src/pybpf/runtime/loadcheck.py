"""Load check: the load rules every engine shares.

The interpreter (:mod:`pybpf.vm`) and the JIT (:mod:`pybpf.jit`) refuse the same programs,
with the same errors, by calling :func:`check_program` before anything else:

- every instruction is valid (:func:`pybpf.isa.check`);
- jumps and local calls land inside the program and never in the middle of an ``lddw``;
- no instruction falls through past the last one; nothing writes r10 (``InputError``, ``pc``);
- a must-be-defined dataflow over the control-flow graph finds no read of a register that
  some path leaves unwritten (:class:`~pybpf.errors.UninitializedRegisterError`, ``pc``,
  ``register``). The entry function starts with the given entry registers (r10 always);
  a local-call target starts with r1-r5 and r10. After a helper call (or ``callx``, or a
  local call) r0 is defined and r1-r5 are not, as in Linux; a helper call reads r1..rN
  where N is the argument count of its prototype in :mod:`pybpf.helpers` (none when the
  prototype is unknown). ``exit`` reads r0; legacy packet loads read r6 (the context)
  and the index register, define r0 and clobber r1-r5. The first offending pc (lowest,
  over all functions) and its lowest missing register are reported;
- features no engine runs are refused with :class:`~pybpf.errors.NotSupportedError`
  (``feature``, ``pc``): kfunc calls, arena ``addr_space_cast``, and (by the caller's
  choice) ``lddw`` pseudo sources and legacy packet loads.

:func:`function_entries`, :func:`successors`, :func:`jump_target` and :func:`call_target`
describe the control-flow graph the engines build on.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from pybpf.errors import InputError, NotSupportedError, UninitializedRegisterError
from pybpf.helpers import lookup
from pybpf.isa import AluOp, AtomicOp, CallKind, Class, Instruction, Mode, Source
from pybpf.isa import check as check_insn
from pybpf.isa.opcodes import FRAME_POINTER

__all__ = [
    "check_program",
    "function_entries",
    "successors",
    "call_target",
    "jump_target",
    "is_local_call",
]

_ALL = (1 << 11) - 1
_ARGS = 0b111110  # r1-r5
_R0 = 1
_FETCHING = {
    AtomicOp.FETCH_ADD,
    AtomicOp.FETCH_OR,
    AtomicOp.FETCH_AND,
    AtomicOp.FETCH_XOR,
    AtomicOp.XCHG,
}


def _bit(reg: int) -> int:
    return 1 << reg


class _Facts(NamedTuple):
    """What an opcode byte says about control flow (cached: properties build enums)."""

    cls: Class
    is_exit: bool
    is_ja: bool
    is_branch: bool  # two-way: conditional jump or may_goto
    is_call: bool
    is_callx: bool
    is_lddw: bool
    is_legacy_packet: bool


@lru_cache(maxsize=256)
def _facts(code: int) -> _Facts:
    insn = Instruction(code)
    return _Facts(
        insn.cls,
        insn.is_exit,
        insn.is_ja,
        insn.is_conditional_jump or insn.is_may_goto,
        insn.is_call,
        insn.is_callx,
        insn.is_lddw,
        insn.is_legacy_packet_load,
    )


def jump_target(insn: Instruction, pc: int) -> int:
    """The pc a jump (``goto``, ``gotol``, conditional, ``may_goto``) at ``pc`` lands on."""
    return pc + 1 + insn.jump_offset


def call_target(insn: Instruction, pc: int) -> int:
    """The pc a local (bpf-to-bpf) call at ``pc`` enters."""
    return pc + 1 + insn.imm


def is_local_call(insn: Instruction) -> bool:
    """True for a bpf-to-bpf ``call`` (a local function, not a helper or kfunc)."""
    return insn.is_call and insn.src == CallKind.LOCAL


def successors(insn: Instruction, pc: int) -> tuple[int, ...]:
    """Intraprocedural successors: where control goes next in the same function."""
    facts = _facts(insn.code)
    if facts.is_exit:
        return ()
    if facts.is_ja:
        return (jump_target(insn, pc),)
    if facts.is_branch:
        return (pc + 1, jump_target(insn, pc))
    return (pc + (2 if facts.is_lddw else 1),)


def function_entries(insns: Sequence[Instruction]) -> list[int]:
    """Pc 0 and every local-call target, sorted."""
    entries = {0}
    pc = 0
    for insn in insns:
        if is_local_call(insn):
            entries.add(call_target(insn, pc))
        pc += insn.slots
    return sorted(entries)


def _uses_defs(insn: Instruction) -> tuple[int, int, int]:
    """(registers read, registers written, registers made undefined) by one instruction."""
    facts = _facts(insn.code)
    cls = facts.cls
    d, s = _bit(insn.dst), _bit(insn.src)
    if cls in (Class.ALU, Class.ALU64):
        op = insn.alu_op
        x = insn.source == Source.X
        if op == AluOp.MOV:
            return (s if x else 0), d, 0
        if op in (AluOp.NEG, AluOp.END):
            return d, d, 0
        return d | (s if x else 0), d, 0
    if cls == Class.LDX:
        return s, d, 0
    if cls == Class.ST:
        return d, 0, 0
    if cls == Class.STX:
        if insn.mode != Mode.ATOMIC:
            return d | s, 0, 0
        op = insn.atomic_op
        if op == AtomicOp.LOAD_ACQ:
            return s, d, 0
        if op == AtomicOp.CMPXCHG:
            return d | s | _R0, _R0, 0
        if op in _FETCHING:
            return d | s, s, 0
        return d | s, 0, 0
    if cls == Class.LD:
        if facts.is_lddw:
            return 0, d, 0
        uses = _bit(6) | (s if insn.mode == Mode.IND else 0)
        return uses, _R0, _ARGS
    # JMP / JMP32
    if facts.is_exit:
        return _R0, 0, 0
    if facts.is_call:
        if insn.src == CallKind.HELPER:
            row = lookup(insn.imm)
            nargs = row.nargs if row is not None and row.id and row.known else 0
            return _ARGS & ((1 << (nargs + 1)) - 1), _R0, _ARGS
        return 0, _R0, _ARGS
    if facts.is_callx:
        return _bit(insn.callx_register), _R0, _ARGS
    if facts.is_branch and not insn.is_may_goto:
        return d | (s if insn.source == Source.X else 0), 0, 0
    return 0, 0, 0


def _writes_r10(insn: Instruction, defs: int) -> bool:
    return bool(defs & _bit(FRAME_POINTER))


def _check_structure(
    insns: Sequence[Instruction],
    table: Sequence[Instruction | None],
    *,
    allow_pseudo_lddw: bool,
    allow_legacy_packet: bool,
) -> tuple[dict[int, tuple[int, int, int]], list[int]]:
    """Check every instruction; returns each pc's (uses, defs, kills) and the entries."""
    nslots = len(table)
    effects: dict[int, tuple[int, int, int]] = {}
    entries = {0}

    def land(target: int, what: str, pc: int) -> None:
        if not 0 <= target < nslots:
            raise InputError(f"{what} to pc {target} is outside the program", pc=pc)
        if table[target] is None:
            raise InputError(f"{what} to pc {target} lands inside an lddw", pc=pc)

    pc = 0
    for insn in insns:
        check_insn(insn, pc)
        facts = _facts(insn.code)
        if facts.is_call and insn.src == CallKind.KFUNC:
            raise NotSupportedError("kfunc calls are not supported", feature="kfunc", pc=pc)
        if facts.cls == Class.ALU64 and insn.is_addr_space_cast:
            raise NotSupportedError(
                "arena addr_space_cast is not supported", feature="arena", pc=pc
            )
        if facts.is_lddw and insn.src != 0 and not allow_pseudo_lddw:
            raise NotSupportedError(
                f"lddw with pseudo source {insn.src} needs a loader (no resolver given)",
                feature="lddw_pseudo",
                pc=pc,
            )
        if facts.is_legacy_packet and not allow_legacy_packet:
            raise NotSupportedError(
                "LD_ABS/LD_IND need a packet context (legacy_packet=True)",
                feature="ld_abs",
                pc=pc,
            )
        if facts.is_ja or facts.is_branch:
            land(jump_target(insn, pc), "jump", pc)
        if facts.is_call and insn.src == CallKind.LOCAL:
            target = call_target(insn, pc)
            land(target, "call", pc)
            entries.add(target)
        effect = effects[pc] = _uses_defs(insn)
        if _writes_r10(insn, effect[1]):
            raise InputError("r10 (the frame pointer) is read-only", pc=pc)
        nxt = pc + (2 if facts.is_lddw else 1)
        falls_through = not (facts.is_exit or facts.is_ja)
        if falls_through and nxt >= nslots:
            raise InputError("the last instruction falls off the end of the program", pc=pc)
        pc = nxt
    return effects, sorted(entries)


def _dataflow(
    effects: dict[int, tuple[int, int, int]],
    entries: list[int],
    table: Sequence[Instruction | None],
    entry_mask: int,
) -> None:
    first_error: tuple[int, int] | None = None
    for entry in entries:
        start = entry_mask if entry == 0 else (_ARGS | _bit(FRAME_POINTER))
        state: dict[int, int] = {entry: start}
        work = [entry]
        while work:
            pc = work.pop()
            insn = table[pc]
            assert insn is not None
            uses, defs, kills = effects[pc]
            out = (state[pc] & ~kills) | defs
            for succ in successors(insn, pc):
                old = state.get(succ)
                new = out if old is None else (old & out)
                if new != old:
                    state[succ] = new
                    work.append(succ)
        for pc in sorted(state):
            missing = effects[pc][0] & ~state[pc]
            if missing:
                reg = (missing & -missing).bit_length() - 1
                if first_error is None or pc < first_error[0]:
                    first_error = (pc, reg)
                break
    if first_error is not None:
        pc, reg = first_error
        raise UninitializedRegisterError(
            f"r{reg} is read before any path writes it", register=reg, pc=pc
        )


def check_program(
    insns: Sequence[Instruction],
    table: Sequence[Instruction | None],
    *,
    entry_registers: Sequence[int] = (1, 10),
    allow_pseudo_lddw: bool = False,
    allow_legacy_packet: bool = False,
) -> None:
    """Apply every load-time rule; ``table`` is :func:`pybpf.isa.slot_table` of ``insns``."""
    if not insns:
        raise InputError("the program is empty", pc=0)
    for reg in entry_registers:
        if not 0 <= reg <= FRAME_POINTER:
            raise InputError(f"invalid entry register r{reg}")
    effects, entries = _check_structure(
        insns, table, allow_pseudo_lddw=allow_pseudo_lddw, allow_legacy_packet=allow_legacy_packet
    )
    mask = _bit(FRAME_POINTER)
    for reg in entry_registers:
        mask |= _bit(reg)
    _dataflow(effects, entries, table, mask & _ALL)
