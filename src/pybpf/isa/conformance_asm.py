"""Conformance assembly: the bpf_conformance suite's syntax, read line by line and printed.

The syntax of bpf_conformance's ``-- asm`` sections (its ``bpf_assembler.cc``):

- ALU: ``add|sub|mul|div|sdiv|mod|smod|or|and|lsh|rsh|arsh|xor|mov`` with no suffix (or
  ``64``) for 64-bit and ``32`` for 32-bit, as ``mov %r0, 1`` / ``add32 %r1, %r2``;
  ``neg``/``neg32``; ``movsx{8,16}{32,64}`` and ``movsx3264``; ``le16|32|64``,
  ``be16|32|64`` and the unconditional ``swap16|32|64`` = ``bswap16|32|64``.
- Jumps: ``jeq|jgt|jge|jset|jne|jsgt|jsge|jlt|jle|jslt|jsle`` (``32`` suffix for jmp32)
  ``%rD, imm|%rS, +off|label``; ``ja +off|label``; ``ja32 +off|label`` (``gotol``); ``exit``.
  The first ``exit`` is also the label ``exit`` unless a label of that name is defined.
- Calls: ``call 5`` = ``call helper 5``; ``call local label|+off`` (bpf-to-bpf);
  ``call runtime 7`` (kfunc by BTF id); ``call %r2`` (``callx``, register in ``dst``).
- Memory: ``ldx{b,h,w,dw} %rD, [%rS+off]``, ``ldxs{b,h,w}`` (sign-extending),
  ``st{b,h,w,dw} [%rD-off], imm``, ``stx{b,h,w,dw} [%rD+off], %rS``, ``lddw %rD, imm64``.
- Atomics: ``lock [fetch] add|or|and|xor[32] [%rD+off], %rS``, ``lock xchg[32] ...``,
  ``lock cmpxchg[32] ...``.

Registers are ``%r0`` .. ``%r10``; ``#`` starts a comment. A hex offset may use all 16
bits (``[%r1+0xffff]`` is offset -1), a decimal one must fit in a signed 16-bit field.
"""

from __future__ import annotations

import re

from pybpf.errors import NotSupportedError
from pybpf.isa.asm import (
    Program,
    SourceLine,
    fit_signed,
    parse_imm32,
    parse_imm64,
    parse_integer,
    split_imm64,
)
from pybpf.isa.instruction import LDDW_CODE, Instruction
from pybpf.isa.opcodes import (
    ATOMIC_FETCH,
    MAX_REGISTER,
    AluOp,
    AtomicOp,
    CallKind,
    Class,
    JmpOp,
    Mode,
    Pseudo,
    Size,
    Source,
    alu_opcode,
    jmp_opcode,
    mem_opcode,
)

__all__ = ["MNEMONICS", "parse_line", "format_conformance"]

_ALU_NAMES = {
    "add": AluOp.ADD,
    "sub": AluOp.SUB,
    "mul": AluOp.MUL,
    "div": AluOp.DIV,
    "sdiv": AluOp.DIV,
    "or": AluOp.OR,
    "and": AluOp.AND,
    "lsh": AluOp.LSH,
    "rsh": AluOp.RSH,
    "mod": AluOp.MOD,
    "smod": AluOp.MOD,
    "xor": AluOp.XOR,
    "mov": AluOp.MOV,
    "arsh": AluOp.ARSH,
}
_JMP_NAMES = {
    "jeq": JmpOp.JEQ,
    "jgt": JmpOp.JGT,
    "jge": JmpOp.JGE,
    "jset": JmpOp.JSET,
    "jne": JmpOp.JNE,
    "jsgt": JmpOp.JSGT,
    "jsge": JmpOp.JSGE,
    "jlt": JmpOp.JLT,
    "jle": JmpOp.JLE,
    "jslt": JmpOp.JSLT,
    "jsle": JmpOp.JSLE,
}
_SIZE_SUFFIXES = {"b": Size.B, "h": Size.H, "w": Size.W, "dw": Size.DW}
_ATOMIC_NAMES = {
    "add": AtomicOp.ADD,
    "or": AtomicOp.OR,
    "and": AtomicOp.AND,
    "xor": AtomicOp.XOR,
    "xchg": AtomicOp.XCHG,
    "cmpxchg": AtomicOp.CMPXCHG,
}
_MOVSX = {"movsx832": 8, "movsx1632": 16, "movsx864": 8, "movsx1664": 16, "movsx3264": 32}
_WIDTHS = ("16", "32", "64")
_SIGNED_DIVMOD = ("sdiv", "smod")

MNEMONICS: frozenset[str] = frozenset(
    [f"{name}{suffix}" for name in _ALU_NAMES for suffix in ("", "32", "64")]
    + ["neg", "neg32", "neg64", *_MOVSX]
    + [f"{name}{w}" for name in ("le", "be", "swap", "bswap") for w in _WIDTHS]
    + [f"{name}{suffix}" for name in _JMP_NAMES for suffix in ("", "32")]
    + ["ja", "ja32", "exit", "call", "lddw", "lock"]
    + [f"ldx{s}" for s in _SIZE_SUFFIXES]
    + [f"ldxs{s}" for s in ("b", "h", "w")]
    + [f"st{s}" for s in _SIZE_SUFFIXES]
    + [f"stx{s}" for s in _SIZE_SUFFIXES]
)

_REGISTER_RE = re.compile(r"%r(\d+)")
_MEMORY_RE = re.compile(r"\[\s*(%?\w+)\s*(?:([+-])\s*(\w+))?\s*\]")
_LABEL_RE = re.compile(r"[A-Za-z_.$][\w.$]*")


# ---- reading ---------------------------------------------------------------------------------
def _register(token: str) -> int:
    match = _REGISTER_RE.fullmatch(token)
    if not match or int(match.group(1)) > MAX_REGISTER:
        raise ValueError(f"bad register {token!r}")
    return int(match.group(1))


def _offset(sign: str | None, digits: str | None) -> int:
    if digits is None:
        return 0
    value, is_hex = parse_integer(f"{sign}{digits}")
    return fit_signed(value, is_hex, 16, "offset")


def _memory(token: str) -> tuple[int, int]:
    """``[%r1+4]`` as ``(register, offset)``."""
    match = _MEMORY_RE.fullmatch(token)
    if not match:
        raise ValueError(f"bad memory operand {token!r}: expected [%rN+offset]")
    register, sign, digits = match.groups()
    return _register(register), _offset(sign, digits)


def _target(token: str, bits: int) -> tuple[int, str | None]:
    """A jump target: ``+3`` / ``-0x2`` or a label."""
    if token[:1] in ("+", "-"):
        value, is_hex = parse_integer(token)
        return fit_signed(value, is_hex, bits, "jump offset"), None
    if not _LABEL_RE.fullmatch(token):
        raise ValueError(f"bad jump target {token!r}")
    return 0, token


def _operands(rest: str) -> list[str]:
    rest = rest.strip()
    if not rest:
        return []
    operands = [part.strip() for part in rest.split(",")]
    if any(not part for part in operands):
        raise ValueError("empty operand")
    return operands


def _count(mnemonic: str, operands: list[str], expected: int) -> None:
    if len(operands) != expected:
        raise ValueError(
            f"{mnemonic} takes {expected} operand{'s' * (expected != 1)}, not {len(operands)}"
        )


def parse_line(program: Program, body: str, line: SourceLine) -> None:
    """Assemble one line (comment and labels already removed) into ``program``."""
    mnemonic, _, rest = body.partition(" ")
    mnemonic = mnemonic.lower()
    if mnemonic not in MNEMONICS:
        raise ValueError(f"unknown mnemonic {mnemonic!r}")
    if mnemonic == "lock":
        _parse_lock(program, rest, line)
    elif mnemonic == "call":
        _parse_call(program, rest, line)
    else:
        _parse_plain(program, mnemonic, _operands(rest), line)


def _parse_plain(program: Program, mnemonic: str, ops: list[str], line: SourceLine) -> None:
    if mnemonic == "exit":
        _count(mnemonic, ops, 0)
        program.define_default("exit")
        program.emit(Instruction(jmp_opcode(Class.JMP, JmpOp.EXIT, Source.K)), line)
    elif mnemonic in ("ja", "ja32"):
        _count(mnemonic, ops, 1)
        if mnemonic == "ja":
            value, label = _target(ops[0], 16)
            insn = Instruction(jmp_opcode(Class.JMP, JmpOp.JA, Source.K), off=value)
            program.emit(insn, line, label)
        else:
            value, label = _target(ops[0], 32)
            insn = Instruction(jmp_opcode(Class.JMP32, JmpOp.JA, Source.K), imm=value)
            program.emit(insn, line, label, "imm")
    elif mnemonic.removesuffix("32") in _JMP_NAMES:
        _count(mnemonic, ops, 3)
        cls = Class.JMP32 if mnemonic.endswith("32") else Class.JMP
        op = _JMP_NAMES[mnemonic.removesuffix("32")]
        value, label = _target(ops[2], 16)
        program.emit(_binary(jmp_opcode, cls, op, ops, off=value), line, label)
    elif mnemonic == "lddw":
        _count(mnemonic, ops, 2)
        imm, imm_hi = split_imm64(parse_imm64(ops[1]))
        program.emit(Instruction(LDDW_CODE, _register(ops[0]), imm=imm, imm_hi=imm_hi), line)
    elif mnemonic.startswith("ldx"):
        _count(mnemonic, ops, 2)
        signed = mnemonic.startswith("ldxs")
        size = _SIZE_SUFFIXES[mnemonic[4:] if signed else mnemonic[3:]]
        code = mem_opcode(Class.LDX, Mode.MEMSX if signed else Mode.MEM, size)
        src, off = _memory(ops[1])
        program.emit(Instruction(code, _register(ops[0]), src, off), line)
    elif mnemonic.startswith("stx"):
        _count(mnemonic, ops, 2)
        dst, off = _memory(ops[0])
        code = mem_opcode(Class.STX, Mode.MEM, _SIZE_SUFFIXES[mnemonic[3:]])
        program.emit(Instruction(code, dst, _register(ops[1]), off), line)
    elif mnemonic.startswith("st"):
        _count(mnemonic, ops, 2)
        dst, off = _memory(ops[0])
        code = mem_opcode(Class.ST, Mode.MEM, _SIZE_SUFFIXES[mnemonic[2:]])
        program.emit(Instruction(code, dst, off=off, imm=parse_imm32(ops[1])), line)
    else:
        program.emit(_parse_alu(mnemonic, ops), line)


def _binary(build, cls: Class, op, ops: list[str], off: int = 0) -> Instruction:
    """``op %rD, %rS|imm`` for ALU and jump opcodes."""
    dst = _register(ops[0])
    if ops[1].startswith("%"):
        return Instruction(build(cls, op, Source.X), dst, _register(ops[1]), off)
    return Instruction(build(cls, op, Source.K), dst, off=off, imm=parse_imm32(ops[1]))


def _parse_alu(mnemonic: str, ops: list[str]) -> Instruction:
    if mnemonic in _MOVSX:
        _count(mnemonic, ops, 2)
        cls = Class.ALU if mnemonic.endswith("32") and mnemonic != "movsx3264" else Class.ALU64
        if not ops[1].startswith("%"):
            raise ValueError(f"{mnemonic} needs a source register")
        code = alu_opcode(cls, AluOp.MOV, Source.X)
        return Instruction(code, _register(ops[0]), _register(ops[1]), _MOVSX[mnemonic])
    for prefix, cls, source in (
        ("le", Class.ALU, Source.K),
        ("be", Class.ALU, Source.X),
        ("swap", Class.ALU64, Source.K),
        ("bswap", Class.ALU64, Source.K),
    ):
        if mnemonic[len(prefix) :] in _WIDTHS and mnemonic.startswith(prefix):
            _count(mnemonic, ops, 1)
            code = alu_opcode(cls, AluOp.END, source)
            return Instruction(code, _register(ops[0]), imm=int(mnemonic[len(prefix) :]))
    name, cls = mnemonic, Class.ALU64
    if mnemonic.endswith(("32", "64")):
        name = mnemonic[:-2]
        cls = Class.ALU if mnemonic.endswith("32") else Class.ALU64
    if name == "neg":
        _count(mnemonic, ops, 1)
        return Instruction(alu_opcode(cls, AluOp.NEG, Source.K), _register(ops[0]))
    _count(mnemonic, ops, 2)
    return _binary(alu_opcode, cls, _ALU_NAMES[name], ops, off=int(name in _SIGNED_DIVMOD))


def _parse_lock(program: Program, rest: str, line: SourceLine) -> None:
    words = rest.split(None, 1)
    fetch = bool(words) and words[0].lower() == "fetch"
    if fetch:
        words = words[1].split(None, 1) if len(words) > 1 else []
    if not words:
        raise ValueError("lock needs an operation and 2 operands")
    name = words[0].lower()
    base = name[:-2] if name.endswith("32") else name
    if base not in _ATOMIC_NAMES:
        raise ValueError(f"unknown atomic operation {name!r}")
    ops = _operands(words[1] if len(words) > 1 else "")
    _count(f"lock {name}", ops, 2)
    op = int(_ATOMIC_NAMES[base])
    if fetch:
        op |= ATOMIC_FETCH  # xchg and cmpxchg always have it
    dst, off = _memory(ops[0])
    size = Size.W if name.endswith("32") else Size.DW
    code = mem_opcode(Class.STX, Mode.ATOMIC, size)
    program.emit(Instruction(code, dst, _register(ops[1]), off, op), line)


def _parse_call(program: Program, rest: str, line: SourceLine) -> None:
    words = rest.split()
    if len(words) == 1:
        words = ["helper", *words]
    if len(words) != 2:
        raise ValueError(f"call takes 1 or 2 operands, not {len(words)}")
    mode, target = words[0].lower(), words[1]
    code = jmp_opcode(Class.JMP, JmpOp.CALL, Source.K)
    if mode == "helper" and target.startswith("%"):
        callx = jmp_opcode(Class.JMP, JmpOp.CALL, Source.X)
        program.emit(Instruction(callx, _register(target)), line)
    elif mode == "helper":
        program.emit(Instruction(code, src=CallKind.HELPER, imm=parse_imm32(target)), line)
    elif mode == "runtime":
        program.emit(Instruction(code, src=CallKind.KFUNC, imm=parse_imm32(target)), line)
    elif mode == "local":
        value, label = _target(target, 32)
        program.emit(Instruction(code, src=CallKind.LOCAL, imm=value), line, label, "imm")
    else:
        raise ValueError(f"unknown call mode {mode!r}: expected helper, local or runtime")


# ---- printing ----------------------------------------------------------------------------------
_SIZE_LETTERS = {size: letter for letter, size in _SIZE_SUFFIXES.items()}
_ALU_PRINT = {op: name for name, op in _ALU_NAMES.items() if name not in _SIGNED_DIVMOD}
_JMP_PRINT = {op: name for name, op in _JMP_NAMES.items()}
_ATOMIC_PRINT = {int(op): name for name, op in _ATOMIC_NAMES.items()}


def _signed(value: int) -> str:
    return f"+{value}" if value >= 0 else str(value)


def _mem(register: int, off: int) -> str:
    return f"[%r{register}{_signed(off)}]" if off else f"[%r{register}]"


def format_conformance(insn: Instruction) -> str:
    """One instruction in bpf_conformance's syntax.

    Raises :class:`~pybpf.errors.NotSupportedError` (``feature``) for instructions the
    syntax cannot express: ``lddw`` pseudo sources, legacy packet loads, ``may_goto``,
    ``addr_space_cast``, load-acquire and store-release.
    """
    cls = insn.cls
    if cls in (Class.ALU, Class.ALU64):
        return _format_alu(insn)
    if cls in (Class.JMP, Class.JMP32):
        return _format_jmp(insn)
    if cls == Class.LD:
        if not insn.is_lddw:
            raise NotSupportedError("legacy packet loads", feature="ld_abs_ind")
        if insn.pseudo != Pseudo.IMM64:
            raise NotSupportedError(f"lddw source {insn.pseudo.name}", feature="lddw_pseudo")
        return f"lddw %r{insn.dst}, {insn.imm64:#x}"
    letter = _SIZE_LETTERS[insn.size]
    if cls == Class.LDX:
        signed = "s" if insn.mode == Mode.MEMSX else ""
        return f"ldx{signed}{letter} %r{insn.dst}, {_mem(insn.src, insn.off)}"
    if cls == Class.ST:
        return f"st{letter} {_mem(insn.dst, insn.off)}, {insn.imm}"
    if insn.mode == Mode.MEM:
        return f"stx{letter} {_mem(insn.dst, insn.off)}, %r{insn.src}"
    op = insn.imm
    if op in _ATOMIC_PRINT:
        fetch, name = "", _ATOMIC_PRINT[op]
    elif op & ATOMIC_FETCH and op & ~ATOMIC_FETCH in _ATOMIC_PRINT:
        fetch, name = "fetch ", _ATOMIC_PRINT[op & ~ATOMIC_FETCH]
    else:
        feature = insn.atomic_op.name.lower()
        raise NotSupportedError(f"atomic operation {feature}", feature=feature)
    suffix = "32" if insn.size == Size.W else ""
    return f"lock {fetch}{name}{suffix} {_mem(insn.dst, insn.off)}, %r{insn.src}"


def _format_alu(insn: Instruction) -> str:
    suffix = "32" if insn.cls == Class.ALU else ""
    op = insn.alu_op
    dst = f"%r{insn.dst}"
    operand = f"%r{insn.src}" if insn.source == Source.X else str(insn.imm)
    if op == AluOp.NEG:
        return f"neg{suffix} {dst}"
    if op == AluOp.END:
        name = "bswap" if insn.cls == Class.ALU64 else ("be" if insn.source == Source.X else "le")
        return f"{name}{insn.imm} {dst}"
    if insn.is_addr_space_cast:
        raise NotSupportedError("addr_space_cast", feature="addr_space_cast")
    if insn.movsx_bits:
        width = "32" if insn.cls == Class.ALU else "64"
        return f"movsx{insn.movsx_bits}{width} {dst}, {operand}"
    name = _ALU_PRINT[op]
    if insn.is_signed_divmod:
        name = "s" + name
    return f"{name}{suffix} {dst}, {operand}"


def _format_jmp(insn: Instruction) -> str:
    op = insn.jmp_op
    if op == JmpOp.EXIT:
        return "exit"
    if op == JmpOp.JA:
        return f"{'ja32' if insn.cls == Class.JMP32 else 'ja'} {_signed(insn.jump_offset)}"
    if op == JmpOp.JCOND:
        raise NotSupportedError("may_goto", feature="may_goto")
    if op == JmpOp.CALL:
        if insn.is_callx:
            return f"call %r{insn.callx_register}"
        if insn.call_kind == CallKind.LOCAL:
            return f"call local {_signed(insn.imm)}"
        if insn.call_kind == CallKind.KFUNC:
            return f"call runtime {insn.imm}"
        return f"call {insn.imm}"
    suffix = "32" if insn.cls == Class.JMP32 else ""
    operand = f"%r{insn.src}" if insn.source == Source.X else str(insn.imm)
    return f"{_JMP_PRINT[op]}{suffix} %r{insn.dst}, {operand}, {_signed(insn.off)}"
