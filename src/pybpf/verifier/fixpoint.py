"""Fixpoint: the abstract interpretation of a CFG in weak topological order.

Each node's pre-state is the join of its predecessors' post-states. A node whose assertions
do not all hold gets an unreachable post-state (the analysis does not continue past an
error on that path). At a loop head the first iterations join, later ones widen; once the
head's state is stable (a post-fixpoint), a few descending steps recompute the loop from
the smaller state the body produced, and each step is kept only if it is again a
post-fixpoint, so the final states always form an inductive invariant. With termination
checking or loop counters on, each loop head increments its own counter ``pc[head]``.

A branch edge fed by a short straight line after a join (outside loop heads) may take
its incoming paths apart: when a register the condition tests is a different constant on
each path (a flag recording whether a bounds check passed), each path's state is carried
through the line and the condition assumed on it before the join, so the flag's test
keeps what the check proved, as Linux's path-by-path exploration does.
"""

from __future__ import annotations

from pybpf.verifier.assertions import Assertion
from pybpf.verifier.cfg import Cfg, Label
from pybpf.verifier.checker import check
from pybpf.verifier.domains.state import State
from pybpf.verifier.domains.types import T
from pybpf.verifier.domains.zone import THRESHOLDS
from pybpf.verifier.ir import Assume, Bin, BinOp, CallLocal, Imm, Jmp, Mem, Un
from pybpf.verifier.preconditions import assertions_for
from pybpf.verifier.program import ProgramInfo
from pybpf.verifier.transformer import transform
from pybpf.verifier.wto import Cycle, cycle_heads, weak_topological_order

__all__ = ["Analysis", "counter_name", "frame_key"]

_SOFT_WIDENINGS = 24  # then widen straight to infinity, which always terminates
_CHAIN = 8  # at most this many instructions between a join and the jump it feeds
# What a chain may hold: plain instructions (no calls, whose frames and helpers are kept
# apart) besides the jump itself.
_CHAINABLE = (Bin, Un, Mem, Jmp)


def counter_name(head: Label) -> str:
    """The zone variable counting visits of a loop head."""
    return f"pc[{head}]"


def frame_key(label: Label, callee: bool = False) -> str:
    """The saved-register prefix of a node's frame (``callee``: of the frame it calls)."""
    frame = label.frame + ((label.pc,) if callee else ())
    return "/".join(str(f) for f in frame)


def _tested(chain: list[Label], instructions: dict) -> frozenset[int]:
    """The registers at a chain's start whose values the edge's condition depends on
    (followed back through moves and arithmetic; a load ends the trail)."""
    cond = instructions[chain[-1]].cond
    regs = {cond.left}
    if not isinstance(cond.right, Imm):
        regs.add(cond.right)
    for label in reversed(chain[:-1]):
        ins = instructions[label]
        if isinstance(ins, Bin) and ins.dst in regs:
            if ins.op == BinOp.MOV:
                regs.discard(ins.dst)
            if not isinstance(ins.src, Imm):
                regs.add(ins.src)
        elif isinstance(ins, Mem) and ins.is_load and ins.value in regs:
            regs.discard(ins.value)
    return frozenset(regs)


def _flagged(states: list[State], regs: frozenset[int]) -> bool:
    """Some tested register is a known number on every path, not the same on all (a flag
    such as ``r3 = 0`` / ``r3 = -22``): only then are paths taken apart, which costs a
    transform per path and instruction."""
    if len(states) < 2:
        return False
    for r in regs:
        loc = f"r{r}"
        seen: set[int | float] = set()
        for s in states:
            if s.type_of(loc) != T.NUM:
                break
            lo, hi = s.zone.bounds(f"{loc}.svalue")
            if lo != hi:
                break
            seen.add(lo)
        else:
            if len(seen) > 1:
                return True
    return False


class Analysis:
    """Runs the fixpoint and keeps each node's pre- and post-state."""

    def __init__(self, cfg: Cfg, info: ProgramInfo, entry: State) -> None:
        self.cfg = cfg
        self.info = info
        self.order = weak_topological_order(cfg.entry, lambda v: cfg.succ[v])
        self.heads = cycle_heads(self.order)
        counted = info.options.termination or info.options.loop_counters
        self.counters = set(self.heads) if counted else set()
        self.assertions: dict[Label, list[Assertion]] = {}
        self.frames: dict[Label, str] = {}
        self.sites: dict[Label, int] = {}
        for site, (label, ins) in enumerate(cfg.instructions.items()):
            self.assertions[label] = assertions_for(ins, info, label.depth)
            self.frames[label] = frame_key(label, isinstance(ins, CallLocal))
            self.sites[label] = site
        self.entry = entry.copy()
        for head in self.counters:
            self.entry.zone.set(counter_name(head), 0, 0)
        self._marks: dict[Label, list[int]] = {}
        self._chains: dict[Label, tuple[list[Label], frozenset[int]] | None] = {}
        self.pre: dict[Label, State] = {}
        self.post: dict[Label, State] = {}

    # ---- one node ------------------------------------------------------------------------
    def _pre_of(self, label: Label) -> State:
        if label == self.cfg.entry:
            return self.entry
        out: State | None = None
        for p in self.cfg.pred[label]:
            post = self.post.get(p)
            if post is None or post.bottom:
                continue
            out = post if out is None else out.join(post)
        return out if out is not None else State.make_bottom()

    def step(self, label: Label, pre: State) -> State:
        """The post-state of a node (unreachable when one of its assertions fails)."""
        if pre.bottom:
            return pre
        state = pre
        if label in self.counters:
            state = pre.copy()
            state.zone.shift(counter_name(label), 1)
        for a in self.assertions[label]:
            if check(a, state, self.info) is not None:
                return State.make_bottom()
        ins = self.cfg.instructions[label]
        return transform(ins, state, self.info, self.frames[label], self.sites[label])

    def _visit(self, label: Label, pre: State) -> None:
        self.pre[label] = pre
        post = self.step(label, pre)
        if label.is_edge and not post.bottom:
            post = self._per_path(label, post)
        self.post[label] = post

    def _per_path(self, edge: Label, post: State) -> State:
        """A branch edge's post-state taken path by path: where a few straight-line
        instructions before the jump join several paths (``r3 = 0`` after a bounds check,
        ``r3 = -22`` after its failure, then ``if w3 != 0``), each incoming path's state is
        carried through them and the edge's condition assumed on it before joining, so a
        path the condition rules out brings nothing (Linux explores paths apart). Sound:
        each concrete state on the edge came through one predecessor, and the chain's
        checks hold on the join, hence on each path. Not from loop heads, whose back
        edges' states are not final when the edge is visited.
        """
        found = self._chains.get(edge, False)
        if found is False:
            found = self._chains[edge] = self._chain(edge)
        if found is None:
            return post
        chain, tested = found
        posts = [self.post.get(p) for p in self.cfg.pred[chain[0]]]
        live = [s for s in posts if s is not None and not s.bottom]
        if not _flagged(live, tested):
            return post
        info = self.info
        out: State | None = None
        for state in live:
            for label in chain:
                state = transform(
                    self.cfg.instructions[label],
                    state,
                    info,
                    self.frames[label],
                    self.sites[label],
                )
                if state.bottom:
                    break
            if state.bottom:
                continue
            out = state if out is None else out.join(state)
        return out if out is not None else State.make_bottom()

    def _chain(self, edge: Label) -> tuple[list[Label], frozenset[int]] | None:
        """The nodes from the last join before ``edge``'s jump to ``edge`` itself, when
        they are a short straight line of plain instructions, and the registers at the
        join whose values the condition tests; else ``None``."""
        cfg = self.cfg
        chain = [edge]
        node = edge
        while True:
            preds = cfg.pred[node]
            if len(preds) != 1:
                return None
            node = preds[0]
            if node in self.heads or node in self.counters or node.pc < 0:
                return None
            if not isinstance(cfg.instructions[node], _CHAINABLE):
                return None
            chain.append(node)
            if len(cfg.pred[node]) > 1:
                break
            if len(chain) > _CHAIN:
                return None
        if any(len(cfg.succ[n]) != 1 for n in chain[2:]):
            return None
        chain.reverse()
        tested = _tested(chain, cfg.instructions)
        return (chain, tested) if tested else None

    # ---- components ----------------------------------------------------------------------
    def _component(self, item: Label | Cycle) -> None:
        if isinstance(item, Cycle):
            self._cycle(item)
        else:
            self._visit(item, self._pre_of(item))

    def _body(self, cycle: Cycle, head_pre: State) -> State:
        """Run the loop once from ``head_pre``; the head's new pre-state."""
        self._visit(cycle.head, head_pre)
        for item in cycle.components:
            self._component(item)
        return self._pre_of(cycle.head)

    def _cycle(self, cycle: Cycle) -> None:
        options = self.info.options
        inv = self._pre_of(cycle.head)
        iteration = 0
        while True:
            new = self._body(cycle, inv)
            if new.leq(inv):
                break
            iteration += 1
            if iteration < options.widening_delay:
                inv = inv.join(new)
            else:
                inv = inv.widen(new, iteration > _SOFT_WIDENINGS, self._thresholds(cycle))
        # Descending steps: ``new`` (the body's output from ``inv``) is below ``inv``.
        for _ in range(options.descending_steps):
            if inv.leq(new):
                break
            again = self._body(cycle, new)
            if not again.leq(new):
                self._body(cycle, inv)  # not inductive: keep the widened invariant
                break
            inv, new = new, again

    def _thresholds(self, cycle: Cycle) -> list[int]:
        """The widening thresholds of a loop: the zone's own and the constants its branches
        compare with and their neighbours (``i != 1000`` widens ``i`` to 999 or 1000 before
        infinity)."""
        marks = self._marks.get(cycle.head)
        if marks is None:
            consts: set[int] = set()
            stack: list[Label | Cycle] = [cycle.head, *cycle.components]
            while stack:
                item = stack.pop()
                if isinstance(item, Cycle):
                    stack.extend((item.head, *item.components))
                    continue
                ins = self.cfg.instructions.get(item)
                if isinstance(ins, Assume) and isinstance(ins.cond.right, Imm):
                    c = ins.cond.right.value  # and its neighbours: i + 1 != c at the head
                    consts.update((c - 1, c, c + 1))
            consts = {c for c in consts if -(1 << 63) <= c < 1 << 64}
            marks = self._marks[cycle.head] = sorted(set(THRESHOLDS) | consts)
        return marks

    def run(self) -> Analysis:
        """Compute every node's states."""
        for item in self.order:
            self._component(item)
        return self

    def reachable(self) -> list[Label]:
        """Nodes with a reachable pre-state, in label order."""
        return sorted(
            (label for label, s in self.pre.items() if not s.bottom and label.pc >= 0),
        )
