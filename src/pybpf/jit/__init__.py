"""jit: eBPF to native code through LLVM (llvmlite), with the interpreter's exact semantics.

``JitProgram(insns, ...)`` checks, lowers and compiles a program once; ``run(args,
memory=...)`` runs it like :meth:`pybpf.vm.Interpreter.run`, ``run_repeat`` many times in
a native loop, ``run_batch(packets)`` once per packet in a native loop (a
:class:`PacketBatch` or a list of byte strings; :class:`PacketArg` says what r1..r5 get).
``execute(insns, mem)`` is the bpf_conformance convention; ``cache=`` takes a
:class:`CodeCache`; :func:`jit_listing` shows the native code of instructions as
``bpftool prog dump jited`` does. With ``tail_call_targets=`` (as the interpreter's)
``bpf_tail_call`` runs the prog array's programs (:mod:`pybpf.jit.calls`); a
:class:`JitProgram` is itself a target (``tail_run``). llvmlite is optional
(``pip install 'pybpf[jit]'``): without it this package still imports, :func:`available`
is False and compiling raises :class:`~pybpf.errors.NotSupportedError` (``feature="jit"``).

Modules: ``blocks`` (the shared load check, functions, basic blocks), ``layout`` (the
native blocks shared with compiled code), ``lower`` (instructions to ``llvmlite.ir``, pure
IR building), ``batch`` and ``batchloop`` (batch runs: packets, descriptor, native loop),
``mapcalls`` (native map helpers), ``cache`` (compiled code on disk), ``dump`` (listings),
``compile`` (LLVM binding: optimisation, MCJIT, code lifetime), ``state`` (per-run native
state), ``calls`` (helper calls and tail calls back into Python), ``tailcalls`` (native
tail calls through prog arrays), ``inlinehelpers`` (clock and cpu-id helpers as native
code), ``program`` (the public class).
"""

from pybpf.jit.batch import BatchResult, PacketArg, PacketBatch
from pybpf.jit.cache import CodeCache
from pybpf.jit.compile import llvm_version, unavailable_reason
from pybpf.jit.dump import dump_jited, jit_listing
from pybpf.jit.program import CONFORMANCE_ENTRY_REGISTERS, JitProgram, available, execute

__all__ = [
    "BatchResult",
    "CONFORMANCE_ENTRY_REGISTERS",
    "CodeCache",
    "JitProgram",
    "PacketArg",
    "PacketBatch",
    "available",
    "dump_jited",
    "execute",
    "jit_listing",
    "llvm_version",
    "unavailable_reason",
]
