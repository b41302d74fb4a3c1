"""compare: pybpf's verifier verdict and the running kernel's on the same program, side by side.

:func:`compare_program` verifies one program of a spec with :mod:`pybpf.verifier` and loads
it into the kernel (:func:`pybpf.kernel.verdict.kernel_verdict`), with the same program
type. :class:`Comparison` holds both verdicts and messages; its ``outcome`` is one of
``both_accept``, ``both_reject``, ``kernel_only_reject`` and ``pybpf_only_reject``, and
``false_accept`` is true when the kernel refused the program for a safety reason that
pybpf accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.errors import PybpfError
from pybpf.kernel.verdict import OTHER, SAFETY, KernelVerdict, kernel_verdict
from pybpf.progtypes import ProgType, prevail_program_type
from pybpf.spec import ObjectSpec

__all__ = ["Comparison", "compare_program", "pybpf_verdict"]


@dataclass(frozen=True)
class Comparison:
    """Both verdicts on one program (``prog_type`` as both verified it)."""

    program: str
    section: str
    prog_type: str
    pybpf_accepted: bool
    pybpf_message: str
    kernel: KernelVerdict

    @property
    def agree(self) -> bool:
        """Both accept or both reject."""
        return self.pybpf_accepted == self.kernel.accepted

    @property
    def outcome(self) -> str:
        """``both_accept``, ``both_reject``, ``kernel_only_reject`` or ``pybpf_only_reject``."""
        if self.agree:
            return "both_accept" if self.pybpf_accepted else "both_reject"
        return "kernel_only_reject" if self.pybpf_accepted else "pybpf_only_reject"

    @property
    def false_accept(self) -> bool:
        """pybpf accepted what the kernel refused for a safety reason."""
        return self.pybpf_accepted and self.kernel.category == SAFETY

    def to_json(self) -> dict:
        """JSON-ready fields: program, section, type, both verdicts and messages."""
        return {
            "program": self.program,
            "section": self.section,
            "prog_type": self.prog_type,
            "outcome": self.outcome,
            "pybpf": {
                "verdict": "accept" if self.pybpf_accepted else "reject",
                "message": self.pybpf_message,
            },
            "kernel": self.kernel.to_json(),
        }


def pybpf_verdict(spec: ObjectSpec, name: str, prog_type: ProgType) -> tuple[bool, str]:
    """pybpf's verifier on program ``name``: ``(accepted, first error or "")``; an error
    before verification (linking, decoding) is a refusal with its message."""
    from pybpf.verifier import verify_object

    try:
        result = verify_object(spec, name, prog_type)
    except PybpfError as err:
        return False, f"{type(err).__name__}: {err}"
    if result.accepted:
        return True, ""
    return False, str(result.errors[0]) if result.errors else "rejected"


def compare_program(
    spec: ObjectSpec, name: str, prog_type: ProgType | None = None, *, path: str = ""
) -> Comparison:
    """pybpf's verdict and the kernel's on program ``name``. The type is ``prog_type``, else
    the program's own, else PREVAIL's rule on the section and ``path`` (as ``pybpf
    verify``); both verifiers get the same type. An eBPF-for-Windows program is an
    ``other`` refusal of the kernel (``program_type``)."""
    prog = spec.program(name)
    if prog_type is None:
        prog_type = prog.type or prevail_program_type(prog.section, path)
    accepted, message = pybpf_verdict(spec, name, prog_type)
    if prog_type.is_linux and spec.platform == "linux":
        kernel = kernel_verdict(spec, name, prog_type)
    else:
        reason = f"{prog_type.name} ({spec.platform}) programs cannot be loaded into Linux"
        kernel = KernelVerdict(False, OTHER, "program_type", reason)
    return Comparison(name, prog.section, prog_type.type_name, accepted, message, kernel)
