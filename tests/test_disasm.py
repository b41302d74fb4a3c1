"""Disassembler: llvm-objdump-14's text, checked against committed goldens and, when it is
installed, against llvm-objdump-14 itself."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from pybpf.isa.codec import check, decode, encode
from pybpf.isa.disasm import UNKNOWN, disassemble, format_instruction
from pybpf.isa.instruction import LDDW_CODE, Instruction
from pybpf.isa.opcodes import AluOp, AtomicOp, CallKind, Class, JmpOp, Mode, Pseudo, Size

FIXTURES = Path(__file__).parent / "fixtures" / "isa"
OBJDUMP = "llvm-objdump-14"


# ---- llvm-objdump-14 as an oracle ------------------------------------------------------------
def bpf_elf(code: bytes) -> bytes:
    """A minimal relocatable ELF64 (EM_BPF) whose .text holds ``code``."""
    shstrtab = b"\0.text\0.shstrtab\0.symtab\0.strtab\0"
    text_off = 64
    shstr_off = (text_off + len(code) + 7) & ~7
    sym_off = (shstr_off + len(shstrtab) + 7) & ~7
    str_off = sym_off + 24
    sh_off = (str_off + 1 + 7) & ~7

    def section(name, kind, flags, offset, size, link=0, info=0, align=1, entsize=0) -> bytes:
        return struct.pack(
            "<IIQQQQIIQQ", name, kind, flags, 0, offset, size, link, info, align, entsize
        )

    headers = (
        section(0, 0, 0, 0, 0)
        + section(1, 1, 6, text_off, len(code), align=8)
        + section(7, 3, 0, shstr_off, len(shstrtab))
        + section(17, 2, 0, sym_off, 24, link=4, info=1, align=8, entsize=24)
        + section(25, 3, 0, str_off, 1)
    )
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 1, 247, 1, 0, 0, sh_off, 0, 64, 0, 0, 64, 5, 2)
    out = bytearray(header + code)
    out += bytes(shstr_off - len(out)) + shstrtab
    out += bytes(sym_off - len(out)) + bytes(24) + b"\0"
    out += bytes(sh_off - len(out)) + headers
    return bytes(out)


def objdump14(insns: list[Instruction], tmp_path: Path) -> list[str]:
    """llvm-objdump-14's text for each instruction (jump annotations dropped)."""
    path = tmp_path / "prog.o"
    path.write_bytes(bpf_elf(encode(insns)))
    result = subprocess.run(
        [OBJDUMP, "-d", "--no-show-raw-insn", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    texts = []
    for line in result.stdout.splitlines():
        pc, sep, text = line.partition(":\t")
        if sep and pc.strip().isdigit():
            if text.startswith(("goto", "if ")) and text.endswith(">"):
                text = text[: text.rindex(" <")]
            texts.append(text.replace("\t", " "))  # "ld_pseudo\tr1, 2, 0"
    assert len(texts) == len(insns)
    return texts


def llvm14_prints_exactly(insn: Instruction) -> bool:
    """True where llvm-objdump-14 prints the instruction faithfully (see disasm's docstring:
    elsewhere it prints ``<unknown>``, ``ld_pseudo``, or drops a field)."""
    cls = insn.cls
    if cls == Class.LD:
        if insn.is_lddw:
            return insn.pseudo == Pseudo.IMM64
        return insn.mode == Mode.ABS or insn.imm == 0
    if insn.is_alu:
        lossy = insn.is_signed_divmod or insn.movsx_bits or insn.is_addr_space_cast
        return not (lossy or insn.is_bswap or insn.alu_op == AluOp.MOD)
    if insn.is_jmp_class:
        if insn.is_call:
            return insn.call_kind == CallKind.HELPER
        if insn.is_callx:
            return insn.dst == 0
        if insn.is_conditional_jump:
            return insn.jmp_op != JmpOp.JSET
        return cls == Class.JMP and not insn.is_may_goto
    if cls == Class.ST:
        return False
    if cls == Class.LDX:
        return insn.mode == Mode.MEM
    if insn.is_store:
        return True
    op = insn.atomic_op
    if insn.size == Size.W:
        return op == AtomicOp.ADD
    return op not in (AtomicOp.LOAD_ACQ, AtomicOp.STORE_REL)


def read_golden(name: str) -> list[tuple[Instruction, str, list[str]]]:
    rows = []
    for line in (FIXTURES / name).read_text().splitlines():
        if line and not line.startswith("#"):
            raw, text, *rest = line.split("\t")
            (insn,) = decode(bytes.fromhex(raw))
            rows.append((insn, text, rest))
    return rows


# ---- goldens ---------------------------------------------------------------------------------
def test_llvm14_golden() -> None:
    rows = read_golden("llvm14.golden")
    assert len(rows) > 500
    wrong = [
        (i, text, format_instruction(i)) for i, text, _ in rows if format_instruction(i) != text
    ]
    assert not wrong
    assert all(llvm14_prints_exactly(insn) for insn, _, _ in rows)


def test_extended_golden() -> None:
    """pybpf's own choices where llvm-objdump-14 is lossy (its text is the third column)."""
    rows = read_golden("extended.golden")
    assert len(rows) > 200
    wrong = [
        (i, text, format_instruction(i)) for i, text, _ in rows if format_instruction(i) != text
    ]
    assert not wrong
    assert not any(llvm14_prints_exactly(insn) for insn, _, _ in rows)


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("61 10 04 00 00 00 00 00", "r0 = *(u32 *)(r1 + 4)"),
        ("2d 21 03 00 00 00 00 00", "if r1 > r2 goto +3"),
        ("c6 01 fe ff fb ff ff ff", "if w1 s< -5 goto -2"),
        ("0c 10 00 00 00 00 00 00", "w0 += w1"),
        ("18 01 00 00 d2 04 00 00 00 00 00 00 00 00 00 00", "r1 = 1234 ll"),
        ("85 00 00 00 01 00 00 00", "call 1"),
        ("db 10 00 00 00 00 00 00", "lock *(u64 *)(r0 + 0) += r1"),
        ("dc 00 00 00 10 00 00 00", "r0 = be16 r0"),
        ("95 00 00 00 00 00 00 00", "exit"),
        ("05 00 00 00 00 00 00 00", "goto +0"),
        ("bf 21 08 00 00 00 00 00", "r1 = (s8)r2"),
        ("bc 21 10 00 00 00 00 00", "w1 = (s16)w2"),
        ("91 10 00 00 00 00 00 00", "r0 = *(s8 *)(r1 + 0)"),
        ("3f 21 01 00 00 00 00 00", "r1 s/= r2"),
        ("97 01 01 00 03 00 00 00", "r1 s%= 3"),
        ("d7 00 00 00 10 00 00 00", "r0 = bswap16 r0"),
        ("06 00 00 00 05 00 00 00", "gotol +5"),
        ("db 01 00 00 01 00 00 00", "r0 = atomic_fetch_add((u64 *)(r1 + 0), r0)"),
        ("db 01 00 00 e1 00 00 00", "r0 = xchg_64(r1 + 0, r0)"),
        ("db 21 00 00 f1 00 00 00", "r0 = cmpxchg_64(r1 + 0, r0, r2)"),
        ("c3 21 00 00 40 00 00 00", "lock *(u32 *)(r1 + 0) |= w2"),
        ("d3 10 00 00 00 01 00 00", "w0 = load_acquire((u8 *)(r1 + 0))"),
        ("db 21 08 00 10 01 00 00", "store_release((u64 *)(r1 + 8), r2)"),
        ("8d 02 00 00 00 00 00 00", "callx r2"),
        ("8d 00 00 00 02 00 00 00", "callx r2"),
        ("85 10 00 00 fd ff ff ff", "call pc-3"),
        ("85 20 00 00 d2 04 00 00", "call kfunc:1234"),
        ("30 00 00 00 05 00 00 00", "r0 = *(u8 *)skb[5]"),
        ("48 30 00 00 02 00 00 00", "r0 = *(u16 *)skb[r3 + 2]"),
        ("18 11 00 00 05 00 00 00 00 00 00 00 00 00 00 00", "r1 = map[fd:5] ll"),
        ("18 21 00 00 05 00 00 00 00 00 00 00 08 00 00 00", "r1 = map[fd:5][0]+8 ll"),
        ("18 31 00 00 d2 04 00 00 00 00 00 00 00 00 00 00", "r1 = btf_id[1234] ll"),
        ("18 31 00 00 d2 04 00 00 00 00 00 00 03 00 00 00", "r1 = btf_id[1234, hi:3] ll"),
        ("18 41 00 00 05 00 00 00 00 00 00 00 00 00 00 00", "r1 = subprog[+5] ll"),
        ("18 51 00 00 00 00 00 00 00 00 00 00 00 00 00 00", "r1 = map[idx:0] ll"),
        ("18 61 00 00 01 00 00 00 00 00 00 00 10 00 00 00", "r1 = map[idx:1][0]+16 ll"),
        ("e5 00 03 00 00 00 00 00", "may_goto +3"),
        ("bf 21 01 00 01 00 00 00", "r1 = addr_space_cast(r2, 0, 1)"),
        ("72 0a f8 ff 05 00 00 00", "*(u8 *)(r10 - 8) = 5"),
        ("45 01 02 00 04 00 00 00", "if r1 & 4 goto +2"),
    ],
)
def test_examples(raw: str, text: str) -> None:
    (insn,) = decode(bytes.fromhex(raw.replace(" ", "")))
    assert format_instruction(insn) == text


def test_invalid_instruction_prints_unknown() -> None:
    assert format_instruction(Instruction(0xFF)) == UNKNOWN
    assert format_instruction(Instruction(0x07, dst=1, src=3, imm=1)) == UNKNOWN


# ---- listing layout ----------------------------------------------------------------------------
def test_listing_layout_matches_objdump() -> None:
    insns = decode(
        bytes.fromhex("b70000000200000018010000ffffffff00000000ffffffff9500000000000000")
    )
    assert disassemble(insns, raw=True) == (
        "       0:\tb7 00 00 00 02 00 00 00\tr0 = 2\n"
        "       1:\t18 01 00 00 ff ff ff ff 00 00 00 00 ff ff ff ff\tr1 = -1 ll\n"
        "       3:\t95 00 00 00 00 00 00 00\texit\n"
    )
    assert disassemble(insns) == "       0:\tr0 = 2\n       1:\tr1 = -1 ll\n       3:\texit\n"
    assert disassemble(insns, pcs=False) == "r0 = 2\nr1 = -1 ll\nexit\n"
    assert disassemble([]) == ""


# ---- live comparison with llvm-objdump-14 ------------------------------------------------------
needs_objdump = pytest.mark.skipif(
    shutil.which(OBJDUMP) is None, reason=f"{OBJDUMP} is not installed"
)


@needs_objdump
def test_goldens_agree_with_live_llvm(tmp_path: Path) -> None:
    rows = read_golden("llvm14.golden")
    assert objdump14([insn for insn, _, _ in rows], tmp_path) == [text for _, text, _ in rows]
    rows = read_golden("extended.golden")
    assert objdump14([insn for insn, _, _ in rows], tmp_path) == [rest[0] for _, _, rest in rows]


def random_checked_instructions(rng: random.Random, count: int) -> list[Instruction]:
    """Random field values that pass the codec's check (a broad net, not a strategy)."""

    def wide(bits: int) -> int:
        if rng.random() < 0.3:
            return rng.choice([0, 1, -1, 8, 16, 32, 64, (1 << (bits - 1)) - 1, -(1 << (bits - 1))])
        return rng.randint(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)

    out: list[Instruction] = []
    while len(out) < count:
        code = rng.randrange(256)
        insn = Instruction(
            code,
            rng.randint(0, 10),
            rng.choice([0, 0, rng.randint(0, 10)]),
            rng.choice([0, 0, 1, 8, 16, 32, wide(16)]),
            rng.choice([0, wide(32), 0x100, 0x110, 0xE1, 0xF1, 0x41, 0x10000]),
            wide(32) if code == LDDW_CODE else 0,
        )
        try:
            check(insn)
        except Exception:
            continue
        out.append(insn)
    return out


@needs_objdump
def test_random_instructions_agree_with_live_llvm(tmp_path: Path) -> None:
    insns = [
        insn
        for insn in random_checked_instructions(random.Random(20240914), 6000)
        if llvm14_prints_exactly(insn)
    ]
    assert len(insns) > 2000
    expected = objdump14(insns, tmp_path)
    mine = [format_instruction(insn) for insn in insns]
    wrong = [(i, e, m) for i, e, m in zip(insns, expected, mine, strict=True) if e != m]
    assert not wrong[:20]
