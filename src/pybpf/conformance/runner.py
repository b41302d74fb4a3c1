"""Runner: runs bpf_conformance cases on a pybpf engine and judges each one.

A positive case passes when the program assembles (or decodes), loads, runs and leaves the
expected value in r0. A negative case (a file under ``negative/``) passes when pybpf refuses
it with one of its own errors or its result differs from the file's. An exception that is not
a :class:`~pybpf.errors.PybpfError` is a pybpf bug and fails the case either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pybpf.conformance.suite import ConformanceCase, collect
from pybpf.errors import NotSupportedError, PybpfError
from pybpf.isa import Instruction, decode

__all__ = ["ENGINES", "Outcome", "load_program", "run_case", "run_paths"]

ENGINES = ("interpreter", "jit")


@dataclass(frozen=True)
class Outcome:
    """The verdict on one case.

    ``status`` is ``"pass"`` or ``"fail"``; ``detail`` says why (the refusal, the wrong
    value, or the crash); ``value`` is the r0 the program returned, when it ran.
    """

    case: ConformanceCase
    status: str
    detail: str
    value: int | None = None

    @property
    def passed(self) -> bool:
        """True when the case counts as passed."""
        return self.status == "pass"


def load_program(case: ConformanceCase) -> list[Instruction]:
    """The case's program: its ``-- raw`` section decoded, else its ``-- asm`` assembled."""
    from pybpf.isa.asm import assemble

    if case.raw is not None:
        return decode(case.raw)
    return assemble(case.asm or "", syntax="conformance")


def _execute(insns: list[Instruction], mem: bytes, engine: str) -> int:
    if engine == "jit":  # unverified programs: always with the JIT's memory checks
        from pybpf.jit import execute as jit_execute

        return jit_execute(insns, mem if mem else None, debug_checks=True)
    if engine != "interpreter":
        raise NotSupportedError(f"engine {engine!r} is not available", feature=engine)
    from pybpf.vm import execute  # r1 = mem, r2 = len, as the suite expects

    return execute(insns, mem if mem else None)


def _attempt(case: ConformanceCase, engine: str) -> tuple[str, str, int | None]:
    """Try a case: ``("ran", detail, r0)``, ``("refused", why, None)`` or ``("crashed", ...)``."""
    if case.problem:
        return "refused", f"malformed test file: {case.problem}", None
    try:
        insns = load_program(case)
        value = _execute(insns, case.mem, engine)
    except PybpfError as exc:
        return "refused", str(exc), None
    except Exception as exc:  # a pybpf bug: never counted as a refusal
        return "crashed", f"internal error: {type(exc).__name__}: {exc}", None
    return "ran", f"r0 = {value:#x}", value


def run_case(case: ConformanceCase, *, engine: str = "interpreter") -> Outcome:
    """Run one case on ``engine`` and judge it.

    A positive case passes when it runs and r0 equals ``-- result`` (or, for a file with only
    ``-- error``, when it is refused). A negative case passes when it is refused or its r0
    differs from ``-- result``. A crash fails either way.
    """
    kind, detail, value = _attempt(case, engine)
    if kind == "crashed":
        return Outcome(case, "fail", detail, value)
    if case.negative:
        if kind == "refused":
            return Outcome(case, "pass", f"refused: {detail}", value)
        if case.result is not None and value != case.result:
            return Outcome(case, "pass", f"r0 = {value:#x} differs from {case.result:#x}", value)
        return Outcome(case, "fail", f"negative test was not refused: {detail}", value)
    if kind == "refused":
        if case.result is None and case.error is not None and not case.problem:
            return Outcome(case, "pass", f"refused as expected: {detail}", value)
        return Outcome(case, "fail", f"error: {detail}", value)
    if case.result is None:
        return Outcome(case, "fail", f"expected an error ({case.error!r}) but {detail}", value)
    if value != case.result:
        return Outcome(case, "fail", f"r0 = {value:#x}, expected {case.result:#x}", value)
    return Outcome(case, "pass", detail, value)


def run_paths(paths: Iterable[str | Path], *, engine: str = "interpreter") -> list[Outcome]:
    """Run every case under the given files and directories."""
    if engine not in ENGINES:
        raise NotSupportedError(
            f"unknown engine {engine!r} (available: {', '.join(ENGINES)})", feature=engine
        )
    return [run_case(case, engine=engine) for case in collect(paths)]
