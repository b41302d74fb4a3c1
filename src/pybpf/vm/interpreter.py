"""Interpreter: runs eBPF instructions exactly (RFC 9669 + Linux), on checked native memory.

:class:`Interpreter` load-checks a program once (:mod:`pybpf.runtime.loadcheck`, the rules
every engine shares), pre-decodes it into per-pc closures (:mod:`pybpf.vm.threaded`) and
runs it any number of times with :meth:`Interpreter.run`. :func:`execute` is the
bpf_conformance convention in one call.

Runs are bounded by an instruction budget (default ``pybpf.config.settings().insn_budget``)
and raise :class:`~pybpf.errors.BudgetExceededError` when it runs out (each program of a
tail-call chain has its own budget). Each run gets its
own registers and stack frames; runs of one interpreter may overlap (threads, or a helper
re-entering the program), each on its own pre-decoded copy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import repeat

from pybpf.config import settings
from pybpf.errors import BudgetExceededError, InputError
from pybpf.isa import Instruction, slot_table
from pybpf.memory import AddressSpace, Region
from pybpf.runtime import HelperFn, HelperRegistry, TraceSink, helper_registry
from pybpf.runtime.loadcheck import check_program
from pybpf.vm.machine import Machine
from pybpf.vm.threaded import LddwResolver, ProgramExit, TailCallTargets, compile_program

__all__ = ["Interpreter", "execute", "CONFORMANCE_ENTRY_REGISTERS"]

CONFORMANCE_ENTRY_REGISTERS = (1, 2, 10)
_M64 = (1 << 64) - 1
_UNROLL = 8


class Interpreter:
    """A load-checked, pre-decoded program, ready to run.

    - ``helpers``: a :class:`~pybpf.runtime.HelperRegistry` (or a mapping id/name -> fn);
      default: :func:`pybpf.runtime.default_helpers`;
    - ``budget``: instructions one run may execute (default from settings);
    - ``entry_registers``: registers defined at entry (r10 always is);
    - ``lddw_resolver``: ``fn(insn, pc) -> u64`` giving the value of an ``lddw`` with a
      pseudo source (map fd, map value, ...); without it such programs are refused at load
      with :class:`~pybpf.errors.NotSupportedError`;
    - ``legacy_packet``: accept ``LD_ABS``/``LD_IND`` (runs then need ``packet=``);
    - ``trace``: where ``bpf_trace_printk`` output goes (default: the runtime trace pipe);
    - ``tail_call_targets``: ``fn(program_id) -> Interpreter | None``, the programs a prog
      array's ids name: with it ``bpf_tail_call`` works (see :mod:`pybpf.vm.threaded`),
      without it helper 12 is looked up in ``helpers`` like any other.

    Load errors: :class:`~pybpf.errors.InputError` (with ``pc``),
    :class:`~pybpf.errors.UninitializedRegisterError`, :class:`~pybpf.errors.DecodeError`,
    :class:`~pybpf.errors.NotSupportedError`.
    """

    def __init__(
        self,
        insns: Sequence[Instruction],
        *,
        helpers: HelperRegistry | Mapping[int | str, HelperFn] | None = None,
        budget: int | None = None,
        entry_registers: Sequence[int] = (1, 10),
        lddw_resolver: LddwResolver | None = None,
        legacy_packet: bool = False,
        trace: TraceSink | None = None,
        tail_call_targets: TailCallTargets | None = None,
    ) -> None:
        self.insns: tuple[Instruction, ...] = tuple(insns)
        self.table = slot_table(self.insns)
        self.helpers = helper_registry(helpers)
        self.budget = settings().insn_budget if budget is None else int(budget)
        if self.budget <= 0:
            raise InputError(f"instruction budget must be positive, not {budget}")
        self.entry_registers = tuple(entry_registers)
        self.trace = trace
        self._resolver = lddw_resolver
        self._tail_calls = tail_call_targets
        check_program(
            self.insns,
            self.table,
            entry_registers=self.entry_registers,
            allow_pseudo_lddw=lddw_resolver is not None,
            allow_legacy_packet=legacy_packet,
        )
        self._lddw_values: dict[int, int] = {}
        self._pool: list[tuple[Machine, list]] = [self._build()]

    # ---- compilation ------------------------------------------------------------------------
    def _lddw_value(self, insn: Instruction, pc: int) -> int:
        if insn.src == 0:
            return insn.imm64
        if pc not in self._lddw_values:
            assert self._resolver is not None  # the load check refused it otherwise
            value = self._resolver(insn, pc)
            if not isinstance(value, int):
                raise InputError(f"lddw resolver returned {value!r}, not an integer", pc=pc)
            self._lddw_values[pc] = value
        return self._lddw_values[pc]

    def _build(self) -> tuple[Machine, list]:
        machine = Machine()
        ops = compile_program(self.insns, machine, self.helpers, self._lddw_value, self._tail_calls)
        return machine, ops

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
        may touch besides its stack (a new empty one by default); its regions stay the
        caller's. ``packet`` is the packet for legacy ``LD_ABS``/``LD_IND`` loads.
        Execution errors: :class:`~pybpf.errors.MemoryAccessError`,
        :class:`~pybpf.errors.BudgetExceededError`, :class:`~pybpf.errors.CallDepthError`,
        :class:`~pybpf.errors.HelperError` (all with ``pc``).
        """
        args = tuple(args)
        if len(args) > 5:
            raise InputError(f"at most 5 arguments (r1-r5), got {len(args)}")
        if not all(isinstance(a, int) for a in args):
            raise InputError(f"arguments must be integers, got {args!r}")
        space = memory if memory is not None else AddressSpace()
        owned_packet = None
        if isinstance(packet, (bytes, bytearray, memoryview)):
            owned_packet = packet = Region.from_bytes(packet, kind="packet", writable=False)
        try:
            return self._run(space, args, packet, cpu, self.trace, 0)[0]
        finally:
            if owned_packet is not None:
                owned_packet.close()

    def _run(
        self,
        space: AddressSpace,
        args: tuple[int, ...],
        packet: Region | None,
        cpu: int,
        trace: TraceSink | None,
        tail_calls: int,
    ) -> tuple[int, int]:
        try:
            machine, ops = self._pool.pop()
        except IndexError:
            machine, ops = self._build()
        ctx = machine.ctx
        own_trace = ctx.trace
        try:
            ctx.packet = packet
            ctx.cpu = cpu
            if trace is not None:
                ctx.trace = trace
            try:
                machine.begin(space, args)
                machine.tail_calls = tail_calls
                _loop(ops, self.budget)
            finally:
                machine.end()
            return machine.R[0], machine.tail_calls
        finally:
            ctx.packet = None
            ctx.trace = own_trace
            self._pool.append((machine, ops))

    def tail_run(self, caller: Machine, ctx: int) -> tuple[int, int]:
        """Run as the target of a tail call made on ``caller``: same address space, packet,
        cpu and trace, r1 = ``ctx``; returns ``(r0, the chain's tail call count)``."""
        c = caller.ctx
        return self._run(caller.space, (ctx,), c.packet, c.cpu, c.trace, caller.tail_calls)

    def close(self) -> None:
        """Free the stack memory of every pooled run state."""
        for machine, _ in self._pool:
            machine.close()
        self._pool.clear()

    def __enter__(self) -> Interpreter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Interpreter {len(self.table)} slots, budget {self.budget}>"


def _loop(ops: list, budget: int) -> None:
    """Run closures from pc 0 until the outermost exit, or raise BudgetExceededError."""
    pc = 0
    chunks, rest = divmod(budget, _UNROLL)
    try:
        for _ in repeat(None, chunks):
            pc = ops[pc]()
            pc = ops[pc]()
            pc = ops[pc]()
            pc = ops[pc]()
            pc = ops[pc]()
            pc = ops[pc]()
            pc = ops[pc]()
            pc = ops[pc]()
        for _ in repeat(None, rest):
            pc = ops[pc]()
    except ProgramExit:
        return
    raise BudgetExceededError(f"instruction budget of {budget} exhausted", budget=budget, pc=pc)


def execute(
    insns: Sequence[Instruction],
    mem: bytes | None = None,
    *,
    helpers: HelperRegistry | Mapping[int | str, HelperFn] | None = None,
    budget: int | None = None,
    trace: Callable[[str], None] | None = None,
) -> int:
    """Run a program the bpf_conformance way and return r0.

    ``mem`` is copied into a writable native region of kind ``"input"``; r1 = its address
    and r2 = its length. Without ``mem`` (``None`` or empty) r1 = r2 = 0. r1, r2 and r10
    count as initialised.
    """
    vm = Interpreter(
        insns,
        helpers=helpers,
        budget=budget,
        entry_registers=CONFORMANCE_ENTRY_REGISTERS,
        trace=trace,
    )
    try:
        if not mem:
            return vm.run((0, 0))
        with Region.from_bytes(mem, kind="input", name="mem") as region:
            return vm.run((region.address, region.size), memory=AddressSpace([region]))
    finally:
        vm.close()
