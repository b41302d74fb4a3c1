"""Run state: one run's native context block, stack frames, region table and helper context.

A :class:`RunState` is what compiled code needs to run once: the context block of
:mod:`pybpf.jit.layout`, a stack block of :data:`~pybpf.isa.opcodes.MAX_CALL_DEPTH`
frames (native memory the JIT zeroes frame by frame on function entry), the region table
debug checks search, and the :class:`~pybpf.runtime.ExecutionContext` helpers receive.
States are pooled by their program and reused; one state serves one run at a time.

Helpers see program memory through ``ctx.memory`` as in the interpreter: before a helper
runs, :meth:`RunState.show_frames` puts the live frames (0..depth) into the run's address
space, and :meth:`RunState.end` takes them out again. After a failed run,
:meth:`RunState.failure` turns the status the code left into the :mod:`pybpf.errors`
exception the interpreter raises for the same fault.
"""

from __future__ import annotations

import ctypes
import weakref

from pybpf.errors import (
    BudgetExceededError,
    CallDepthError,
    InputError,
    InternalError,
    MemoryAccessError,
    NotSupportedError,
)
from pybpf.isa.opcodes import MAX_CALL_DEPTH, MAY_GOTO_LOOPS, STACK_SIZE
from pybpf.jit.layout import (
    FIELDS,
    NO_HEADER,
    PERM_READ,
    PERM_WRITE,
    REGION_FIELDS,
    STACK_BYTES,
    Slot,
    Status,
)
from pybpf.memory import AddressSpace, Region
from pybpf.runtime import ExecutionContext, TraceSink
from pybpf.runtime.packet import legacy_headers

__all__ = ["RunState", "RUNS"]

_Block = ctypes.c_uint64 * FIELDS
# Plain ints for the hot path (IntEnum attribute lookups cost more than the stores).
_STATUS = int(Slot.STATUS)
_PACKET, _PACKET_SIZE = int(Slot.PACKET), int(Slot.PACKET_SIZE)
_HAS_PACKET, _REGIONS, _NREGIONS = int(Slot.HAS_PACKET), int(Slot.REGIONS), int(Slot.NREGIONS)
_ARG1, _BUDGET_INIT, _MAY_GOTO_INIT = int(Slot.ARG1), int(Slot.BUDGET_INIT), int(Slot.MAY_GOTO_INIT)
_TAIL_COUNT, _TAIL_COUNT_INIT = int(Slot.TAIL_COUNT), int(Slot.TAIL_COUNT_INIT)
_HEAD, _MAC, _NET = int(Slot.PACKET_HEAD), int(Slot.PACKET_MAC), int(Slot.PACKET_NET)
_CPU, _BATCH_ROW = int(Slot.CPU), int(Slot.BATCH_ROW)
_BATCH_DATA, _BATCH_END = int(Slot.BATCH_DATA), int(Slot.BATCH_END)
_NO_HEADERS = (0, NO_HEADER & ((1 << 64) - 1), NO_HEADER & ((1 << 64) - 1))
_M64 = (1 << 64) - 1

# Every live state of the process by its context block's address: a helper called from a
# program that another program's code tail-called natively finds the run through its own
# dispatcher (pybpf.jit.calls), so the lookup cannot be per program.
# Weak: the program's pool owns its states.
RUNS: weakref.WeakValueDictionary[int, RunState] = weakref.WeakValueDictionary()


class RunState:
    """The native and Python state of one run (see the module docstring)."""

    def __init__(self, access_address: int) -> None:
        self.block = _Block()
        self.address = ctypes.addressof(self.block)
        RUNS[self.address] = self
        self.words = memoryview(self.block).cast("B").cast("Q")  # faster than the array
        self.stack = Region(STACK_BYTES, kind="stack", name="jit stack")
        self.frames = [
            Region.wrap(
                self.stack.address + depth * STACK_SIZE,
                STACK_SIZE,
                kind="stack",
                name=f"stack[{depth}]",
                owner=self.stack,
            )
            for depth in range(MAX_CALL_DEPTH)
        ]
        self._frame_ids = frozenset(id(f) for f in self.frames)  # live as long as self
        self.shown = 0  # frames 0..shown-1 are in the run's address space
        self.space = AddressSpace()
        self.ctx = ExecutionContext(self.space)
        self._default_trace = self.ctx.trace
        self.error: BaseException | None = None
        self._args: tuple = ()  # r1..r5 of the last run (the ARG slots start at 0)
        self._budget = -1
        self._last: tuple | None = None  # begin()'s arguments when nothing needs writing
        self._may_goto = -1
        self.debug = False
        self.batch: Region | None = None  # the packet buffer of a batch run
        self._table = (ctypes.c_uint64 * REGION_FIELDS)()
        self._table_key: tuple = ()
        self.block[Slot.STACK] = self.stack.address
        self.block[Slot.ACCESS] = access_address

    # ---- a run ---------------------------------------------------------------------------
    def begin(
        self,
        space: AddressSpace,
        args: tuple,
        *,
        packet: Region | None,
        cpu: int,
        trace: TraceSink | None,
        budget: int,
        debug: bool,
        batch: Region | None = None,
        tail_calls: int = 0,
        window: tuple[int, int] = (0, 0),
    ) -> None:
        """Prepare the context block and the helper context for a run in ``space``.

        Only what differs from this state's previous run is written (the entry function
        itself clears the status and restarts the budgets). ``batch`` is the packet buffer
        of a batch run (in ``space``): the batch loop then writes the arguments and the
        packet, and debug checks see only the current packet of it. ``tail_calls``: the
        chain's count so far (a tail call's target continues its caller's count);
        ``window``: with ``batch``, the current packet's (start, end) when the batch loop does
        not write it (a tail call's target in a batch run).
        """
        if trace is None:
            trace = self._default_trace
        last = self._last  # the last run's setup again? (objects by identity)
        if (
            last is not None
            and batch is None
            and not debug
            and last[0] is space
            and last[1] is packet
            and last[2] is trace
            and last[3] == args
            and last[4] == cpu
            and last[5] == budget
            and last[6] == tail_calls
        ):
            if packet is not None:
                self.ctx.packet = packet  # end() dropped it
            self.debug = False
            return
        self._last = None
        words = self.words
        if words[_TAIL_COUNT_INIT] != tail_calls:
            words[_TAIL_COUNT_INIT] = tail_calls
        old = self._args
        if args != old:
            if len(args) > 5:
                raise InputError(f"at most 5 arguments (r1-r5), got {len(args)}")
            i = _ARG1
            for value in args:
                if not isinstance(value, int):
                    self._args = None  # some slots were written: all of them next time
                    raise InputError(f"arguments must be integers, got {args!r}")
                words[i] = value & _M64
                i += 1
            end = _ARG1 + (5 if old is None else len(old))  # r(n+1).. were 0 unless set
            while i < end:
                words[i] = 0
                i += 1
            self._args = args
        if budget != self._budget:
            words[_BUDGET_INIT] = self._budget = budget
        if MAY_GOTO_LOOPS != self._may_goto:
            words[_MAY_GOTO_INIT] = self._may_goto = MAY_GOTO_LOOPS
        ctx = self.ctx
        if packet is not None:
            words[_PACKET] = packet.address
            words[_PACKET_SIZE] = packet.size
            words[_HAS_PACKET] = 1
            ctx.packet = packet
            headers = legacy_headers(packet.address)
            if headers is None:
                words[_HEAD], words[_MAC], words[_NET] = _NO_HEADERS
            else:
                head, mac, net = headers
                words[_HEAD] = head & _M64
                words[_MAC] = _NO_HEADERS[1] if mac is None else mac & _M64
                words[_NET] = _NO_HEADERS[2] if net is None else net & _M64
        else:
            if words[_HAS_PACKET]:
                words[_HAS_PACKET] = 0
            if words[_MAC] != _NO_HEADERS[1]:
                words[_HEAD], words[_MAC], words[_NET] = _NO_HEADERS
        if self.space is not space:
            self.space = ctx.memory = space
        if ctx.cpu != cpu:
            ctx.cpu = cpu
            words[_CPU] = cpu & _M64
        if ctx.trace is not trace:
            ctx.trace = trace
        self.debug = debug
        self.batch = batch
        if batch is not None:
            self._args = None  # the batch loop writes the ARG slots
            words[_BATCH_DATA], words[_BATCH_END] = window
            words[_BATCH_ROW] = int(debug)
        elif words[_BATCH_ROW]:
            words[_BATCH_ROW] = 0
        if debug:
            self.load_regions()
        elif batch is None:  # holding the objects keeps their identities unique
            self._last = (space, packet, trace, args, cpu, budget, tail_calls)

    @property
    def tail_calls(self) -> int:
        """The bpf_tail_call count of the running chain (``Slot.TAIL_COUNT``)."""
        return self.words[_TAIL_COUNT]

    @tail_calls.setter
    def tail_calls(self, value: int) -> None:
        self.words[_TAIL_COUNT] = value

    def end(self) -> None:
        """Take the frames out of the address space and drop the run's references."""
        if self.shown:
            for region in self.frames[: self.shown]:
                self.space.remove(region)
            self.shown = 0
        if self.ctx.packet is not None:
            self.ctx.packet = None
        self.error = None
        self.batch = None

    def show_frames(self, depth: int) -> None:
        """Make frames 0..depth (the live ones) reachable through ``ctx.memory``."""
        want = depth + 1
        while self.shown > want:
            self.shown -= 1
            self.space.remove(self.frames[self.shown])
        while self.shown < want:
            self.space.add(self.frames[self.shown])
            self.shown += 1

    def load_regions(self) -> None:
        """Refresh the debug checks' region table from the address space (frames excluded).

        In a batch run, row 0 is the current packet and the batch buffer has no row.
        """
        rows = []
        own = self._frame_ids
        batch = self.batch
        if batch is not None:
            perms = (PERM_READ if batch.readable else 0) | (PERM_WRITE if batch.writable else 0)
            rows.append((self.words[Slot.BATCH_DATA], self.words[Slot.BATCH_END], perms))
        for region in self.space:
            if region is batch or id(region) in own:
                continue
            perms = (PERM_READ if region.readable else 0) | (PERM_WRITE if region.writable else 0)
            rows.append((region.address, region.end, perms))
        key = tuple(rows)
        if key == self._table_key and self.words[_REGIONS]:
            return
        flat = [value for row in rows for value in row]
        if len(flat) > len(self._table):
            self._table = (ctypes.c_uint64 * len(flat))()
        self._table[: len(flat)] = flat
        self._table_key = key
        words = self.words
        words[_REGIONS] = ctypes.addressof(self._table)
        words[_NREGIONS] = len(rows)
        words[Slot.RCACHE_SIZE] = words[Slot.WCACHE_SIZE] = 0  # the cached rows may be gone

    # ---- errors --------------------------------------------------------------------------
    def failure(self, budget: int, block_pcs: dict[tuple[int, int], tuple[int, ...]]):
        """The exception for the status compiled code left (``Status.OK`` is a bug)."""
        words = self.words
        status = words[_STATUS]
        pc = words[Slot.ERR_PC]
        a, b, c = words[Slot.ERR_A], words[Slot.ERR_B], words[Slot.ERR_C]
        if status == Status.HELPER and self.error is not None:
            return self.error
        if status == Status.MEMORY:
            access = "write" if c else "read"
            try:  # the interpreter's wording when the address space can explain it
                self.space.resolve(a, b, access, pc)
            except MemoryAccessError as exc:
                return exc
            return MemoryAccessError(
                f"invalid {access} of {b} bytes at {a:#x}", address=a, size=b, access=access, pc=pc
            )
        if status == Status.CALL_DEPTH:
            return CallDepthError(f"call depth exceeds {MAX_CALL_DEPTH} frames", depth=a, pc=pc)
        if status == Status.BUDGET:
            pcs = block_pcs.get((b, pc))  # None: in a program this one tail-called natively
            return BudgetExceededError(
                f"instruction budget of {budget} exhausted",
                budget=budget,
                pc=pcs[a] if pcs is not None and a < len(pcs) else pc,
            )
        if status == Status.NO_PACKET:
            return NotSupportedError(
                "LD_ABS/LD_IND without a packet in the run", feature="ld_abs", pc=pc
            )
        return InternalError(f"JIT code stopped with unknown status {status}", pc=pc)

    def close(self) -> None:
        """Free the stack memory (and leave :data:`RUNS`)."""
        if RUNS.get(self.address) is self:
            del RUNS[self.address]
        for region in self.frames:
            region.close()
        self.stack.close()
