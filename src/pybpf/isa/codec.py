"""Codec: raw eBPF bytecode to frozen instructions and back, refusing every malformed field.

:func:`decode` reads little-endian ``struct bpf_insn`` slots and :func:`encode` writes them;
``encode(decode(b)) == b`` for every valid program. :func:`check` holds the validity rules
(RFC 9669 plus Linux's extensions): unknown opcodes, registers above r10, truncated
``lddw`` and nonzero unused fields are :class:`~pybpf.errors.DecodeError` naming the byte
offset, the slot and the field.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from pybpf.errors import DecodeError
from pybpf.isa.instruction import LDDW_CODE, Instruction
from pybpf.isa.opcodes import (
    INSN_SIZE,
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
    opcode_class,
    opcode_mode,
    opcode_op,
    opcode_size,
    opcode_source,
)

__all__ = ["decode", "encode", "check", "decode_slot"]

_SLOT = struct.Struct("<BBhi")
_ALU_OPS = {int(op) for op in AluOp}
_JMP_OPS = {int(op) for op in JmpOp}
_ATOMIC_OPS = {int(op) for op in AtomicOp}
_RMW_SIZES = (Size.W, Size.DW)
_PSEUDOS = {int(p) for p in Pseudo}


def _err(message: str, field: str, value: int | None, pc: int) -> DecodeError:
    return DecodeError(message, field=field, value=value, pc=pc, offset=pc * INSN_SIZE)


def decode_slot(raw: bytes | memoryview, pc: int = 0) -> tuple[int, int, int, int, int]:
    """Split one 8-byte slot into ``(code, dst, src, off, imm)`` without validating it."""
    code, regs, off, imm = _SLOT.unpack(raw)
    return code, regs & 0x0F, regs >> 4, off, imm


def decode(data: bytes | bytearray | memoryview) -> list[Instruction]:
    """Decode a whole program; every instruction is checked by :func:`check`.

    Raises :class:`~pybpf.errors.DecodeError` (``offset``, ``pc``, ``field``, ``value``).
    """
    view = memoryview(data).cast("B")
    if len(view) % INSN_SIZE:
        raise _err(
            f"program length {len(view)} is not a multiple of {INSN_SIZE} bytes",
            "length",
            len(view),
            len(view) // INSN_SIZE,
        )
    nslots = len(view) // INSN_SIZE
    out: list[Instruction] = []
    pc = 0
    while pc < nslots:
        code, dst, src, off, imm = decode_slot(view[pc * 8 : pc * 8 + 8])
        imm_hi = 0
        if code == LDDW_CODE:
            if pc + 1 >= nslots:
                raise _err("lddw is truncated: its second slot is missing", "length", None, pc)
            code2, dst2, src2, off2, imm_hi = decode_slot(view[pc * 8 + 8 : pc * 8 + 16])
            for field, value in (("opcode", code2), ("dst", dst2), ("src", src2), ("off", off2)):
                if value:
                    raise _err(
                        f"second slot of lddw must have {field} 0, not {value:#x}",
                        field,
                        value,
                        pc + 1,
                    )
        insn = Instruction(code, dst, src, off, imm, imm_hi)
        check(insn, pc)
        out.append(insn)
        pc += insn.slots
    return out


def encode(insns: Iterable[Instruction]) -> bytes:
    """Encode instructions to little-endian bytecode (no validation: see :func:`check`)."""
    parts = []
    for insn in insns:
        for slot in insn.raw_slots():
            parts.append(slot.to_bytes(8, "little"))
    return b"".join(parts)


def _reg(value: int, field: str, pc: int) -> None:
    if value > MAX_REGISTER:
        raise _err(f"invalid register r{value} in {field}", field, value, pc)


def _zero(insn: Instruction, pc: int, *fields: str) -> None:
    for field in fields:
        value = getattr(insn, field)
        if value:
            raise _err(
                f"unused field {field} must be 0, not {value:#x} (opcode {insn.code:#04x})",
                field,
                value,
                pc,
            )


def _unknown(insn: Instruction, pc: int) -> DecodeError:
    return _err(f"unknown opcode {insn.code:#04x}", "opcode", insn.code, pc)


def check(insn: Instruction, pc: int = 0) -> None:
    """Refuse an instruction with an unknown opcode, a bad register or a nonzero unused field."""
    if not (0 <= insn.code <= 0xFF and 0 <= insn.dst <= 15 and 0 <= insn.src <= 15):
        raise _err("instruction field out of range", "opcode", insn.code, pc)
    if not (-0x8000 <= insn.off <= 0x7FFF):
        raise _err(f"offset {insn.off} does not fit in 16 bits", "off", insn.off, pc)
    if not (-0x80000000 <= insn.imm <= 0x7FFFFFFF):
        raise _err(f"immediate {insn.imm} does not fit in 32 bits", "imm", insn.imm, pc)
    if not (-0x80000000 <= insn.imm_hi <= 0x7FFFFFFF):
        raise _err(f"immediate {insn.imm_hi} does not fit in 32 bits", "imm", insn.imm_hi, pc + 1)
    cls = opcode_class(insn.code)
    if cls in (Class.ALU, Class.ALU64):
        _check_alu(insn, cls, pc)
    elif cls in (Class.JMP, Class.JMP32):
        _check_jmp(insn, cls, pc)
    elif cls == Class.LD:
        _check_ld(insn, pc)
    elif cls == Class.LDX:
        mode = opcode_mode(insn.code)
        if mode == Mode.MEM or (mode == Mode.MEMSX and opcode_size(insn.code) != Size.DW):
            _reg(insn.dst, "dst", pc)
            _reg(insn.src, "src", pc)
            _zero(insn, pc, "imm")
        else:
            raise _unknown(insn, pc)
    elif cls == Class.ST:
        if opcode_mode(insn.code) != Mode.MEM:
            raise _unknown(insn, pc)
        _reg(insn.dst, "dst", pc)
        _zero(insn, pc, "src")
    else:  # STX
        _check_stx(insn, pc)
    if insn.imm_hi and insn.code != LDDW_CODE:
        raise _err("only lddw has a second slot", "imm", insn.imm_hi, pc)


def _check_alu(insn: Instruction, cls: Class, pc: int) -> None:
    op = opcode_op(insn.code)
    source = opcode_source(insn.code)
    if op not in _ALU_OPS:
        raise _unknown(insn, pc)
    _reg(insn.dst, "dst", pc)
    if op == AluOp.NEG:
        if source != Source.K:
            raise _unknown(insn, pc)
        _zero(insn, pc, "src", "off", "imm")
    elif op == AluOp.END:
        if cls == Class.ALU64 and source != Source.K:
            raise _unknown(insn, pc)
        _zero(insn, pc, "src", "off")
        if insn.imm not in (16, 32, 64):
            raise _err(f"byte swap width must be 16, 32 or 64, not {insn.imm}", "imm", insn.imm, pc)
    elif op == AluOp.MOV:
        if source == Source.K:
            _zero(insn, pc, "src", "off")
        else:
            _reg(insn.src, "src", pc)
            allowed = (0, 1, 8, 16, 32) if cls == Class.ALU64 else (0, 8, 16)
            if insn.off not in allowed:
                raise _err(f"invalid mov offset {insn.off}", "off", insn.off, pc)
            if insn.off != 1:
                _zero(insn, pc, "imm")
            elif insn.imm not in (1, 1 << 16):  # Linux: only between address spaces 0 and 1
                raise _err(
                    f"addr_space_cast (mov offset 1) needs imm 1 or 0x10000, not {insn.imm:#x}",
                    "off",
                    insn.off,
                    pc,
                )
    else:
        if op in (AluOp.DIV, AluOp.MOD):
            if insn.off not in (0, 1):
                raise _err(f"div/mod offset must be 0 or 1, not {insn.off}", "off", insn.off, pc)
        else:
            _zero(insn, pc, "off")
        if source == Source.K:
            _zero(insn, pc, "src")
        else:
            _reg(insn.src, "src", pc)
            _zero(insn, pc, "imm")


def _check_jmp(insn: Instruction, cls: Class, pc: int) -> None:
    op = opcode_op(insn.code)
    source = opcode_source(insn.code)
    if op not in _JMP_OPS:
        raise _unknown(insn, pc)
    if op == JmpOp.JA:
        if source != Source.K:
            raise _unknown(insn, pc)
        if cls == Class.JMP:
            _zero(insn, pc, "dst", "src", "imm")
        else:
            _zero(insn, pc, "dst", "src", "off")
    elif op == JmpOp.CALL:
        if cls != Class.JMP:
            raise _unknown(insn, pc)
        if source == Source.K:
            _zero(insn, pc, "dst", "off")
            if insn.src not in (CallKind.HELPER, CallKind.LOCAL, CallKind.KFUNC):
                raise _err(f"invalid call kind src={insn.src}", "src", insn.src, pc)
        else:
            _zero(insn, pc, "src", "off")
            if insn.dst and insn.imm:
                raise _err("callx names its register twice (dst and imm)", "imm", insn.imm, pc)
            if not 0 <= insn.imm <= MAX_REGISTER:
                raise _err(f"invalid callx register {insn.imm}", "imm", insn.imm, pc)
            _reg(insn.dst, "dst", pc)
    elif op == JmpOp.EXIT:
        if cls != Class.JMP or source != Source.K:
            raise _unknown(insn, pc)
        _zero(insn, pc, "dst", "src", "off", "imm")
    elif op == JmpOp.JCOND:
        if cls != Class.JMP or source != Source.K:
            raise _unknown(insn, pc)
        _zero(insn, pc, "dst", "src", "imm")
    else:
        _reg(insn.dst, "dst", pc)
        if source == Source.K:
            _zero(insn, pc, "src")
        else:
            _reg(insn.src, "src", pc)
            _zero(insn, pc, "imm")


def _check_ld(insn: Instruction, pc: int) -> None:
    mode = opcode_mode(insn.code)
    size = opcode_size(insn.code)
    if insn.code == LDDW_CODE:
        _reg(insn.dst, "dst", pc)
        if insn.src not in _PSEUDOS:
            raise _err(f"invalid lddw pseudo source {insn.src}", "src", insn.src, pc)
        _zero(insn, pc, "off")
    elif mode in (Mode.ABS, Mode.IND) and size != Size.DW:
        _zero(insn, pc, "dst", "off")
        if mode == Mode.ABS:
            _zero(insn, pc, "src")
        else:
            _reg(insn.src, "src", pc)
    else:
        raise _unknown(insn, pc)


def _check_stx(insn: Instruction, pc: int) -> None:
    mode = opcode_mode(insn.code)
    size = opcode_size(insn.code)
    _reg(insn.dst, "dst", pc)
    _reg(insn.src, "src", pc)
    if mode == Mode.MEM:
        _zero(insn, pc, "imm")
    elif mode == Mode.ATOMIC:
        if insn.imm not in _ATOMIC_OPS:
            raise _err(f"unknown atomic operation {insn.imm:#x}", "imm", insn.imm, pc)
        if insn.imm not in (AtomicOp.LOAD_ACQ, AtomicOp.STORE_REL) and size not in _RMW_SIZES:
            raise _unknown(insn, pc)
    else:
        raise _unknown(insn, pc)
