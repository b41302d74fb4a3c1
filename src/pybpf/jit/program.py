"""Program: a JIT-compiled eBPF program, run like the interpreter (same arguments, same results).

:class:`JitProgram` checks a program (:mod:`pybpf.jit.blocks`), lowers it to LLVM IR
(:mod:`pybpf.jit.lower`), compiles it (:mod:`pybpf.jit.compile`) and runs it any number of
times with :meth:`JitProgram.run`, whose signature and results are those of
:meth:`pybpf.vm.Interpreter.run`: r0 as an unsigned 64-bit integer, or the same
:mod:`pybpf.errors` exception for the same fault. Runs take pooled run states
(:mod:`pybpf.jit.state`, one per concurrent run): a state whose last run had the same
setup runs again without being rewritten, and :meth:`JitProgram.bind` fixes ``run``'s
arguments for the cheapest repeated call (kept test runs use it).

Memory: without ``debug_checks`` the code loads and stores through raw pointers, as the
kernel's JIT does: only programs a verifier accepted may run that way. With
``debug_checks=True`` every access is checked against the run's live regions and stack
frames (raising :class:`~pybpf.errors.MemoryAccessError` like the interpreter) and runs
are bounded by the instruction budget, so unverified code runs safely.

:func:`execute` is the bpf_conformance convention in one call (debug checks on).
"""

from __future__ import annotations

import ctypes
import os
import time
import weakref
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence

from pybpf.config import settings
from pybpf.errors import InputError, InternalError, NotSupportedError
from pybpf.isa import Instruction
from pybpf.jit.batch import BatchPlan, BatchResult, PacketArg, PacketBatch
from pybpf.jit.batchloop import BATCH
from pybpf.jit.blocks import ControlFlow, analyse
from pybpf.jit.cache import CodeCache
from pybpf.jit.calls import HelperDispatcher, TailCallTargets
from pybpf.jit.compile import (
    NativeCode,
    compile_object,
    load_object,
    runtime_address,
    unavailable_reason,
)
from pybpf.jit.dump import dump_jited
from pybpf.jit.inlinehelpers import CLOCK_GLOBAL, clock_gettime_address, inline_helper_ids
from pybpf.jit.layout import DISPATCH_GLOBAL, BatchField, Slot
from pybpf.jit.lower import (
    ACCESS_OK,
    ENTRY,
    LDDW_TABLE,
    REPEAT,
    frame_bytes,
    lddw_slots,
    lower_program,
)
from pybpf.jit.mapcalls import SITE_TABLE, find_sites
from pybpf.jit.ringcalls import RING_TABLE, plan_ring_calls
from pybpf.jit.state import RunState
from pybpf.jit.tailcalls import TAIL_ENTRY, forget, tail_key
from pybpf.memory import AddressSpace, Region
from pybpf.runtime import HelperFn, HelperRegistry, TraceSink, expose_maps, helper_registry

__all__ = ["JitProgram", "execute", "available", "CONFORMANCE_ENTRY_REGISTERS"]

CONFORMANCE_ENTRY_REGISTERS = (1, 2, 10)
LddwResolver = Callable[[Instruction, int], int]

_U64 = ctypes.c_uint64
# One argument each: ctypes converts every argument on every call, so r1..r5 travel in the
# context block instead. CFUNCTYPE releases the GIL while native code runs.
_ENTRY_TYPE = ctypes.CFUNCTYPE(_U64, ctypes.c_void_p)
_REPEAT_TYPE = ctypes.CFUNCTYPE(_U64, ctypes.c_void_p, _U64)
_BATCH_TYPE = ctypes.CFUNCTYPE(_U64, ctypes.c_void_p, ctypes.c_void_p)
_M64 = (1 << 64) - 1
_NO_BUDGET = (1 << 63) - 1


_FORKS = [0]  # bumped in forked children: lock tokens in site tables change with the pid


def _forked() -> None:
    _FORKS[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _code_cache(cache: CodeCache | str | os.PathLike | bool) -> CodeCache | None:
    if cache is False or cache is None:
        return None
    if cache is True:
        return CodeCache()
    if isinstance(cache, CodeCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return CodeCache(cache)
    raise InputError(f"cache must be a CodeCache, a directory or a bool, not {cache!r}")


def available() -> bool:
    """True when the JIT can compile here (llvmlite is installed)."""
    return unavailable_reason() is None


class JitProgram:
    """A checked, compiled program, ready to run (see the module docstring).

    - ``helpers``: a :class:`~pybpf.runtime.HelperRegistry` (or a mapping id/name -> fn);
      default: :func:`pybpf.runtime.default_helpers`;
    - ``entry_registers``: registers defined at entry (r10 always is); every other
      register starts at 0;
    - ``debug_checks``: compile memory checks and the instruction budget in (for
      unverified programs);
    - ``budget``: instructions one run may execute under ``debug_checks`` (default from
      settings; without debug checks runs are not bounded, as verified programs end).
      Each basic block is charged on entry: a run that runs out stops with the
      interpreter's error and pc, but the instructions of that last block before the pc
      (which the interpreter would still run) do not run;
    - ``lddw_resolver``: ``fn(insn, pc) -> u64`` for ``lddw`` with a pseudo source, called
      once per instruction at compile time;
    - ``legacy_packet``: accept ``LD_ABS``/``LD_IND`` (runs then need ``packet=``);
    - ``trace``: where ``bpf_trace_printk`` output goes;
    - ``opt_level``: LLVM speed level, 0-3 (default 2);
    - ``cache``: an on-disk code cache (:class:`~pybpf.jit.cache.CodeCache`, or its
      directory, or ``True`` for ``jit-cache`` in the state directory): a program
      compiled before with the same options on this host skips LLVM (``cache_hit``);
    - ``inline_maps``: lower ``map_lookup_elem``/``update``/``delete`` on array and hash
      maps the program loads with ``lddw`` to native code (:mod:`pybpf.jit.mapcalls`;
      under ``debug_checks`` the key and value pointers are checked first and the maps
      join the run's address space); ``map_sites`` lists them. Without debug checks it also
      lowers the ring buffer helpers to native producers (:mod:`pybpf.jit.ringcalls`);
    - ``tail_call_targets``: ``fn(program_id) -> target | None``, the programs a prog
      array's ids name (as the interpreter's): with it ``bpf_tail_call`` runs them
      (:mod:`pybpf.jit.calls`); a :class:`JitProgram` is such a target itself
      (:meth:`tail_run`). ``bpf_tail_call`` on a prog array the program loads with
      ``lddw`` runs JIT targets of the same ``tail_group`` and check mode natively
      once the Python path has run them there (:mod:`pybpf.jit.tailcalls`: a target
      says so with ``native_tail_entry() -> (entry, key)``); every other target runs
      through Python;
    - ``tail_group``: programs that may tail-call each other natively share it (the
      loader gives each loaded object its own: they reach the same maps);
    - ``tail_target``: also compile the native tail entry, so that callers of the same
      ``tail_group`` run this program natively when they tail-call it (the loader asks
      for it in objects that have a prog array). Without it the program is still a
      tail-call target, through Python, and compiles faster (the entry would be a second
      copy of the program's body: about 2 ms of a 100-instruction program's 20);
    - ``loop_budget``: without ``debug_checks``, still charge ``budget`` at loop heads
      (for verified programs whose loops no one proved bounded: a runaway loop stops
      with the budget error instead of running forever);
    - ``stack_depth``: for a verified program, the verifier's bound on the stack bytes
      below r10 its accesses reach: frames are zeroed only that far on entry (ignored
      under ``debug_checks``).

    Load errors are those of :func:`pybpf.runtime.loadcheck.check_program`, the load
    rules every engine shares (the interpreter's, for the same programs);
    :class:`~pybpf.errors.NotSupportedError` (``feature="jit"``) when llvmlite is missing.
    ``compile_seconds`` is the time from instructions to native code (checks, lowering,
    LLVM, or the cache), ``llvm_seconds`` LLVM's share (loading, on a cache hit);
    :meth:`assembly` shows the native code. Close with :meth:`close` (or use as a context
    manager) to free the machine code.
    """

    def __init__(
        self,
        insns: Sequence[Instruction],
        *,
        helpers: HelperRegistry | Mapping[int | str, HelperFn] | None = None,
        entry_registers: Sequence[int] = (1, 10),
        debug_checks: bool = False,
        budget: int | None = None,
        lddw_resolver: LddwResolver | None = None,
        legacy_packet: bool = False,
        trace: TraceSink | None = None,
        opt_level: int = 2,
        cache: CodeCache | str | os.PathLike | bool = False,
        inline_maps: bool = True,
        tail_call_targets: TailCallTargets | None = None,
        stack_depth: int | None = None,
        tail_group: int = 0,
        loop_budget: bool = False,
        tail_target: bool = False,
    ) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise NotSupportedError(f"the JIT is not available: {reason}", feature="jit")
        self.insns: tuple[Instruction, ...] = tuple(insns)
        self.helpers = helper_registry(helpers)
        self.entry_registers = tuple(entry_registers)
        self.debug_checks = bool(debug_checks)
        self.loop_budget = bool(loop_budget) and not self.debug_checks
        self.budget = settings().insn_budget if budget is None else int(budget)
        if self.budget <= 0:
            raise InputError(f"instruction budget must be positive, not {budget}")
        self.trace = trace
        self.tail_target = bool(tail_target)
        self.stack_depth = None if self.debug_checks or stack_depth is None else int(stack_depth)
        started = time.perf_counter()
        self.cfg: ControlFlow = analyse(
            self.insns,
            entry_registers=self.entry_registers,
            allow_pseudo_lddw=lddw_resolver is not None,
            allow_legacy_packet=legacy_packet,
        )
        lddw_values = self._resolve(lddw_resolver)
        self._options = {  # what with_checks() needs to build this program again
            "legacy_packet": legacy_packet,
            "opt_level": opt_level,
            "tail_call_targets": tail_call_targets,
            "tail_group": tail_group,
            "lddw": lddw_values if lddw_resolver is not None else None,
        }
        self.tail_key = tail_key(tail_group, self.debug_checks)
        self.map_sites = find_sites(
            self.cfg.table,
            lddw_values,
            maps=inline_maps,
            tail_calls=tail_call_targets is not None,
        )
        for site in self.map_sites.values():
            site.tail_key = self.tail_key
        # ring buffer helpers as native producers (pybpf.jit.ringcalls; unchecked code only)
        self._rings = plan_ring_calls(
            self.cfg.table, lddw_values, self.helpers, debug_checks=self.debug_checks
        ) if inline_maps else None  # fmt: skip
        ring_maps = self._rings.maps if self._rings else ()
        self._site_maps = tuple(site.map for site in self.map_sites.values()) + ring_maps
        # checked code reaches the values native map calls find: their maps join the run
        self._exposed = tuple(s.map for s in self.map_sites.values() if s.kind != "progarray")
        self.inline_helpers = inline_helper_ids(self.helpers)
        self._site_table = None
        self._forks = _FORKS[0]
        self.cache = _code_cache(cache)
        self.cache_hit = False
        self._code: NativeCode | None = self._compile(opt_level)
        self._fill_lddw_table(lddw_values)
        self._fill_site_table()
        self.compile_seconds = time.perf_counter() - started
        self.llvm_seconds = self._code.compile_seconds
        self._entry_address = self._code.address(ENTRY)
        self._entry = _ENTRY_TYPE(self._entry_address)
        self._repeat = _REPEAT_TYPE(self._code.address(REPEAT))
        self._batch: Callable | None = None  # the shared batch loop, on first use
        self._access = runtime_address(ACCESS_OK) if self.debug_checks else 0
        self._states: dict[int, RunState] = {}  # every state, by context block address
        self._dispatcher = HelperDispatcher(
            self.helpers,
            table=self.cfg.table,
            expose=[s.map for s in self.map_sites.values() if s.kind != "progarray"]
            + list(ring_maps),
            tail_call_targets=tail_call_targets,
        )
        dispatch = self._code.global_address(DISPATCH_GLOBAL)
        if dispatch:
            _U64.from_address(dispatch).value = self._dispatcher.address
        clock = self._code.global_address(CLOCK_GLOBAL) if self.inline_helpers else 0
        if clock:
            _U64.from_address(clock).value = clock_gettime_address()
        self.tail_entry = self._code.address(TAIL_ENTRY) if self.tail_target else 0
        # closed or collected: no prog array's native entry may name the code any more
        self._forget = weakref.finalize(self, forget, self.tail_entry) if self.tail_entry else None
        self._pool: list[RunState] = [self._new_state()]

    def _compile(self, opt_level: int) -> NativeCode:
        """The native code: from the cache when it has this program, else from LLVM."""
        cache, key = self.cache, None
        if cache is not None:
            shapes = [site.shape() for site in self.map_sites.values()]
            extra: dict[str, object] = {"maps": shapes} if shapes else {}
            if self.stack_depth is not None:
                extra["stack_depth"] = frame_bytes(self.stack_depth)
            if self.inline_helpers:
                extra["inline_helpers"] = sorted(self.inline_helpers)
            if self.loop_budget:
                extra["loop_budget"] = True
            if self.tail_target:
                extra["tail_target"] = True
            if self._rings:
                extra["rings"] = self._rings.shape()
            key = cache.key(
                self.insns,
                debug_checks=self.debug_checks,
                opt_level=opt_level,
                extra=extra or None,
            )
            compiled = cache.load(key)
            if compiled is not None:
                try:
                    code = load_object(compiled)
                except InternalError:  # a valid entry LLVM cannot load: recompile
                    cache.reject(key)
                else:
                    self.cache_hit = True
                    return code
        module = lower_program(
            self.cfg,
            debug_checks=self.debug_checks,
            map_sites=self.map_sites,
            stack_depth=self.stack_depth,
            inline_helpers=self.inline_helpers,
            loop_budget=self.loop_budget,
            tail_entry=self.tail_target,
            rings=self._rings,
        )
        start = time.perf_counter()
        compiled = compile_object(module, opt_level=opt_level)
        code = load_object(compiled)
        code.compile_seconds = time.perf_counter() - start
        if cache is not None and key is not None:
            cache.store(key, compiled)
        return code

    def _fill_lddw_table(self, values: dict[int, int]) -> None:
        """Write the resolved ``lddw`` values where the code reads them."""
        assert self._code is not None
        slots = lddw_slots(self.cfg)
        if not slots:
            return
        table = (_U64 * len(slots)).from_address(self._code.global_address(LDDW_TABLE))
        for pc, index in slots.items():
            table[index] = values[pc]

    def _fill_site_table(self) -> None:
        """Write what native map calls need (again after a fork or when a map closed)."""
        if self._rings:  # and what native ring buffer calls need
            assert self._code is not None
            self._rings.fill(self._code.global_address(RING_TABLE))
            self._forks = _FORKS[0]
        if not self.map_sites:
            return
        assert self._code is not None
        rows = [value for site in self.map_sites.values() for value in site.row()]
        if self._site_table is None:
            address = self._code.global_address(SITE_TABLE)
            self._site_table = (_U64 * len(rows)).from_address(address)
        self._site_table[:] = rows
        self._forks = _FORKS[0]

    def _check_sites(self) -> None:
        """Before a run: refresh the site table when the process forked or a map closed."""
        if self._forks != _FORKS[0]:
            self._fill_site_table()
            return
        for m in self._site_maps:
            if m.closed:
                self._fill_site_table()
                return

    def _resolve(self, resolver: LddwResolver | None) -> dict[int, int]:
        values: dict[int, int] = {}
        if resolver is None:
            return values
        pc = 0
        for insn in self.insns:
            if insn.is_lddw and insn.src != 0:
                value = resolver(insn, pc)
                if not isinstance(value, int):
                    raise InputError(f"lddw resolver returned {value!r}, not an integer", pc=pc)
                values[pc] = value & _M64
            pc += insn.slots
        return values

    # ---- running ----------------------------------------------------------------------------
    def run(
        self,
        args: Sequence[int] = (),
        *,
        memory: AddressSpace | None = None,
        packet: Region | bytes | None = None,
        cpu: int = 0,
    ) -> int:
        """Run once; returns r0 as an unsigned 64-bit integer.

        ``args`` go to r1..r5 (masked to u64). ``memory`` is the address space the program
        may touch besides its stack (checked only under ``debug_checks``). ``packet`` is the
        packet for legacy ``LD_ABS``/``LD_IND`` loads. Execution errors are the
        interpreter's: :class:`~pybpf.errors.MemoryAccessError` (debug checks),
        :class:`~pybpf.errors.BudgetExceededError` (debug checks),
        :class:`~pybpf.errors.CallDepthError`, :class:`~pybpf.errors.HelperError` or what a
        helper raised (all with ``pc``).
        """
        # The common case first: a state whose last run had this very setup (same address
        # space, packet, trace, args and cpu; no debug checks), so nothing needs writing.
        pool = self._pool
        try:
            state = pool.pop()
        except IndexError:  # closed, or every state is in a run (other threads)
            return self._call(args, memory, packet, cpu, 0)[0]
        last = state._last
        if (
            last is None
            or last[0] is not memory
            or last[1] is not packet
            or last[3] != args
            or last[4] != cpu
            or last[2] is not (self.trace if self.trace is not None else state._default_trace)
            or last[5] != (self.budget if self.loop_budget else _NO_BUDGET)
            or last[6]
        ):
            pool.append(state)
            return self._call(args, memory, packet, cpu, 0)[0]
        ctx = state.ctx
        if packet is not None:
            ctx.packet = packet  # end() dropped it
        try:
            if self._site_maps:
                self._check_sites()
            r0 = self._entry(state.address)
            if state.words[0]:
                raise state.failure(self.budget, self.cfg.block_pcs)
        finally:
            if state.shown or state.error is not None:
                state.end()
            else:  # what end() does after a run that showed no frames
                ctx.packet = None
            pool.append(state)
        return r0

    def bind(
        self,
        args: Sequence[int] = (),
        *,
        memory: AddressSpace | None = None,
        packet: Region | None = None,
    ) -> Callable[[int], int]:
        """:meth:`run` with its arguments fixed: ``fn(cpu=0) -> r0`` runs as
        ``run(args, memory=memory, packet=packet, cpu=cpu)`` does (same results, same
        errors), for less per call when the same setup runs again and again (a kept test
        run): a pooled state whose last run had this setup runs without being rewritten.
        """
        args = tuple(args)
        pool, entry, run, prog, no_budget = self._pool, self._entry, self.run, self, _NO_BUDGET
        if self._site_maps:  # the site table may need refreshing first: run() checks it

            def checked(cpu: int = 0) -> int:
                return run(args, memory=memory, packet=packet, cpu=cpu)

            return checked

        def bound(cpu: int = 0) -> int:
            try:
                state = pool.pop()
            except IndexError:  # closed, or every state is in a run (other threads)
                return run(args, memory=memory, packet=packet, cpu=cpu)
            last = state._last
            if (
                last is None
                or last[0] is not memory
                or last[3] is not args
                or last[4] != cpu
                or last[1] is not packet
                or last[6]
                or last[5] != (prog.budget if prog.loop_budget else no_budget)
                or last[2] is not (prog.trace if prog.trace is not None else state._default_trace)
            ):
                pool.append(state)
                return run(args, memory=memory, packet=packet, cpu=cpu)
            ctx = state.ctx
            if packet is not None:
                ctx.packet = packet  # end() dropped it
            try:
                r0 = entry(state.address)
                if state.words[0]:
                    raise state.failure(prog.budget, prog.cfg.block_pcs)
            finally:
                if state.shown or state.error is not None:
                    state.end()
                else:  # what end() does after a run that showed no frames
                    ctx.packet = None
                pool.append(state)
            return r0

        return bound

    def with_checks(self) -> JitProgram:
        """The same program compiled with debug checks: the same instructions, helpers,
        ``lddw`` values, tail-call targets and options (to compare a verified program's
        unchecked code with checked code, or to run it under checks)."""
        options = self._options
        values = options["lddw"]
        return JitProgram(
            self.insns,
            helpers=self.helpers,
            entry_registers=self.entry_registers,
            debug_checks=True,
            budget=self.budget,
            lddw_resolver=(lambda insn, pc: values[pc]) if values is not None else None,
            legacy_packet=options["legacy_packet"],
            trace=self.trace,
            opt_level=options["opt_level"],
            cache=self.cache if self.cache is not None else False,
            tail_call_targets=options["tail_call_targets"],
            tail_group=options["tail_group"],
            tail_target=self.tail_target,
        )

    def native_tail_entry(self) -> tuple[int, int] | None:
        """(native tail entry, key) for native tail calls to this program
        (:mod:`pybpf.jit.tailcalls`), or ``None`` once closed."""
        if self._code is None or not self.tail_entry:
            return None
        return self.tail_entry, self.tail_key

    def tail_run(self, caller, ctx: int) -> tuple[int, int]:
        """Run as the target of a tail call made on ``caller`` (a JIT run state or an
        interpreter machine): same address space, packet, cpu and trace, r1 = ``ctx``, the
        chain's count continued; returns ``(r0, the chain's tail call count)``."""
        c = caller.ctx
        packet, batch, window, wrapped = c.packet, getattr(caller, "batch", None), (0, 0), None
        if batch is not None:  # a batch run: the current packet only, as a single run's
            words = caller.words
            window = (words[Slot.BATCH_DATA], words[Slot.BATCH_END])
            packet = wrapped = Region.wrap(
                window[0],
                window[1] - window[0],
                kind="packet",
                name="packet",
                writable=batch.writable,
                owner=batch,
            )
        try:
            return self._call(
                (ctx,),
                caller.space,
                packet,
                c.cpu,
                0,
                trace=c.trace,
                tail_calls=caller.tail_calls,
                batch=batch,
                window=window,
            )
        finally:
            if wrapped is not None:
                wrapped.close()

    def run_repeat(
        self,
        args: Sequence[int] = (),
        *,
        memory: AddressSpace | None = None,
        packet: Region | bytes | None = None,
        cpu: int = 0,
        repeat: int = 1,
    ) -> tuple[int, float]:
        """Run ``repeat`` times in a native loop; returns (last r0, mean ns per run).

        BPF_PROG_TEST_RUN's ``repeat``: one Python-to-native transition for all runs, each
        run starting afresh (stack, may_goto and instruction budgets); memory is shared, so
        a program that writes it sees its own earlier writes. Stops at the first error,
        raised as :meth:`run` raises it.
        """
        if not isinstance(repeat, int) or repeat < 1:
            raise InputError(f"repeat must be a positive integer, not {repeat!r}")
        return self._call(args, memory, packet, cpu, repeat)

    def run_batch(
        self,
        packets: PacketBatch | Iterable[bytes | bytearray | memoryview],
        *,
        args: Sequence[object] = (PacketArg.DATA, PacketArg.LENGTH),
        context: bytes | bytearray | memoryview | None = None,
        context_fields: Mapping[int, object] | None = None,
        memory: AddressSpace | None = None,
        cpu: int = 0,
        plan: BatchPlan | None = None,
    ) -> BatchResult:
        """Run once per packet, all in one native loop (one Python-to-native transition).

        ``packets``: a list of byte strings (copied; ``data_out`` gives them back as the
        program left them) or a :class:`~pybpf.jit.batch.PacketBatch` (modified in place;
        ``data_out`` is ``None``). Each run starts afresh (stack, budgets) and gets r1..r5
        from ``args`` (see :class:`~pybpf.jit.batch.BatchPlan`; default r1 = the packet's
        address, r2 = its length), the packet as the legacy ``LD_ABS``/``LD_IND`` packet
        and, with ``context``, its own copy of that template with ``context_fields`` set
        from the packet. The packet buffer (and the context copy) join ``memory`` for the
        batch; debug checks let each run reach its own packet only, as separate runs would.
        ``plan``: a :class:`~pybpf.jit.batch.BatchPlan` built once for many batches (it
        replaces ``args``, ``context`` and ``context_fields``, and keeps its context copy
        mapped between them).

        Returns every packet's r0. Stops at the first failing run and raises what
        :meth:`run` raises, with ``packet_index`` set on the error (and ``retvals``: the
        r0 of the packets before it); earlier packets keep the changes their runs made.
        """
        own_plan = plan is None
        if own_plan:
            plan = BatchPlan(args, context, context_fields)
        owned = None
        try:
            if not isinstance(packets, PacketBatch):
                packets = owned = PacketBatch.from_packets(packets)
            return self._call_batch(plan, packets, memory, cpu, owned is not None)
        finally:
            if owned is not None:
                owned.close()
            if own_plan:
                plan.close()

    def _call_batch(
        self, plan: BatchPlan, batch: PacketBatch, memory, cpu: int, copy_out: bool
    ) -> BatchResult:
        if self._code is None:
            raise InputError("the JIT program is closed")
        if self._site_maps:
            self._check_sites()
        space = memory if memory is not None else AddressSpace()
        if self.debug_checks and self._exposed:  # as _call does
            expose_maps(space, [m for m in self._exposed if not m.closed])
        results = array("Q", bytes(8 * len(batch)))
        added = []
        ctx_region = None
        try:
            if batch.region not in space:
                added.append(space.add(batch.region))
            ctx_region = plan.context_region()  # kept by the plan between batches
            if ctx_region is not None and ctx_region not in space:
                added.append(space.add(ctx_region))
            desc = plan.descriptor(batch, results, ctx_region)
            desc[BatchField.ENTRY] = self._entry_address
            if self._batch is None:
                self._batch = _BATCH_TYPE(runtime_address(BATCH))
            try:
                state = self._pool.pop()
            except IndexError:
                state = self._new_state()
            try:
                state.begin(
                    space,
                    (),
                    packet=None,
                    cpu=cpu,
                    trace=self.trace,
                    budget=self.budget if self.debug_checks or self.loop_budget else _NO_BUDGET,
                    debug=self.debug_checks,
                    batch=batch.region,
                )
                start = time.perf_counter_ns()
                done = self._batch(state.address, ctypes.addressof(desc))
                elapsed = time.perf_counter_ns() - start
                if state.words[0]:
                    error = state.failure(self.budget, self.cfg.block_pcs)
                    error.packet_index = done
                    error.retvals = results[:done].tolist()  # the packets that ran before
                    raise error
            finally:
                state.end()
                self._pool.append(state)
            return BatchResult(
                results.tolist(),
                batch.packets() if copy_out else None,
                elapsed / len(batch) if len(batch) else 0.0,
            )
        finally:
            for region in added:
                space.remove(region)

    def _call(
        self,
        args,
        memory,
        packet,
        cpu,
        repeat: int,
        *,
        trace=None,
        tail_calls: int | None = None,
        batch: Region | None = None,
        window: tuple[int, int] = (0, 0),
    ) -> tuple:
        """One run (or ``repeat``): (r0, ns per run), or with ``tail_calls`` (a tail call's
        target) (r0, the chain's count)."""
        if self._code is None:
            raise InputError("the JIT program is closed")
        if self._site_maps:
            self._check_sites()
            if self.debug_checks and self._exposed:
                if memory is None:
                    memory = AddressSpace()
                expose_maps(memory, [m for m in self._exposed if not m.closed])
        try:
            state = self._pool.pop()
        except IndexError:
            state = self._new_state()
        owned_packet = None
        if packet is not None and not isinstance(packet, Region):
            owned_packet = packet = Region.from_bytes(packet, kind="packet", writable=False)
        try:
            state.begin(
                memory if memory is not None else AddressSpace(),
                args if type(args) is tuple else tuple(args),
                packet=packet,
                cpu=cpu,
                trace=self.trace if trace is None else trace,
                budget=self.budget if self.debug_checks or self.loop_budget else _NO_BUDGET,
                debug=self.debug_checks,
                tail_calls=tail_calls or 0,
                batch=batch,
                window=window,
            )
            if repeat:
                start = time.perf_counter_ns()
                r0 = self._repeat(state.address, repeat)
                elapsed = (time.perf_counter_ns() - start) / repeat
            else:
                r0, elapsed = self._entry(state.address), 0.0
            if state.words[0]:
                raise state.failure(self.budget, self.cfg.block_pcs)
            if tail_calls is not None:
                return r0, state.tail_calls
            return r0, elapsed
        finally:
            state.end()
            self._pool.append(state)
            if owned_packet is not None:
                owned_packet.close()

    def _new_state(self) -> RunState:
        state = RunState(self._access)
        self._states[state.address] = state
        return state

    # ---- inspection and lifetime ------------------------------------------------------------
    def assembly(self) -> str:
        """The native assembly of the compiled program."""
        if self._code is None:
            raise InputError("the JIT program is closed")
        return self._code.assembly()

    def dump_jited(self, *, json: bool = False, harness: bool = False):
        """The native code as ``bpftool prog dump jited`` shows it: text, or with ``json``
        bpftool's ``-j`` records (:func:`pybpf.jit.dump.dump_jited`)."""
        return dump_jited(self.assembly(), json=json, harness=harness)

    def close(self) -> None:
        """Free the machine code and the pooled run states (idempotent)."""
        if self._code is None:
            return
        if len(self._pool) != len(self._states):
            raise InputError("cannot close a JIT program while it runs")
        if self._forget is not None:
            self._forget()  # before the code goes: no tail call may reach it after
        code, self._code = self._code, None
        code.close()
        for state in self._pool:
            state.close()
        self._pool.clear()
        self._states.clear()

    def __enter__(self) -> JitProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "debug checks" if self.debug_checks else "unchecked"
        state = "closed" if self._code is None else f"{self.compile_seconds * 1e3:.1f} ms compile"
        return f"<JitProgram {len(self.cfg.table)} slots, {mode}, {state}>"


def execute(
    insns: Sequence[Instruction],
    mem: bytes | None = None,
    *,
    helpers: HelperRegistry | Mapping[int | str, HelperFn] | None = None,
    budget: int | None = None,
    trace: TraceSink | None = None,
    debug_checks: bool = True,
    opt_level: int = 2,
) -> int:
    """Run a program the bpf_conformance way and return r0 (as :func:`pybpf.vm.execute`).

    ``mem`` is copied into a writable native region of kind ``"input"``; r1 = its address
    and r2 = its length. Without ``mem`` (``None`` or empty) r1 = r2 = 0. Debug checks are
    on by default: conformance programs are not verified.
    """
    with JitProgram(
        insns,
        helpers=helpers,
        budget=budget,
        entry_registers=CONFORMANCE_ENTRY_REGISTERS,
        trace=trace,
        debug_checks=debug_checks,
        opt_level=opt_level,
    ) as prog:
        if not mem:
            return prog.run((0, 0))
        with Region.from_bytes(mem, kind="input", name="mem") as region:
            return prog.run((region.address, region.size), memory=AddressSpace([region]))
