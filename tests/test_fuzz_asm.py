"""Assembler fuzzing: mutated llvm-objdump and bpf_conformance assembly, and mutated bytecode,
either assemble/decode or raise one InputError (AssemblyError, DecodeError); never another
exception, a hang or a blow-up. What assembles encodes, decodes back to itself and
disassembles; what decodes lists as text that assembles back to the same instructions.

Seeds: the disassembly of every committed example object (``examples/c/*.o``), the
``objdump14_listing.s`` fixture and, when ``../shared`` is beside the clone, the asm of the
bpf_conformance ``.data`` files. Mutations are token-level (registers out of range, huge
or odd integers, labels, operators), line-level (duplicate, drop, swap) and byte-level.
CI runs a fixed-seed, bounded number of inputs; a longer run::

    PYBPF_FUZZ_EXAMPLES=20000 python -m pytest -q tests/test_fuzz_asm.py

Crashing inputs are kept in ``tests/fixtures/fuzz/asm/`` (text) and
``tests/fixtures/fuzz/bytecode/`` (raw) and replayed here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz_guard import corpus, fuzz_settings, guard
from pybpf.elf import read_object
from pybpf.errors import InputError, NotSupportedError
from pybpf.isa import Class, assemble, decode, disassemble, encode
from pybpf.isa.conformance_asm import format_conformance
from pybpf.isa.program_file import parse_program

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT.parent / "shared" / "conformance"


def _seeds() -> tuple[list[str], list[bytes]]:
    listing = (ROOT / "tests" / "fixtures" / "isa" / "objdump14_listing.s").read_text()
    texts = ["\n".join(ln for ln in listing.splitlines() if not ln.strip().startswith("."))]
    codes = []
    for path in sorted((ROOT / "examples" / "c").glob("*.o")):
        for prog in read_object(path.read_bytes()).programs.values():
            insns = list(prog.instructions)
            texts.append(disassemble(insns, pcs=False))
            codes.append(encode(insns))
    if CONFORMANCE.is_dir():
        for path in sorted(CONFORMANCE.glob("*.data"))[::4]:
            text = path.read_text()
            m = re.search(r"-- asm\n(.*?)(?:\n-- |\Z)", text, re.S)
            if m:
                texts.append(m.group(1))
    return texts, codes


TEXTS, CODES = _seeds()
_TOKENS = [
    "r0", "r10", "r11", "r12", "w11", "%r11", "%r10", "r-1", "0", "-1", "0x7fffffff",
    "0x80000000", "-0x80000000", "4294967296", "0xffffffffffffffff", "18446744073709551616",
    "-9223372036854775809", "99999999999999999999999", "+32767", "+32768", "-32769", "ll",
    "goto", "+", "-", "*", "(", ")", "[", "]", "=", "==", "s>=", "<<=", "+=", "lock", "call",
    "callx", "exit", "be16", "le64", "bswap32", "*(u64 *)", "*(s8 *)", "(u128)", "map",
    "LBB0_2", "sub", "L:", ":", "0x", "0b1", "1e3", "ldxdw", "lddw", "ja", "jeq", ",", ";",
    "-0", "local", "helper", "runtime", "atomic_fetch_add", "cmpxchg_64", "may_goto",
]  # fmt: skip


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(TEXTS)).splitlines()
    start = draw(st.integers(0, max(0, len(lines) - 8)))
    lines = lines[start : start + 40]  # a window: short inputs, many of them
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["token", "token", "token", "dup", "drop", "swap", "char"]))
        if op == "token":
            tokens = re.findall(r"\w+|\s+|\S", lines[i]) or [""]
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[j] = draw(st.sampled_from(_TOKENS + ["", " "]))
            lines[i] = "".join(tokens)
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "drop":
            del lines[i]
        elif op == "swap":
            k = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[k] = lines[k], lines[i]
        else:
            pos = draw(st.integers(0, len(lines[i])))
            ch = draw(st.characters(codec="utf-8", exclude_categories=["Cs"]))
            lines[i] = lines[i][:pos] + ch + lines[i][pos:]
    return "\n".join(lines)


def check_assembled(text: str, syntax: str) -> None:
    """Assemble; what assembles must encode, decode to itself and disassemble."""
    insns = assemble(text, syntax=syntax)
    raw = encode(insns)
    assert decode(raw) == insns
    disassemble(insns)
    for insn in insns:
        try:
            format_conformance(insn)
        except NotSupportedError:  # legacy packet loads have no conformance syntax
            assert insn.cls == Class.LD


@fuzz_settings(400)
@given(mutated_text(), st.sampled_from(["auto", "auto", "llvm", "conformance"]))
def test_mutated_assembly(text: str, syntax: str) -> None:
    """400 inputs in CI (about 3 s); ``PYBPF_FUZZ_EXAMPLES=N`` for more."""
    guard("asm", lambda: check_assembled(text, syntax), allowed=(InputError,), seconds=10)


@fuzz_settings(200)
@given(st.text(alphabet=st.sampled_from(list("r0123456789wx%+-*()[]=<>&|^ls:;,.#\n\t lockgtueb")),
               max_size=80))  # fmt: skip
def test_operator_soup(text: str) -> None:
    """200 inputs in CI: short strings of assembly characters."""
    guard("asm", lambda: check_assembled(text, "auto"), allowed=(InputError,), seconds=10)


def check_bytecode(data: bytes) -> None:
    """Decode; what decodes must encode back, and its listing must assemble to itself."""
    insns = parse_program(data, fmt="bin")
    assert encode(insns) == data
    if insns:  # (no bytes decode to no instructions; the assembler refuses empty text)
        assert assemble(disassemble(insns, pcs=False), syntax="llvm") == insns


@fuzz_settings(300)
@given(st.data())
def test_mutated_bytecode(data: st.DataObject) -> None:
    """300 inputs in CI; ``PYBPF_FUZZ_EXAMPLES=N`` for more."""
    code = data.draw(st.sampled_from(CODES))
    start = 8 * data.draw(st.integers(0, len(code) // 8 - 1))
    out = bytearray(code[start : start + 8 * 48])  # a window of up to 48 slots
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(out) - 1))
        out[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.integers(0, 5)) == 0:
        del out[data.draw(st.integers(0, len(out))) :]
    blob = bytes(out)
    guard("bytecode", lambda: check_bytecode(blob), allowed=(InputError,), seconds=10)


@pytest.mark.parametrize("path", corpus("asm"), ids=lambda p: p.name)
def test_asm_regressions(path: Path) -> None:
    text = path.read_text()
    for syntax in ("auto", "llvm", "conformance"):
        guard("asm", lambda s=syntax: check_assembled(text, s), allowed=(InputError,))


@pytest.mark.parametrize("path", corpus("bytecode"), ids=lambda p: p.name)
def test_bytecode_regressions(path: Path) -> None:
    blob = path.read_bytes()
    guard("bytecode", lambda: check_bytecode(blob), allowed=(InputError,))


def test_seeds_assemble() -> None:
    assert len(TEXTS) > 20 and len(CODES) > 20
    for text in TEXTS[1:]:  # the listing has "map ll" (a relocation): it fails cleanly
        check_assembled(text, "auto")
    with pytest.raises(InputError):
        check_assembled(TEXTS[0], "auto")
