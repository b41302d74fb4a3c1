"""isa: the eBPF instruction set: opcodes, frozen instructions, codec, assembler and disassembler.

Everything above this package sees :class:`Instruction` objects; the raw bit layout of
``struct bpf_insn`` lives here only.
"""

from pybpf.isa.asm import assemble
from pybpf.isa.codec import check, decode, encode
from pybpf.isa.disasm import disassemble, format_instruction
from pybpf.isa.instruction import Instruction, program_slots, slot_pcs, slot_table
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

__all__ = [
    "AluOp",
    "AtomicOp",
    "CallKind",
    "Class",
    "Instruction",
    "JmpOp",
    "Mode",
    "Pseudo",
    "Size",
    "Source",
    "assemble",
    "check",
    "decode",
    "disassemble",
    "encode",
    "format_instruction",
    "program_slots",
    "slot_pcs",
    "slot_table",
]
