"""Program: one loaded program of an object on the portable backend: test_run, tag, id, tail calls.

A :class:`Program` is what ``obj.programs["name"]`` gives after ``Object.load()``: the
entry program linked with its subprograms (:attr:`Program.linked`), its map references
bound to the object's live maps, load-checked and compiled by its engine (the interpreter
or the JIT). :meth:`Program.test_run` is ``BPF_PROG_TEST_RUN``. Programs get process-wide
ids like the kernel's (:func:`by_id`); a prog array stores them
(``jt[0] = obj.programs["stage"]``) and the interpreter's ``bpf_tail_call`` finds its
target through :func:`tail_call_target`.

:func:`calc_tag` is Linux's ``bpf_prog_calc_tag``: the instructions as libbpf gives them
to the kernel (map references as ``BPF_PSEUDO_MAP_FD``/``MAP_VALUE``) with both halves of
map ``lddw`` immediates zeroed, hashed (SHA-256 from Linux 6.18, SHA-1 before; the
running kernel's choice on Linux, SHA-256 elsewhere), first 8 bytes in hex: the tag
``bpftool prog show`` prints for the same program.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import platform
import re
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pybpf.errors import InputError, NotSupportedError
from pybpf.isa import Instruction, Pseudo, encode
from pybpf.maps import Map
from pybpf.memory import AddressSpace, Region
from pybpf.objects.context import ReusedContext, SkbContext, XdpContext
from pybpf.objects.sock_context import (
    BindContext,
    ReusedSockContext,
    SockAddrContext,
    SockContext,
)
from pybpf.progtypes import AttachType, ProgType
from pybpf.progtypes.contexts import rules_for
from pybpf.runtime import expose_maps
from pybpf.spec import LinkedProgram, ProgramSpec
from pybpf.state.ids import allocate_id

__all__ = [
    "Program",
    "ProgramRunner",
    "TestRunResult",
    "by_id",
    "live_programs",
    "tail_call_target",
    "calc_tag",
]

_M32 = (1 << 32) - 1
_LOCK = threading.Lock()
_IDS = itertools.count(1)
_BY_ID: weakref.WeakValueDictionary[int, Program] = weakref.WeakValueDictionary()


@dataclass(frozen=True)
class TestRunResult:
    """What ``BPF_PROG_TEST_RUN`` reports: the return value (low 32 bits of r0), the mean
    duration of one run in nanoseconds, the data buffer after the run(s) and the context
    after the run(s) (``None`` when no context was given)."""

    __test__ = False  # not a pytest test class

    retval: int
    duration: int
    data_out: bytes
    ctx_out: bytes | None = None


_now = time.perf_counter_ns
_new = object.__new__


class ProgramRunner(Protocol):
    """What :attr:`Program.runner` is: the engine's compiled program (the interpreter's or
    the JIT's). The JIT's also has ``run_batch`` (:meth:`pybpf.jit.JitProgram.run_batch`)."""

    def run(
        self,
        args: Sequence[int] = (),
        *,
        memory: AddressSpace | None = None,
        packet: Region | bytes | None = None,
        cpu: int = 0,
    ) -> int:
        """Run once with ``args`` in r1..r5 on ``memory``; returns r0 as an unsigned 64-bit
        integer (``packet``: the packet legacy ``LD_ABS``/``LD_IND`` loads read)."""
        ...


# ---- tags ---------------------------------------------------------------------------------
def _kernel_uses_sha256() -> bool:
    if platform.system() != "Linux":
        return True
    found = re.match(r"(\d+)\.(\d+)", platform.release())
    return found is None or (int(found.group(1)), int(found.group(2))) >= (6, 18)


def calc_tag(insns: Sequence[Instruction], *, sha256: bool | None = None) -> str:
    """Linux's program tag of ``insns`` (16 hex digits; see the module docstring).

    ``MAP_IDX``/``MAP_IDX_VALUE`` references count as the ``MAP_FD``/``MAP_VALUE`` libbpf
    sends. ``sha256`` forces the algorithm (default: the running kernel's).
    """
    out: list[Instruction] = []
    for insn in insns:
        if insn.is_lddw and insn.src in (Pseudo.MAP_IDX, Pseudo.MAP_FD):
            insn = dataclasses.replace(insn, src=Pseudo.MAP_FD, imm=0, imm_hi=0)
        elif insn.is_lddw and insn.src in (Pseudo.MAP_IDX_VALUE, Pseudo.MAP_VALUE):
            insn = dataclasses.replace(insn, src=Pseudo.MAP_VALUE, imm=0, imm_hi=0)
        out.append(insn)
    use_256 = _kernel_uses_sha256() if sha256 is None else sha256
    digest = (hashlib.sha256 if use_256 else hashlib.sha1)(encode(out)).digest()
    return digest[:8].hex()


# ---- the registry -------------------------------------------------------------------------
def by_id(prog_id: int) -> Program | None:
    """The live program with id ``prog_id`` in this process, or ``None``."""
    prog = _BY_ID.get(prog_id)
    return None if prog is None or prog.closed else prog


def live_programs() -> list[Program]:
    """Every live program of this process, by id."""
    with _LOCK:
        ids = sorted(_BY_ID.keys())
    return [p for p in (_BY_ID.get(i) for i in ids) if p is not None and not p.closed]


class _TailTarget:
    """A program as a tail-call target: its maps joined to the caller's address space."""

    def __init__(self, program: Program, engine: Any) -> None:
        self.program = program
        self.engine = engine
        self._exposed: Any = None  # the last address space the maps were joined to

    def tail_run(self, caller: Any, ctx: int) -> tuple[int, int]:
        space = caller.space
        if space is not self._exposed:  # map regions are fixed and never leave a space
            expose_maps(space, self.program._reachable)
            self._exposed = space
        return self.engine.tail_run(caller, ctx)

    def native_tail_entry(self) -> tuple[int, int] | None:
        """The JIT's native tail entry and key (:mod:`pybpf.jit.tailcalls`; callers of the
        same object reach the same maps, so nothing needs exposing), or ``None``."""
        native = getattr(self.engine, "native_tail_entry", None)
        return native() if native is not None and not self.program.closed else None


class _KeptRegions:
    """A kept test-run context (:class:`~pybpf.objects.context.ReusedContext`,
    :class:`~pybpf.objects.sock_context.ReusedSockContext`) and the address space its
    regions and the program's maps are in (a socket program's kept run is just this)."""

    __slots__ = ("reused", "space", "args")

    def __init__(self, reused: ReusedContext | ReusedSockContext, reachable: Sequence[Map]) -> None:
        self.reused = reused
        self.space = AddressSpace()
        expose_maps(self.space, reachable)
        for region in reused.prepared.regions:
            self.space.add(region)
        self.args = (reused.prepared.ctx.address,)

    def close(self) -> None:
        """Free the regions."""
        for region in self.reused.prepared.regions:
            if self.space.find(region.address) is region:
                self.space.remove(region)
        self.reused.close()


class _Kept(_KeptRegions):
    """A kept ``xdp``/skb test-run context and what a run on it needs."""

    __slots__ = ("size", "ctx_in", "legacy", "reset", "data_out", "result_ctx", "runner", "run")

    def __init__(self, reused: ReusedContext, reachable: Sequence[Map], runner: Any) -> None:
        super().__init__(reused, reachable)
        self.size, self.ctx_in = reused.key  # what the kept regions fit
        self.legacy = reused.legacy
        self.reset = reused.reset
        self.data_out = reused.data_out
        self.result_ctx = reused.prepared.result_ctx
        # run(cpu) -> r0: one run on these regions (the JIT binds its fast path to them)
        self.runner = runner
        bind = getattr(runner, "bind", None)
        if bind is not None:
            self.run = bind(self.args, memory=self.space, packet=self.legacy)
        else:
            args, space, legacy, run = self.args, self.space, self.legacy, runner.run
            self.run = lambda cpu: run(args, memory=space, packet=legacy, cpu=cpu)


class _KeptMemory:
    """The regions of a test run whose context is plain memory (``data_in`` and ``ctx_in``
    copies, see :meth:`Program.test_run`), kept for the next run with inputs of the same
    lengths: :meth:`fill` copies the new inputs in, as fresh regions would hold them."""

    __slots__ = ("key", "space", "data", "ctx", "args", "packet")

    def __init__(self, program: Program, data_in: bytes, ctx_in: bytes | None) -> None:
        self.key = (len(data_in), None if ctx_in is None else len(ctx_in))
        self.space = AddressSpace()
        expose_maps(self.space, program._reachable)
        self.data = Region.from_bytes(data_in or b"\0", kind="packet", name="data_in")
        self.ctx: Region | None = None
        if data_in:
            self.space.add(self.data)
        if ctx_in is not None:
            rules = rules_for(program.type) if program.type is not None else None
            writable = rules is None or rules.context.writable
            self.ctx = Region.from_bytes(
                bytes(ctx_in) or b"\0", kind="context", name="ctx_in", writable=writable
            )
            self.space.add(self.ctx)
            self.args = (self.ctx.address, len(ctx_in))
        else:
            self.args = (self.data.address, len(data_in)) if data_in else (0, 0)
        self.packet = self.data if data_in else None

    def fill(self, data_in: bytes, ctx_in: bytes | None) -> None:
        """The new inputs (same lengths as the first) in the regions."""
        self.data.view[:] = data_in or b"\0"
        if self.ctx is not None:
            self.ctx.view[:] = bytes(ctx_in) or b"\0"  # type: ignore[arg-type]

    def close(self) -> None:
        """Free the regions."""
        for region in (self.data, self.ctx):
            if region is not None:
                if self.space.find(region.address) is region:
                    self.space.remove(region)
                region.close()


def tail_call_target(prog_id: int) -> _TailTarget | None:
    """What the interpreter's ``bpf_tail_call`` runs for program id ``prog_id``."""
    prog = by_id(prog_id)
    return None if prog is None else prog._tail_target()


# ---- programs -----------------------------------------------------------------------------
class Program:
    """A loaded program (see the module docstring).

    - ``name``, ``section``, ``type``, ``attach_type``, ``license``: from the spec;
    - ``spec``: the :class:`~pybpf.spec.ProgramSpec` it was loaded from; ``linked``: the
      :class:`~pybpf.spec.LinkedProgram` it runs (``linked.maps`` name the maps its
      ``MAP_IDX`` immediates index); ``maps``: those maps, live. Runs reach every map of
      the object (``reachable``: callbacks and tail-call targets may use others);
    - ``engine``: ``"interpreter"`` or ``"jit"``; ``id``: process-wide, like the kernel's;
    - ``run_cnt`` / ``run_time_ns``: runs made through :meth:`test_run` and their time;
    - ``verified``: the verifier accepted it at load (on the JIT it then runs without
      memory checks); :meth:`xlated` and :meth:`jited` are ``bpftool prog dump``'s data.
    """

    def __init__(
        self,
        spec: ProgramSpec,
        linked: LinkedProgram,
        engine: str,
        runner: Any,
        maps: Sequence[Map],
        *,
        reachable: Sequence[Map] = (),
        interpreter: Callable[[], Any],
        license: str = "",
        closers: Sequence[Any] = (),
        runtime_context: Any = None,
        source: LinkedProgram | None = None,
        verified: bool = False,
    ) -> None:
        self.spec = spec
        self.linked = linked
        self.name = spec.name
        self.section = spec.section
        self.type: ProgType | None = linked.type
        self.attach_type: AttachType | None = linked.attach_type
        self.license = license
        self.engine = engine
        self.maps = list(maps)
        self._reachable = list(reachable) or self.maps
        self.run_cnt = 0
        self.run_time_ns = 0
        self.closed = False
        self._runner = runner
        self._make_interpreter = interpreter
        self._interpreter = runner if engine == "interpreter" else None
        self._closers = list(closers)
        self._tag: str | None = None
        self._runtime_context = runtime_context
        self._source = source or linked
        self.verified = bool(verified)
        # xdp and skb test runs keep their regions for the next run (ReusedContext)
        self._reusable = ReusedContext.reusable(runtime_context)
        self._reused: list[_Kept] = []
        self._kept_memory: list[_KeptMemory] = []  # plain-memory contexts' regions, likewise
        # socket programs' test runs (the socket hooks' runs) likewise (ReusedSockContext)
        self._sock_reusable = ReusedSockContext.reusable(runtime_context)
        self._kept_sock: list[_KeptRegions] = []
        self._tail: _TailTarget | None = None  # this program as a tail call's target
        self.id = allocate_id("prog")  # unique in the state directory, like Linux's ids
        with _LOCK:
            _BY_ID[self.id] = self

    # ---- facts ---------------------------------------------------------------------------
    @property
    def instructions(self) -> tuple[Instruction, ...]:
        """The instructions the engine runs (entry then subprograms; maps by index)."""
        return self.linked.instructions

    @property
    def tag(self) -> str:
        """Linux's tag of the program (:func:`calc_tag`), as bpftool prints it."""
        if self._tag is None:
            self._tag = calc_tag(self._source.instructions)
        return self._tag

    def xlated(self) -> tuple[Instruction, ...]:
        """The instructions after the load's rewrites (``bpftool prog dump xlated``): the
        linked program (entry then subprograms, maps by index) with context accesses
        rewritten to the runtime's layout where they were."""
        return self.linked.instructions

    def jited(self, *, json: bool = False, harness: bool = False) -> Any:
        """The native code (``bpftool prog dump jited``): text, or with ``json`` bpftool's
        ``-j`` records (:func:`pybpf.jit.dump_jited`; ``harness`` adds the native repeat
        loop). Programs on the interpreter have none:
        :class:`~pybpf.errors.NotSupportedError` (``feature="jited"``), as bpftool reports
        no JITed instructions without a JIT."""
        if self.closed:
            raise InputError("the program is closed", program=self.name)
        if self.engine != "jit":
            raise NotSupportedError(
                f"program {self.name!r} runs on the {self.engine}: it has no native code",
                feature="jited",
                program=self.name,
            )
        return self._runner.dump_jited(json=json, harness=harness)

    @property
    def map_ids(self) -> list[int]:
        """Ids of the maps the program refers to (bpftool's ``map_ids``)."""
        return [m.id for m in self.maps]

    @property
    def context(self) -> str:
        """How :meth:`test_run` builds the context now: ``"runtime"`` (the type's context
        rewritten to the runtime's layout at load, :mod:`pybpf.objects.context`: r1 = a
        real ``xdp_md``), ``"memory"`` (r1 = ``ctx_in`` or ``data_in``, r2 = its length) or
        ``"buffer"`` (a structured context such as ``__sk_buff`` not rewritten: r1 =
        ``data_in``, r2 = its length)."""
        if self._runtime_context is not None:
            return "runtime"
        rules = rules_for(self.type) if self.type is not None else None
        return "buffer" if rules is not None and rules.context.fields else "memory"

    # ---- for hooks that run the program on memory of their own ---------------------------
    # A hook (pybpf.hooks.packetrun) builds its own regions once and runs frame after frame
    # on them, without test_run: it needs the context builder, the engine's program and the
    # maps to expose. It counts its runs in run_cnt/run_time_ns itself.
    @property
    def runtime_context(
        self,
    ) -> XdpContext | SkbContext | SockAddrContext | SockContext | BindContext | None:
        """The builder of the context :meth:`test_run` gives when the type's context was
        rewritten to the runtime's layout at load (``context == "runtime"``;
        :mod:`pybpf.objects.context`, :mod:`pybpf.objects.sock_context`), else ``None``.
        Its ``runtime`` layout is where the rewritten program reads each field; a hook
        that builds contexts of its own lays them out by it."""
        return self._runtime_context

    @property
    def runner(self) -> ProgramRunner:
        """The engine's compiled program (:class:`ProgramRunner`): ``run(args, memory=,
        packet=, cpu=)`` runs it once without the checks and bookkeeping of
        :meth:`test_run`. ``memory`` must hold the context and packet regions and
        :attr:`reachable_maps`; the caller counts ``run_cnt``/``run_time_ns``. Valid until
        :meth:`close`."""
        return self._runner

    @property
    def reachable_maps(self) -> tuple[Map, ...]:
        """Every map a run may touch (the object's: callbacks and tail-call targets may use
        maps the program does not name; :attr:`maps` when it was loaded alone): the maps to
        expose in an address space a hook runs :attr:`runner` on."""
        return tuple(self._reachable)

    # ---- running -------------------------------------------------------------------------
    def test_run(
        self,
        data_in: bytes = b"",
        ctx_in: bytes | None = None,
        repeat: int = 1,
        *,
        cpu: int = 0,
    ) -> TestRunResult:
        """``BPF_PROG_TEST_RUN``: run ``repeat`` times (0 counts as 1, as in Linux); returns
        retval, mean duration (ns), data_out and ctx_out.

        Context:

        - programs whose type's context was rewritten at load (``context == "runtime"``:
          ``xdp`` loaded with ``verify=True``): the context Linux's ``BPF_PROG_TEST_RUN``
          gives, from ``data_in`` and ``ctx_in`` (``xdp_md`` bytes) by Linux's rules
          (:class:`~pybpf.objects.context.XdpContext`); ``data_out`` is the packet
          (metadata included) as the program left it, ``ctx_out`` the ``xdp_md`` Linux
          returns when ``ctx_in`` was given. Bad arguments raise
          :class:`~pybpf.errors.InputError` with ``errno`` as Linux's;
        - programs whose context is plain memory (no type, ``kprobe``, ``tracepoint``,
          ``raw_tracepoint``, ``tracing``/``lsm``, ``perf_event``, ``syscall``: the types
          whose Linux context is an opaque struct the program reads directly): with
          ``ctx_in`` r1 = a copy of it (read-only unless the type's context is writable, as
          ``syscall``'s) and r2 = its length, as Linux; without it r1 = a writable copy of
          ``data_in`` and r2 = its length, the bpf_conformance convention. ``ctx_out`` is
          the context after the run(s) when it is writable (untyped, ``syscall``), else
          ``None``: Linux gives none for those types;
        - every other type (``xdp``, ``socket``/``tc``/``cgroup_skb``, socket and cgroup
          hooks: structured contexts Linux rewrites): r1 = a writable copy of ``data_in``,
          r2 = its length. Such a program that reads its context fields sees the packet
          bytes, not ``xdp_md``/``__sk_buff``; ``ctx_in`` is refused
          (:class:`~pybpf.errors.NotSupportedError`).

        The buffers persist across the ``repeat`` runs (a program sees its earlier writes),
        as on Linux. Between calls the program keeps the regions and resets them for the
        next call with inputs of the same lengths (and the same ``ctx_in`` for runtime
        contexts): a call sees exactly the memory a fresh one would, at a fraction of the
        cost of allocating it. Legacy ``LD_ABS``/``LD_IND`` loads read ``data_in``. Raises the
        engine's :class:`~pybpf.errors.ExecutionError` subclasses (with ``pc``) and
        :class:`~pybpf.errors.InputError` for bad arguments.
        """
        if self.closed:
            raise InputError("the program is closed", program=self.name)
        if type(repeat) is not int or repeat != 1:
            if not isinstance(repeat, int) or repeat < 0:
                raise InputError(f"repeat must be a non-negative integer, not {repeat!r}")
            repeat = max(repeat, 1)  # Linux: 0 means once
        if type(data_in) is not bytes:
            data_in = bytes(data_in)
        if self._sock_reusable:  # socket contexts: kept regions (ReusedSockContext)
            return self._test_run_sock(data_in, ctx_in, repeat, cpu)
        if self._reusable:  # xdp/skb: on kept regions, reset (ReusedContext)
            pool = self._reused
            kept = pool.pop() if pool else None
            if (
                kept is None
                or kept.size != len(data_in)
                or kept.ctx_in != ctx_in
                or kept.runner is not self._runner  # the engine was swapped (tests, benchmarks)
            ):
                kept = self._keep(kept, data_in, ctx_in)
            else:
                try:
                    kept.reset(data_in)
                except BaseException:
                    pool.append(kept)  # reset checks before it changes anything
                    raise
            try:
                if repeat == 1:
                    start = _now()
                    r0 = kept.run(cpu)
                    elapsed = _now() - start
                else:
                    r0, elapsed = self._run(kept.args, kept.space, kept.legacy, cpu, repeat)
                data_out = kept.data_out()
                ctx_out = None if ctx_in is None else kept.result_ctx()
            except BaseException:
                kept.close()
                raise
            # _kept_result inlined: kept xdp/skb runs are the hot path (a call here measured slower)
            if self.closed:
                kept.close()
            else:
                pool.append(kept)
            self.run_cnt += repeat
            if repeat == 1:
                self.run_time_ns += elapsed
            else:
                self.run_time_ns += int(elapsed * repeat)
                elapsed = int(elapsed)
            result = _new(TestRunResult)  # TestRunResult(...) without the frozen __init__
            fields = result.__dict__
            fields["retval"] = r0 & _M32
            fields["duration"] = elapsed
            fields["data_out"] = data_out
            fields["ctx_out"] = ctx_out
            return result
        if self._runtime_context is not None:
            return self._test_run_runtime(data_in, ctx_in, repeat, cpu)
        if ctx_in is not None and self.context == "buffer":
            raise NotSupportedError(
                f"ctx_in for {self.type.type_name if self.type else '?'} programs needs the "
                "verifier's context layouts (not yet applied); pass the packet as data_in",
                feature="ctx_in",
                program=self.name,
            )
        pool = self._kept_memory
        kept = pool.pop() if pool else None
        key = (len(data_in), None if ctx_in is None else len(ctx_in))
        if kept is None or kept.key != key:
            if kept is not None:
                kept.close()
            kept = _KeptMemory(self, data_in, ctx_in)
        else:
            kept.fill(data_in, ctx_in)
        try:
            r0, elapsed = self._run(kept.args, kept.space, kept.packet, cpu, repeat)
            data_out = kept.data.view[: len(data_in)].tobytes()
            ctx_out = None
            if kept.ctx is not None and kept.ctx.writable:
                ctx_out = kept.ctx.view[: len(ctx_in)].tobytes() if ctx_in else b""
        except BaseException:
            kept.close()
            raise
        return self._kept_result(pool, kept, repeat, r0, elapsed, data_out, ctx_out)

    def _kept_result(
        self,
        pool: list,
        kept: _Kept | _KeptMemory | _KeptRegions,
        repeat: int,
        r0: int,
        elapsed: float,
        data_out: bytes,
        ctx_out: bytes | None,
    ) -> TestRunResult:
        """The end of a test run on kept regions: ``kept`` back in ``pool`` (freed when the
        program was closed meanwhile), the runs counted, the result (``elapsed``: ns per
        run) built without the frozen dataclass's ``__init__`` (a quarter of a microsecond
        less on every test run)."""
        if self.closed:
            kept.close()
        else:
            pool.append(kept)
        self.run_cnt += repeat
        self.run_time_ns += int(elapsed * repeat)
        result = _new(TestRunResult)
        fields = result.__dict__
        fields["retval"] = r0 & _M32
        fields["duration"] = int(elapsed)
        fields["data_out"] = data_out
        fields["ctx_out"] = ctx_out
        return result

    def _test_run_runtime(
        self, data_in: bytes, ctx_in: bytes | None, repeat: int, cpu: int
    ) -> TestRunResult:
        prepared = self._runtime_context.prepare(data_in, ctx_in, program=self.name)
        space = AddressSpace()
        expose_maps(space, self._reachable)
        try:
            for region in prepared.regions:
                space.add(region)
            packet = prepared.legacy_packet()
            r0, elapsed = self._run((prepared.ctx.address,), space, packet, cpu, repeat)
            data_out = prepared.data_out()
            ctx_out = prepared.result_ctx()
        finally:
            for region in prepared.regions:
                if space.find(region.address) is region:
                    space.remove(region)
            prepared.close()
        self.run_cnt += repeat
        self.run_time_ns += int(elapsed * repeat)
        return TestRunResult(r0 & _M32, int(elapsed), data_out, ctx_out)

    def _keep(self, old: _Kept | None, data_in: bytes, ctx_in: bytes | None) -> _Kept:
        """Fresh regions for an ``xdp``/skb test run, kept for later runs with data of the
        same length and the same ``ctx_in`` (:class:`~pybpf.objects.context.ReusedContext`:
        allocating regions costs far more than the run); ``old`` (other lengths or context)
        is freed."""
        builder = self._runtime_context
        prepared = builder.prepare(data_in, ctx_in, program=self.name)
        if old is not None:
            old.close()
        reused = ReusedContext(builder, prepared, data_in, ctx_in, program=self.name)
        return _Kept(reused, self._reachable, self._runner)

    def _test_run_sock(
        self, data_in: bytes, ctx_in: bytes | None, repeat: int, cpu: int
    ) -> TestRunResult:
        """A socket program's test run on kept regions, reset to what a fresh ``prepare``
        gives (:class:`~pybpf.objects.sock_context.ReusedSockContext`)."""
        pool = self._kept_sock
        kept = pool.pop() if pool else None
        if kept is None or not kept.reused.fits(data_in):
            builder = self._runtime_context
            try:
                prepared = builder.prepare(data_in, ctx_in, program=self.name)
            except BaseException:
                if kept is not None:
                    pool.append(kept)
                raise
            if kept is not None:
                kept.close()
            reused = ReusedSockContext(builder, prepared, data_in, ctx_in, program=self.name)
            kept = _KeptRegions(reused, self._reachable)
        else:
            try:
                kept.reused.reset(data_in, ctx_in)
            except BaseException:
                pool.append(kept)  # reset checks before it changes anything
                raise
        try:
            reused = kept.reused
            r0, elapsed = self._run(kept.args, kept.space, reused.legacy, cpu, repeat)
            data_out = reused.data_out()
            ctx_out = reused.result_ctx()
        except BaseException:
            kept.close()
            raise
        return self._kept_result(pool, kept, repeat, r0, elapsed, data_out, ctx_out)

    def _run(self, args, space, packet, cpu: int, repeat: int) -> tuple[int, float]:
        runner = self._runner
        if self.engine == "jit" and repeat > 1:
            return runner.run_repeat(args, memory=space, packet=packet, cpu=cpu, repeat=repeat)
        r0 = 0
        start = time.perf_counter_ns()
        for _ in range(repeat):
            r0 = runner.run(args, memory=space, packet=packet, cpu=cpu)
        return r0, (time.perf_counter_ns() - start) / repeat

    def _tail_target(self) -> _TailTarget | None:
        if self.closed:
            return None
        if self.engine == "jit":  # JIT targets run JIT code (JitProgram.tail_run)
            engine = self._runner
        else:
            if self._interpreter is None:
                self._interpreter = self._make_interpreter()
                if self._interpreter is not self._runner:
                    self._closers.append(self._interpreter)
            engine = self._interpreter
        target = self._tail
        if target is None or target.engine is not engine:
            self._tail = target = _TailTarget(self, engine)
        return target

    def pin(self, path: str, *, state: Any = None) -> Any:
        """Pin the program at ``path`` (``/sys/fs/bpf/...``; bpftool's ``prog pin``): its
        instructions and metadata are recorded in the state directory, its maps held
        (:func:`pybpf.objects.pinned.pin_program`); returns the pin's record."""
        from pybpf.objects.pinned import pin_program

        return pin_program(self, path, state=state)

    def attach(self, target: Any = None, **options: Any) -> Any:
        """Attach the program where its type says (libbpf's ``bpf_program__attach``); returns
        a link (``detach()``/``close()``/``with``). XDP/tc: ``target`` is an interface (a
        live link, Linux); socket hooks: this process's sockets; tracing types raise
        :class:`~pybpf.errors.NotSupportedError` (attach them on the kernel backend). See
        :func:`pybpf.hooks.attach.attach` for the options; NotSupportedError when the hooks
        layer is not imported (``import pybpf`` facade names import it)."""
        from pybpf.objects.attach import attacher

        if self.closed:
            raise InputError("the program is closed", program=self.name)
        return attacher()(self, target, **options)

    # ---- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Free the engine's code and run states (idempotent). Maps belong to the object."""
        if self.closed:
            return
        self.closed = True
        with _LOCK:
            if _BY_ID.get(self.id) is self:
                del _BY_ID[self.id]
        for item in [self._runner, *self._closers]:
            item.close()
        self._closers.clear()
        while self._reused:
            self._reused.pop().close()
        while self._kept_memory:
            self._kept_memory.pop().close()
        while self._kept_sock:
            self._kept_sock.pop().close()

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = self.type.type_name if self.type is not None else "untyped"
        state = " closed" if self.closed else ""
        return f"<Program {self.name!r} {kind} id={self.id} engine={self.engine}{state}>"
