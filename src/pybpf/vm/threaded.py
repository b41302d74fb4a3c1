"""Threaded code: every instruction pre-decoded into a closure that returns the next pc.

:func:`compile_program` turns a program into ``ops``, a list indexed by pc: ``ops[pc]()``
executes the instruction at ``pc`` on a :class:`~pybpf.vm.machine.Machine` and returns the
pc to run next (``None`` marks an ``lddw``'s second slot). The final ``exit`` raises
:class:`ProgramExit`; r0 is then in ``machine.R[0]``.

Semantics are RFC 9669's, plus Linux's extensions:

- ALU64 wraps at 64 bits; ALU32 computes on the low 32 bits and zero-extends; shift
  counts are masked (63 / 31); unsigned division by zero gives 0, modulo by zero leaves
  dst (ALU32: zero-extended); ``sdiv``/``smod`` truncate toward zero and
  ``INT_MIN / -1 = INT_MIN``, ``INT_MIN % -1 = 0``; for DIV/MOD by an immediate ALU64
  sign-extends it and ALU32 takes it as u32;
- ``movsx``, sign-extending loads, ``le``/``be``/``bswap``, every atomic (32-bit fetch
  results zero-extended, ``cmpxchg`` compares with r0), load-acquire/store-release;
- JMP32 compares the low 32 bits; ``gotol`` uses the 32-bit ``imm`` offset;
- ``may_goto`` jumps once its per-run budget (:data:`~pybpf.isa.opcodes.MAY_GOTO_LOOPS`)
  is spent, as Linux's rewrite does;
- ``bpf_tail_call`` (helper 12), when the interpreter is given ``tail_call_targets``,
  is the engine's (:func:`_tail_call`, Linux's ``JMP_TAIL_CALL``): the prog array slot's
  program runs in place of the current function (fresh frame, r1 = the context) and its
  r0 is what the current function returns; at most
  :data:`~pybpf.isa.opcodes.MAX_TAIL_CALLS` per chain; an index out of range, the limit
  reached or an empty slot fall through to the next instruction with r0 = -ENOENT (Linux
  leaves r0 unreadable there);
- ``call`` of a helper goes through the runtime registry; ``callx rN`` calls the helper
  whose id is in rN (the bpf_conformance convention); local calls get a fresh frame and
  r6-r9 are restored on return;
- ``LD_ABS``/``LD_IND`` (legacy socket-filter loads) read big-endian from the context's
  packet; a negative offset reads relative to the network (``SKF_NET_OFF``) or link-layer
  (``SKF_LL_OFF``) header of the packet's state (:func:`pybpf.runtime.packet.legacy_headers`,
  Linux's ``bpf_internal_load_pointer_neg_helper``); an out-of-bounds load ends the
  program with r0 = 0.

Every load, store and atomic is checked against the run's address space (an inline
last-region cache in front of :meth:`pybpf.memory.AddressSpace.resolve`).
"""

from __future__ import annotations

import ctypes
import errno
import struct
from collections.abc import Callable, Sequence
from typing import Any

from pybpf.errors import HelperError, NotSupportedError
from pybpf.isa import AluOp, AtomicOp, CallKind, Class, Instruction, JmpOp, Mode, Size, Source
from pybpf.isa.opcodes import MAX_TAIL_CALLS
from pybpf.maps import ProgArray, by_handle
from pybpf.memory import atomics
from pybpf.runtime import HelperRegistry, helper_failure
from pybpf.runtime.loadcheck import call_target, jump_target
from pybpf.runtime.packet import legacy_headers, legacy_negative_offset
from pybpf.vm.machine import Machine

__all__ = ["compile_program", "ProgramExit", "LddwResolver", "M64", "M32"]

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
S64 = 1 << 63
S32 = 1 << 31
T64 = 1 << 64

Op = Callable[[], int]
LddwResolver = Callable[[Instruction, int], int]
TailCallTargets = Callable[[int], Any]  # program id -> its interpreter (or None)
TAIL_CALL = 12  # helper id of bpf_tail_call

_SIZES = {Size.B: 1, Size.H: 2, Size.W: 4, Size.DW: 8}
_UNSIGNED = {1: "B", 2: "H", 4: "I", 8: "Q"}
_SIGNED = {1: "b", 2: "h", 4: "i"}


class ProgramExit(Exception):
    """Raised by the outermost ``exit`` (r0 is in the machine's ``R[0]``)."""


def _sx64(x: int) -> int:
    return x - T64 if x & S64 else x


def _sx32(x: int) -> int:
    x &= M32
    return x - (1 << 32) if x & S32 else x


def _sdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def _smod(a: int, b: int) -> int:
    r = abs(a) % abs(b)
    return -r if a < 0 else r


def _bswap(value: int, bits: int) -> int:
    n = bits // 8
    return int.from_bytes((value & ((1 << bits) - 1)).to_bytes(n, "little"), "big")


# ---------------------------------------------------------------------------------------------
# ALU
# ---------------------------------------------------------------------------------------------
_ADD_SUB_MUL = (AluOp.ADD, AluOp.SUB, AluOp.MUL)


def _add_sub_mul(
    op: AluOp, x: bool, d: int, s: int, k: int, mask: int, R: list[int], nxt: int
) -> Op:
    """``add``/``sub``/``mul`` of either width: ``rd op rs`` (``x``) or ``rd op k``, wrapped
    by ``mask`` (:data:`M64` for ALU64, :data:`M32` for ALU32, whose ``k`` is the u32 imm)."""
    if op == AluOp.ADD:
        if x:

            def f():
                R[d] = (R[d] + R[s]) & mask
                return nxt
        else:

            def f():
                R[d] = (R[d] + k) & mask
                return nxt

    elif op == AluOp.SUB:
        if x:

            def f():
                R[d] = (R[d] - R[s]) & mask
                return nxt
        else:

            def f():
                R[d] = (R[d] - k) & mask
                return nxt

    elif x:

        def f():
            R[d] = (R[d] * R[s]) & mask
            return nxt
    else:

        def f():
            R[d] = (R[d] * k) & mask
            return nxt

    return f


def _alu64(insn: Instruction, R: list[int], nxt: int) -> Op:  # noqa: C901 - one case per op
    d, s, op = insn.dst, insn.src, insn.alu_op
    x = insn.source == Source.X
    signed = insn.off == 1
    k = insn.imm & M64  # imm sign-extended to 64 bits
    imm = insn.imm
    if op == AluOp.MOV:
        bits = insn.movsx_bits
        if not x:

            def f():
                R[d] = k
                return nxt
        elif bits:
            mask, sign = (1 << bits) - 1, 1 << (bits - 1)

            def f():
                v = R[s] & mask
                R[d] = (v - (sign << 1)) & M64 if v & sign else v
                return nxt
        else:

            def f():
                R[d] = R[s]
                return nxt

        return f
    if op in _ADD_SUB_MUL:
        return _add_sub_mul(op, x, d, s, k, M64, R, nxt)
    if op in (AluOp.OR, AluOp.AND, AluOp.XOR):
        if op == AluOp.OR:
            if x:

                def f():
                    R[d] |= R[s]
                    return nxt
            else:

                def f():
                    R[d] |= k
                    return nxt
        elif op == AluOp.AND:
            if x:

                def f():
                    R[d] &= R[s]
                    return nxt
            else:

                def f():
                    R[d] &= k
                    return nxt
        else:
            if x:

                def f():
                    R[d] ^= R[s]
                    return nxt
            else:

                def f():
                    R[d] ^= k
                    return nxt

        return f
    if op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH):
        sh = imm & 63
        if op == AluOp.LSH:
            if x:

                def f():
                    R[d] = (R[d] << (R[s] & 63)) & M64
                    return nxt
            else:

                def f():
                    R[d] = (R[d] << sh) & M64
                    return nxt
        elif op == AluOp.RSH:
            if x:

                def f():
                    R[d] >>= R[s] & 63
                    return nxt
            else:

                def f():
                    R[d] >>= sh
                    return nxt
        else:
            if x:

                def f():
                    v = R[d]
                    R[d] = ((v - T64 if v & S64 else v) >> (R[s] & 63)) & M64
                    return nxt
            else:

                def f():
                    v = R[d]
                    R[d] = ((v - T64 if v & S64 else v) >> sh) & M64
                    return nxt

        return f
    if op == AluOp.NEG:

        def f():
            R[d] = -R[d] & M64
            return nxt

        return f
    if op == AluOp.END:  # ALU64 END: unconditional byte swap
        bits = imm

        def f():
            R[d] = _bswap(R[d], bits)
            return nxt

        return f
    if op == AluOp.DIV:
        if signed:

            def f():
                b = _sx64(R[s]) if x else imm
                R[d] = _sdiv(_sx64(R[d]), b) & M64 if b else 0
                return nxt
        elif x:

            def f():
                b = R[s]
                R[d] = R[d] // b if b else 0
                return nxt
        elif k:

            def f():
                R[d] //= k
                return nxt
        else:

            def f():
                R[d] = 0
                return nxt

        return f
    if op == AluOp.MOD:
        if signed:

            def f():
                b = _sx64(R[s]) if x else imm
                if b:
                    R[d] = _smod(_sx64(R[d]), b) & M64
                return nxt
        elif x:

            def f():
                b = R[s]
                if b:
                    R[d] %= b
                return nxt
        elif k:

            def f():
                R[d] %= k
                return nxt
        else:

            def f():
                return nxt

        return f
    raise NotSupportedError(f"ALU64 operation {op!r}", feature="alu64")


def _alu32(insn: Instruction, R: list[int], nxt: int) -> Op:  # noqa: C901 - one case per op
    d, s, op = insn.dst, insn.src, insn.alu_op
    x = insn.source == Source.X
    signed = insn.off == 1
    k = insn.imm & M32
    imm = insn.imm
    if op == AluOp.MOV:
        bits = insn.movsx_bits
        if not x:

            def f():
                R[d] = k
                return nxt
        elif bits:
            mask, sign = (1 << bits) - 1, 1 << (bits - 1)

            def f():
                v = R[s] & mask
                R[d] = (v - (sign << 1)) & M32 if v & sign else v
                return nxt
        else:

            def f():
                R[d] = R[s] & M32
                return nxt

        return f
    if op in _ADD_SUB_MUL:
        return _add_sub_mul(op, x, d, s, k, M32, R, nxt)
    if op == AluOp.OR:
        if x:

            def f():
                R[d] = (R[d] | R[s]) & M32
                return nxt
        else:

            def f():
                R[d] = (R[d] | k) & M32
                return nxt

        return f
    if op == AluOp.AND:
        if x:

            def f():
                R[d] = R[d] & R[s] & M32
                return nxt
        else:

            def f():
                R[d] &= k
                return nxt

        return f
    if op == AluOp.XOR:
        if x:

            def f():
                R[d] = (R[d] ^ R[s]) & M32
                return nxt
        else:

            def f():
                R[d] = (R[d] ^ k) & M32
                return nxt

        return f
    if op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH):
        sh = imm & 31
        if op == AluOp.LSH:
            if x:

                def f():
                    R[d] = (R[d] << (R[s] & 31)) & M32
                    return nxt
            else:

                def f():
                    R[d] = (R[d] << sh) & M32
                    return nxt
        elif op == AluOp.RSH:
            if x:

                def f():
                    R[d] = (R[d] & M32) >> (R[s] & 31)
                    return nxt
            else:

                def f():
                    R[d] = (R[d] & M32) >> sh
                    return nxt
        else:
            if x:

                def f():
                    R[d] = (_sx32(R[d]) >> (R[s] & 31)) & M32
                    return nxt
            else:

                def f():
                    R[d] = (_sx32(R[d]) >> sh) & M32
                    return nxt

        return f
    if op == AluOp.NEG:

        def f():
            R[d] = -R[d] & M32
            return nxt

        return f
    if op == AluOp.END:
        bits = imm
        if x:  # be16/32/64: to big endian (a swap on this little-endian machine)

            def f():
                R[d] = _bswap(R[d], bits)
                return nxt
        else:  # le16/32/64: truncate
            mask = (1 << bits) - 1

            def f():
                R[d] &= mask
                return nxt

        return f
    if op == AluOp.DIV:
        if signed:

            def f():
                b = _sx32(R[s]) if x else imm
                R[d] = _sdiv(_sx32(R[d]), b) & M32 if b else 0
                return nxt
        elif x:

            def f():
                b = R[s] & M32
                R[d] = (R[d] & M32) // b if b else 0
                return nxt
        elif k:

            def f():
                R[d] = (R[d] & M32) // k
                return nxt
        else:

            def f():
                R[d] = 0
                return nxt

        return f
    if op == AluOp.MOD:
        if signed:

            def f():
                b = _sx32(R[s]) if x else imm
                R[d] = _smod(_sx32(R[d]), b) & M32 if b else R[d] & M32
                return nxt
        elif x:

            def f():
                b = R[s] & M32
                R[d] = (R[d] & M32) % b if b else R[d] & M32
                return nxt
        elif k:

            def f():
                R[d] = (R[d] & M32) % k
                return nxt
        else:

            def f():
                R[d] &= M32
                return nxt

        return f
    raise NotSupportedError(f"ALU operation {op!r}", feature="alu32")


# ---------------------------------------------------------------------------------------------
# jumps
# ---------------------------------------------------------------------------------------------
def _cond(insn: Instruction, R: list[int], nxt: int, tgt: int) -> Op:  # noqa: C901
    d, s, op = insn.dst, insn.src, insn.jmp_op
    x = insn.source == Source.X
    wide = insn.cls == Class.JMP
    mask = M64 if wide else M32
    sbit = S64 if wide else S32
    k = insn.imm & mask  # the immediate, sign-extended then truncated to the width
    ks = k ^ sbit  # for signed compares: a <s b  <=>  (a ^ sign) <u (b ^ sign)
    if wide:
        if op == JmpOp.JEQ:
            f = (lambda: tgt if R[d] == R[s] else nxt) if x else (lambda: tgt if R[d] == k else nxt)
        elif op == JmpOp.JNE:
            f = (lambda: tgt if R[d] != R[s] else nxt) if x else (lambda: tgt if R[d] != k else nxt)
        elif op == JmpOp.JGT:
            f = (lambda: tgt if R[d] > R[s] else nxt) if x else (lambda: tgt if R[d] > k else nxt)
        elif op == JmpOp.JGE:
            f = (lambda: tgt if R[d] >= R[s] else nxt) if x else (lambda: tgt if R[d] >= k else nxt)
        elif op == JmpOp.JLT:
            f = (lambda: tgt if R[d] < R[s] else nxt) if x else (lambda: tgt if R[d] < k else nxt)
        elif op == JmpOp.JLE:
            f = (lambda: tgt if R[d] <= R[s] else nxt) if x else (lambda: tgt if R[d] <= k else nxt)
        elif op == JmpOp.JSET:
            f = (lambda: tgt if R[d] & R[s] else nxt) if x else (lambda: tgt if R[d] & k else nxt)
        elif op == JmpOp.JSGT:
            f = (
                (lambda: tgt if (R[d] ^ S64) > (R[s] ^ S64) else nxt)
                if x
                else (lambda: tgt if (R[d] ^ S64) > ks else nxt)
            )
        elif op == JmpOp.JSGE:
            f = (
                (lambda: tgt if (R[d] ^ S64) >= (R[s] ^ S64) else nxt)
                if x
                else (lambda: tgt if (R[d] ^ S64) >= ks else nxt)
            )
        elif op == JmpOp.JSLT:
            f = (
                (lambda: tgt if (R[d] ^ S64) < (R[s] ^ S64) else nxt)
                if x
                else (lambda: tgt if (R[d] ^ S64) < ks else nxt)
            )
        elif op == JmpOp.JSLE:
            f = (
                (lambda: tgt if (R[d] ^ S64) <= (R[s] ^ S64) else nxt)
                if x
                else (lambda: tgt if (R[d] ^ S64) <= ks else nxt)
            )
        else:
            raise NotSupportedError(f"jump operation {op!r}", feature="jmp")
        return f
    # JMP32: compare the low 32 bits.
    if op == JmpOp.JEQ:
        f = (
            (lambda: tgt if (R[d] ^ R[s]) & M32 == 0 else nxt)
            if x
            else (lambda: tgt if R[d] & M32 == k else nxt)
        )
    elif op == JmpOp.JNE:
        f = (
            (lambda: tgt if (R[d] ^ R[s]) & M32 else nxt)
            if x
            else (lambda: tgt if R[d] & M32 != k else nxt)
        )
    elif op == JmpOp.JGT:
        f = (
            (lambda: tgt if R[d] & M32 > R[s] & M32 else nxt)
            if x
            else (lambda: tgt if R[d] & M32 > k else nxt)
        )
    elif op == JmpOp.JGE:
        f = (
            (lambda: tgt if R[d] & M32 >= R[s] & M32 else nxt)
            if x
            else (lambda: tgt if R[d] & M32 >= k else nxt)
        )
    elif op == JmpOp.JLT:
        f = (
            (lambda: tgt if R[d] & M32 < R[s] & M32 else nxt)
            if x
            else (lambda: tgt if R[d] & M32 < k else nxt)
        )
    elif op == JmpOp.JLE:
        f = (
            (lambda: tgt if R[d] & M32 <= R[s] & M32 else nxt)
            if x
            else (lambda: tgt if R[d] & M32 <= k else nxt)
        )
    elif op == JmpOp.JSET:
        f = (lambda: tgt if R[d] & R[s] & M32 else nxt) if x else (lambda: tgt if R[d] & k else nxt)
    elif op == JmpOp.JSGT:
        f = (
            (lambda: tgt if (R[d] & M32) ^ S32 > (R[s] & M32) ^ S32 else nxt)
            if x
            else (lambda: tgt if (R[d] & M32) ^ S32 > ks else nxt)
        )
    elif op == JmpOp.JSGE:
        f = (
            (lambda: tgt if (R[d] & M32) ^ S32 >= (R[s] & M32) ^ S32 else nxt)
            if x
            else (lambda: tgt if (R[d] & M32) ^ S32 >= ks else nxt)
        )
    elif op == JmpOp.JSLT:
        f = (
            (lambda: tgt if (R[d] & M32) ^ S32 < (R[s] & M32) ^ S32 else nxt)
            if x
            else (lambda: tgt if (R[d] & M32) ^ S32 < ks else nxt)
        )
    elif op == JmpOp.JSLE:
        f = (
            (lambda: tgt if (R[d] & M32) ^ S32 <= (R[s] & M32) ^ S32 else nxt)
            if x
            else (lambda: tgt if (R[d] & M32) ^ S32 <= ks else nxt)
        )
    else:
        raise NotSupportedError(f"jump operation {op!r}", feature="jmp32")
    return f


# ---------------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------------
def _load(insn: Instruction, m: Machine, pc: int, nxt: int) -> Op:
    R, rc, slow = m.R, m.rcache, m.read
    d, s, off = insn.dst, insn.src, insn.off
    n = _SIZES[insn.size]
    if insn.mode == Mode.MEMSX:
        unpack = struct.Struct("<" + _SIGNED[n]).unpack_from

        def f():
            o = R[s] - rc[0] + off
            if 0 <= o and o + n <= rc[1]:
                R[d] = unpack(rc[2], o)[0] & M64
            else:
                R[d] = slow((R[s] + off) & M64, n, pc, unpack) & M64
            return nxt

        return f
    unpack = struct.Struct("<" + _UNSIGNED[n]).unpack_from

    def f():
        o = R[s] - rc[0] + off
        if 0 <= o and o + n <= rc[1]:
            R[d] = unpack(rc[2], o)[0]
        else:
            R[d] = slow((R[s] + off) & M64, n, pc, unpack)
        return nxt

    return f


def _store(insn: Instruction, m: Machine, pc: int, nxt: int) -> Op:
    R, wc, slow = m.R, m.wcache, m.write
    d, s, off = insn.dst, insn.src, insn.off
    n = _SIZES[insn.size]
    vmask = (1 << (8 * n)) - 1
    pack = struct.Struct("<" + _UNSIGNED[n]).pack_into
    if insn.cls == Class.ST:
        value = insn.imm & vmask

        def f():
            o = R[d] - wc[0] + off
            if 0 <= o and o + n <= wc[1]:
                pack(wc[2], o, value)
            else:
                slow((R[d] + off) & M64, n, pc, pack, value)
            return nxt

        return f

    if n == 8:  # registers always hold u64 values: nothing to truncate

        def f():
            o = R[d] - wc[0] + off
            if 0 <= o and o + 8 <= wc[1]:
                pack(wc[2], o, R[s])
            else:
                slow((R[d] + off) & M64, 8, pc, pack, R[s])
            return nxt

        return f

    def f():
        o = R[d] - wc[0] + off
        if 0 <= o and o + n <= wc[1]:
            pack(wc[2], o, R[s] & vmask)
        else:
            slow((R[d] + off) & M64, n, pc, pack, R[s] & vmask)
        return nxt

    return f


_RMW_NAMES = {
    AtomicOp.ADD: "add",
    AtomicOp.OR: "or",
    AtomicOp.AND: "and",
    AtomicOp.XOR: "xor",
    AtomicOp.FETCH_ADD: "add",
    AtomicOp.FETCH_OR: "or",
    AtomicOp.FETCH_AND: "and",
    AtomicOp.FETCH_XOR: "xor",
    AtomicOp.XCHG: "xchg",
}


def _atomic(insn: Instruction, m: Machine, pc: int, nxt: int) -> Op:
    R = m.R
    d, s, off = insn.dst, insn.src, insn.off
    n = _SIZES[insn.size]
    op = insn.atomic_op

    def target(base: int, access: str):
        a = (base + off) & M64
        region, offset = m.space.resolve(a, n, access, pc)
        if access == "write" and not region.readable:
            m.space.resolve(a, n, "read", pc)  # raises: an atomic also reads
        return region, offset

    if op == AtomicOp.LOAD_ACQ:

        def f():
            region, offset = target(R[s], "read")
            R[d] = atomics.load_acquire(region, offset, n)
            return nxt

        return f
    if op == AtomicOp.STORE_REL:

        def f():
            region, offset = target(R[d], "write")
            atomics.store_release(region, offset, n, R[s])
            return nxt

        return f
    if op == AtomicOp.CMPXCHG:

        def f():
            region, offset = target(R[d], "write")
            R[0] = atomics.cmpxchg(region, offset, n, R[0], R[s])
            return nxt

        return f
    name = _RMW_NAMES[op]
    if op & 0x01:  # FETCH (xchg included): src receives the old value, zero-extended

        def f():
            region, offset = target(R[d], "write")
            R[s] = atomics.atomic_rmw(region, offset, n, name, R[s])
            return nxt

        return f

    def f():
        region, offset = target(R[d], "write")
        atomics.atomic_rmw(region, offset, n, name, R[s])
        return nxt

    return f


def _legacy_packet(insn: Instruction, m: Machine, pc: int, nxt: int) -> Op:
    R = m.R
    s, imm = insn.src, insn.imm
    n = _SIZES[insn.size]
    indirect = insn.mode == Mode.IND

    def f():
        packet = m.ctx.packet
        if packet is None:
            raise NotSupportedError(
                "LD_ABS/LD_IND without a packet in the run", feature="ld_abs", pc=pc
            )
        offset = ((R[s] if indirect else 0) + imm) & M32
        if offset < S32 and offset + n <= packet.size:
            R[0] = int.from_bytes(packet.view[offset : offset + n], "big")
            return nxt
        if offset >= S32:  # negative: SKF_NET_OFF/SKF_LL_OFF, relative to the headers
            size = packet.size
            at = legacy_negative_offset(
                offset - (1 << 32), size, n, legacy_headers(packet.address)
            )
            if at is not None:
                R[0] = int.from_bytes(ctypes.string_at(packet.address + at, n), "big")
                return nxt
        R[0] = 0  # past the end or nowhere: the program ends with r0 = 0
        if m.frames:
            return m.pop_frame()
        raise ProgramExit

    return f


# ---------------------------------------------------------------------------------------------
# calls and exit
# ---------------------------------------------------------------------------------------------
def _helper_call(helper_id: int, m: Machine, registry: HelperRegistry, pc: int, nxt: int) -> Op:
    R, ctx = m.R, m.ctx
    fn = registry.get(helper_id)

    def missing():
        found = registry.get(helper_id)
        if found is None:
            raise HelperError(
                f"no implementation for helper {helper_id}", helper_id=helper_id, pc=pc
            )
        return found

    def f():
        ctx.pc = pc
        ctx.helper_id = helper_id
        try:
            r = (fn or missing())(ctx, R[1], R[2], R[3], R[4], R[5])
            R[0] = 0 if r is None else r & M64
        except Exception as exc:
            raise helper_failure(exc, helper_id, pc)  # noqa: B904 - the cause is kept
        return nxt

    return f


def _callx(insn: Instruction, m: Machine, registry: HelperRegistry, pc: int, nxt: int) -> Op:
    R, ctx = m.R, m.ctx
    reg = insn.callx_register

    def f():
        helper_id = R[reg]
        fn = registry.get(helper_id)
        if fn is None:
            raise HelperError(
                f"callx r{reg}: no helper with id {helper_id:#x}", helper_id=helper_id, pc=pc
            )
        ctx.pc = pc
        ctx.helper_id = helper_id
        try:
            r = fn(ctx, R[1], R[2], R[3], R[4], R[5])
            R[0] = 0 if r is None else r & M64
        except Exception as exc:
            raise helper_failure(exc, helper_id, pc)  # noqa: B904 - the cause is kept
        return nxt

    return f


def _tail_call(m: Machine, targets: TailCallTargets, pc: int, nxt: int) -> Op:
    """``bpf_tail_call(ctx, prog_array, index)`` as Linux's interpreter runs it."""
    R = m.R
    failed = -errno.ENOENT & M64

    def f():
        array = by_handle(R[2])
        if not isinstance(array, ProgArray) or array.closed:
            raise HelperError(
                f"bpf_tail_call: {R[2]:#x} is not a live prog array", helper_id=TAIL_CALL, pc=pc
            )
        index = R[3] & M32
        if index >= array.max_entries or m.tail_calls >= MAX_TAIL_CALLS:
            R[0] = failed
            return nxt
        m.tail_calls += 1
        prog_id = array.program_id(index)
        target = targets(prog_id) if prog_id else None
        if target is None:
            R[0] = failed
            return nxt
        R[0], m.tail_calls = target.tail_run(m, R[1])
        if m.frames:
            return m.pop_frame()
        raise ProgramExit

    return f


def _local_call(m: Machine, pc: int, nxt: int, tgt: int) -> Op:
    R, push = m.R, m.push_frame

    def f():
        R[10] = push(nxt, pc)
        return tgt

    return f


def _exit(m: Machine) -> Op:
    frames, pop = m.frames, m.pop_frame

    def f():
        if frames:
            return pop()
        raise ProgramExit

    return f


def _may_goto(m: Machine, nxt: int, tgt: int) -> Op:
    def f():
        if m.may_goto <= 0:
            return tgt
        m.may_goto -= 1
        return nxt

    return f


# ---------------------------------------------------------------------------------------------
# the program
# ---------------------------------------------------------------------------------------------
def _compile_one(
    insn: Instruction,
    pc: int,
    m: Machine,
    registry: HelperRegistry,
    lddw_value: Callable[[Instruction, int], int],
    tail_calls: TailCallTargets | None = None,
) -> Op:
    nxt = pc + insn.slots
    cls = insn.cls
    R = m.R
    if cls == Class.ALU64:
        return _alu64(insn, R, nxt)
    if cls == Class.ALU:
        return _alu32(insn, R, nxt)
    if cls in (Class.JMP, Class.JMP32):
        if insn.is_exit:
            return _exit(m)
        if insn.is_call:
            if insn.src == CallKind.LOCAL:
                return _local_call(m, pc, nxt, call_target(insn, pc))
            if insn.src == CallKind.HELPER:
                if insn.imm == TAIL_CALL and tail_calls is not None:
                    return _tail_call(m, tail_calls, pc, nxt)
                return _helper_call(insn.imm, m, registry, pc, nxt)
            raise NotSupportedError("kfunc calls are not supported", feature="kfunc", pc=pc)
        if insn.is_callx:
            return _callx(insn, m, registry, pc, nxt)
        if insn.jmp_op == JmpOp.JA:
            tgt = jump_target(insn, pc)
            return lambda: tgt
        if insn.is_may_goto:
            return _may_goto(m, nxt, jump_target(insn, pc))
        return _cond(insn, R, nxt, jump_target(insn, pc))
    if cls == Class.LDX:
        return _load(insn, m, pc, nxt)
    if cls == Class.ST:
        return _store(insn, m, pc, nxt)
    if cls == Class.STX:
        if insn.mode == Mode.ATOMIC:
            return _atomic(insn, m, pc, nxt)
        return _store(insn, m, pc, nxt)
    # LD
    if insn.is_lddw:
        value = lddw_value(insn, pc) & M64
        d = insn.dst

        def f():
            R[d] = value
            return nxt

        return f
    return _legacy_packet(insn, m, pc, nxt)


def compile_program(
    insns: Sequence[Instruction],
    m: Machine,
    registry: HelperRegistry,
    lddw_value: Callable[[Instruction, int], int],
    tail_calls: TailCallTargets | None = None,
) -> list[Op | None]:
    """Closures for every slot of a (load-checked) program, bound to machine ``m``.

    ``tail_calls`` makes ``bpf_tail_call`` the engine's (program id -> an object whose
    ``tail_run(machine, ctx)`` runs it and returns ``(r0, tail call count)``).
    """
    ops: list[Op | None] = []
    pc = 0
    for insn in insns:
        ops.append(_compile_one(insn, pc, m, registry, lddw_value, tail_calls))
        if insn.slots == 2:
            ops.append(None)
        pc += insn.slots
    return ops
