"""Disassembler: instructions to text in llvm-objdump's syntax, one line per instruction.

The text is what Debian's ``llvm-objdump-14 -d`` prints (``r0 = *(u32 *)(r1 + 4)``,
``if w1 s< -5 goto -2``, ``lock *(u64 *)(r0 + 0) += r1``, ``r1 = 1234 ll``). Instructions
LLVM 14 cannot print, or prints ambiguously, use the forms of newer LLVM (19+) or, where
LLVM has none, bpftool's:

==========================  =============================================================
v4 and later                ``r1 = (s8)r2``, ``w1 = (s16)w2``, ``r0 = *(s8 *)(r1 + 0)``,
                            ``r1 s/= r2``, ``w1 s%= 3``, ``r0 = bswap16 r0``, ``gotol +5``
immediate stores            ``*(u32 *)(r10 - 8) = 5``
``jset``                    ``if r1 & 4 goto +2``
32-bit atomics              ``lock *(u32 *)(r1 + 0) |= w2``,
                            ``w2 = atomic_fetch_or((u32 *)(r1 + 0), w2)``,
                            ``w2 = xchg32_32(r1 + 0, w2)``, ``w0 = cmpxchg32_32(r1 + 0, w0, w2)``
                            (a 32-bit ``+=`` keeps LLVM 14's ``lock *(u32 *)(r1 + 0) += r2``)
load-acquire/store-release  ``w0 = load_acquire((u8 *)(r1 + 0))``,
                            ``store_release((u64 *)(r1 + 0), r2)``
calls                       helper ``call 5``; local (bpf-to-bpf) ``call pc+3`` / ``call pc-3``;
                            kfunc ``call kfunc:1234`` (BTF id); ``callx r2``
Linux extensions            ``may_goto +3``, ``r1 = addr_space_cast(r2, 0, 1)`` (to address
                            space 0 from 1: ``imm`` is ``dst_as << 16 | src_as``)
``lddw`` pseudo sources     ``r1 = map[fd:5] ll``, ``r1 = map[fd:5][0]+8 ll`` (map value),
                            ``r1 = btf_id[1234] ll``, ``r1 = subprog[+5] ll`` (function),
                            ``r1 = map[idx:0] ll``, ``r1 = map[idx:0][0]+8 ll``; a second-slot
                            immediate these kinds do not use is kept as ``, hi:N``
                            (``btf_id[1234, hi:3]`` names module BTF fd 3)
legacy packet loads         ``r0 = *(u8 *)skb[5]``, ``r0 = *(u16 *)skb[r3]``,
                            ``r0 = *(u16 *)skb[r3 + 2]`` (LLVM 14 drops a nonzero ``imm``)
==========================  =============================================================

An instruction the codec's :func:`~pybpf.isa.codec.check` refuses prints as ``<unknown>``,
as llvm-objdump does. Every other line assembles back to the same instruction with
:func:`pybpf.isa.asm.assemble` (``callx`` is always re-encoded with its register in ``dst``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from pybpf.errors import DecodeError
from pybpf.isa.codec import check
from pybpf.isa.instruction import Instruction, slot_pcs
from pybpf.isa.opcodes import (
    AluOp,
    AtomicOp,
    CallKind,
    Class,
    JmpOp,
    Mode,
    Pseudo,
    Size,
    Source,
)

__all__ = ["format_instruction", "disassemble", "UNKNOWN"]

UNKNOWN = "<unknown>"

ALU_OPERATORS: dict[AluOp, str] = {
    AluOp.ADD: "+=",
    AluOp.SUB: "-=",
    AluOp.MUL: "*=",
    AluOp.DIV: "/=",
    AluOp.OR: "|=",
    AluOp.AND: "&=",
    AluOp.LSH: "<<=",
    AluOp.RSH: ">>=",
    AluOp.MOD: "%=",
    AluOp.XOR: "^=",
    AluOp.ARSH: "s>>=",
}

JMP_OPERATORS: dict[JmpOp, str] = {
    JmpOp.JEQ: "==",
    JmpOp.JGT: ">",
    JmpOp.JGE: ">=",
    JmpOp.JSET: "&",
    JmpOp.JNE: "!=",
    JmpOp.JSGT: "s>",
    JmpOp.JSGE: "s>=",
    JmpOp.JLT: "<",
    JmpOp.JLE: "<=",
    JmpOp.JSLT: "s<",
    JmpOp.JSLE: "s<=",
}

SIZE_NAMES: dict[Size, str] = {Size.B: "8", Size.H: "16", Size.W: "32", Size.DW: "64"}

ATOMIC_OPERATORS: dict[int, str] = {
    AtomicOp.ADD: "+",
    AtomicOp.OR: "|",
    AtomicOp.AND: "&",
    AtomicOp.XOR: "^",
}
ATOMIC_FETCH_NAMES: dict[int, str] = {
    AtomicOp.FETCH_ADD: "add",
    AtomicOp.FETCH_OR: "or",
    AtomicOp.FETCH_AND: "and",
    AtomicOp.FETCH_XOR: "xor",
}

_END_NAMES = {Source.K: "le", Source.X: "be"}


def _signed(value: int) -> str:
    """A jump offset as LLVM prints it: ``+3``, ``+0``, ``-2``."""
    return f"+{value}" if value >= 0 else str(value)


def _mem(base: int, off: int) -> str:
    """``r1 + 4`` / ``r1 - 4``: the address inside ``*(u32 *)(...)``."""
    return f"r{base} + {off}" if off >= 0 else f"r{base} - {-off}"


def _ptr(insn: Instruction, base: int, signed: bool = False) -> str:
    """``*(u32 *)(r1 + 4)``: the memory operand of a load or store."""
    kind = "s" if signed else "u"
    return f"*({kind}{SIZE_NAMES[insn.size]} *)({_mem(base, insn.off)})"


def format_instruction(insn: Instruction) -> str:
    """One instruction in llvm-objdump's syntax (see the module docstring for extensions).

    Returns ``"<unknown>"`` for an instruction :func:`~pybpf.isa.codec.check` refuses.
    """
    try:
        check(insn)
    except DecodeError:
        return UNKNOWN
    cls = insn.cls
    if cls in (Class.ALU, Class.ALU64):
        return _format_alu(insn)
    if cls in (Class.JMP, Class.JMP32):
        return _format_jmp(insn)
    if cls == Class.LD:
        return _format_ld(insn)
    if cls == Class.LDX:
        signed = insn.mode == Mode.MEMSX
        return f"r{insn.dst} = {_ptr(insn, insn.src, signed)}"
    if cls == Class.ST:
        return f"{_ptr(insn, insn.dst)} = {insn.imm}"
    if insn.mode == Mode.MEM:
        return f"{_ptr(insn, insn.dst)} = r{insn.src}"
    return _format_atomic(insn)


def _format_alu(insn: Instruction) -> str:
    reg = "r" if insn.cls == Class.ALU64 else "w"
    dst = f"{reg}{insn.dst}"
    op = insn.alu_op
    x = insn.source == Source.X
    operand = f"{reg}{insn.src}" if x else str(insn.imm)
    if op == AluOp.NEG:
        return f"{dst} = -{dst}"
    if op == AluOp.END:
        name = "bswap" if insn.cls == Class.ALU64 else _END_NAMES[insn.source]
        return f"r{insn.dst} = {name}{insn.imm} r{insn.dst}"
    if op == AluOp.MOV:
        if insn.is_addr_space_cast:
            imm = insn.imm & 0xFFFFFFFF
            return f"{dst} = addr_space_cast(r{insn.src}, {imm >> 16}, {imm & 0xFFFF})"
        if insn.movsx_bits:
            return f"{dst} = (s{insn.movsx_bits}){operand}"
        return f"{dst} = {operand}"
    operator = ALU_OPERATORS[op]
    if insn.is_signed_divmod:
        operator = "s" + operator
    return f"{dst} {operator} {operand}"


def _format_jmp(insn: Instruction) -> str:
    op = insn.jmp_op
    if op == JmpOp.EXIT:
        return "exit"
    if op == JmpOp.JA:
        return f"{'gotol' if insn.cls == Class.JMP32 else 'goto'} {_signed(insn.jump_offset)}"
    if op == JmpOp.JCOND:
        return f"may_goto {_signed(insn.off)}"
    if op == JmpOp.CALL:
        if insn.is_callx:
            return f"callx r{insn.callx_register}"
        kind = insn.call_kind
        if kind == CallKind.LOCAL:
            return f"call pc{_signed(insn.imm)}"
        if kind == CallKind.KFUNC:
            return f"call kfunc:{insn.imm}"
        return f"call {insn.imm}"
    reg = "r" if insn.cls == Class.JMP else "w"
    operand = f"{reg}{insn.src}" if insn.source == Source.X else str(insn.imm)
    return f"if {reg}{insn.dst} {JMP_OPERATORS[op]} {operand} goto {_signed(insn.off)}"


def _format_ld(insn: Instruction) -> str:
    if insn.is_lddw:
        return f"r{insn.dst} = {_lddw_source(insn)} ll"
    size = SIZE_NAMES[insn.size]
    if insn.mode == Mode.ABS:
        return f"r0 = *(u{size} *)skb[{insn.imm}]"
    index = f"r{insn.src}"
    if insn.imm:
        index = f"{index} + {insn.imm}" if insn.imm > 0 else f"{index} - {-insn.imm}"
    return f"r0 = *(u{size} *)skb[{index}]"


def _lddw_source(insn: Instruction) -> str:
    """The right-hand side of an ``lddw`` (without `` ll``)."""
    pseudo = insn.pseudo
    if pseudo == Pseudo.IMM64:
        value = insn.imm64
        return str(value - (1 << 64) if value >> 63 else value)
    hi = f", hi:{insn.imm_hi}" if insn.imm_hi else ""
    if pseudo == Pseudo.MAP_FD:
        return f"map[fd:{insn.imm}{hi}]"
    if pseudo == Pseudo.MAP_IDX:
        return f"map[idx:{insn.imm}{hi}]"
    if pseudo == Pseudo.BTF_ID:
        return f"btf_id[{insn.imm}{hi}]"
    if pseudo == Pseudo.FUNC:
        return f"subprog[{_signed(insn.imm)}{hi}]"
    key = "fd" if pseudo == Pseudo.MAP_VALUE else "idx"
    return f"map[{key}:{insn.imm}][0]{_signed(insn.imm_hi)}"


def _format_atomic(insn: Instruction) -> str:
    op = insn.atomic_op
    wide = insn.size == Size.DW
    reg = "r" if wide else "w"
    src = f"{reg}{insn.src}"
    address = _mem(insn.dst, insn.off)
    typed = f"(u{SIZE_NAMES[insn.size]} *)({address})"
    if op == AtomicOp.ADD:
        # LLVM 14 prints its 32-bit add (XADDW) with a 64-bit register name.
        return f"lock *{typed} += r{insn.src}"
    if op in ATOMIC_OPERATORS:
        return f"lock *{typed} {ATOMIC_OPERATORS[op]}= {src}"
    if op in ATOMIC_FETCH_NAMES:
        return f"{src} = atomic_fetch_{ATOMIC_FETCH_NAMES[op]}({typed}, {src})"
    if op == AtomicOp.XCHG:
        return f"{src} = {'xchg_64' if wide else 'xchg32_32'}({address}, {src})"
    if op == AtomicOp.CMPXCHG:
        name = "cmpxchg_64" if wide else "cmpxchg32_32"
        return f"{reg}0 = {name}({address}, {reg}0, {src})"
    if op == AtomicOp.LOAD_ACQ:
        # dst = load_acquire(src + off): the two registers swap roles here.
        loaded = f"(u{SIZE_NAMES[insn.size]} *)({_mem(insn.src, insn.off)})"
        return f"{reg}{insn.dst} = load_acquire({loaded})"
    return f"store_release({typed}, {src})"


def _raw(insn: Instruction) -> str:
    return " ".join(
        " ".join(f"{b:02x}" for b in slot.to_bytes(8, "little")) for slot in insn.raw_slots()
    )


def disassemble(
    insns: Iterable[Instruction],
    *,
    pcs: bool = True,
    raw: bool = False,
    before: Mapping[int, Sequence[str]] | None = None,
    comments: Mapping[int, str] | None = None,
) -> str:
    """A listing, one instruction per line, laid out like ``llvm-objdump -d``.

    ``pcs`` prefixes each line with its slot number (``"      3:\\t"``); ``raw`` adds the
    instruction's bytes (``"b7 00 00 00 02 00 00 00\\t"``). ``before`` maps a pc to lines
    printed above its instruction as ``; ...`` comments (source lines, labels);
    ``comments`` maps a pc to a ``; ...`` comment after it (relocation targets). Comments
    start with ``;``, so a listing assembles back. The result ends with a newline unless
    it is empty.
    """
    lines = []
    for pc, insn in slot_pcs(insns):
        for text in (before or {}).get(pc, ()):
            lines.append(f"; {text}")
        parts = []
        if pcs:
            parts.append(f"{pc:>8}:")
        if raw:
            parts.append(_raw(insn))
        parts.append(format_instruction(insn))
        line = "\t".join(parts)
        if comments and pc in comments:
            line += f"\t; {comments[pc]}"
        lines.append(line)
    return "".join(line + "\n" for line in lines)
