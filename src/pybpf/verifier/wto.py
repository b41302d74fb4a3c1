"""WTO: Bourdoncle's weak topological order of the CFG, the iteration order of the fixpoint.

The order is a list of components; a component is a node or a :class:`Cycle` (a loop head
and the components of its body, recursively). Widening is applied at cycle heads only.
The depth-first search is written without Python recursion (generators driven by an
explicit stack), so programs of any length are fine.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Cycle", "weak_topological_order", "cycle_heads"]


@dataclass
class Cycle:
    """A loop: ``head`` and the components of its body in order."""

    head: Any
    components: list[Any] = field(default_factory=list)


def weak_topological_order(entry: Any, successors: Callable[[Any], Iterable[Any]]) -> list[Any]:
    """The WTO of the nodes reachable from ``entry`` (Bourdoncle 1993, recursive strategy)."""
    dfn: dict[Any, float] = {}
    stack: list[Any] = []
    counter = [0]
    done = float("inf")

    def visit(v: Any, partition: list[Any]) -> Generator[tuple[Any, list[Any]], Any, float]:
        stack.append(v)
        counter[0] += 1
        dfn[v] = head = counter[0]
        loop = False
        for w in successors(v):
            if dfn.get(w, 0) == 0:
                low = yield (w, partition)
            else:
                low = dfn[w]
            if low <= head:
                head = low
                loop = True
        if head == dfn[v]:
            dfn[v] = done
            element = stack.pop()
            if loop:
                while element != v:
                    dfn[element] = 0
                    element = stack.pop()
                body: list[Any] = []
                for w in successors(v):
                    if dfn.get(w, 0) == 0:
                        yield (w, body)
                body.reverse()
                partition.append(Cycle(v, body))
            else:
                partition.append(v)
        return head

    top: list[Any] = []
    frames = [visit(entry, top)]
    reply: Any = None
    while frames:
        try:
            w, part = frames[-1].send(reply)
        except StopIteration as stop:
            frames.pop()
            reply = stop.value
            continue
        reply = None
        frames.append(visit(w, part))
    top.reverse()
    return top


def cycle_heads(order: list[Any]) -> list[Any]:
    """Every cycle head in a WTO, outer loops first."""
    heads: list[Any] = []
    work = list(order)
    while work:
        item = work.pop(0)
        if isinstance(item, Cycle):
            heads.append(item.head)
            work = item.components + work
    return heads
