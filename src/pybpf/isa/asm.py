"""Assembler: eBPF assembly text to instructions, in llvm-objdump's syntax or bpf_conformance's.

:func:`assemble` reads one program. This module holds what both syntaxes share (lines,
comments, labels, numbers, the label fix-ups) and picks the syntax; the syntaxes themselves
live in :mod:`pybpf.isa.llvm_asm` (llvm-objdump's, exactly as :mod:`pybpf.isa.disasm`
prints it) and :mod:`pybpf.isa.conformance_asm` (bpf_conformance's).

Immediates follow one rule in both syntaxes: a decimal imm32 must lie in
``[-2**31, 2**31 - 1]``, a hex one may go up to ``0xffffffff`` and is then the
two's-complement i32. Every refusal is an :class:`~pybpf.errors.AssemblyError` with ``line``
(1-based) and ``text``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pybpf.errors import AssemblyError, DecodeError
from pybpf.isa.codec import check
from pybpf.isa.instruction import Instruction

__all__ = ["assemble", "detect_syntax", "SYNTAXES", "Program"]

SYNTAXES = ("auto", "llvm", "conformance")

LABEL_PATTERN = r"[A-Za-z_.$][\w.$]*"
_LABEL_RE = re.compile(rf"^({LABEL_PATTERN})\s*:(?!\S)")
_COMMENT_RE = re.compile(r"(;|#|//).*$")
_NUMBER_RE = re.compile(r"^([+-]?)\s*(0[xX][0-9a-fA-F]+|[0-9]+)$")


# ---- numbers ---------------------------------------------------------------------------
def parse_integer(token: str) -> tuple[int, bool]:
    """``token`` as an integer and whether it was written in hex; ``ValueError`` if neither."""
    match = _NUMBER_RE.match(token.strip())
    if not match:
        raise ValueError(f"not a number: {token!r}")
    sign, digits = match.groups()
    is_hex = digits[:2].lower() == "0x"
    value = int(digits, 16 if is_hex else 10)
    return (-value if sign == "-" else value), is_hex


def fit_signed(value: int, is_hex: bool, bits: int, what: str) -> int:
    """``value`` as a signed ``bits``-bit field: decimal must fit, hex may use all the bits."""
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if is_hex and high < value < (1 << bits):
        return value - (1 << bits)
    if not low <= value <= high:
        raise ValueError(f"{what} {value} is out of the signed {bits}-bit range")
    return value


def parse_imm32(token: str) -> int:
    """An imm32 operand (see the module docstring for the decimal/hex rule)."""
    value, is_hex = parse_integer(token)
    return fit_signed(value, is_hex, 32, "immediate")


def parse_imm64(token: str) -> int:
    """A 64-bit immediate, returned as an unsigned value."""
    value, _ = parse_integer(token)
    if not -(1 << 63) <= value < (1 << 64):
        raise ValueError(f"immediate {value} does not fit in 64 bits")
    return value & ((1 << 64) - 1)


def split_imm64(value: int) -> tuple[int, int]:
    """An unsigned 64-bit value as the signed ``(imm, imm_hi)`` pair of ``lddw``."""

    def signed32(v: int) -> int:
        return v - (1 << 32) if v >> 31 else v

    return signed32(value & 0xFFFFFFFF), signed32(value >> 32)


# ---- the program being built -------------------------------------------------------------
@dataclass
class SourceLine:
    """One line of source: its 1-based number and its text."""

    number: int
    text: str


@dataclass
class _Pending:
    insn: Instruction
    line: SourceLine
    label: str | None = None
    field: str = "off"


@dataclass
class Program:
    """Instructions assembled so far, their labels and the jumps waiting for a label."""

    pending: list[_Pending] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    default_labels: dict[str, int] = field(default_factory=dict)
    pc: int = 0

    def error(self, message: str, line: SourceLine) -> AssemblyError:
        """An :class:`AssemblyError` located at ``line``."""
        return AssemblyError(message, line=line.number, text=line.text.strip())

    def define(self, name: str, line: SourceLine) -> None:
        """Define label ``name`` at the current pc."""
        if name in self.labels:
            raise self.error(f"label {name!r} is defined twice", line)
        self.labels[name] = self.pc

    def define_default(self, name: str) -> None:
        """A label that an explicit definition of the same name overrides."""
        self.default_labels.setdefault(name, self.pc)

    def emit(
        self, insn: Instruction, line: SourceLine, label: str | None = None, field: str = "off"
    ) -> None:
        """Append ``insn``; with ``label``, its ``field`` (``off``/``imm``) is fixed up later."""
        self.pending.append(_Pending(insn, line, label, field))
        self.pc += insn.slots

    def finish(self, last_line: int) -> list[Instruction]:
        """Resolve labels and check every instruction."""
        if not self.pending:
            raise AssemblyError("empty program: no instructions", line=max(last_line, 1), text="")
        out = []
        pc = 0
        for item in self.pending:
            insn = item.insn
            if item.label is not None:
                target = self.labels.get(item.label, self.default_labels.get(item.label))
                if target is None:
                    raise self.error(f"undefined label {item.label!r}", item.line)
                delta = target - pc - 1
                if item.field == "off" and not -0x8000 <= delta <= 0x7FFF:
                    raise self.error(f"jump to {item.label!r} is out of 16-bit range", item.line)
                insn = replace(insn, **{item.field: delta})
            try:
                check(insn, pc)
            except DecodeError as exc:
                raise self.error(f"invalid instruction: {exc.message}", item.line) from None
            out.append(insn)
            pc += insn.slots
        return out


LineParser = Callable[[Program, str, SourceLine], None]


def _lines(text: str) -> list[SourceLine]:
    return [SourceLine(i, line) for i, line in enumerate(text.splitlines(), start=1)]


def strip_comment(text: str) -> str:
    """The line without its comment (``;``, ``#`` or ``//`` to the end)."""
    return _COMMENT_RE.sub("", text).strip()


def _define(program: Program, line: SourceLine, name: str) -> None:
    program.define(name, line)


def _strip_labels(body: str, define: Callable[[str], None] | None = None) -> str:
    """``body`` without its leading ``name:`` labels, each passed to ``define``."""
    while match := _LABEL_RE.match(body):
        if define is not None:
            define(match.group(1))
        body = body[match.end() :].strip()
    return body


def run(
    text: str, parse_line: LineParser, prepare: Callable[[str], str] | None = None
) -> list[Instruction]:
    """Assemble ``text`` line by line with ``parse_line`` (labels are handled here)."""
    program = Program()
    lines = _lines(text)
    for line in lines:
        body = strip_comment(line.text)
        if prepare is not None:
            body = prepare(body)
        body = _strip_labels(body, functools.partial(_define, program, line))
        if body:
            try:
                parse_line(program, body, line)
            except ValueError as exc:
                raise program.error(str(exc), line) from None
    return program.finish(len(lines))


# ---- syntax detection ------------------------------------------------------------------------
_LLVM_STARTS = ("if", "goto", "gotol", "may_goto", "callx", "store_release")


def detect_syntax(text: str) -> str:
    """``"conformance"`` or ``"llvm"``: the first line that tells them apart decides."""
    from pybpf.isa.conformance_asm import MNEMONICS

    for raw in text.splitlines():
        body = _strip_labels(strip_comment(raw))
        if not body:
            continue
        if "%r" in body:
            return "conformance"
        words = body.split()
        first = words[0]
        if first == "lock":
            return "llvm" if len(words) > 1 and words[1].startswith("*") else "conformance"
        if (
            first in MNEMONICS
            and first not in ("exit", "call")
            or first == "call"
            and len(words) > 2
        ):
            return "conformance"  # "call local f", "call helper 5" and "call runtime 7" too
        if "=" in body or first in _LLVM_STARTS:
            return "llvm"
    return "llvm"


def assemble(text: str, *, syntax: str = "auto") -> list[Instruction]:
    """Assemble a program.

    ``syntax`` is ``"llvm"`` (llvm-objdump's syntax, see the module docstring),
    ``"conformance"`` (bpf_conformance's, see :mod:`pybpf.isa.conformance_asm`) or
    ``"auto"`` (decided by :func:`detect_syntax`). Raises
    :class:`~pybpf.errors.AssemblyError` with ``line`` and ``text``.
    """
    if syntax not in SYNTAXES:
        raise AssemblyError(f"unknown assembly syntax {syntax!r}", line=None, text=None)
    if syntax == "auto":
        syntax = detect_syntax(text)
    if syntax == "conformance":
        from pybpf.isa.conformance_asm import parse_line

        return run(text, parse_line)
    from pybpf.isa.llvm_asm import parse_line, prepare_line

    return run(text, parse_line, prepare_line)
