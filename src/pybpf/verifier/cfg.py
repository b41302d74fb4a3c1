"""CFG: the control-flow graph, one node per instruction, with Assume edges and inlined calls.

A conditional jump at ``pc`` becomes the jump node (holding its preconditions) and two edge
nodes labelled ``pc:target`` and ``pc:next`` holding ``Assume(cond)`` and
``Assume(not cond)``. A bpf-to-bpf call is inlined: the callee's reachable code is copied
with a frame prefix (labels such as ``0/11:12``), its ``exit`` nodes lead back to the
instruction after the call, and recursion or more than ``max_frames`` nested frames is
refused. Nodes are reached from a synthetic ``entry`` and lead to a synthetic ``exit``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pybpf.errors import VerifierError
from pybpf.verifier import ir

__all__ = ["Label", "Cfg", "ENTRY", "EXIT", "build_cfg", "first_unreachable"]


@dataclass(frozen=True, slots=True, order=True)
class Label:
    """A node: instruction ``pc`` in call frame ``frame`` (call-site pcs), or the edge ``pc:to``."""

    frame: tuple[int, ...]
    pc: int
    to: int = -1

    @property
    def is_edge(self) -> bool:
        """An Assume node on a jump edge."""
        return self.to >= 0

    @property
    def depth(self) -> int:
        """The number of call frames (1 in the entry function)."""
        return len(self.frame) + 1

    def __str__(self) -> str:
        if self.pc == -1:
            return "entry"
        if self.pc == -2:
            return "exit"
        prefix = "".join(f"{f}/" for f in self.frame)
        return f"{prefix}{self.pc}:{self.to}" if self.to >= 0 else f"{prefix}{self.pc}"


ENTRY = Label((), -1)
EXIT = Label((), -2)


class Cfg:
    """Nodes (labels with their instruction) and edges."""

    def __init__(self) -> None:
        self.instructions: dict[Label, ir.IrInstruction | None] = {}
        self.succ: dict[Label, list[Label]] = {}
        self.pred: dict[Label, list[Label]] = {}
        self.entry = ENTRY
        self.exit = EXIT

    def add(self, label: Label, instruction: ir.IrInstruction | None) -> None:
        """Add a node (no-op if present)."""
        if label not in self.instructions:
            self.instructions[label] = instruction
            self.succ[label] = []
            self.pred[label] = []

    def edge(self, src: Label, dst: Label) -> None:
        """Add an edge (no-op if present)."""
        if dst not in self.succ[src]:
            self.succ[src].append(dst)
            self.pred[dst].append(src)

    def labels(self) -> Iterator[Label]:
        """Every node."""
        return iter(self.instructions)

    def __len__(self) -> int:
        return len(self.instructions)


class _Builder:
    def __init__(
        self,
        program: Sequence[tuple[int, ir.IrInstruction]],
        max_frames: int,
        must_exit: bool,
        opaque: frozenset[int] = frozenset(),
    ) -> None:
        self.opaque = opaque
        self.by_pc = dict(program)
        pcs = [pc for pc, _ in program]
        self.next_pc = {pc: (pcs[i + 1] if i + 1 < len(pcs) else None) for i, pc in enumerate(pcs)}
        self.max_frames = max_frames
        self.must_exit = must_exit
        self.cfg = Cfg()

    def _require(self, pc: int | None, frame: tuple[int, ...], where: int) -> int:
        if pc is None or pc not in self.by_pc:
            what = "falls off the end of the program" if pc is None else f"jumps to {pc}"
            raise VerifierError(f"invalid control flow: instruction {where} {what}", pc=where)
        return pc

    def function(self, entry: int, frame: tuple[int, ...], stack: tuple[int, ...]) -> list[Label]:
        """Add the code reachable from ``entry`` in ``frame``; return its ``exit`` nodes."""
        cfg = self.cfg
        exits: list[Label] = []
        seen: set[int] = set()
        work = [entry]
        while work:
            pc = work.pop()
            if pc in seen:
                continue
            seen.add(pc)
            ins = self.by_pc[pc]
            here = Label(frame, pc)
            cfg.add(here, ins)
            nxt = self.next_pc[pc]
            targets: list[int] = []
            if isinstance(ins, ir.Exit):
                exits.append(here)
            elif isinstance(ins, ir.Jmp) and ins.cond is None:
                targets = [self._require(ins.target, frame, pc)]
            elif isinstance(ins, ir.Jmp):
                target = self._require(ins.target, frame, pc)
                follow = self._require(nxt, frame, pc)
                if target == follow:
                    targets = [follow]
                else:
                    for dest, cond in ((target, ins.cond), (follow, ins.cond.negate())):
                        edge = Label(frame, pc, dest)
                        cfg.add(edge, ir.Assume(cond, implicit=True))
                        cfg.add(Label(frame, dest), self.by_pc[dest])
                        cfg.edge(here, edge)
                        cfg.edge(edge, Label(frame, dest))
                        work.append(dest)
            elif isinstance(ins, ir.MayGoto):
                targets = [self._require(ins.target, frame, pc), self._require(nxt, frame, pc)]
            elif isinstance(ins, ir.CallLocal) and ins.target in self.opaque:
                self._require(ins.target, frame, pc)
                targets = [self._require(nxt, frame, pc)]  # a global function: not inlined
            elif isinstance(ins, ir.CallLocal):
                callee = self._require(ins.target, frame, pc)
                follow = self._require(nxt, frame, pc)
                if callee in stack:
                    raise VerifierError("illegal recursion", pc=pc, label=str(here))
                inner = frame + (pc,)
                if len(inner) + 1 > self.max_frames:
                    raise VerifierError("too many call stack frames", pc=pc, label=str(here))
                callee_exits = self.function(callee, inner, stack + (callee,))
                cfg.edge(here, Label(inner, callee))
                cfg.add(Label(frame, follow), self.by_pc[follow])
                for done in callee_exits:
                    cfg.edge(done, Label(frame, follow))
                work.append(follow)
            elif nxt is None and not self.must_exit and not frame:
                exits.append(here)  # running off the end finishes the program
            else:
                targets = [self._require(nxt, frame, pc)]
            for dest in targets:
                cfg.add(Label(frame, dest), self.by_pc[dest])
                cfg.edge(here, Label(frame, dest))
                work.append(dest)
        return exits


def build_cfg(
    program: Sequence[tuple[int, ir.IrInstruction]],
    max_frames: int = 8,
    must_exit: bool = True,
    entry: int | None = None,
    opaque: frozenset[int] = frozenset(),
) -> Cfg:
    """The CFG of a program given as ``(pc, instruction)`` pairs (entry at the first pc).

    With ``must_exit`` false, running off the last instruction ends the program (PREVAIL's
    test programs rely on it). ``entry``: start at that pc instead (a callback). Raises
    ``opaque``: pcs of global functions, whose calls are not inlined. Raises
    :class:`~pybpf.errors.VerifierError` for control flow
    out of the program, recursion, or too deep calls.
    """
    if not program:
        raise VerifierError("empty program")
    builder = _Builder(program, max_frames, must_exit, opaque)
    cfg = builder.cfg
    cfg.add(ENTRY, None)
    cfg.add(EXIT, None)
    first = program[0][0] if entry is None else entry
    exits = builder.function(first, (), (first,))
    cfg.edge(ENTRY, Label((), first))
    for done in exits:
        cfg.edge(done, EXIT)
    return cfg


def _successors(pc: int, ins: ir.IrInstruction, nxt: int | None) -> list[int]:
    """Every pc control may go to after ``ins`` at ``pc``, whatever the conditions."""
    after = [] if nxt is None else [nxt]
    if isinstance(ins, ir.Exit):
        return []
    if isinstance(ins, ir.Jmp):
        return [ins.target] if ins.cond is None else [ins.target, *after]
    if isinstance(ins, (ir.MayGoto, ir.CallLocal, ir.LoadFunc)):
        return [ins.target, *after]
    return after


def first_unreachable(program: Sequence[tuple[int, ir.IrInstruction]]) -> int | None:
    """The first instruction no path from the first one reaches, or ``None`` (Linux's
    ``check_cfg``: both targets of every branch count, conditions do not; bpf-to-bpf calls
    and callback addresses (``ld_imm64`` of a function) reach their target; the second
    slot of an ``ld_imm64`` is no instruction)."""
    if not program:
        return None
    by_pc = {pc: ins for pc, ins in program}
    following = {
        pc: program[i + 1][0] if i + 1 < len(program) else None for i, (pc, _) in enumerate(program)
    }
    seen = {program[0][0]}
    work = [program[0][0]]
    while work:
        pc = work.pop()
        for dest in _successors(pc, by_pc[pc], following[pc]):
            if dest in by_pc and dest not in seen:
                seen.add(dest)
                work.append(dest)
    return next((pc for pc, _ in program if pc not in seen), None)
