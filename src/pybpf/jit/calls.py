"""Calls: helper calls from JIT code back into Python, through one ctypes callback per program.

Compiled code calls the address in its module's ``pybpf_dispatch`` global
(:data:`DISPATCH_GLOBAL`, filled when the code is loaded) as
``u64 dispatch(ctx, helper_id, pc, depth, r1, r2, r3, r4, r5)`` for every helper ``call``
and ``callx`` (and for the ``bpf_tail_call`` the native path of :mod:`pybpf.jit.tailcalls`
leaves to Python). :class:`HelperDispatcher` finds the run by its context block address
among every run of the process (:data:`pybpf.jit.state.RUNS`: a program that another
program tail-called natively runs on its caller's context block), makes
the live stack frames visible to the helper, and applies the runtime's error contract
(:mod:`pybpf.runtime.registry`) exactly as the interpreter does.

An exception must never escape a ctypes callback (ctypes would print it and return 0, so
it would be lost). Every exception, ``KeyboardInterrupt`` included, is caught here, kept on
the run state, and reported to the compiled code as ``Status.HELPER``; the code unwinds at
once and :class:`~pybpf.jit.program.JitProgram` raises the kept exception.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pybpf.errors import HelperError
from pybpf.isa import Instruction
from pybpf.isa.opcodes import MAX_TAIL_CALLS
from pybpf.jit.layout import DISPATCH_GLOBAL, TAIL_CALL, Slot, Status
from pybpf.jit.state import RUNS, RunState
from pybpf.jit.tailcalls import remember
from pybpf.maps import Map, ProgArray, by_handle
from pybpf.runtime import HelperRegistry, expose_maps, helper_failure

__all__ = ["HelperDispatcher", "DISPATCH_TYPE", "DISPATCH_GLOBAL", "TailCallTargets"]

TailCallTargets = Callable[[int], Any]  # program id -> an object with tail_run (or None)
_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1
_ENOENT = -errno.ENOENT & _M64
_U64 = ctypes.c_uint64
DISPATCH_TYPE = ctypes.CFUNCTYPE(_U64, ctypes.c_void_p, *([_U64] * 8))


class HelperDispatcher:
    """The ctypes callback compiled code calls for helpers; ``address`` is its entry point.

    ``runs`` maps a context block address to its :class:`RunState` (default: every
    state of the process, :data:`~pybpf.jit.state.RUNS`); ``table`` is the program's slot
    table, used to report a missing ``call``'s helper id as the signed immediate.
    ``expose``: maps whose calls run natively (:mod:`pybpf.jit.mapcalls`); their regions
    join the run's address space before any helper runs, as the Python lookup would
    have added them, so helpers may read values the native code found.
    ``tail_call_targets``: makes ``bpf_tail_call`` run programs (see the module docstring).
    """

    def __init__(
        self,
        registry: HelperRegistry,
        runs: Mapping[int, RunState] = RUNS,
        table: Sequence[Instruction | None] = (),
        *,
        expose: Sequence[Map] = (),
        tail_call_targets: TailCallTargets | None = None,
    ) -> None:
        self.registry = registry
        self.tail_call_targets = tail_call_targets
        self.runs = runs
        self.table = table
        self.expose = tuple(expose)
        self._callback = DISPATCH_TYPE(self._dispatch)  # kept alive as long as the program
        self.address: int = ctypes.cast(self._callback, ctypes.c_void_p).value or 0

    def _dispatch(self, ctx_address, helper_id, pc, depth, r1, r2, r3, r4, r5):  # noqa: PLR0913
        state = self.runs.get(ctx_address)
        if state is None:  # cannot happen while the program runs; never raise into C
            return 0
        try:
            state.show_frames(depth)
            if self.expose:  # maps native code used: their values are program memory
                expose_maps(state.space, [m for m in self.expose if not m.closed])
            ctx = state.ctx
            ctx.pc = pc
            ctx.helper_id = helper_id
            if helper_id == TAIL_CALL and self.tail_call_targets is not None:
                site = self.table[pc] if pc < len(self.table) else None
                if site is not None and site.is_call:  # ``callx`` goes to the registry
                    return self._tail_call(state, pc, r1, r2, r3)
            fn = self.registry.get(helper_id)
            if fn is None:
                insn = self.table[pc] if pc < len(self.table) else None
                if insn is not None and insn.is_call:  # report the signed immediate
                    helper_id = insn.imm
                raise HelperError(
                    f"no implementation for helper {helper_id}", helper_id=helper_id, pc=pc
                )
            try:
                result = fn(ctx, r1, r2, r3, r4, r5)
                value = 0 if result is None else result & _M64
            except Exception as exc:
                raise helper_failure(exc, helper_id, pc)  # noqa: B904 - the cause is kept
            if state.debug:
                state.load_regions()  # the helper may have added or removed regions
            return value
        except BaseException as exc:  # noqa: BLE001 - kept and re-raised by the program
            state.error = exc
            state.block[Slot.STATUS] = Status.HELPER
            return 0

    def _tail_call(self, state: RunState, pc: int, ctx: int, handle: int, index: int) -> int:
        """``bpf_tail_call(ctx, prog_array, index)``: the target's r0 (``Slot.TAILED``
        set) or -ENOENT (fall through)."""
        array = by_handle(handle)
        if not isinstance(array, ProgArray) or array.closed:
            raise HelperError(
                f"bpf_tail_call: {handle:#x} is not a live prog array",
                helper_id=TAIL_CALL,
                pc=pc,
            )
        index &= _M32
        if index >= array.max_entries or state.tail_calls >= MAX_TAIL_CALLS:
            return _ENOENT
        state.tail_calls += 1
        prog_id = array.program_id(index)
        assert self.tail_call_targets is not None
        target = self.tail_call_targets(prog_id) if prog_id else None
        if target is None:
            return _ENOENT
        native = getattr(target, "native_tail_entry", None)
        entry = native() if native is not None else None
        if entry is not None:  # next time, this slot runs it natively
            remember(array, index, prog_id, *entry)
        r0, state.tail_calls = target.tail_run(state, ctx)
        if state.debug:
            state.load_regions()  # the target may have exposed maps
        state.block[Slot.TAILED] = 1
        return r0 & _M64
