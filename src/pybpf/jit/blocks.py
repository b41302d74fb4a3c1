"""Blocks: a program checked for what lowering needs, split into functions and basic blocks.

:func:`analyse` first applies the load rules every engine shares
(:func:`pybpf.runtime.loadcheck.check_program`), so the JIT refuses exactly the programs
the interpreter refuses, with the same errors, in Python and before LLVM sees anything
(LLVM aborts the process on malformed IR instead of raising). Every jump and call then
lands on an instruction, nothing writes r10 and no register is read undefined, which is
what lowering relies on.

It then finds the functions (pc 0 and every local-call target) and, for each, the basic
blocks reachable from its entry. A block ends at a jump, ``exit``, ``may_goto`` or local
call, or before another block's first instruction. Code reachable from two entries is
lowered into both functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

from pybpf.isa import Instruction, slot_table
from pybpf.runtime.loadcheck import (
    call_target,
    check_program,
    function_entries,
    is_local_call,
    jump_target,
    successors,
)

__all__ = [
    "Block",
    "Function",
    "ControlFlow",
    "analyse",
    "jump_target",
    "call_target",
    "loop_heads",
]


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
    """A checked program: the slot table (pc -> instruction) and its function entries.

    :attr:`functions` (each function's blocks, by entry) is built on first use: a program
    whose code comes from a cache never needs it.
    """

    table: tuple[Instruction | None, ...]
    entries: tuple[int, ...]

    @cached_property
    def functions(self) -> dict[int, Function]:
        """Every function, by entry pc, with its reachable blocks."""
        return {entry: _function(entry, self.table) for entry in self.entries}

    @cached_property
    def block_pcs(self) -> dict[tuple[int, int], tuple[int, ...]]:
        """(function entry, block start) -> the block's pcs."""
        return {
            (entry, block.start): block.pcs
            for entry, fn in self.functions.items()
            for block in fn.blocks
        }


@lru_cache(maxsize=256)
def _code_facts(code: int) -> tuple[bool, bool, bool]:
    """(is a jump, ends a block unless a call, is a call) for an opcode byte (enums are slow)."""
    insn = Instruction(code)
    return insn.is_jump, insn.is_exit or insn.is_jump, insn.is_call


def _ends_block(insn: Instruction) -> bool:
    _, ends, call = _code_facts(insn.code)
    return ends or (call and is_local_call(insn))


def loop_heads(function: Function, table: Sequence[Instruction | None]) -> frozenset[int]:
    """Starts of ``function``'s blocks some jump reaches backwards (from its own pc or a
    later one): every loop of an eBPF function passes through one, so charging a budget
    there bounds every run."""
    heads = set()
    for block in function.blocks:
        pc = block.last
        insn = table[pc]
        if insn is not None and _code_facts(insn.code)[0]:
            target = jump_target(insn, pc)
            if target <= pc:
                heads.add(target)
    return frozenset(heads)


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
        assert insn is not None  # the load check made every target land on an instruction
        succ = successors(insn, pc)
        if _ends_block(insn):
            leaders.update(succ)
        if _code_facts(insn.code)[0]:
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
    entry_registers: Sequence[int] = (1, 10),
    allow_pseudo_lddw: bool = False,
    allow_legacy_packet: bool = False,
) -> ControlFlow:
    """Check a program (the shared load rules) and split it into functions and blocks.

    Raises what :func:`pybpf.runtime.loadcheck.check_program` raises for the same
    arguments (``entry_registers``: the registers defined at entry; r10 always is).
    """
    table = slot_table(insns)
    check_program(
        insns,
        table,
        entry_registers=entry_registers,
        allow_pseudo_lddw=allow_pseudo_lddw,
        allow_legacy_packet=allow_legacy_packet,
    )
    return ControlFlow(tuple(table), tuple(function_entries(insns)))
