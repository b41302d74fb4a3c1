"""LLVM assembly: the llvm-objdump syntax, read exactly as :mod:`pybpf.isa.disasm` prints it.

A listing pastes back in:

- a leading ``pc:`` and the raw-byte column of ``llvm-objdump -d`` are skipped, and so are
  its headers (``file format``, ``Disassembly of section``), relocation lines and the
  ``<target>`` annotation after jumps; a symbol header ``0000000000000000 <name>:`` defines
  the label ``name``;
- numbers are decimal or hex (``*(u32 *)(r1 + 0x4)``, ``goto +0x3``: newer LLVM's form);
- ``name:`` defines a label, usable as a jump target (``goto name``) and as a local call
  target (``call name``); comments start with ``;``, ``#`` or ``//``;
- every form :mod:`pybpf.isa.disasm` prints beyond LLVM 14's: ``call pc+3`` (local call;
  ``call 3`` is helper 3, ``call name`` a local call to a label), ``call kfunc:7``,
  ``r1 = map[fd:5] ll`` and the other ``lddw`` pseudo sources, ``store_release(...)``, ...;
- also accepted: ``w`` destinations of 32-bit loads (``w1 = *(u32 *)(r2 + 0)``, as
  ``llvm-objdump --mattr=+alu32`` prints them) and ``goto pc+3`` (the kernel's form).

LLVM 14 prints a local call as ``call N``, the text of a helper call, so such a line in an
LLVM listing comes back as a helper call.

The bpf_conformance syntax lives in :mod:`pybpf.isa.conformance_asm`. Immediates follow
one rule in both syntaxes: a decimal imm32 must lie in ``[-2**31, 2**31 - 1]``, a hex one
may go up to ``0xffffffff`` and is then the two's-complement i32. Every refusal is an
:class:`~pybpf.errors.AssemblyError` with ``line`` (1-based) and ``text``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pybpf.isa.asm import (
    LABEL_PATTERN,
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

__all__ = ["parse_line", "prepare_line"]

_OBJDUMP_NOISE = re.compile(
    r"^(.*file format .*|Disassembly of section .*|[0-9a-fA-F]+:\s+R_BPF\w*\s.*)$"
)
_OBJDUMP_SYMBOL = re.compile(r"^[0-9a-fA-F]{8,16} <([^<>]+)>:$")
_PC_PREFIX = re.compile(r"^\d+:\s*")
_SLOT_BYTES = r"(?:[0-9a-fA-F]{2} ){7}[0-9a-fA-F]{2}"
_RAW_BYTES = re.compile(rf"^{_SLOT_BYTES}(?: {_SLOT_BYTES})?(?:\s+|$)")
_ANNOTATION = re.compile(r"\s*<[^<>]*>$")


def prepare_line(body: str) -> str:
    """Drop objdump's decorations: headers, pc prefix, raw bytes, jump annotations."""
    if _OBJDUMP_NOISE.match(body):
        return ""
    symbol = _OBJDUMP_SYMBOL.match(body)
    if symbol:
        return f"{symbol.group(1)}:" if re.fullmatch(LABEL_PATTERN, symbol.group(1)) else ""
    body = _PC_PREFIX.sub("", body, count=1)
    body = _RAW_BYTES.sub("", body, count=1)
    if body.startswith(("goto", "gotol", "may_goto", "if ")):
        body = _ANNOTATION.sub("", body)
    return " ".join(body.split())


_R = r"([rw])(\d+)"
_N = r"[+-]?\s*(?:0[xX][0-9a-fA-F]+|\d+)"
_ADDR = r"r(\d+)\s*(?:([+-])\s*(0[xX][0-9a-fA-F]+|\d+))?"
_TYPED = rf"\(\s*([us])(8|16|32|64)\s*\*\s*\)\s*\(\s*{_ADDR}\s*\)"
_SKB_INDEX = rf"r(\d+) ?(?:([+-]) ?({_N}))?"
_SIZES = {"8": Size.B, "16": Size.H, "32": Size.W, "64": Size.DW}

_ALU_OPS = {
    "+=": AluOp.ADD,
    "-=": AluOp.SUB,
    "*=": AluOp.MUL,
    "/=": AluOp.DIV,
    "|=": AluOp.OR,
    "&=": AluOp.AND,
    "<<=": AluOp.LSH,
    ">>=": AluOp.RSH,
    "%=": AluOp.MOD,
    "^=": AluOp.XOR,
    "s>>=": AluOp.ARSH,
    "s/=": AluOp.DIV,
    "s%=": AluOp.MOD,
}
_JMP_OPS = {
    "==": JmpOp.JEQ,
    "!=": JmpOp.JNE,
    ">": JmpOp.JGT,
    ">=": JmpOp.JGE,
    "<": JmpOp.JLT,
    "<=": JmpOp.JLE,
    "s>": JmpOp.JSGT,
    "s>=": JmpOp.JSGE,
    "s<": JmpOp.JSLT,
    "s<=": JmpOp.JSLE,
    "&": JmpOp.JSET,
}
_ATOMIC_OPS = {"+": AtomicOp.ADD, "|": AtomicOp.OR, "&": AtomicOp.AND, "^": AtomicOp.XOR}
_FETCH_OPS = {
    "add": AtomicOp.FETCH_ADD,
    "or": AtomicOp.FETCH_OR,
    "and": AtomicOp.FETCH_AND,
    "xor": AtomicOp.FETCH_XOR,
}
_END_SOURCES = {"le": Source.K, "be": Source.X}


def _alt(ops: dict) -> str:
    return "|".join(re.escape(op) for op in sorted(ops, key=len, reverse=True))


_FORMS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        ("exit", r"exit"),
        ("goto", r"(goto|gotol|may_goto) (.+)"),
        ("callx", r"callx r(\d+)"),
        ("call", r"call (.+)"),
        ("if", rf"if {_R} ?({_alt(_JMP_OPS)}) ?(?:{_R}|({_N})) goto (.+)"),
        ("lock", rf"lock \*{_TYPED} ?({_alt(_ATOMIC_OPS)})= ?{_R}"),
        ("store", rf"\*{_TYPED} ?= ?(?:{_R}|({_N}))"),
        ("release", rf"store_release\( ?{_TYPED} ?, ?{_R} ?\)"),
        ("alu", rf"{_R} ?({_alt(_ALU_OPS)}) ?(?:{_R}|({_N}))"),
        ("neg", rf"{_R} ?= ?-{_R}"),
        ("movsx", rf"{_R} ?= ?\(s(8|16|32)\) ?{_R}"),
        ("end", rf"{_R} ?= ?(le|be|bswap)(\d+) {_R}"),
        ("load", rf"{_R} ?= ?\*{_TYPED}"),
        ("skb", rf"{_R} ?= ?\*\( ?u(8|16|32) ?\* ?\) ?skb\[ ?(?:{_SKB_INDEX}|({_N})) ?\]"),
        ("fetch", rf"{_R} ?= ?atomic_fetch_(add|or|and|xor)\( ?{_TYPED} ?, ?{_R} ?\)"),
        ("xchg", rf"{_R} ?= ?(xchg_64|xchg32_32)\( ?{_ADDR} ?, ?{_R} ?\)"),
        ("cmpxchg", rf"{_R} ?= ?(cmpxchg_64|cmpxchg32_32)\( ?{_ADDR} ?, ?{_R} ?, ?{_R} ?\)"),
        ("acquire", rf"{_R} ?= ?load_acquire\( ?{_TYPED} ?\)"),
        ("cast", rf"{_R} ?= ?addr_space_cast\( ?{_R} ?, ?({_N}) ?, ?({_N}) ?\)"),
        ("lddw", r"([rw])(\d+) ?= ?(.+?) ll"),
        ("mov", rf"{_R} ?= ?(?:{_R}|({_N}))"),
    ]
]


def _reg(prefix: str, number: str, expect: str | None = None) -> int:
    value = int(number)
    if value > MAX_REGISTER:
        raise ValueError(f"bad register {prefix}{number}")
    if expect is not None and prefix != expect:
        width = "64" if expect == "r" else "32"
        raise ValueError(f"expected a {width}-bit register, not {prefix}{number}")
    return value


def _base(number: str) -> int:
    return _reg("r", number)


def _offset(sign: str | None, digits: str | None) -> int:
    """A memory offset written ``+ 4`` / ``- 0x4``: a signed 16-bit value."""
    if digits is None:
        return 0
    value, _ = parse_integer(f"{sign}{digits}")
    if not -0x8000 <= value <= 0x7FFF:
        raise ValueError(f"offset {value} is out of the signed 16-bit range")
    return value


def _target(token: str, bits: int) -> tuple[int, str | None]:
    """A jump target: a number (``+3``, ``-0x2``, ``pc+3``) or a label."""
    token = token.strip()
    if token.startswith("pc") and token[2:3] in ("+", "-"):
        token = token[2:]
    if re.fullmatch(LABEL_PATTERN, token):
        return 0, token
    value, _ = parse_integer(token)
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not low <= value <= high:
        raise ValueError(f"jump offset {value} is out of the signed {bits}-bit range")
    return value, None


def parse_line(program: Program, body: str, line: SourceLine) -> None:
    for name, pattern in _FORMS:
        match = pattern.fullmatch(body)
        if match:
            handler = _HANDLERS[name]
            handler(program, line, *match.groups())
            return
    raise ValueError(f"cannot parse {body!r}")


def _h_exit(program: Program, line: SourceLine) -> None:
    program.emit(Instruction(int(Class.JMP) | int(JmpOp.EXIT)), line)


def _h_goto(program: Program, line: SourceLine, word: str, target: str) -> None:
    if word == "gotol":
        value, label = _target(target, 32)
        insn = Instruction(jmp_opcode(Class.JMP32, JmpOp.JA, Source.K), imm=value)
        program.emit(insn, line, label, "imm")
        return
    op = JmpOp.JA if word == "goto" else JmpOp.JCOND
    value, label = _target(target, 16)
    program.emit(Instruction(jmp_opcode(Class.JMP, op, Source.K), off=value), line, label)


def _h_callx(program: Program, line: SourceLine, reg: str) -> None:
    code = jmp_opcode(Class.JMP, JmpOp.CALL, Source.X)
    program.emit(Instruction(code, dst=_reg("r", reg)), line)


def _h_call(program: Program, line: SourceLine, target: str) -> None:
    code = jmp_opcode(Class.JMP, JmpOp.CALL, Source.K)
    target = target.strip()
    if target.startswith("kfunc:"):
        imm = parse_imm32(target[6:])
        program.emit(Instruction(code, src=CallKind.KFUNC, imm=imm), line)
    elif target.startswith("pc") or re.fullmatch(LABEL_PATTERN, target):
        value, label = _target(target, 32)
        program.emit(Instruction(code, src=CallKind.LOCAL, imm=value), line, label, "imm")
    else:
        program.emit(Instruction(code, src=CallKind.HELPER, imm=parse_imm32(target)), line)


def _h_if(program, line, dp, dn, op, sp, sn, imm, target) -> None:
    cls = Class.JMP if dp == "r" else Class.JMP32
    value, label = _target(target, 16)
    if sp is not None:
        code = jmp_opcode(cls, _JMP_OPS[op], Source.X)
        insn = Instruction(code, _reg(dp, dn), _reg(sp, sn, dp), off=value)
    else:
        code = jmp_opcode(cls, _JMP_OPS[op], Source.K)
        insn = Instruction(code, _reg(dp, dn), off=value, imm=parse_imm32(imm))
    program.emit(insn, line, label)


def _size(kind: str, bits: str, allowed: str = "u") -> Size:
    if kind not in allowed:
        raise ValueError(f"{kind}{bits} is not allowed here")
    return _SIZES[bits]


def _h_lock(program, line, kind, bits, base, sign, digits, op, sp, sn) -> None:
    size = _size(kind, bits)
    code = mem_opcode(Class.STX, Mode.ATOMIC, size)
    insn = Instruction(code, _base(base), _reg(sp, sn), _offset(sign, digits), _ATOMIC_OPS[op])
    program.emit(insn, line)


def _h_store(program, line, kind, bits, base, sign, digits, sp, sn, imm) -> None:
    size = _size(kind, bits)
    off = _offset(sign, digits)
    if sp is not None:
        insn = Instruction(mem_opcode(Class.STX, Mode.MEM, size), _base(base), _reg(sp, sn), off)
    else:
        code = mem_opcode(Class.ST, Mode.MEM, size)
        insn = Instruction(code, _base(base), off=off, imm=parse_imm32(imm))
    program.emit(insn, line)


def _h_release(program, line, kind, bits, base, sign, digits, sp, sn) -> None:
    code = mem_opcode(Class.STX, Mode.ATOMIC, _size(kind, bits))
    off = _offset(sign, digits)
    program.emit(Instruction(code, _base(base), _reg(sp, sn), off, AtomicOp.STORE_REL), line)


def _h_alu(program, line, dp, dn, op, sp, sn, imm) -> None:
    cls = Class.ALU64 if dp == "r" else Class.ALU
    off = 1 if op in ("s/=", "s%=") else 0
    if sp is not None:
        code = alu_opcode(cls, _ALU_OPS[op], Source.X)
        insn = Instruction(code, _reg(dp, dn), _reg(sp, sn, dp), off)
    else:
        code = alu_opcode(cls, _ALU_OPS[op], Source.K)
        insn = Instruction(code, _reg(dp, dn), off=off, imm=parse_imm32(imm))
    program.emit(insn, line)


def _h_neg(program, line, dp, dn, sp, sn) -> None:
    dst = _reg(dp, dn)
    if _reg(sp, sn, dp) != dst:
        raise ValueError("neg must negate its own destination register")
    cls = Class.ALU64 if dp == "r" else Class.ALU
    program.emit(Instruction(alu_opcode(cls, AluOp.NEG, Source.K), dst), line)


def _h_movsx(program, line, dp, dn, bits, sp, sn) -> None:
    cls = Class.ALU64 if dp == "r" else Class.ALU
    code = alu_opcode(cls, AluOp.MOV, Source.X)
    program.emit(Instruction(code, _reg(dp, dn), _reg(sp, sn, dp), int(bits)), line)


def _h_end(program, line, dp, dn, name, bits, sp, sn) -> None:
    dst = _reg(dp, dn)
    if _reg(sp, sn) != dst:
        raise ValueError(f"{name}{bits} must convert its own destination register")
    if bits not in ("16", "32", "64"):
        raise ValueError(f"byte swap width must be 16, 32 or 64, not {bits}")
    if name == "bswap":
        code = alu_opcode(Class.ALU64, AluOp.END, Source.K)
    else:
        code = alu_opcode(Class.ALU, AluOp.END, _END_SOURCES[name])
    program.emit(Instruction(code, dst, imm=int(bits)), line)


def _h_load(program, line, dp, dn, kind, bits, base, sign, digits) -> None:
    size = _size(kind, bits, "us")
    code = mem_opcode(Class.LDX, Mode.MEMSX if kind == "s" else Mode.MEM, size)
    program.emit(Instruction(code, _reg(dp, dn), _base(base), _offset(sign, digits)), line)


def _h_skb(program, line, dp, dn, bits, index, sign, imm, absolute) -> None:
    if _reg(dp, dn, "r") != 0:
        raise ValueError("legacy packet loads always load r0")
    size = _SIZES[bits]
    if index is None:
        code = mem_opcode(Class.LD, Mode.ABS, size)
        program.emit(Instruction(code, imm=parse_imm32(absolute)), line)
        return
    value = 0 if imm is None else parse_imm32(f"{sign}{imm.replace(' ', '')}")
    code = mem_opcode(Class.LD, Mode.IND, size)
    program.emit(Instruction(code, src=_base(index), imm=value), line)


def _h_fetch(program, line, dp, dn, name, kind, bits, base, sign, digits, sp, sn) -> None:
    src = _reg(sp, sn)
    if _reg(dp, dn) != src:
        raise ValueError("atomic_fetch_* returns into its value register")
    code = mem_opcode(Class.STX, Mode.ATOMIC, _size(kind, bits))
    insn = Instruction(code, _base(base), src, _offset(sign, digits), _FETCH_OPS[name])
    program.emit(insn, line)


def _h_xchg(program, line, dp, dn, name, base, sign, digits, sp, sn) -> None:
    src = _reg(sp, sn)
    if _reg(dp, dn) != src:
        raise ValueError("xchg returns into its value register")
    size = Size.DW if name == "xchg_64" else Size.W
    code = mem_opcode(Class.STX, Mode.ATOMIC, size)
    program.emit(Instruction(code, _base(base), src, _offset(sign, digits), AtomicOp.XCHG), line)


def _h_cmpxchg(program, line, dp, dn, name, base, sign, digits, op, on, sp, sn) -> None:
    if _reg(dp, dn) != 0 or _reg(op, on) != 0:
        raise ValueError("cmpxchg compares with and returns into r0")
    size = Size.DW if name == "cmpxchg_64" else Size.W
    code = mem_opcode(Class.STX, Mode.ATOMIC, size)
    insn = Instruction(code, _base(base), _reg(sp, sn), _offset(sign, digits), AtomicOp.CMPXCHG)
    program.emit(insn, line)


def _h_acquire(program, line, dp, dn, kind, bits, base, sign, digits) -> None:
    code = mem_opcode(Class.STX, Mode.ATOMIC, _size(kind, bits))
    off = _offset(sign, digits)
    program.emit(Instruction(code, _reg(dp, dn), _base(base), off, AtomicOp.LOAD_ACQ), line)


def _h_cast(program, line, dp, dn, sp, sn, dst_as, src_as) -> None:
    high, _ = parse_integer(dst_as)
    low, _ = parse_integer(src_as)
    if not (0 <= high <= 0xFFFF and 0 <= low <= 0xFFFF):
        raise ValueError("address spaces must be 16-bit unsigned numbers")
    code = alu_opcode(Class.ALU64, AluOp.MOV, Source.X)
    imm = fit_signed((high << 16) | low, True, 32, "address space pair")
    program.emit(Instruction(code, _reg(dp, dn, "r"), _reg(sp, sn, "r"), 1, imm), line)


_PSEUDO_RE = re.compile(
    rf"(map|btf_id|subprog)\[ ?(?:(fd|idx):)?({_N})(?: ?, ?hi:({_N}))? ?\](?:\[0\]({_N}))?"
)


def _h_lddw(program, line, dp, dn, source) -> None:
    dst = _reg(dp, dn, "r")
    source = source.strip()
    match = _PSEUDO_RE.fullmatch(source)
    if match is None:
        imm, imm_hi = split_imm64(parse_imm64(source))
        program.emit(Instruction(LDDW_CODE, dst, imm=imm, imm_hi=imm_hi), line)
        return
    kind, key, number, hi, value_off = match.groups()
    if kind == "map":
        if key is None:
            raise ValueError("map[...] needs fd: or idx:")
        if value_off is not None:
            pseudo = Pseudo.MAP_VALUE if key == "fd" else Pseudo.MAP_IDX_VALUE
            if hi is not None:
                raise ValueError("a map value load has no hi: field")
            hi = value_off
        else:
            pseudo = Pseudo.MAP_FD if key == "fd" else Pseudo.MAP_IDX
    elif key is not None or value_off is not None:
        raise ValueError(f"cannot parse {source!r}")
    else:
        pseudo = Pseudo.BTF_ID if kind == "btf_id" else Pseudo.FUNC
    imm = parse_imm32(number)
    imm_hi = 0 if hi is None else parse_imm32(hi)
    program.emit(Instruction(LDDW_CODE, dst, int(pseudo), imm=imm, imm_hi=imm_hi), line)


def _h_mov(program, line, dp, dn, sp, sn, imm) -> None:
    cls = Class.ALU64 if dp == "r" else Class.ALU
    if sp is not None:
        code = alu_opcode(cls, AluOp.MOV, Source.X)
        program.emit(Instruction(code, _reg(dp, dn), _reg(sp, sn, dp)), line)
    else:
        code = alu_opcode(cls, AluOp.MOV, Source.K)
        program.emit(Instruction(code, _reg(dp, dn), imm=parse_imm32(imm)), line)


_HANDLERS: dict[str, Callable[..., None]] = {
    "exit": _h_exit,
    "goto": _h_goto,
    "callx": _h_callx,
    "call": _h_call,
    "if": _h_if,
    "lock": _h_lock,
    "store": _h_store,
    "release": _h_release,
    "alu": _h_alu,
    "neg": _h_neg,
    "movsx": _h_movsx,
    "end": _h_end,
    "load": _h_load,
    "skb": _h_skb,
    "fetch": _h_fetch,
    "xchg": _h_xchg,
    "cmpxchg": _h_cmpxchg,
    "acquire": _h_acquire,
    "cast": _h_cast,
    "lddw": _h_lddw,
    "mov": _h_mov,
}
