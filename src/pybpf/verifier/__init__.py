"""verifier: abstract interpretation that proves eBPF programs safe and explains every rejection.

The model is PREVAIL's: the program's CFG (with ``Assume`` edges for conditional jumps and
inlined bpf-to-bpf calls) is analysed in weak topological order over a product domain of
types, a zone of difference constraints over numbers and offsets, and a byte-precise
stack. Each instruction's safety conditions are data (:mod:`~pybpf.verifier.assertions`),
checked separately (:mod:`~pybpf.verifier.checker`) from how the state changes
(:mod:`~pybpf.verifier.transformer`). ``verify(program, prog_type)`` returns a
:class:`Result`; ``result.raise_for_errors()`` raises :class:`~pybpf.errors.VerifierError`.
"""

from pybpf.verifier.api import analyze, entry_state, verify, verify_object
from pybpf.verifier.program import MapDescriptor, Options, ProgramInfo
from pybpf.verifier.result import Diagnostic, Result

__all__ = [
    "Diagnostic",
    "MapDescriptor",
    "Options",
    "ProgramInfo",
    "Result",
    "analyze",
    "entry_state",
    "verify",
    "verify_object",
]
