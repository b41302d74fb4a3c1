"""Instruction: the frozen, decoded form of one eBPF instruction (two slots for ``lddw``).

An :class:`Instruction` holds the raw fields (``code``, ``dst``, ``src``, ``off``, ``imm``
and, for ``lddw``, ``imm_hi``) with ``off`` and ``imm`` as signed integers, and exposes
their meaning through named properties. It knows nothing about its position: a program
is a sequence of instructions whose slot numbers (pcs) come from :func:`slot_pcs`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from pybpf.isa.opcodes import (
    SIZE_BYTES,
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

# enum members by value: a dict lookup instead of an Enum call on every property access
_ALU_OPS = {int(m): m for m in AluOp}
_JMP_OPS = {int(m): m for m in JmpOp}
_MODES = {int(m): m for m in Mode}

__all__ = ["Instruction", "slot_pcs", "slot_table", "program_slots", "LDDW_CODE"]

LDDW_CODE = int(Class.LD) | int(Mode.IMM) | int(Size.DW)  # 0x18

_ALU_CLASSES = (Class.ALU, Class.ALU64)
_JMP_CLASSES = (Class.JMP, Class.JMP32)


@dataclass(frozen=True, slots=True)
class Instruction:
    """One decoded eBPF instruction.

    ``off`` is a signed 16-bit value and ``imm`` a signed 32-bit value, as in
    ``struct bpf_insn``. For ``lddw`` (two slots), ``imm`` is the first slot's immediate
    and ``imm_hi`` the second's; :attr:`imm64` combines them.
    """

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    imm_hi: int = 0

    # ---- class-level facts -------------------------------------------------------------
    @property
    def cls(self) -> Class:
        """The instruction class."""
        return opcode_class(self.code)

    @property
    def slots(self) -> int:
        """Number of 8-byte slots: 2 for ``lddw``, else 1."""
        return 2 if self.code == LDDW_CODE else 1

    @property
    def is_alu(self) -> bool:
        """ALU or ALU64 class."""
        return self.cls in _ALU_CLASSES

    @property
    def is_alu64(self) -> bool:
        """ALU64 class (64-bit arithmetic)."""
        return self.cls == Class.ALU64

    @property
    def is_jmp_class(self) -> bool:
        """JMP or JMP32 class (jumps, calls, exit)."""
        return self.cls in _JMP_CLASSES

    @property
    def source(self) -> Source:
        """Operand source of ALU/JMP instructions: ``K`` (imm) or ``X`` (src register)."""
        return opcode_source(self.code)

    @property
    def uses_register_source(self) -> bool:
        """True for ALU/JMP instructions whose second operand is the ``src`` register."""
        return self.source == Source.X

    # ---- ALU -----------------------------------------------------------------------------
    @property
    def alu_op(self) -> AluOp:
        """The ALU operation (only for ALU classes)."""
        op = _ALU_OPS.get(opcode_op(self.code))
        return op if op is not None else AluOp(opcode_op(self.code))  # raises: reserved

    @property
    def is_signed_divmod(self) -> bool:
        """``sdiv``/``smod``: DIV or MOD with ``off == 1``."""
        return self.is_alu and self.alu_op in (AluOp.DIV, AluOp.MOD) and self.off == 1

    @property
    def movsx_bits(self) -> int:
        """Source width of ``movsx`` (8, 16 or 32), or 0 for a plain ``mov``."""
        if self.is_alu and self.alu_op == AluOp.MOV and self.source == Source.X:
            if self.off in (8, 16, 32):
                return self.off
        return 0

    @property
    def is_addr_space_cast(self) -> bool:
        """Linux's arena ``addr_space_cast`` (ALU64 MOV X with ``off == 1``)."""
        return (
            self.cls == Class.ALU64
            and self.alu_op == AluOp.MOV
            and self.source == Source.X
            and self.off == 1
        )

    @property
    def is_bswap(self) -> bool:
        """Unconditional byte swap (ALU64 END)."""
        return self.cls == Class.ALU64 and self.alu_op == AluOp.END

    @property
    def is_big_endian_conversion(self) -> bool:
        """``be16/32/64`` (ALU END with source X); ``le`` has source K."""
        return self.cls == Class.ALU and self.alu_op == AluOp.END and self.source == Source.X

    # ---- jumps, calls, exit ------------------------------------------------------------
    @property
    def jmp_op(self) -> JmpOp:
        """The jump operation (only for JMP classes)."""
        op = _JMP_OPS.get(opcode_op(self.code))
        return op if op is not None else JmpOp(opcode_op(self.code))

    @property
    def is_exit(self) -> bool:
        """``exit``."""
        return self.cls == Class.JMP and self.jmp_op == JmpOp.EXIT

    @property
    def is_call(self) -> bool:
        """``call`` by immediate: helper, local or kfunc (see :attr:`call_kind`)."""
        return self.code == int(Class.JMP) | int(JmpOp.CALL)

    @property
    def is_callx(self) -> bool:
        """``callx``: call through a register (see :attr:`callx_register`)."""
        return self.code == int(Class.JMP) | int(JmpOp.CALL) | int(Source.X)

    @property
    def call_kind(self) -> CallKind:
        """Helper, local (bpf-to-bpf) or kfunc call."""
        return CallKind(self.src)

    @property
    def callx_register(self) -> int:
        """The register ``callx`` calls through.

        LLVM 19+ and GCC put it in ``dst``; LLVM up to 18 put it in ``imm``.
        """
        return self.dst if self.dst else self.imm

    @property
    def is_ja(self) -> bool:
        """Unconditional jump: ``goto`` (JMP JA) or ``gotol`` (JMP32 JA)."""
        return self.is_jmp_class and self.jmp_op == JmpOp.JA

    @property
    def is_may_goto(self) -> bool:
        """Linux's ``may_goto`` (JMP JCOND, src 0)."""
        return self.cls == Class.JMP and self.jmp_op == JmpOp.JCOND

    @property
    def is_conditional_jump(self) -> bool:
        """A two-way branch comparing registers (``if ... goto``)."""
        return self.is_jmp_class and self.jmp_op not in (
            JmpOp.JA,
            JmpOp.CALL,
            JmpOp.EXIT,
            JmpOp.JCOND,
        )

    @property
    def is_jump(self) -> bool:
        """Any instruction with a jump target (``goto``, ``gotol``, conditional, may_goto)."""
        return self.is_ja or self.is_conditional_jump or self.is_may_goto

    @property
    def jump_offset(self) -> int:
        """Target offset in slots relative to the next instruction (``imm`` for ``gotol``)."""
        if self.cls == Class.JMP32 and self.jmp_op == JmpOp.JA:
            return self.imm
        return self.off

    # ---- loads and stores --------------------------------------------------------------
    @property
    def size(self) -> Size:
        """Access size (only for load/store classes)."""
        return opcode_size(self.code)

    @property
    def nbytes(self) -> int:
        """Access size in bytes (only for load/store classes)."""
        return SIZE_BYTES[self.size]

    @property
    def mode(self) -> Mode:
        """Access mode (only for load/store classes)."""
        mode = _MODES.get(opcode_mode(self.code))
        return mode if mode is not None else Mode(opcode_mode(self.code))

    @property
    def is_lddw(self) -> bool:
        """The two-slot 64-bit immediate load."""
        return self.code == LDDW_CODE

    @property
    def pseudo(self) -> Pseudo:
        """What an ``lddw`` immediate means (only for ``lddw``)."""
        return Pseudo(self.src)

    @property
    def imm64(self) -> int:
        """The 64-bit immediate of ``lddw``, unsigned."""
        return ((self.imm_hi & 0xFFFFFFFF) << 32) | (self.imm & 0xFFFFFFFF)

    @property
    def is_legacy_packet_load(self) -> bool:
        """``LD_ABS``/``LD_IND`` (legacy socket-filter packet loads)."""
        return self.cls == Class.LD and opcode_mode(self.code) in (Mode.ABS, Mode.IND)

    @property
    def is_load(self) -> bool:
        """LDX from memory (``MEM`` or ``MEMSX``)."""
        return self.cls == Class.LDX

    @property
    def is_store(self) -> bool:
        """ST or STX ``MEM`` (not atomics)."""
        return self.cls in (Class.ST, Class.STX) and opcode_mode(self.code) == Mode.MEM

    @property
    def is_atomic(self) -> bool:
        """STX ``ATOMIC``: read-modify-write, see :attr:`atomic_op`."""
        return self.cls == Class.STX and opcode_mode(self.code) == Mode.ATOMIC

    @property
    def atomic_op(self) -> AtomicOp:
        """The atomic operation (only for atomics)."""
        return AtomicOp(self.imm)

    @property
    def is_sign_extending_load(self) -> bool:
        """``LDX | MEMSX``."""
        return self.cls == Class.LDX and opcode_mode(self.code) == Mode.MEMSX

    # ---- raw form ------------------------------------------------------------------------
    def raw_slots(self) -> tuple[int, ...]:
        """The instruction as little-endian u64 slot values (1 or 2)."""
        first = (
            (self.code & 0xFF)
            | ((self.dst & 0xF) << 8)
            | ((self.src & 0xF) << 12)
            | ((self.off & 0xFFFF) << 16)
            | ((self.imm & 0xFFFFFFFF) << 32)
        )
        if self.is_lddw:
            return (first, (self.imm_hi & 0xFFFFFFFF) << 32)
        return (first,)

    def __repr__(self) -> str:
        fields = [f"code={self.code:#04x}"]
        for name in ("dst", "src", "off", "imm", "imm_hi"):
            value = getattr(self, name)
            if value:
                fields.append(f"{name}={value}")
        return f"Instruction({', '.join(fields)})"


def slot_pcs(insns: Iterable[Instruction]) -> Iterator[tuple[int, Instruction]]:
    """Yield ``(pc, insn)`` where ``pc`` counts 8-byte slots, as jumps and the kernel do."""
    pc = 0
    for insn in insns:
        yield pc, insn
        pc += insn.slots


def program_slots(insns: Iterable[Instruction]) -> int:
    """Total number of slots in a program."""
    return sum(insn.slots for insn in insns)


def slot_table(insns: Sequence[Instruction]) -> list[Instruction | None]:
    """A list indexed by pc: each slot's instruction, ``None`` for an ``lddw``'s second slot."""
    table: list[Instruction | None] = []
    for insn in insns:
        table.append(insn)
        if insn.slots == 2:
            table.append(None)
    return table
