"""Opcodes: every field value of the eBPF encoding (RFC 9669 plus Linux's extensions), once.

The 8-bit opcode is ``class`` (3 low bits) plus, for ALU/JMP classes, ``source`` (bit 3) and
``operation`` (4 high bits), or for load/store classes ``size`` (bits 3-4) and ``mode``
(3 high bits). This module is the only place that knows those bit positions; everything
else reads the named fields of :class:`pybpf.isa.Instruction`.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "Class",
    "Source",
    "Size",
    "Mode",
    "AluOp",
    "JmpOp",
    "AtomicOp",
    "ATOMIC_FETCH",
    "Pseudo",
    "CallKind",
    "SIZE_BYTES",
    "CLASS_MASK",
    "opcode_class",
    "opcode_source",
    "opcode_op",
    "opcode_size",
    "opcode_mode",
    "alu_opcode",
    "jmp_opcode",
    "mem_opcode",
    "MAX_REGISTER",
    "FRAME_POINTER",
    "STACK_SIZE",
    "MAX_CALL_DEPTH",
    "MAX_TAIL_CALLS",
    "MAY_GOTO_LOOPS",
    "INSN_SIZE",
]

INSN_SIZE = 8  # bytes per instruction slot
MAX_REGISTER = 10  # r0..r10
FRAME_POINTER = 10  # r10, read-only
STACK_SIZE = 512  # bytes per frame (MAX_BPF_STACK)
MAX_CALL_DEPTH = 8  # MAX_CALL_FRAMES in the kernel verifier
MAX_TAIL_CALLS = 33  # MAX_TAIL_CALL_CNT
MAY_GOTO_LOOPS = 8 * 1024 * 1024  # BPF_MAX_LOOPS: may_goto iterations per run

CLASS_MASK = 0x07
_SOURCE_MASK = 0x08
_OP_MASK = 0xF0
_SIZE_MASK = 0x18
_MODE_MASK = 0xE0


class Class(IntEnum):
    """Instruction class: the 3 low bits of the opcode."""

    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04
    JMP = 0x05
    JMP32 = 0x06
    ALU64 = 0x07


class Source(IntEnum):
    """Operand source of ALU and JMP instructions (bit 3): immediate or register.

    For ``END`` the same bit selects the byte order: ``K`` is ``le`` (to little endian),
    ``X`` is ``be``.
    """

    K = 0x00
    X = 0x08


class Size(IntEnum):
    """Access size of load and store instructions (bits 3-4)."""

    W = 0x00
    H = 0x08
    B = 0x10
    DW = 0x18


SIZE_BYTES = {Size.B: 1, Size.H: 2, Size.W: 4, Size.DW: 8}


class Mode(IntEnum):
    """Mode of load and store instructions (3 high bits)."""

    IMM = 0x00  # 64-bit immediate load (lddw)
    ABS = 0x20  # legacy packet access, absolute offset
    IND = 0x40  # legacy packet access, register + offset
    MEM = 0x60  # regular load/store
    MEMSX = 0x80  # sign-extending load
    ATOMIC = 0xC0  # atomic read-modify-write


class AluOp(IntEnum):
    """ALU operation (4 high bits). ``off`` selects the signed or sign-extending variants."""

    ADD = 0x00
    SUB = 0x10
    MUL = 0x20
    DIV = 0x30  # off=1: SDIV
    OR = 0x40
    AND = 0x50
    LSH = 0x60
    RSH = 0x70
    NEG = 0x80
    MOD = 0x90  # off=1: SMOD
    XOR = 0xA0
    MOV = 0xB0  # off=8/16/32: MOVSX; ALU64 off=1: addr_space_cast
    ARSH = 0xC0
    END = 0xD0  # byte swap: ALU le/be, ALU64 bswap


class JmpOp(IntEnum):
    """Jump operation (4 high bits)."""

    JA = 0x00
    JEQ = 0x10
    JGT = 0x20
    JGE = 0x30
    JSET = 0x40
    JNE = 0x50
    JSGT = 0x60
    JSGE = 0x70
    CALL = 0x80
    EXIT = 0x90
    JLT = 0xA0
    JLE = 0xB0
    JSLT = 0xC0
    JSLE = 0xD0
    JCOND = 0xE0  # may_goto (src=0)


ATOMIC_FETCH = 0x01


class AtomicOp(IntEnum):
    """Atomic operation, in the ``imm`` field of ``STX | ATOMIC`` (FETCH flag included)."""

    ADD = 0x00
    OR = 0x40
    AND = 0x50
    XOR = 0xA0
    FETCH_ADD = 0x01
    FETCH_OR = 0x41
    FETCH_AND = 0x51
    FETCH_XOR = 0xA1
    XCHG = 0xE1
    CMPXCHG = 0xF1
    LOAD_ACQ = 0x100
    STORE_REL = 0x110


class Pseudo(IntEnum):
    """``src`` of ``lddw``: what the 64-bit immediate means (Linux's BPF_PSEUDO_*)."""

    IMM64 = 0
    MAP_FD = 1
    MAP_VALUE = 2  # map fd in imm, value offset in the second slot's imm
    BTF_ID = 3
    FUNC = 4  # imm is a pc-relative instruction offset
    MAP_IDX = 5
    MAP_IDX_VALUE = 6


class CallKind(IntEnum):
    """``src`` of ``call``: helper by id, local (bpf-to-bpf) call, or kernel function (kfunc)."""

    HELPER = 0
    LOCAL = 1  # BPF_PSEUDO_CALL: imm is a pc-relative offset
    KFUNC = 2  # BPF_PSEUDO_KFUNC_CALL: imm is a BTF id


def _members(enum: type) -> dict[int, object]:
    return {int(m): m for m in enum}


_CLASSES = _members(Class)
_SOURCES = _members(Source)
_SIZES = _members(Size)


def opcode_class(code: int) -> Class:
    """The class of an opcode byte."""
    return _CLASSES[code & CLASS_MASK]  # a table: every 3-bit value is a class


def opcode_source(code: int) -> Source:
    """The source bit of an ALU/JMP opcode byte."""
    return _SOURCES[code & _SOURCE_MASK]


def opcode_op(code: int) -> int:
    """The operation nibble of an ALU/JMP opcode byte (still shifted: 0x00..0xf0)."""
    return code & _OP_MASK


def opcode_size(code: int) -> Size:
    """The size field of a load/store opcode byte."""
    return _SIZES[code & _SIZE_MASK]  # every 2-bit value is a size


def opcode_mode(code: int) -> int:
    """The mode field of a load/store opcode byte (a :class:`Mode` value or a reserved one)."""
    return code & _MODE_MASK


def alu_opcode(cls: Class, op: AluOp, source: Source) -> int:
    """Build an ALU/ALU64 opcode byte."""
    return int(cls) | int(op) | int(source)


def jmp_opcode(cls: Class, op: JmpOp, source: Source) -> int:
    """Build a JMP/JMP32 opcode byte."""
    return int(cls) | int(op) | int(source)


def mem_opcode(cls: Class, mode: Mode, size: Size) -> int:
    """Build a load/store opcode byte."""
    return int(cls) | int(mode) | int(size)
