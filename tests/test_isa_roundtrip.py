"""Round trips between bytes, instructions and both assembly syntaxes, over random input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.errors import DecodeError, NotSupportedError
from pybpf.isa.asm import assemble
from pybpf.isa.codec import check, decode, encode
from pybpf.isa.conformance_asm import format_conformance
from pybpf.isa.disasm import disassemble, format_instruction
from pybpf.isa.instruction import Instruction
from strategies import programs, valid_instructions
from test_disasm import read_golden


def canonical(insn: Instruction) -> Instruction:
    """The encoding the assembler emits: ``callx`` names its register in ``dst`` (LLVM 19+),
    so LLVM <= 18's encoding (register in ``imm``) comes back in that form."""
    if insn.is_callx and insn.imm:
        return Instruction(insn.code, dst=insn.imm)
    return insn


@settings(max_examples=500, deadline=None)
@given(valid_instructions())
def test_llvm_text_round_trips(insn: Instruction) -> None:
    text = format_instruction(insn)
    assert assemble(text, syntax="llvm") == [canonical(insn)]
    assert assemble(text) == [canonical(insn)]


@settings(max_examples=100, deadline=None)
@given(programs())
def test_listings_round_trip(insns: list[Instruction]) -> None:
    expected = [canonical(insn) for insn in insns]
    for listing in (
        disassemble(insns),
        disassemble(insns, raw=True),
        disassemble(insns, pcs=False),
    ):
        assert assemble(listing) == expected
    again = disassemble(assemble(disassemble(insns)))
    assert again == disassemble(insns)  # disassembly is stable
    assert decode(encode(expected)) == expected


@settings(max_examples=400, deadline=None)
@given(
    st.integers(0, 255),
    st.integers(0, 10),
    st.sampled_from([0, 0, 1, 2, 3, 5, 10]),
    st.one_of(st.sampled_from([0, 1, 8, 16, 32]), st.integers(-0x8000, 0x7FFF)),
    st.one_of(
        st.sampled_from([0, 16, 32, 64, 1, 0x10000, 0x41, 0xE1, 0xF1, 0x100, 0x110]),
        st.integers(-0x80000000, 0x7FFFFFFF),
    ),
    st.integers(-0x80000000, 0x7FFFFFFF),
)
def test_anything_check_accepts_round_trips(code, dst, src, off, imm, imm_hi) -> None:
    insn = Instruction(code, dst, src, off, imm, imm_hi if code == 0x18 else 0)
    try:
        check(insn)
    except DecodeError:
        return
    assert assemble(format_instruction(insn), syntax="llvm") == [canonical(insn)]


@settings(max_examples=400, deadline=None)
@given(valid_instructions())
def test_conformance_text_round_trips(insn: Instruction) -> None:
    try:
        text = format_conformance(insn)
    except NotSupportedError as exc:
        assert exc.feature
        return
    assert assemble(text, syntax="conformance") == [canonical(insn)]
    if not text.startswith(("exit", "call ")) or "%r" in text or text.count(" ") > 1:
        assert assemble(text) == [canonical(insn)]


def test_every_golden_line_assembles_to_its_bytes() -> None:
    """Each opcode family's text (llvm14.golden, extended.golden) assembles back exactly."""
    rows = read_golden("llvm14.golden") + read_golden("extended.golden")
    texts = "\n".join(text for _, text, _ in rows)
    assert assemble(texts, syntax="llvm") == [canonical(insn) for insn, _, _ in rows]
    conformance = []
    for insn, _, _ in rows:
        try:
            conformance.append((insn, format_conformance(insn)))
        except NotSupportedError:
            continue
    assert len(conformance) > 700
    program = assemble("\n".join(text for _, text in conformance), syntax="conformance")
    assert program == [canonical(insn) for insn, _ in conformance]
