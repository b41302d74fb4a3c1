"""core: CO-RE relocations resolved against the kernel's BTF and patched in, as libbpf does.

For each ``bpf_core_relo`` of a linked program, :func:`calc_relo` finds the matching
kernel types (:mod:`pybpf.kernel.core_match`); all matching candidates must agree. The
value patched into the instruction (an ALU immediate, a load/store offset and size, or an
``lddw`` immediate) is the field's byte offset, size, existence, signedness or bitfield
shifts, a type's id, existence, match or size, or an enumerator's existence or value, as
``bpf_core_calc_relo`` computes it; the instruction must hold the value the local BTF
gives first. An instruction whose relocation found no target is "poisoned" into a call of
helper 0xbad2310, which the verifier refuses only if it is reachable.

Only the kernel's own BTF (vmlinux) is searched, not module BTF.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pybpf.btf import Composite, CoreRelo, CoreReloKind, Enum, Int, IntEncoding, Pointer
from pybpf.btf import Spec as BTFSpec
from pybpf.errors import InputError
from pybpf.isa import Class, Instruction, JmpOp, Size, Source
from pybpf.isa.opcodes import SIZE_BYTES, jmp_opcode, mem_opcode
from pybpf.kernel.core_match import (
    FIELD_KINDS,
    TYPE_KINDS,
    AccessSpec,
    CoreRefused,
    candidate_index,
    is_any_enum,
    parse_spec,
    size_of,
    spec_match,
)

__all__ = [
    "POISON_HELPER",
    "CoreResult",
    "apply_core_relos",
    "calc_relo",
    "patch_insn",
    "poison",
]

POISON_HELPER = 0xBAD2310  # "bad relo": the verifier says "invalid func unknown#195896080"
_U64 = (1 << 64) - 1
_SIZES = {1: Size.B, 2: Size.H, 4: Size.W, 8: Size.DW}


class _Poison(Exception):
    """Internal: the instruction must be poisoned (libbpf's -EUCLEAN)."""


@dataclass
class CoreResult:
    """What one relocation does to its instruction (libbpf's bpf_core_relo_res)."""

    orig_val: int = 0
    new_val: int = 0
    poison: bool = False
    validate: bool = True
    fail_memsz_adjust: bool = False
    orig_sz: int = 0
    new_sz: int = 0
    orig_type_id: int = 0
    new_type_id: int = 0


def _field_relo(kind: CoreReloKind, spec: AccessSpec | None) -> tuple[int, int, int, bool]:
    """bpf_core_calc_field_relo: (value, field size, field type id, validate)."""
    if kind == CoreReloKind.FIELD_EXISTS:
        return (1 if spec is not None else 0), 0, 0, True
    if spec is None:
        raise _Poison
    btf = spec.btf
    acc = spec.acc[-1]
    if not acc.name:
        if kind == CoreReloKind.FIELD_BYTE_OFFSET:
            return spec.bit_offset // 8, size_of(btf, acc.type_id), acc.type_id, True
        if kind == CoreReloKind.FIELD_BYTE_SIZE:
            return size_of(btf, acc.type_id), 0, 0, True
        raise CoreRefused(f"{kind.name} cannot be applied to an array access")
    t = btf.types[acc.type_id]
    assert isinstance(t, Composite)
    m = t.members[acc.idx]
    mt = btf.resolve(m.type_id)
    field_type_id = mt.id
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = getattr(mt, "size", 0)
        if byte_sz <= 0:
            raise CoreRefused("bitfield of a type without size")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise CoreRefused("bitfield cannot be read with a 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = size_of(btf, field_type_id)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    validate = not bitfield
    field_sz = type_id = 0
    if kind == CoreReloKind.FIELD_BYTE_OFFSET:
        val = byte_off
        if not bitfield:
            field_sz, type_id = byte_sz, field_type_id
    elif kind == CoreReloKind.FIELD_BYTE_SIZE:
        val = byte_sz
    elif kind == CoreReloKind.FIELD_SIGNED:
        val = int(
            (is_any_enum(mt) and mt.signed)
            or (isinstance(mt, Int) and bool(mt.encoding & IntEncoding.SIGNED))
        )
        validate = True
    elif kind == CoreReloKind.FIELD_LSHIFT_U64:
        val = 64 - (bit_off + bit_sz - byte_off * 8)  # little-endian target
    elif kind == CoreReloKind.FIELD_RSHIFT_U64:
        val = 64 - bit_sz
        validate = True
    else:  # pragma: no cover - FIELD_KINDS is exhaustive
        raise CoreRefused(f"unknown field relocation {kind}")
    return val, field_sz, type_id, validate


def _type_relo(kind: CoreReloKind, spec: AccessSpec | None) -> tuple[int, bool]:
    """bpf_core_calc_type_relo: (value, validate)."""
    if spec is None:
        return 0, True
    if kind == CoreReloKind.TYPE_ID_TARGET:
        return spec.root_type_id, False
    if kind in (CoreReloKind.TYPE_EXISTS, CoreReloKind.TYPE_MATCHES):
        return 1, True
    if kind == CoreReloKind.TYPE_SIZE:
        return size_of(spec.btf, spec.root_type_id), True
    raise CoreRefused(f"unexpected type relocation {kind.name}")


def _enum_relo(kind: CoreReloKind, spec: AccessSpec | None) -> int:
    """bpf_core_calc_enumval_relo (a 32-bit enumerator is sign-extended, as in C)."""
    if kind == CoreReloKind.ENUMVAL_EXISTS:
        return 1 if spec is not None else 0
    if spec is None:
        raise _Poison
    t = spec.btf.types[spec.acc[0].type_id]
    value = t.values[spec.acc[0].idx].value
    if isinstance(t, Enum):
        value &= 0xFFFFFFFF
        if value & 0x80000000:
            value |= 0xFFFFFFFF00000000
    return value & _U64


def _calc(relo: CoreRelo, local: AccessSpec, targ: AccessSpec | None) -> CoreResult:
    """bpf_core_calc_relo."""
    res = CoreResult()
    try:
        if relo.kind in FIELD_KINDS:
            res.orig_val, res.orig_sz, res.orig_type_id, res.validate = _field_relo(
                relo.kind, local
            )
            res.new_val, res.new_sz, res.new_type_id, _ = _field_relo(relo.kind, targ)
            if res.orig_sz != res.new_sz and targ is not None:
                ot = local.btf.types[res.orig_type_id]
                nt = targ.btf.types[res.new_type_id]
                unsigned = (
                    isinstance(ot, Int)
                    and isinstance(nt, Int)
                    and ot.encoding != IntEncoding.SIGNED
                    and nt.encoding != IntEncoding.SIGNED
                )
                if not (isinstance(ot, Pointer) and isinstance(nt, Pointer)) and not unsigned:
                    res.fail_memsz_adjust = True
        elif relo.kind in TYPE_KINDS:
            res.orig_val, res.validate = _type_relo(relo.kind, local)
            res.new_val, _ = _type_relo(relo.kind, targ)
        else:
            res.orig_val = _enum_relo(relo.kind, local)
            res.new_val = _enum_relo(relo.kind, targ)
    except _Poison:
        res.poison = True
    return res


def calc_relo(relo: CoreRelo, local_btf: BTFSpec, target_btf: BTFSpec) -> CoreResult:
    """bpf_core_calc_relo_insn: the result of one relocation; :class:`InputError` if libbpf
    would refuse it (bad access string, ambiguous candidates, anonymous root type)."""
    try:
        if not 0 < relo.type_id < len(local_btf.types):
            raise CoreRefused(f"no local type [{relo.type_id}]")
        local = parse_spec(local_btf, relo)
        if relo.kind == CoreReloKind.TYPE_ID_LOCAL:
            return CoreResult(relo.type_id, relo.type_id, validate=False)
        local_type = local_btf.types[relo.type_id]
        if not local_type.name:
            raise CoreRefused("relocations against anonymous types are not supported")
        found: tuple[AccessSpec, CoreResult] | None = None
        for cand in candidate_index(target_btf).candidates(local_type):
            targ = spec_match(local, target_btf, cand)
            if targ is None:
                continue
            res = _calc(relo, local, targ)
            if found is None:
                found = (targ, res)
            elif targ.bit_offset != found[0].bit_offset:
                raise CoreRefused("field offset ambiguity between candidates")
            elif res.poison != found[1].poison or res.new_val != found[1].new_val:
                raise CoreRefused("relocation decision ambiguity between candidates")
        if found is None:
            return _calc(relo, local, None)
        return found[1]
    except CoreRefused as exc:
        raise InputError(
            f"CO-RE relocation {relo.kind.name} [{relo.type_id}] {relo.access!r}: {exc}",
            field="core_relo",
        ) from None


def poison() -> Instruction:
    """The instruction libbpf puts where a relocation failed: a call of helper 0xbad2310."""
    return Instruction(jmp_opcode(Class.JMP, JmpOp.CALL, Source.K), imm=POISON_HELPER)


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def patch_insn(insn: Instruction, res: CoreResult) -> list[Instruction]:
    """bpf_core_patch_insn: ``insn`` with the relocation applied (two calls for a poisoned
    ``lddw``, so slot numbers stay); raises :class:`CoreRefused`."""
    if res.poison:
        return [poison(), poison()] if insn.is_lddw else [poison()]
    cls = insn.cls
    if cls in (Class.ALU, Class.ALU64):
        if insn.source != Source.K:
            raise CoreRefused("ALU instruction with a register source")
        if res.validate and (insn.imm & _U64) != res.orig_val:
            raise CoreRefused(f"instruction holds {insn.imm}, expected {res.orig_val}")
        return [dataclasses.replace(insn, imm=_s32(res.new_val))]
    if cls in (Class.LDX, Class.ST, Class.STX):
        if res.validate and (insn.off & _U64) != res.orig_val:
            raise CoreRefused(f"instruction offset is {insn.off}, expected {res.orig_val}")
        if res.new_val > 0x7FFF:
            raise CoreRefused(f"offset {res.new_val} is too large")
        if res.fail_memsz_adjust:
            return [poison()]
        out = dataclasses.replace(insn, off=res.new_val)
        if res.new_sz != res.orig_sz:
            if SIZE_BYTES[insn.size] != res.orig_sz:
                raise CoreRefused(f"access of {insn.nbytes} bytes, expected {res.orig_sz}")
            if res.new_sz not in _SIZES:
                raise CoreRefused(f"no access of {res.new_sz} bytes")
            out = dataclasses.replace(out, code=mem_opcode(cls, insn.mode, _SIZES[res.new_sz]))
        return [out]
    if insn.is_lddw:
        if insn.src != 0 or insn.off != 0:
            raise CoreRefused("lddw of an unexpected form")
        imm = (insn.imm & 0xFFFFFFFF) | ((insn.imm_hi & 0xFFFFFFFF) << 32)
        if res.validate and imm != res.orig_val:
            raise CoreRefused(f"lddw holds {imm}, expected {res.orig_val}")
        return [dataclasses.replace(insn, imm=_s32(res.new_val), imm_hi=_s32(res.new_val >> 32))]
    raise CoreRefused(f"cannot relocate instruction {insn!r}")


def apply_core_relos(
    insns: list[Instruction],
    relos: tuple[CoreRelo, ...],
    local_btf: BTFSpec,
    target_btf: BTFSpec,
    *,
    program: str = "",
) -> list[Instruction]:
    """``insns`` (a linked program) with every CO-RE relocation resolved and patched.

    ``relos`` carry byte offsets into the linked program. A relocation libbpf would refuse
    raises :class:`InputError` with ``program`` and ``pc``.
    """
    by_pc: dict[int, int] = {}
    pc = 0
    for i, insn in enumerate(insns):
        by_pc[pc] = i
        pc += insn.slots
    patched: dict[int, list[Instruction]] = {}
    for relo in relos:
        pc = relo.insn_off // 8
        i = by_pc.get(pc)
        if i is None or relo.insn_off % 8:
            raise InputError(
                "CO-RE relocation does not point at an instruction", program=program, pc=pc
            )
        try:
            res = calc_relo(relo, local_btf, target_btf)
            current = patched.get(i, [insns[i]])
            if len(current) != 1:
                continue  # already poisoned
            patched[i] = patch_insn(current[0], res)
        except InputError as exc:
            exc.program, exc.pc = program, pc
            raise
        except CoreRefused as exc:
            raise InputError(
                f"CO-RE relocation {relo.kind.name} {relo.access!r}: {exc}",
                program=program,
                pc=pc,
                field="core_relo",
            ) from None
    out: list[Instruction] = []
    for i, insn in enumerate(insns):
        out.extend(patched.get(i, [insn]))
    return out
