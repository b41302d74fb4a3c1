"""Registers: refuse programs that may read a register before any path writes it.

The interpreter refuses such programs at load time (Linux's verifier does too), so the JIT
must refuse the same ones with the same :class:`~pybpf.errors.UninitializedRegisterError`
(``pc``, ``register``) for both engines to accept the same programs. The rules are
Linux's: the entry function starts with its entry registers and r10, a local-call target
with r1-r5 and r10; a helper call reads r1..rN (N from its prototype in
:mod:`pybpf.helpers`, none when unknown), defines r0 and leaves r1-r5 undefined, as do
``callx`` and local calls; ``exit`` reads r0; ``LD_ABS``/``LD_IND`` read r6 (and the index
register), define r0 and clobber r1-r5. The first offending pc (lowest, over all
functions) and its lowest missing register are reported.

This runs on the JIT's own blocks (:mod:`pybpf.jit.blocks`); the interpreter's load check
lives beside it in ``vm`` and the two should become one check on a lower layer.
"""

from __future__ import annotations

from collections.abc import Sequence

from pybpf.errors import UninitializedRegisterError
from pybpf.helpers import lookup
from pybpf.isa import AluOp, AtomicOp, CallKind, Class, Instruction, Mode, Source
from pybpf.isa.opcodes import FRAME_POINTER
from pybpf.jit.blocks import ControlFlow

__all__ = ["check_defined"]

_ARGS = 0b111110  # r1-r5
_R0 = 1
_R10 = 1 << FRAME_POINTER
_ALL = (1 << 11) - 1


def _effects(insn: Instruction) -> tuple[int, int, int]:  # noqa: C901 - one case per family
    """(registers read, registers written, registers left undefined) by one instruction."""
    d, s = 1 << insn.dst, 1 << insn.src
    cls = insn.cls
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
        if op & 0x01:  # FETCH (xchg included) writes src
            return d | s, s, 0
        return d | s, 0, 0
    if cls == Class.LD:
        if insn.is_lddw:
            return 0, d, 0
        return (1 << 6) | (s if insn.mode == Mode.IND else 0), _R0, _ARGS
    if insn.is_exit:
        return _R0, 0, 0
    if insn.is_call:
        if insn.call_kind == CallKind.HELPER:
            row = lookup(insn.imm)
            nargs = row.nargs if row is not None and row.id and row.known else 0
            return _ARGS & ((1 << (nargs + 1)) - 1), _R0, _ARGS
        return 0, _R0, _ARGS
    if insn.is_callx:
        return 1 << insn.callx_register, _R0, _ARGS
    if insn.is_conditional_jump:
        return d | (s if insn.source == Source.X else 0), 0, 0
    return 0, 0, 0


def _successors(insn: Instruction, pc: int) -> tuple[int, ...]:
    if insn.is_exit:
        return ()
    target = pc + 1 + insn.jump_offset
    if insn.is_ja:
        return (target,)
    if insn.is_conditional_jump or insn.is_may_goto:
        return (pc + 1, target)
    return (pc + insn.slots,)


def check_defined(cfg: ControlFlow, entry_registers: Sequence[int]) -> None:
    """Raise :class:`UninitializedRegisterError` for the first possible undefined read."""
    table = cfg.table
    entry_mask = _R10
    for reg in entry_registers:
        entry_mask |= 1 << reg
    first: tuple[int, int] | None = None
    for entry in cfg.functions:
        state: dict[int, int] = {entry: (entry_mask if entry == 0 else _ARGS | _R10) & _ALL}
        work = [entry]
        while work:
            pc = work.pop()
            insn = table[pc]
            assert insn is not None
            _, defs, kills = _effects(insn)
            out = (state[pc] & ~kills) | defs
            for succ in _successors(insn, pc):
                old = state.get(succ)
                new = out if old is None else old & out
                if new != old:
                    state[succ] = new
                    work.append(succ)
        for pc in sorted(state):
            insn = table[pc]
            assert insn is not None
            missing = _effects(insn)[0] & ~state[pc]
            if missing:
                reg = (missing & -missing).bit_length() - 1
                if first is None or pc < first[0]:
                    first = (pc, reg)
                break
    if first is not None:
        pc, reg = first
        raise UninitializedRegisterError(
            f"r{reg} is read before any path writes it", register=reg, pc=pc
        )
