"""Assembler: llvm-objdump syntax and bpf_conformance syntax, labels, and every refusal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.errors import AssemblyError
from pybpf.isa.asm import assemble, detect_syntax
from pybpf.isa.codec import decode
from pybpf.isa.instruction import Instruction

FIXTURES = Path(__file__).parent / "fixtures" / "isa"
CONFORMANCE = Path(__file__).parents[2] / "shared" / "conformance"


def one(text: str, syntax: str = "auto") -> Instruction:
    (insn,) = assemble(text, syntax=syntax)
    return insn


def raw(hexbytes: str) -> Instruction:
    (insn,) = decode(bytes.fromhex(hexbytes.replace(" ", "")))
    return insn


# ---- llvm-objdump syntax -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "hexbytes"),
    [
        ("r0 = *(u32 *)(r1 + 4)", "61 10 04 00 00 00 00 00"),
        ("r0 = *(u32 *)(r1 + 0x4)", "61 10 04 00 00 00 00 00"),
        ("w0 = *(u32 *)(r1 - 0x4)", "61 10 fc ff 00 00 00 00"),
        ("if r1 > r2 goto +3", "2d 21 03 00 00 00 00 00"),
        ("if r1 > r2 goto +0x3", "2d 21 03 00 00 00 00 00"),
        ("if w1 s< -5 goto -2", "c6 01 fe ff fb ff ff ff"),
        ("if r1 & 0x4 goto pc+2", "45 01 02 00 04 00 00 00"),
        ("w0 += w1", "0c 10 00 00 00 00 00 00"),
        ("r0 = 0x2", "b7 00 00 00 02 00 00 00"),
        ("w1 = 0xffffffff", "b4 01 00 00 ff ff ff ff"),
        ("r1 = -0x1", "b7 01 00 00 ff ff ff ff"),
        ("r1 = 1234 ll", "18 01 00 00 d2 04 00 00 00 00 00 00 00 00 00 00"),
        ("r1 = 0x1122334455667788 ll", "18 01 00 00 88 77 66 55 00 00 00 00 44 33 22 11"),
        ("r1 = -1 ll", "18 01 00 00 ff ff ff ff 00 00 00 00 ff ff ff ff"),
        ("call 1", "85 00 00 00 01 00 00 00"),
        ("call pc-3", "85 10 00 00 fd ff ff ff"),
        ("call kfunc:1234", "85 20 00 00 d2 04 00 00"),
        ("callx r2", "8d 02 00 00 00 00 00 00"),
        ("lock *(u64 *)(r0 + 0) += r1", "db 10 00 00 00 00 00 00"),
        ("lock *(u32 *)(r1 + 0) |= w2", "c3 21 00 00 40 00 00 00"),
        ("r0 = be16 r0", "dc 00 00 00 10 00 00 00"),
        ("r3 = le64 r3", "d4 03 00 00 40 00 00 00"),
        ("exit", "95 00 00 00 00 00 00 00"),
        ("goto +0", "05 00 00 00 00 00 00 00"),
        ("gotol -0x5", "06 00 00 00 fb ff ff ff"),
        ("may_goto +3", "e5 00 03 00 00 00 00 00"),
        ("r1 = (s8)r2", "bf 21 08 00 00 00 00 00"),
        ("w1 = (s16)w2", "bc 21 10 00 00 00 00 00"),
        ("r0 = *(s8 *)(r1 + 0)", "91 10 00 00 00 00 00 00"),
        ("r1 s/= r2", "3f 21 01 00 00 00 00 00"),
        ("r1 s%= 3", "97 01 01 00 03 00 00 00"),
        ("r0 = bswap16 r0", "d7 00 00 00 10 00 00 00"),
        ("r1 = -r1", "87 01 00 00 00 00 00 00"),
        ("r0 = atomic_fetch_add((u64 *)(r1 + 0), r0)", "db 01 00 00 01 00 00 00"),
        ("w2 = atomic_fetch_xor((u32 *)(r1 + 8), w2)", "c3 21 08 00 a1 00 00 00"),
        ("r0 = xchg_64(r1 + 0, r0)", "db 01 00 00 e1 00 00 00"),
        ("r0 = cmpxchg_64(r1 + 0, r0, r2)", "db 21 00 00 f1 00 00 00"),
        ("w0 = cmpxchg32_32(r1 - 4, w0, w2)", "c3 21 fc ff f1 00 00 00"),
        ("w0 = load_acquire((u8 *)(r1 + 0))", "d3 10 00 00 00 01 00 00"),
        ("store_release((u64 *)(r1 + 8), r2)", "db 21 08 00 10 01 00 00"),
        ("r1 = addr_space_cast(r2, 0, 1)", "bf 21 01 00 01 00 00 00"),
        ("*(u64 *)(r10 - 8) = r1", "7b 1a f8 ff 00 00 00 00"),
        ("*(u32 *)(r10 - 8) = w1", "63 1a f8 ff 00 00 00 00"),
        ("*(u8 *)(r10 - 8) = 5", "72 0a f8 ff 05 00 00 00"),
        ("r0 = *(u8 *)skb[5]", "30 00 00 00 05 00 00 00"),
        ("r0 = *(u16 *)skb[r3]", "48 30 00 00 00 00 00 00"),
        ("r0 = *(u16 *)skb[r3 + 2]", "48 30 00 00 02 00 00 00"),
        ("r1 = map[fd:5] ll", "18 11 00 00 05 00 00 00 00 00 00 00 00 00 00 00"),
        ("r1 = map[idx:1][0]+16 ll", "18 61 00 00 01 00 00 00 00 00 00 00 10 00 00 00"),
        ("r1 = btf_id[1234, hi:3] ll", "18 31 00 00 d2 04 00 00 00 00 00 00 03 00 00 00"),
        ("r1 = subprog[-2] ll", "18 41 00 00 fe ff ff ff 00 00 00 00 00 00 00 00"),
        ("   r1   +=   r2   ", "0f 21 00 00 00 00 00 00"),
    ],
)
def test_llvm_syntax(text: str, hexbytes: str) -> None:
    assert one(text, "llvm") == raw(hexbytes)
    assert one(text) == raw(hexbytes)  # auto-detected


def test_labels_comments_and_local_calls() -> None:
    program = assemble(
        """
        ; a comment line
        entry:  r0 = 0          # trailing comment
                if r1 == 0 goto done   // another
        loop:   r0 += 1
                call helper_sub
                goto loop
        done:
        helper_sub:
                exit
        """
    )
    assert [str(insn.code) for insn in program] == ["183", "21", "7", "133", "5", "149"]
    assert program[1].off == 3  # to "done" (pc 5) from pc 1
    assert program[3].src == 1 and program[3].imm == 1  # local call to pc 5
    assert program[4].off == -3


def test_labels_count_lddw_slots() -> None:
    program = assemble("goto end\nr1 = 1 ll\nend: exit")
    assert program[0].off == 2


def test_objdump_listing_pastes_back_in() -> None:
    """A real llvm-objdump-14 -dr listing (headers, raw bytes, relocation line, symbol
    headers, <target> annotations) assembles to the bytes its raw column shows."""
    listing = (FIXTURES / "objdump14_listing.txt").read_text()
    columns = re.findall(r"^\s*\d+:\t([0-9a-f ]+)\t", listing, re.M)
    expected = decode(bytes.fromhex("".join(columns).replace(" ", "")))
    program = assemble(listing)
    assert len(program) == len(expected) == 15
    differs = [i for i, (a, b) in enumerate(zip(program, expected, strict=True)) if a != b]
    # LLVM 14 prints its local call (src=1) as "call 2", the text of helper 2.
    assert differs == [9] and expected[9].src == 1 and program[9].src == 0


# ---- conformance syntax ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "hexbytes"),
    [
        ("mov %r0, 1", "b7 00 00 00 01 00 00 00"),
        ("mov32 %r0, -10", "b4 00 00 00 f6 ff ff ff"),
        ("add64 %r1, %r2", "0f 21 00 00 00 00 00 00"),
        ("ldxw %r0, [%r1+4]", "61 10 04 00 00 00 00 00"),
        ("ldxdw %r0, [%r1]", "79 10 00 00 00 00 00 00"),
        ("ldxb %r0, [%r1+0xffff]", "71 10 ff ff 00 00 00 00"),
        ("ldxsb %r0, [%r10-1]", "91 a0 ff ff 00 00 00 00"),
        ("stdw [%r10-8], 0xab", "7a 0a f8 ff ab 00 00 00"),
        ("stxh [%r1+2], %r2", "6b 21 02 00 00 00 00 00"),
        ("lock fetch add32 [%r10-8], %r1", "c3 1a f8 ff 01 00 00 00"),
        ("lock add [%r10-8], %r1", "db 1a f8 ff 00 00 00 00"),
        ("lock xchg [%r10-8], %r1", "db 1a f8 ff e1 00 00 00"),
        ("lock cmpxchg32 [%r10-8], %r1", "c3 1a f8 ff f1 00 00 00"),
        ("jeq %r1, 0x11, +2", "15 01 02 00 11 00 00 00"),
        ("jsge32 %r4, -1, -3", "76 04 fd ff ff ff ff ff"),
        ("jne %r1, 0xffffffff, +1", "55 01 01 00 ff ff ff ff"),
        ("ja +5", "05 00 05 00 00 00 00 00"),
        ("ja32 +70000", "06 00 00 00 70 11 01 00"),
        ("call 5", "85 00 00 00 05 00 00 00"),
        ("call helper 5", "85 00 00 00 05 00 00 00"),
        ("call runtime 7", "85 20 00 00 07 00 00 00"),
        ("call local -2", "85 10 00 00 fe ff ff ff"),
        ("call %r2", "8d 02 00 00 00 00 00 00"),
        ("lddw %r0, 0x1122334455667788", "18 00 00 00 88 77 66 55 00 00 00 00 44 33 22 11"),
        ("lddw %r3, -2", "18 03 00 00 fe ff ff ff 00 00 00 00 ff ff ff ff"),
        ("le16 %r0", "d4 00 00 00 10 00 00 00"),
        ("be64 %r0", "dc 00 00 00 40 00 00 00"),
        ("swap16 %r0", "d7 00 00 00 10 00 00 00"),
        ("bswap32 %r0", "d7 00 00 00 20 00 00 00"),
        ("movsx832 %r1, %r2", "bc 21 08 00 00 00 00 00"),
        ("movsx1664 %r1, %r2", "bf 21 10 00 00 00 00 00"),
        ("movsx3264 %r1, %r2", "bf 21 20 00 00 00 00 00"),
        ("neg %r0", "87 00 00 00 00 00 00 00"),
        ("neg32 %r0", "84 00 00 00 00 00 00 00"),
        ("sdiv %r0, %r1", "3f 10 01 00 00 00 00 00"),
        ("smod32 %r0, 3", "94 00 01 00 03 00 00 00"),
        ("exit", "95 00 00 00 00 00 00 00"),
    ],
)
def test_conformance_syntax(text: str, hexbytes: str) -> None:
    assert one(text, "conformance") == raw(hexbytes)
    if text not in ("exit", "call 5"):
        assert one(text) == raw(hexbytes)  # auto-detected


def test_conformance_labels_and_default_exit_label() -> None:
    program = assemble(
        """
        mov %r0, 0   # r0 = 0
        jeq %r1, 0, exit
        ja32 target
        call local func
        exit
        target:
        ja -1
        func:
        exit
        """,
        syntax="conformance",
    )
    assert program[1].off == 2  # the first exit (pc 4) is the label "exit"
    assert program[2].imm == 2 and program[2].code == 0x06
    assert program[3].imm == 2 and program[3].src == 1


def test_explicit_exit_label_wins() -> None:
    program = assemble("ja exit\nexit\nexit:\nexit", syntax="conformance")
    assert program[0].off == 1


# ---- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "syntax", "line"),
    [
        ("mov %r0, 1\nfoo %r0, 1", "conformance", 2),  # unknown mnemonic
        ("mov %r11, 1", "conformance", 1),  # bad register
        ("mov %r0, %r50", "conformance", 1),
        ("mov r0, 1", "conformance", 1),
        ("add %r0, 1, 2", "conformance", 1),  # operand count
        ("lddw %r0", "conformance", 1),
        ("exit %r0", "conformance", 1),
        ("neg %r0, 1", "conformance", 1),
        ("lock", "conformance", 1),
        ("lock or [%r10-8]", "conformance", 1),
        ("lock fetch", "conformance", 1),
        ("lock sub [%r10-8], %r1", "conformance", 1),
        ("ja nowhere\nexit", "conformance", 1),  # undefined label
        ("a:\na:\nexit", "conformance", 2),  # duplicate label
        ("ja 5", "conformance", 1),  # neither +offset nor label
        ("ldxb %r0, %r1", "conformance", 1),  # bad memory operand
        ("ldxb %r0, [%r1+]", "conformance", 1),
        ("ldxb %r0, [%r1+0x10000]", "conformance", 1),  # 16-bit offset
        ("ldxb %r0, [%r1+32768]", "conformance", 1),
        ("ja +32768", "conformance", 1),
        ("mov32 %r0, 2147483648", "conformance", 1),  # decimal imm32
        ("mov32 %r0, -2147483649", "conformance", 1),
        ("mov32 %r0, 0x100000000", "conformance", 1),  # hex imm32
        ("mov %r0, abc", "conformance", 1),
        ("lddw %r0, 0x10000000000000000", "conformance", 1),
        ("movsx832 %r0, 5", "conformance", 1),
        ("call local", "conformance", 1),
        ("call remote 5", "conformance", 1),
        ("call %r11", "conformance", 1),
        ("", "conformance", 1),  # empty program
        ("# only a comment\n\n", "conformance", 2),
        ("r0 = 1\nr0 = ?", "llvm", 2),
        ("r11 = 1", "llvm", 1),
        ("r1 = w2", "llvm", 1),  # width mismatch
        ("if r1 > w2 goto +1", "llvm", 1),
        ("r0 = *(u32 *)(r1 + 32768)", "llvm", 1),
        ("goto -32769", "llvm", 1),
        ("goto nowhere", "llvm", 1),
        ("w0 = 4294967296", "llvm", 1),
        ("w0 = 2147483648", "llvm", 1),
        ("r1 = -r2", "llvm", 1),
        ("r1 = le8 r1", "llvm", 1),
        ("r1 = le16 r2", "llvm", 1),
        ("r1 = xchg_64(r2 + 0, r3)", "llvm", 1),
        ("r1 = cmpxchg_64(r2 + 0, r0, r3)", "llvm", 1),
        ("w1 = (s32)w2", "llvm", 1),  # rejected by the codec's check
        ("r1 = addr_space_cast(r2, 2, 3)", "llvm", 1),
        ("r1 = map[5] ll", "llvm", 1),
        ("<unknown>", "llvm", 1),
        ("", "llvm", 1),
    ],
)
def test_refusals(text: str, syntax: str, line: int) -> None:
    with pytest.raises(AssemblyError) as info:
        assemble(text, syntax=syntax)
    assert info.value.line == line
    lines = text.splitlines()
    assert info.value.text == (
        lines[line - 1].strip() if line <= len(lines) and text.strip() else ""
    )


def test_jump_to_a_label_out_of_16_bit_range() -> None:
    text = "ja far\n" + "mov %r0, 0\n" * 0x8000 + "far:\nexit\n"
    with pytest.raises(AssemblyError) as info:
        assemble(text, syntax="conformance")
    assert info.value.line == 1
    assert assemble(text.replace("ja far", "ja32 far"), syntax="conformance")[0].imm == 0x8000


def test_hex_imm32_is_twos_complement() -> None:
    assert one("mov32 %r0, 0xffffffff", "conformance").imm == -1
    assert one("mov32 %r0, 0x80000000", "conformance").imm == -0x80000000
    assert one("mov32 %r0, -2147483648", "conformance").imm == -0x80000000


def test_syntax_detection() -> None:
    assert detect_syntax("# x\nL1:\nmov %r0, 1\nexit") == "conformance"
    assert detect_syntax("lock add [%r10-8], %r1") == "conformance"
    assert detect_syntax("ja +1\nexit") == "conformance"
    assert detect_syntax("lock *(u64 *)(r1 + 0) += r2") == "llvm"
    assert detect_syntax("  0:\tb7 00 00 00 02 00 00 00\tr0 = 2") == "llvm"
    assert detect_syntax("exit") == "llvm"
    with pytest.raises(AssemblyError):
        assemble("exit", syntax="intel")


# ---- the bpf_conformance suite -----------------------------------------------------------------
def sections(path: Path) -> dict[str, str]:
    """The ``-- name`` sections of a .data file (comments left in, as the runner does)."""
    out: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        if "--" in line:
            current = line.split("--", 1)[1].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {name: "\n".join(lines) for name, lines in out.items()}


def raw_section(text: str) -> bytes:
    """A ``-- raw`` section: 8 hex bytes per line, or one little-endian u64 per token."""
    data = bytearray()
    for line in text.splitlines():
        tokens = line.split("#")[0].split()
        if len(tokens) == 8 and all(len(t) == 2 for t in tokens):
            data += bytes.fromhex("".join(tokens))
        else:
            for token in tokens:
                value = int(token, 16 if "0x" in token else 10)
                data += value.to_bytes(8, "little")
    return bytes(data)


def conformance_files(sub: str = "") -> list[Path]:
    folder = CONFORMANCE / sub
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (the shared reference data sits beside the clone)")
    return sorted(folder.glob("*.data"))


def test_every_positive_conformance_program_assembles() -> None:
    files = conformance_files()
    assert len(files) == 313
    for path in files:
        parts = sections(path)
        program = assemble(parts.get("asm", ""), syntax="conformance")
        assert program == assemble(parts.get("asm", "")), path.name  # auto picks conformance
        if "raw" in parts:
            assert program == decode(raw_section(parts["raw"])), path.name


NOT_ASSEMBLY_ERRORS = {"error.data", "incorrect_return_value_high_bits.data"}


def test_negative_conformance_programs_are_refused() -> None:
    files = conformance_files("negative")
    assert len(files) == 60
    refused = 0
    for path in files:
        parts = sections(path)
        if "raw" in parts:
            continue  # refused by the codec: see test_codec
        if path.name in NOT_ASSEMBLY_ERRORS:
            assert assemble(parts["asm"], syntax="conformance"), path.name
            continue
        with pytest.raises(AssemblyError) as info:
            assemble(parts.get("asm", ""), syntax="conformance")
        assert info.value.line is not None, path.name
        refused += 1
    assert refused == 13


_TOKENS = [
    "r1",
    "w2",
    "%r3",
    "r11",
    "=",
    "+=",
    "*(u32 *)",
    "(r1 + 4)",
    "[%r1+4]",
    "goto",
    "+3",
    "-0x2",
    "if",
    ">",
    "ll",
    "call",
    "lock",
    "fetch",
    "add32",
    "exit",
    ",",
    ":",
    "L1",
    "#",
    ";",
    "0xffffffff",
    "2147483648",
    "map[fd:1]",
    "\n",
    " ",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(_TOKENS), max_size=12),
    st.sampled_from(["auto", "llvm", "conformance"]),
)
def test_garbage_text_raises_assembly_error_only(tokens: list[str], syntax: str) -> None:
    text = " ".join(tokens)
    try:
        program = assemble(text, syntax=syntax)
    except AssemblyError as exc:
        assert exc.line is not None and exc.line >= 1
    else:
        assert program
