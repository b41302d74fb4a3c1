"""jit: eBPF to native code through LLVM (llvmlite), with the interpreter's exact semantics.

``JitProgram(insns, ...)`` checks, lowers and compiles a program once; ``run(args,
memory=...)`` runs it like :meth:`pybpf.vm.Interpreter.run`. ``execute(insns, mem)`` is the
bpf_conformance convention. llvmlite is optional (``pip install 'pybpf[jit]'``): without
it this package still imports, :func:`available` is False and compiling raises
:class:`~pybpf.errors.NotSupportedError` (``feature="jit"``).

Modules: ``blocks`` (the shared load check, functions, basic blocks), ``layout`` (the context block
shared with native code), ``lower`` (instructions to ``llvmlite.ir``, pure IR building),
``compile`` (LLVM binding: optimisation, MCJIT, code lifetime), ``state`` (per-run native
state), ``calls`` (helper calls back into Python), ``program`` (the public class).
"""

from pybpf.jit.compile import llvm_version, unavailable_reason
from pybpf.jit.program import CONFORMANCE_ENTRY_REGISTERS, JitProgram, available, execute

__all__ = [
    "CONFORMANCE_ENTRY_REGISTERS",
    "JitProgram",
    "available",
    "execute",
    "llvm_version",
    "unavailable_reason",
]
