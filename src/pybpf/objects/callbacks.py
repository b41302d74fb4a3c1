"""Callbacks: function addresses in programs, and the helpers that call them (bpf_loop, for_each).

A program takes a function's address with ``lddw src=BPF_PSEUDO_FUNC`` and passes it to a
helper that calls it back (``bpf_loop``, ``bpf_for_each_map_elem``). On the portable
backend that address is a *token*: a 64-bit value outside every address space (so the
program cannot load or store through it) naming a :class:`Callback`, the function linked
on its own (:func:`pybpf.spec.link`) and run by the interpreter with r1-r5 given, in the
caller's address space (so the caller's stack, which it usually passes as the callback's
context, is reachable).

:func:`callback_helpers` returns a helper registry with the runtime's helpers plus
``bpf_loop`` (181) and a ``bpf_for_each_map_elem`` (164) that finds its callbacks here (it
gives the runtime's implementation the ``call_function`` it asks for). Linux's results:
``bpf_loop`` returns the number of iterations run (the callback returning 1 stops after
that one), ``-E2BIG`` above 2^23 loops and ``-EINVAL`` for nonzero flags.
"""

from __future__ import annotations

import errno
import itertools
import threading
import weakref
from typing import Any

from pybpf.errors import HelperError
from pybpf.runtime import ExecutionContext, HelperRegistry, default_helpers
from pybpf.runtime.maps import for_each_map_elem

__all__ = ["Callback", "callback_helpers", "FUNC_TOKEN_BASE", "BPF_MAX_LOOPS"]

FUNC_TOKEN_BASE = 0xFFFF_F000_0000_0000  # non-canonical on every 64-bit CPU: never memory
BPF_MAX_LOOPS = 8 * 1024 * 1024
_M64 = (1 << 64) - 1

_LOCK = threading.Lock()
_TOKENS = itertools.count(1)
_BY_TOKEN: weakref.WeakValueDictionary[int, Callback] = weakref.WeakValueDictionary()


class Callback:
    """One function that helpers may call back: ``engine`` runs it (r1-r5 = the arguments).

    ``token`` is the value the program's ``lddw`` of the function loads.
    """

    def __init__(self, name: str, engine: Any) -> None:
        self.name = name
        self.engine = engine
        with _LOCK:
            self.token = FUNC_TOKEN_BASE + next(_TOKENS)
            _BY_TOKEN[self.token] = self

    def __call__(self, ctx: ExecutionContext, *args: int) -> int:
        """Run the function on ``ctx``'s run (same memory and cpu); returns r0."""
        return self.engine.run(args, memory=ctx.memory, cpu=ctx.cpu)

    def close(self) -> None:
        """Free the engine."""
        with _LOCK:
            if _BY_TOKEN.get(self.token) is self:
                del _BY_TOKEN[self.token]
        self.engine.close()


def _callback(ctx: ExecutionContext, token: int) -> Callback:
    found = _BY_TOKEN.get(token)
    if found is None:
        raise HelperError(
            f"{token:#x} is not the address of a function", helper_id=ctx.helper_id, pc=ctx.pc
        )
    return found


def loop(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_loop(nr_loops, callback_fn, callback_ctx, flags)``."""
    nr_loops = r1 & 0xFFFFFFFF
    if r4:
        return -errno.EINVAL
    if nr_loops > BPF_MAX_LOOPS:
        return -errno.E2BIG
    fn = _callback(ctx, r2)
    for i in range(nr_loops):
        if fn(ctx, i, r3) & _M64:
            return i + 1
    return nr_loops


def for_each(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_for_each_map_elem(map, callback_fn, callback_ctx, flags)`` with callbacks."""

    def call_function(address: int, *args: int) -> int:
        return _callback(ctx, address)(ctx, *args)

    ctx.extra["call_function"] = call_function
    try:
        return for_each_map_elem(ctx, r1, r2, r3, r4, r5)
    finally:
        ctx.extra.pop("call_function", None)


def callback_helpers() -> HelperRegistry:
    """The runtime's helpers plus ``bpf_loop`` and a ``for_each_map_elem`` with callbacks."""
    registry = default_helpers()
    registry.register("loop", loop)
    registry.register("for_each_map_elem", for_each)
    return registry
