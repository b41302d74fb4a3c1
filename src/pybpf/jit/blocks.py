"""Blocks: a program checked for what lowering needs, split into functions and basic blocks.

:func:`analyse` refuses, in Python and before LLVM sees anything, every program the JIT
must not lower (LLVM aborts the process on malformed IR instead of raising):

- an instruction :func:`pybpf.isa.check` refuses (:class:`~pybpf.errors.DecodeError`);
- a jump or local call landing outside the program or inside an ``lddw``, the last
  instruction falling off the end, a write to r10 (:class:`~pybpf.errors.InputError`,
  ``pc``);
- features no engine runs yet: kfunc calls, arena ``addr_space_cast``, and (unless the
  caller allows them) ``lddw`` pseudo sources and legacy ``LD_ABS``/``LD_IND``
  (:class:`~pybpf.errors.NotSupportedError`, ``feature``, ``pc``).

It then finds the functions (pc 0 and every local-call target) and, for each, the basic
blocks reachable from its entry. A block ends at a jump, ``exit``, ``may_goto`` or local
call, or before another block's first instruction. Code reachable from two entries is
lowered into both functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pybpf.errors import InputError, NotSupportedError
from pybpf.isa import AluOp, AtomicOp, CallKind, Class, Instruction, slot_table
from pybpf.isa import check as check_insn
from pybpf.isa.opcodes import FRAME_POINTER

__all__ = ["Block", "Function", "ControlFlow", "analyse", "jump_target", "call_target"]


@dataclass(frozen=True)
class Block:
    """A straight-line run of instructions: their pcs, and where control goes after."""

    start: int
    pcs: tuple[int, ...]

    @property
    def last(self) -> int:
        """The pc of the block's last instruction."""
        return self.pcs[-1]


@dataclass(frozen=True)
class Function:
    """One eBPF function: its entry pc and its reachable blocks (entry block first)."""

    entry: int
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class ControlFlow:
    """A checked program: the slot table (pc -> instruction) and its functions by entry."""

    table: tuple[Instruction | None, ...]
    functions: dict[int, Function]


def jump_target(insn: Instruction, pc: int) -> int:
    """The pc a jump (``goto``, ``gotol``, conditional, ``may_goto``) at ``pc`` lands on."""
    return pc + 1 + insn.jump_offset


def call_target(insn: Instruction, pc: int) -> int:
    """The pc a local (bpf-to-bpf) call at ``pc`` enters."""
    return pc + 1 + insn.imm


def _is_local_call(insn: Instruction) -> bool:
    return insn.is_call and insn.call_kind == CallKind.LOCAL


def _successors(insn: Instruction, pc: int) -> tuple[int, ...]:
    if insn.is_exit:
        return ()
    if insn.is_ja:
        return (jump_target(insn, pc),)
    if insn.is_conditional_jump or insn.is_may_goto:
        return (pc + 1, jump_target(insn, pc))
    return (pc + insn.slots,)


def _ends_block(insn: Instruction) -> bool:
    return insn.is_exit or insn.is_jump or _is_local_call(insn)


def _written(insn: Instruction) -> tuple[int, ...]:
    """Registers an instruction writes (calls' r0..r5 clobbers aside)."""
    cls = insn.cls
    if cls in (Class.ALU, Class.ALU64, Class.LDX) or insn.is_lddw:
        return (insn.dst,)
    if insn.is_atomic:
        op = insn.atomic_op
        if op == AtomicOp.LOAD_ACQ:
            return (insn.dst,)
        if op == AtomicOp.CMPXCHG:
            return (0,)
        if op & 0x01:  # the FETCH flag (xchg included): src receives the old value
            return (insn.src,)
    return ()


def _check(insn: Instruction, pc: int, nslots: int, table, *, pseudo: bool, legacy: bool) -> None:
    check_insn(insn, pc)

    def land(target: int, what: str) -> None:
        if not 0 <= target < nslots:
            raise InputError(f"{what} to pc {target} is outside the program", pc=pc)
        if table[target] is None:
            raise InputError(f"{what} to pc {target} lands inside an lddw", pc=pc)

    if insn.is_call and insn.call_kind == CallKind.KFUNC:
        raise NotSupportedError("kfunc calls are not supported", feature="kfunc", pc=pc)
    if insn.is_alu and insn.alu_op == AluOp.MOV and insn.is_addr_space_cast:
        raise NotSupportedError("arena addr_space_cast is not supported", feature="arena", pc=pc)
    if insn.is_lddw and insn.src != 0 and not pseudo:
        raise NotSupportedError(
            f"lddw with pseudo source {insn.src} needs a loader (no resolver given)",
            feature="lddw_pseudo",
            pc=pc,
        )
    if insn.is_legacy_packet_load and not legacy:
        raise NotSupportedError(
            "LD_ABS/LD_IND need a packet context (legacy_packet=True)", feature="ld_abs", pc=pc
        )
    if insn.is_jump:
        land(jump_target(insn, pc), "jump")
    if _is_local_call(insn):
        land(call_target(insn, pc), "call")
    if FRAME_POINTER in _written(insn):
        raise InputError("r10 (the frame pointer) is read-only", pc=pc)
    falls_through = not (insn.is_exit or insn.is_ja)
    if falls_through and pc + insn.slots >= nslots:
        raise InputError("the last instruction falls off the end of the program", pc=pc)


def _function(entry: int, table: Sequence[Instruction | None]) -> Function:
    reach: set[int] = set()
    leaders = {entry}
    work = [entry]
    while work:
        pc = work.pop()
        if pc in reach:
            continue
        reach.add(pc)
        insn = table[pc]
        assert insn is not None  # _check made every target land on an instruction
        succ = _successors(insn, pc)
        if _ends_block(insn):
            leaders.update(succ)
        if insn.is_jump:
            leaders.add(jump_target(insn, pc))
        work.extend(succ)
    blocks: list[Block] = []
    current: list[int] = []
    for pc in sorted(reach):
        if current and pc in leaders:
            blocks.append(Block(current[0], tuple(current)))
            current = []
        current.append(pc)
        insn = table[pc]
        assert insn is not None
        if _ends_block(insn):
            blocks.append(Block(current[0], tuple(current)))
            current = []
    if current:
        blocks.append(Block(current[0], tuple(current)))
    blocks.sort(key=lambda b: (b.start != entry, b.start))
    return Function(entry, tuple(blocks))


def analyse(
    insns: Sequence[Instruction],
    *,
    allow_pseudo_lddw: bool = False,
    allow_legacy_packet: bool = False,
) -> ControlFlow:
    """Check a program for lowering and split it into functions and blocks (see module doc)."""
    if not insns:
        raise InputError("the program is empty", pc=0)
    table = slot_table(insns)
    nslots = len(table)
    entries = {0}
    pc = 0
    for insn in insns:
        _check(insn, pc, nslots, table, pseudo=allow_pseudo_lddw, legacy=allow_legacy_packet)
        if _is_local_call(insn):
            entries.add(call_target(insn, pc))
        pc += insn.slots
    functions = {entry: _function(entry, table) for entry in sorted(entries)}
    return ControlFlow(tuple(table), functions)
