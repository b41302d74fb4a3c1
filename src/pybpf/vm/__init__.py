"""vm: the exact eBPF interpreter (load checks, threaded closures, checked native memory).

``Interpreter(insns, ...)`` checks a program at load time and ``run(args, memory=...)``
executes it; ``execute(insns, mem)`` is the bpf_conformance convention (r1 = address of a
copy of ``mem``, r2 = its length).
"""

from pybpf.isa.opcodes import MAY_GOTO_LOOPS
from pybpf.vm.interpreter import CONFORMANCE_ENTRY_REGISTERS, Interpreter, execute

__all__ = ["CONFORMANCE_ENTRY_REGISTERS", "Interpreter", "MAY_GOTO_LOOPS", "execute"]
