"""Lower: eBPF instructions to LLVM IR with ``llvmlite.ir`` (no LLVM library is loaded here).

:func:`lower_program` turns a checked :class:`~pybpf.jit.blocks.ControlFlow` into an
``ir.Module`` exporting :data:`ENTRY`::

    i64 pybpf_entry(i64* ctx)     ; r1..r5 come from the block's ARG slots

and :data:`REPEAT`, which runs the entry many times in a native loop (for timing, as
BPF_PROG_TEST_RUN's ``repeat``); batches call the entry from a shared loop
(:mod:`pybpf.jit.batchloop`). ``ctx`` is the run's context block
(:mod:`pybpf.jit.layout`). Each eBPF function becomes an internal LLVM function
``i64 (ctx, depth, r1..r5)`` with its own registers and its own zeroed 512-byte frame
(frame ``depth`` of the context's stack block; r10 is its end), so r6-r9 survive local
calls by construction.

eBPF's defined semantics are spelled out so that no LLVM undefined behaviour or poison
can appear: shift counts are masked (63 / 31); divisors are made non-zero (and, for signed
division, not -1) with a ``select`` *before* the ``udiv``/``sdiv``/``urem``/``srem``, whose
result is then replaced as eBPF defines (x/0 = 0, x%0 = x, INT_MIN/-1 = INT_MIN,
INT_MIN%-1 = 0); no ``nsw``/``nuw``/``exact`` flags; ALU32 computes on ``i32`` and
zero-extends; every register starts at 0 (never ``undef``). Byte swaps use
``llvm.bswap``; atomics are LLVM atomics (``seq_cst`` for fetching ones and ``cmpxchg``,
``monotonic`` for the others, acquire/release for load-acquire/store-release).

Helper calls and ``callx`` go through the dispatcher whose address is in the module's
:data:`~pybpf.jit.layout.DISPATCH_GLOBAL` (written after loading); ``bpf_tail_call`` on a
prog array the program loads with ``lddw`` runs its target natively
(:mod:`pybpf.jit.tailcalls`), other tail calls go through the dispatcher; ring buffer
helpers call native producers (:mod:`pybpf.jit.ringcalls`); local calls check
the depth limit first. After every call the status slot is checked and a non-zero status
returns at once, so an error unwinds every frame.

With ``debug_checks`` every load, store and atomic is checked as the interpreter checks
it: ``r10 + constant`` at compile time (r10 never changes); any other address first
against the region the last check of the same kind found (read and write caches in the
context block), then by calling ``pybpf_access_ok`` (live frames, then the region table;
compiled once per process from :func:`runtime_module`), stopping with
``Status.MEMORY`` when it fails. Misaligned atomics take a plain (non-atomic) path, and
each block charges its length to the instruction budget before it runs.

A function's frame is zeroed on entry only when the function names r10: otherwise
nothing can reach it; for a verified program whose verifier gave its stack depth, only
that many bytes below r10 (:func:`frame_bytes`).

An ``lddw`` with a pseudo source (a map, a map value, ...) loads its value from the
global :data:`LDDW_TABLE` (one u64 per such instruction, in pc order: :func:`lddw_slots`),
which the program fills after loading the code: the code does not depend on the values,
so it can be cached and reused in a process where the maps live at other addresses.
"""

from __future__ import annotations

from collections.abc import Mapping

from pybpf.errors import InternalError, NotSupportedError
from pybpf.isa import AluOp, AtomicOp, CallKind, Class, Instruction, JmpOp, Mode, Size, Source
from pybpf.isa.opcodes import ATOMIC_FETCH, FRAME_POINTER, MAX_CALL_DEPTH, STACK_SIZE
from pybpf.jit.blocks import Block, ControlFlow, Function, call_target, jump_target, loop_heads
from pybpf.jit.inlinehelpers import CLOCK_GLOBAL, lower_inline_helper
from pybpf.jit.layout import (
    DISPATCH_GLOBAL,
    PERM_READ,
    PERM_WRITE,
    REGION_FIELDS,
    TAIL_CALL,
    Slot,
    Status,
)
from pybpf.jit.mapcalls import (
    MAP_HELPERS,
    SITE_TABLE,
    MapSite,
    lower_map_call,
    map_registers,
    track,
)
from pybpf.jit.ringcalls import RingCalls, declare_ring_table, lower_ring_call
from pybpf.jit.tailcalls import build_tail_entry, lower_tail_call
from pybpf.runtime.packet import SKF_LL_OFF, SKF_NET_OFF

try:  # the JIT is optional: without llvmlite, lower_program raises NotSupportedError
    from llvmlite import ir
except ImportError:  # pragma: no cover - exercised only where llvmlite is missing
    ir = None  # type: ignore[assignment]

__all__ = [
    "lower_program",
    "runtime_module",
    "lddw_slots",
    "frame_bytes",
    "ENTRY",
    "REPEAT",
    "ACCESS_OK",
    "LDDW_TABLE",
]

ENTRY = "pybpf_entry"
LDDW_TABLE = "pybpf_lddw"
REPEAT = "pybpf_repeat"
ACCESS_OK = "pybpf_access_ok"

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
_BITS = {Size.B: 8, Size.H: 16, Size.W: 32, Size.DW: 64}
_RMW = {
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
_UNSIGNED_CMP = {
    JmpOp.JEQ: "==",
    JmpOp.JNE: "!=",
    JmpOp.JGT: ">",
    JmpOp.JGE: ">=",
    JmpOp.JLT: "<",
    JmpOp.JLE: "<=",
}
_SIGNED_CMP = {JmpOp.JSGT: ">", JmpOp.JSGE: ">=", JmpOp.JSLT: "<", JmpOp.JSLE: "<="}


def _int(bits: int):
    return ir.IntType(bits)


def _const(bits: int, value: int):
    """An ``iN`` constant from any integer (stored as the signed two's complement)."""
    value &= (1 << bits) - 1
    if value >> (bits - 1):
        value -= 1 << bits
    return ir.Constant(_int(bits), value)


class _Module:
    """Module-wide declarations shared by every function."""

    def __init__(
        self,
        cfg: ControlFlow,
        debug: bool,
        sites: Mapping[int, MapSite],
        stack_depth: int | None = None,
        inline_helpers: frozenset[int] = frozenset(),
        loop_budget: bool = False,
        rings: RingCalls | None = None,
    ) -> None:
        self.cfg = cfg
        self.debug = debug
        self.loop_budget = loop_budget and not debug
        self.stack_depth = stack_depth
        self.inline_helpers = inline_helpers
        self.sites = sites
        self.module = ir.Module(name="pybpf")
        i64, i8, i1 = _int(64), _int(8), _int(1)
        self.lddw_slots = lddw_slots(cfg)
        self.lddw_table = None
        if self.lddw_slots:  # resolved after loading: the code does not depend on the values
            table_type = ir.ArrayType(i64, len(self.lddw_slots))
            self.lddw_table = ir.GlobalVariable(self.module, table_type, name=LDDW_TABLE)
            self.lddw_table.initializer = ir.Constant(table_type, None)
        self.site_table = None
        rows = sum(site.rows for site in sites.values())
        if rows:  # what native map calls need at run time (pybpf.jit.mapcalls)
            table_type = ir.ArrayType(i64, rows)
            self.site_table = ir.GlobalVariable(self.module, table_type, name=SITE_TABLE)
            self.site_table.initializer = ir.Constant(table_type, None)
        self.rings = rings  # native ring buffer calls (pybpf.jit.ringcalls)
        self.ring_table = declare_ring_table(self.module, rings) if rings else None
        # the helper dispatcher's address, written after loading (pybpf.jit.calls)
        self.dispatch_global = ir.GlobalVariable(self.module, i64, name=DISPATCH_GLOBAL)
        self.dispatch_global.initializer = ir.Constant(i64, 0)
        self.clock_global = None
        if inline_helpers:  # libc's clock_gettime, written after loading (inline helpers)
            self.clock_global = ir.GlobalVariable(self.module, i64, name=CLOCK_GLOBAL)
            self.clock_global.initializer = ir.Constant(i64, 0)
        self.memcpy = ir.Function(
            self.module,
            ir.FunctionType(ir.VoidType(), [i8.as_pointer(), i8.as_pointer(), i64, i1]),
            name="llvm.memcpy.p0.p0.i64",
        )
        self.ctx_type = i64.as_pointer()
        self.fn_type = ir.FunctionType(i64, [self.ctx_type] + [i64] * 6)
        self.dispatch_type = ir.FunctionType(i64, [self.ctx_type] + [i64] * 8)
        self.memset = ir.Function(
            self.module,
            ir.FunctionType(ir.VoidType(), [i8.as_pointer(), i8, i64, i1]),
            name="llvm.memset.p0.i64",
        )
        self.functions = {}
        for entry in cfg.functions:
            fn = ir.Function(self.module, self.fn_type, name=f"bpf_fn_{entry}")
            fn.linkage = "internal"
            fn.attributes.add("nounwind")
            self.functions[entry] = fn
        self.access_type = ir.FunctionType(i1, [self.ctx_type] + [i64] * 5)


def _build_access_ok(module, ctx_type):
    """``i1 pybpf_access_ok(ctx, addr, size, need, depth, pc)``: the debug-mode access check.

    It lives in the runtime module (:func:`runtime_module`), compiled once per process;
    programs call it through the context block's ``ACCESS`` slot.

    An access is allowed when it lies inside one live frame (frames 0..depth of the stack
    block: read/write), or inside one row of the region table granting ``need``; such a
    row becomes the read or write cache that programs test inline first. When it is not,
    the error (``Status.MEMORY``, pc, address, size, access) is recorded in the context
    block and 0 is returned.
    """
    i64, i1 = _int(64), _int(1)
    fn = ir.Function(
        module, ir.FunctionType(i1, [ctx_type, i64, i64, i64, i64, i64]), name=ACCESS_OK
    )
    fn.attributes.add("nounwind")
    ctx, addr, size, need, depth, pc = fn.args
    entry = fn.append_basic_block("entry")
    stack_bb = fn.append_basic_block("stack")
    table_bb = fn.append_basic_block("table")
    loop_bb = fn.append_basic_block("loop")
    body_bb = fn.append_basic_block("body")
    perms_bb = fn.append_basic_block("perms")
    found_bb = fn.append_basic_block("found")
    next_bb = fn.append_basic_block("next")
    fail_bb = fn.append_basic_block("fail")
    b = ir.IRBuilder(entry)

    def slot(index: Slot):
        return b.gep(ctx, [_const(64, index)])

    stack = b.load(slot(Slot.STACK))
    off = b.sub(addr, stack)
    live = b.mul(b.add(depth, _const(64, 1)), _const(64, STACK_SIZE))
    b.cbranch(b.icmp_unsigned("<", off, live), stack_bb, table_bb)
    b.position_at_end(stack_bb)
    inner = b.add(b.and_(off, _const(64, STACK_SIZE - 1)), size)
    b.cbranch(b.icmp_unsigned("<=", inner, _const(64, STACK_SIZE)), found_bb, fail_bb)
    b.position_at_end(table_bb)
    table = b.inttoptr(b.load(slot(Slot.REGIONS)), i64.as_pointer())
    count = b.load(slot(Slot.NREGIONS))
    b.branch(loop_bb)
    b.position_at_end(loop_bb)
    i = b.phi(i64)
    i.add_incoming(_const(64, 0), table_bb)
    b.cbranch(b.icmp_unsigned(">=", i, count), fail_bb, body_bb)
    b.position_at_end(body_bb)
    row = b.mul(i, _const(64, REGION_FIELDS))
    base = b.load(b.gep(table, [row]))
    end = b.load(b.gep(table, [b.add(row, _const(64, 1))]))
    perms = b.load(b.gep(table, [b.add(row, _const(64, 2))]))
    fits = b.and_(b.icmp_unsigned("<=", size, end), b.icmp_unsigned("<=", addr, b.sub(end, size)))
    inside = b.and_(b.icmp_unsigned("<=", base, addr), fits)
    b.cbranch(inside, perms_bb, next_bb)
    b.position_at_end(perms_bb)
    granted = fn.append_basic_block("granted")
    b.cbranch(b.icmp_unsigned("==", b.and_(perms, need), need), granted, fail_bb)
    b.position_at_end(granted)
    writing = b.icmp_unsigned("==", need, _const(64, PERM_WRITE))
    cache = b.select(writing, _const(64, Slot.WCACHE_BASE), _const(64, Slot.RCACHE_BASE))
    b.store(base, b.gep(ctx, [cache]))
    b.store(b.sub(end, base), b.gep(ctx, [b.add(cache, _const(64, 1))]))
    b.branch(found_bb)
    b.position_at_end(next_bb)
    i.add_incoming(b.add(i, _const(64, 1)), next_bb)
    b.branch(loop_bb)
    b.position_at_end(found_bb)
    b.ret(_const(1, 1))
    b.position_at_end(fail_bb)
    b.store(_const(64, Status.MEMORY), slot(Slot.STATUS))
    b.store(pc, slot(Slot.ERR_PC))
    b.store(addr, slot(Slot.ERR_A))
    b.store(size, slot(Slot.ERR_B))
    b.store(b.zext(b.icmp_unsigned("==", need, _const(64, PERM_WRITE)), i64), slot(Slot.ERR_C))
    b.ret(_const(1, 0))
    return fn


class _FunctionLowering:
    """Lowers one eBPF function's blocks into its LLVM function."""

    def __init__(self, mod: _Module, function: Function) -> None:
        self.mod = mod
        self.function = function
        self.fn = mod.functions[function.entry]
        self.table = mod.cfg.table
        self.ctx, self.depth, *args = self.fn.args
        self.entry_bb = entry_bb = self.fn.append_basic_block("entry")
        self.b = b = ir.IRBuilder(entry_bb)
        self.head = ir.IRBuilder(entry_bb)  # adds slot pointers to the entry block
        self.slot_ptrs: dict[int, object] = {}
        self.known: dict[int, object] = {}  # register -> its value, valid where we are
        i64 = _int(64)
        self.regs = [b.alloca(i64, name=f"r{i}") for i in range(10)]
        for i, reg in enumerate(self.regs):
            b.store(args[i - 1] if 1 <= i <= 5 else _const(64, 0), reg)
        stack = self.load_slot(Slot.STACK)
        frame = b.add(stack, b.mul(self.depth, _const(64, STACK_SIZE)))
        self.r10 = b.add(frame, _const(64, STACK_SIZE), name="r10")
        zeroed = frame_bytes(mod.stack_depth)
        if zeroed and self.uses_frame():  # zeroed, as the interpreter's frames are
            start = frame if zeroed == STACK_SIZE else b.sub(self.r10, _const(64, zeroed))
            b.call(
                mod.memset,
                [
                    b.inttoptr(start, _int(8).as_pointer()),
                    _const(8, 0),
                    _const(64, zeroed),
                    _const(1, 0),
                ],
            )
        self.blocks = {
            blk.start: self.fn.append_basic_block(f"pc{blk.start}") for blk in function.blocks
        }
        self.maps_at = map_registers(function.blocks, self.table, mod.sites)
        self.map_regs: dict = {}
        rings = mod.rings.sites if mod.rings else {}
        self.rings_at = map_registers(function.blocks, self.table, rings)  # ring sites
        self.ring_regs: dict = {}
        self.unwind = self.fn.append_basic_block("unwind")
        self.out_of_budget = None
        b.branch(self.blocks[function.entry])
        b.position_at_end(self.unwind)
        b.ret(_const(64, 0))

    def uses_frame(self) -> bool:
        """False when no instruction of this function names r10: then nothing can reach
        its frame (a callee only sees a frame its caller passes a pointer to)."""
        for block in self.function.blocks:
            for pc in block.pcs:
                insn = self.table[pc]
                assert insn is not None
                if insn.is_callx:
                    if insn.callx_register == FRAME_POINTER:
                        return True
                elif insn.is_call or insn.is_lddw:
                    continue  # src is a call kind or pseudo source, not a register
                elif FRAME_POINTER in (insn.dst, insn.src):
                    return True
        return False

    # ---- small builders ------------------------------------------------------------------
    def slot(self, slot: Slot):
        """A pointer to a context slot, computed once in the entry block."""
        ptr = self.slot_ptrs.get(slot)
        if ptr is None:
            if self.b.block is self.entry_bb:  # two builders in one block would clash
                builder = self.b
            else:
                builder = self.head
                builder.position_before(self.entry_bb.terminator)
            ptr = self.slot_ptrs[slot] = builder.gep(self.ctx, [_const(64, slot)])
        return ptr

    def timespec(self):
        """A ``[2 x i64]`` in this function's native frame (made once, in the entry block)."""
        found = getattr(self, "_timespec", None)
        if found is None:
            builder = self.head
            builder.position_before(self.entry_bb.terminator)
            found = self._timespec = builder.alloca(ir.ArrayType(_int(64), 2), name="timespec")
        return found

    def load_slot(self, slot: Slot):
        return self.b.load(self.slot(slot))

    def store_slot(self, slot: Slot, value) -> None:
        if isinstance(value, int):
            value = _const(64, value)
        self.b.store(value, self.slot(slot))

    def get(self, reg: int):
        if reg == 10:
            return self.r10
        value = self.known.get(reg)
        if value is None:
            value = self.known[reg] = self.b.load(self.regs[reg])
        return value

    def set(self, reg: int, value) -> None:
        if reg == 10:  # blocks.analyse refuses writes to r10
            raise InternalError("write to r10 reached lowering")
        self.b.store(value, self.regs[reg])
        self.known[reg] = value

    def split(self, fail_cond, name: str = "ok"):
        """Branch on ``fail_cond``: returns with the builder in the failing block.

        The caller fills the failing block (it must end with a terminator) then calls
        ``position_at_end`` on the returned continuation block.
        """
        ok = self.fn.append_basic_block(name)
        bad = self.fn.append_basic_block(name + ".fail")
        self.b.cbranch(fail_cond, bad, ok)
        self.b.position_at_end(bad)
        return ok

    def stop(self, status: Status, pc: int, a=None, b=None, c=None) -> None:
        """In the current block: record an error and unwind."""
        self.store_slot(Slot.STATUS, int(status))
        self.store_slot(Slot.ERR_PC, pc)
        for slot, value in ((Slot.ERR_A, a), (Slot.ERR_B, b), (Slot.ERR_C, c)):
            if value is not None:
                self.store_slot(slot, value)
        self.b.branch(self.unwind)

    def check_status(self) -> None:
        """After a call: unwind when the callee or helper stopped the run."""
        failed = self.b.icmp_unsigned("!=", self.load_slot(Slot.STATUS), _const(64, 0))
        ok = self.fn.append_basic_block("called")
        self.b.cbranch(failed, self.unwind, ok)
        self.b.position_at_end(ok)

    # ---- the function --------------------------------------------------------------------
    def lower(self) -> None:
        heads = loop_heads(self.function, self.table) if self.mod.loop_budget else frozenset()
        for block in self.function.blocks:
            self.b.position_at_end(self.blocks[block.start])
            self.known = {}  # values from other blocks need not dominate this one
            self.map_regs = dict(self.maps_at.get(block.start, {}))  # register -> map site
            self.ring_regs = dict(self.rings_at.get(block.start, {}))  # register -> ring site
            if self.mod.debug or block.start in heads:
                self.charge(block)
            for pc in block.pcs:
                insn = self.table[pc]
                assert insn is not None
                self.instruction(insn, pc)
                if self.mod.sites:
                    track(self.map_regs, insn, pc, self.mod.sites)
                if self.mod.rings:
                    track(self.ring_regs, insn, pc, self.mod.rings.sites)
            last = self.table[block.last]
            assert last is not None
            if not self.b.block.is_terminated:
                self.b.branch(self.blocks[block.last + last.slots])

    def charge(self, block: Block) -> None:
        """Take the block's length from the budget, or stop before it runs (every block in
        debug mode; loop heads only under ``loop_budget``)."""
        b = self.b
        if self.out_of_budget is None:
            here = b.block
            self.out_of_budget = self.fn.append_basic_block("out_of_budget")
            b.position_at_end(self.out_of_budget)
            self.budget_pc = b.phi(_int(64))
            self.budget_left = b.phi(_int(64))
            self.store_slot(Slot.STATUS, int(Status.BUDGET))
            self.store_slot(Slot.ERR_PC, self.budget_pc)
            self.store_slot(Slot.ERR_A, self.budget_left)
            self.store_slot(Slot.ERR_B, self.function.entry)
            b.branch(self.unwind)
            b.position_at_end(here)
        left = self.load_slot(Slot.BUDGET)
        rest = b.sub(left, _const(64, len(block.pcs)))
        self.budget_pc.add_incoming(_const(64, block.start), b.block)
        self.budget_left.add_incoming(left, b.block)
        ok = self.fn.append_basic_block("budget")
        b.cbranch(b.icmp_signed("<", rest, _const(64, 0)), self.out_of_budget, ok)
        b.position_at_end(ok)
        self.store_slot(Slot.BUDGET, rest)

    def instruction(self, insn: Instruction, pc: int) -> None:  # noqa: C901 - a dispatch
        cls = insn.cls
        if cls == Class.ALU64:
            self.alu(insn, 64)
        elif cls == Class.ALU:
            self.alu(insn, 32)
        elif cls in (Class.JMP, Class.JMP32):
            self.jump(insn, pc)
        elif cls == Class.LDX:
            self.load(insn, pc)
        elif cls == Class.ST or (cls == Class.STX and insn.mode == Mode.MEM):
            self.store(insn, pc)
        elif cls == Class.STX:
            self.atomic(insn, pc)
        elif insn.is_lddw:
            slot = self.mod.lddw_slots.get(pc)
            if slot is None:
                self.set(insn.dst, _const(64, insn.imm64))
            else:
                where = self.b.gep(self.mod.lddw_table, [_const(32, 0), _const(32, slot)])
                self.set(insn.dst, self.b.load(where))
        elif insn.is_legacy_packet_load:
            self.legacy_packet(insn, pc)
        else:  # blocks.analyse refused it
            raise InternalError(f"cannot lower {insn!r}", pc=pc)

    # ---- ALU -----------------------------------------------------------------------------
    def alu(self, insn: Instruction, bits: int) -> None:  # noqa: C901 - one case per op
        b = self.b
        op = insn.alu_op
        d = insn.dst
        ty = _int(bits)
        if op == AluOp.END:
            self.byte_swap(insn)
            return
        if op == AluOp.MOV:
            if insn.source == Source.K:
                value = _const(bits, insn.imm)
            elif insn.movsx_bits:
                narrow = b.trunc(self.get(insn.src), _int(insn.movsx_bits))
                value = b.sext(narrow, ty)
            else:
                value = self.operand(self.get(insn.src), bits)
            self.set(d, self.widen(value, bits))
            return
        a = self.operand(self.get(d), bits)
        if op == AluOp.NEG:
            self.set(d, self.widen(b.sub(_const(bits, 0), a), bits))
            return
        if insn.source == Source.X:
            v = self.operand(self.get(insn.src), bits)
        else:
            v = _const(bits, insn.imm)  # ALU64: sign-extended; ALU32: the low 32 bits
        if op == AluOp.ADD:
            r = b.add(a, v)
        elif op == AluOp.SUB:
            r = b.sub(a, v)
        elif op == AluOp.MUL:
            r = b.mul(a, v)
        elif op == AluOp.OR:
            r = b.or_(a, v)
        elif op == AluOp.AND:
            r = b.and_(a, v)
        elif op == AluOp.XOR:
            r = b.xor(a, v)
        elif op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH):
            count = b.and_(v, _const(bits, bits - 1))  # never >= the width
            shift = {AluOp.LSH: b.shl, AluOp.RSH: b.lshr, AluOp.ARSH: b.ashr}[op]
            r = shift(a, count)
        elif op in (AluOp.DIV, AluOp.MOD):
            r = self.divmod(op, a, v, bits, signed=insn.off == 1)
        else:  # pragma: no cover - check_insn refuses other operations
            raise InternalError(f"ALU operation {op!r}")
        self.set(d, self.widen(r, bits))

    def operand(self, value, bits: int):
        return value if bits == 64 else self.b.trunc(value, _int(bits))

    def widen(self, value, bits: int):
        return value if bits == 64 else self.b.zext(value, _int(64))

    def divmod(self, op: AluOp, a, v, bits: int, *, signed: bool):
        """eBPF division and modulo without LLVM UB (see the module docstring)."""
        b = self.b
        zero, one = _const(bits, 0), _const(bits, 1)
        is_zero = b.icmp_unsigned("==", v, zero)
        if not signed:
            safe = b.select(is_zero, one, v)
            if op == AluOp.DIV:
                return b.select(is_zero, zero, b.udiv(a, safe))
            return b.select(is_zero, a, b.urem(a, safe))
        minus_one = _const(bits, -1)
        is_m1 = b.icmp_unsigned("==", v, minus_one)
        safe = b.select(b.or_(is_zero, is_m1), one, v)
        if op == AluOp.DIV:  # x / -1 = -x (wrapping: INT_MIN / -1 = INT_MIN)
            q = b.select(is_m1, b.sub(zero, a), b.sdiv(a, safe))
            return b.select(is_zero, zero, q)
        m = b.select(is_m1, zero, b.srem(a, safe))  # srem truncates: -13 % 3 = -1
        return b.select(is_zero, a, m)

    def byte_swap(self, insn: Instruction) -> None:
        b = self.b
        bits = insn.imm
        value = self.get(insn.dst)
        narrow = value if bits == 64 else b.trunc(value, _int(bits))
        if insn.is_bswap or insn.is_big_endian_conversion:  # this host is little-endian
            narrow = b.bswap(narrow)
        self.set(insn.dst, narrow if bits == 64 else b.zext(narrow, _int(64)))

    # ---- jumps, calls, exit --------------------------------------------------------------
    def jump(self, insn: Instruction, pc: int) -> None:
        b = self.b
        nxt = pc + insn.slots
        if insn.is_exit:
            b.ret(self.get(0))
        elif insn.is_call:
            if insn.call_kind == CallKind.LOCAL:
                self.local_call(call_target(insn, pc), pc)
            elif insn.call_kind == CallKind.HELPER:
                site = self.map_regs.get(1) if insn.imm in MAP_HELPERS else None
                prog_array = self.map_regs.get(2) if insn.imm == TAIL_CALL else None
                if site is not None:
                    lower_map_call(self, insn.imm, site, pc)
                elif prog_array is not None and prog_array.kind == "progarray":
                    lower_tail_call(self, prog_array, pc)
                elif insn.imm in self.mod.inline_helpers:
                    lower_inline_helper(self, insn.imm)
                elif self.mod.rings and insn.imm in self.mod.rings.helpers:
                    lower_ring_call(self, insn.imm, pc, self.ring_regs.get(1))
                elif insn.imm == TAIL_CALL:
                    self.tail_call(pc)
                else:
                    self.helper_call(_const(64, insn.imm), pc)
            else:  # pragma: no cover - blocks.analyse refuses kfuncs
                raise InternalError("kfunc call reached lowering", pc=pc)
        elif insn.is_callx:
            self.helper_call(self.get(insn.callx_register), pc)
        elif insn.is_ja:
            b.branch(self.blocks[jump_target(insn, pc)])
        elif insn.is_may_goto:
            left = self.load_slot(Slot.MAY_GOTO)
            go = self.fn.append_basic_block("may_goto")
            b.cbranch(
                b.icmp_signed("<=", left, _const(64, 0)), self.blocks[jump_target(insn, pc)], go
            )
            b.position_at_end(go)
            self.store_slot(Slot.MAY_GOTO, b.sub(left, _const(64, 1)))
            b.branch(self.blocks[nxt])
        else:
            taken = self.condition(insn)
            b.cbranch(taken, self.blocks[jump_target(insn, pc)], self.blocks[nxt])

    def condition(self, insn: Instruction):
        b = self.b
        bits = 64 if insn.cls == Class.JMP else 32
        a = self.operand(self.get(insn.dst), bits)
        if insn.source == Source.X:
            v = self.operand(self.get(insn.src), bits)
        else:
            v = _const(bits, insn.imm)  # sign-extended, then truncated to the width
        op = insn.jmp_op
        if op == JmpOp.JSET:
            return b.icmp_unsigned("!=", b.and_(a, v), _const(bits, 0))
        if op in _UNSIGNED_CMP:
            return b.icmp_unsigned(_UNSIGNED_CMP[op], a, v)
        if op in _SIGNED_CMP:
            return b.icmp_signed(_SIGNED_CMP[op], a, v)
        raise NotSupportedError(f"jump operation {op!r}", feature="jmp")  # pragma: no cover

    def call_args(self):
        return [self.get(r) for r in range(1, 6)]

    def local_call(self, target: int, pc: int) -> None:
        b = self.b
        depth = b.add(self.depth, _const(64, 1))
        ok = self.split(b.icmp_unsigned(">=", depth, _const(64, MAX_CALL_DEPTH)), "call")
        self.stop(Status.CALL_DEPTH, pc, a=b.add(depth, _const(64, 1)))
        b.position_at_end(ok)
        r0 = b.call(self.mod.functions[target], [self.ctx, depth] + self.call_args())
        self.set(0, r0)
        self.check_status()

    def dispatcher(self):
        """The helper dispatcher, as a function pointer."""
        address = self.b.load(self.mod.dispatch_global)
        return self.b.inttoptr(address, self.mod.dispatch_type.as_pointer())

    def helper_call(self, helper_id, pc: int) -> None:
        b = self.b
        dispatch = self.dispatcher()
        args = [self.ctx, helper_id, _const(64, pc), self.depth] + self.call_args()
        self.set(0, b.call(dispatch, args))
        self.check_status()

    def tail_call(self, pc: int) -> None:
        """``bpf_tail_call``: the dispatcher runs the target (or falls through with r0 =
        -ENOENT); when the target ran (``Slot.TAILED``), this function returns its r0."""
        self.helper_call(_const(64, TAIL_CALL), pc)
        b = self.b
        tailed = self.slot(Slot.TAILED)
        done = self.split(b.icmp_unsigned("!=", b.load(tailed), _const(64, 0)), "tail")
        b.store(_const(64, 0), tailed)
        b.ret(self.get(0))
        b.position_at_end(done)

    # ---- memory --------------------------------------------------------------------------
    def address(self, reg: int, off: int):
        base = self.get(reg)
        return self.b.add(base, _const(64, off)) if off else base

    def pointer(self, address, bits: int):
        return self.b.inttoptr(address, _int(bits).as_pointer())

    def access(self, address, nbytes: int, need: int, pc: int, base: int, off: int) -> None:
        """Debug mode: stop with ``Status.MEMORY`` unless the access is allowed.

        ``r10 + off`` is checked here, at compile time: r10 never changes, so an access
        inside the current frame needs no code (nor does any access without debug checks).
        """
        if not self.mod.debug:
            return
        if base == FRAME_POINTER and -STACK_SIZE <= off and off + nbytes <= 0:
            return
        b = self.b
        cache = Slot.WCACHE_BASE if need == PERM_WRITE else Slot.RCACHE_BASE
        offset = b.sub(address, self.load_slot(cache))
        size = self.load_slot(cache + 1)
        hit = b.and_(  # offset < size first: then offset + nbytes cannot wrap
            b.icmp_unsigned("<", offset, size),
            b.icmp_unsigned("<=", b.add(offset, _const(64, nbytes)), size),
        )
        ok = self.fn.append_basic_block("access")
        slow = self.fn.append_basic_block("access.slow")
        b.cbranch(hit, ok, slow)
        b.position_at_end(slow)
        check = b.inttoptr(self.load_slot(Slot.ACCESS), self.mod.access_type.as_pointer())
        allowed = b.call(
            check,
            [self.ctx, address, _const(64, nbytes), _const(64, need), self.depth, _const(64, pc)],
        )
        b.cbranch(allowed, ok, self.unwind)
        b.position_at_end(ok)

    def load(self, insn: Instruction, pc: int) -> None:
        b = self.b
        bits = _BITS[insn.size]
        address = self.address(insn.src, insn.off)
        self.access(address, bits // 8, PERM_READ, pc, insn.src, insn.off)
        value = b.load(self.pointer(address, bits), align=1)
        if bits < 64:
            extend = b.sext if insn.is_sign_extending_load else b.zext
            value = extend(value, _int(64))
        self.set(insn.dst, value)

    def store(self, insn: Instruction, pc: int) -> None:
        b = self.b
        bits = _BITS[insn.size]
        address = self.address(insn.dst, insn.off)
        self.access(address, bits // 8, PERM_WRITE, pc, insn.dst, insn.off)
        if insn.cls == Class.ST:
            value = _const(bits, insn.imm)
        else:
            value = self.get(insn.src)
            if bits < 64:
                value = b.trunc(value, _int(bits))
        b.store(value, self.pointer(address, bits), align=1)

    def atomic(self, insn: Instruction, pc: int) -> None:
        b = self.b
        bits = _BITS[insn.size]
        op = insn.atomic_op
        base = insn.src if op == AtomicOp.LOAD_ACQ else insn.dst
        address = self.address(base, insn.off)
        nbytes = bits // 8
        if op == AtomicOp.LOAD_ACQ:
            self.access(address, nbytes, PERM_READ, pc, base, insn.off)
        else:  # read-modify-write and store-release: write, then read permission
            self.access(address, nbytes, PERM_WRITE, pc, base, insn.off)
            self.access(address, nbytes, PERM_READ, pc, base, insn.off)
        ptr = self.pointer(address, bits)
        if not self.mod.debug or nbytes == 1:
            result = self.atomic_op(insn, ptr, bits, atomic=True)
        else:  # misaligned atomics (refused by a verifier) take a plain path
            misaligned = b.icmp_unsigned(
                "!=", b.and_(address, _const(64, nbytes - 1)), _const(64, 0)
            )
            before = dict(self.known)  # values loaded in one branch must stay there
            with b.if_else(misaligned) as (plain, native):
                with plain:
                    self.known = dict(before)
                    plain_result = self.atomic_op(insn, ptr, bits, atomic=False)
                    plain_bb = b.block
                with native:
                    self.known = dict(before)
                    native_result = self.atomic_op(insn, ptr, bits, atomic=True)
                    native_bb = b.block
            self.known = before
            result = None
            if plain_result is not None:
                result = b.phi(_int(64))
                result.add_incoming(plain_result, plain_bb)
                result.add_incoming(native_result, native_bb)
        if result is None:
            return
        if op == AtomicOp.LOAD_ACQ:
            self.set(insn.dst, result)
        elif op == AtomicOp.CMPXCHG:
            self.set(0, result)
        elif op & ATOMIC_FETCH:  # FETCH (xchg included): src receives the old value
            self.set(insn.src, result)

    def atomic_op(self, insn: Instruction, ptr, bits: int, *, atomic: bool):
        """Emit one atomic (or its single-threaded equivalent); returns the old value as
        ``i64`` when the instruction yields one, else ``None``."""
        b = self.b
        op = insn.atomic_op
        align = bits // 8
        if op == AtomicOp.LOAD_ACQ:
            if atomic:
                value = b.load_atomic(ptr, "acquire", align)
            else:
                value = b.load(ptr, align=1)
            return self.widen_from(value, bits)
        operand = self.get(insn.src)
        if bits < 64:
            operand = b.trunc(operand, _int(bits))
        if op == AtomicOp.STORE_REL:
            if atomic:
                b.store_atomic(operand, ptr, "release", align)
            else:
                b.store(operand, ptr, align=1)
            return None
        if op == AtomicOp.CMPXCHG:
            expected = self.get(0)
            if bits < 64:
                expected = b.trunc(expected, _int(bits))
            if atomic:
                old = b.extract_value(b.cmpxchg(ptr, expected, operand, "seq_cst", "seq_cst"), 0)
            else:
                old = b.load(ptr, align=1)
                b.store(b.select(b.icmp_unsigned("==", old, expected), operand, old), ptr, align=1)
            return self.widen_from(old, bits)
        name = _RMW[op]
        fetch = bool(op & ATOMIC_FETCH)
        if atomic:
            old = b.atomic_rmw(name, ptr, operand, "seq_cst" if fetch else "monotonic")
        else:
            old = b.load(ptr, align=1)
            new = {
                "add": b.add,
                "or": b.or_,
                "and": b.and_,
                "xor": b.xor,
                "xchg": lambda _old, v: v,
            }[name](old, operand)
            b.store(new, ptr, align=1)
        return self.widen_from(old, bits) if fetch else None

    def widen_from(self, value, bits: int):
        return value if bits == 64 else self.b.zext(value, _int(64))

    # ---- legacy packet loads -------------------------------------------------------------
    def legacy_packet(self, insn: Instruction, pc: int) -> None:
        b = self.b
        nbytes = insn.nbytes
        has = self.load_slot(Slot.HAS_PACKET)
        ok = self.split(b.icmp_unsigned("==", has, _const(64, 0)), "packet")
        self.stop(Status.NO_PACKET, pc)
        b.position_at_end(ok)
        offset = _const(64, insn.imm)
        if insn.mode == Mode.IND:
            offset = b.add(self.get(insn.src), offset)
        # Linux's int offset k (bpf_skb_load_helper_*): k >= 0 reads the packet at k; a
        # negative k (bpf_internal_load_pointer_neg_helper) reads the network header plus
        # k - SKF_NET_OFF or the mac header plus k - SKF_LL_OFF, between the buffer's head
        # and the packet's end. Branch-free: ``at`` is where the load reads (from PACKET).
        k = b.sext(b.trunc(offset, _int(32)), _int(64))
        size = self.load_slot(Slot.PACKET_SIZE)
        net = b.add(self.load_slot(Slot.PACKET_NET), _const(64, -SKF_NET_OFF))
        mac = b.add(self.load_slot(Slot.PACKET_MAC), _const(64, -SKF_LL_OFF))
        header = b.select(b.icmp_signed(">=", k, _const(64, SKF_NET_OFF)), net, mac)
        negative = b.icmp_signed("<", k, _const(64, 0))
        at = b.select(negative, b.add(header, k), k)
        outside = b.or_(
            b.or_(
                b.icmp_signed("<", k, _const(64, SKF_LL_OFF)),
                b.icmp_signed("<", at, self.load_slot(Slot.PACKET_HEAD)),  # head <= 0
            ),
            b.icmp_signed(">", b.add(at, _const(64, nbytes)), size),
        )
        inside = self.split(outside, "packet_load")
        b.ret(_const(64, 0))  # an out-of-bounds LD_ABS/LD_IND returns 0 from the function
        b.position_at_end(inside)
        address = b.add(self.load_slot(Slot.PACKET), at)
        bits = nbytes * 8
        value = b.load(self.pointer(address, bits), align=1)
        if bits > 8:
            value = b.bswap(value)  # network byte order
        self.set(0, b.zext(value, _int(64)))


def lddw_slots(cfg: ControlFlow) -> dict[int, int]:
    """The pc of every ``lddw`` with a pseudo source -> its index in :data:`LDDW_TABLE`."""
    table = cfg.table
    pcs = [pc for pc, insn in enumerate(table) if insn is not None and insn.is_lddw and insn.src]
    return {pc: index for index, pc in enumerate(pcs)}


def frame_bytes(stack_depth: int | None) -> int:
    """Bytes of each frame (below r10) zeroed on function entry: the whole frame, or with
    a verifier's ``stack_depth`` (the deepest r10-relative byte any frame reaches) only
    those, rounded up to 8."""
    if stack_depth is None:
        return STACK_SIZE
    return min(STACK_SIZE, (max(0, int(stack_depth)) + 7) // 8 * 8)


def lower_program(
    cfg: ControlFlow,
    *,
    debug_checks: bool = False,
    map_sites: Mapping[int, MapSite] | None = None,
    stack_depth: int | None = None,
    inline_helpers: frozenset[int] = frozenset(),
    loop_budget: bool = False,
    tail_entry: bool = True,
    rings: RingCalls | None = None,
):
    """The ``ir.Module`` of a checked program (see the module docstring).

    ``map_sites`` (:func:`pybpf.jit.mapcalls.find_sites`): the ``lddw`` of maps whose
    helper calls become native code (under ``debug_checks`` after checking their key and
    value pointers). ``stack_depth``: a
    verifier's bound on the stack bytes below r10 any access reaches (only those bytes of
    a frame are zeroed on entry: :func:`frame_bytes`); ignored under ``debug_checks``.
    ``inline_helpers``: helper ids emitted as native code
    (:func:`pybpf.jit.inlinehelpers.inline_helper_ids`). ``loop_budget``: without debug
    checks, still charge the instruction budget at loop heads
    (:func:`pybpf.jit.blocks.loop_heads`), so a loop no one proved bounded cannot run
    forever. ``tail_entry``: also export the native tail entry
    (:func:`pybpf.jit.tailcalls.build_tail_entry`; LLVM inlines the program's body into it
    as into :data:`ENTRY`, so it costs a second copy's optimisation and code generation).
    ``rings``: ring buffer helpers lowered to native producers
    (:func:`pybpf.jit.ringcalls.plan_ring_calls`; never under ``debug_checks``).
    """
    if ir is None:
        raise NotSupportedError("the JIT needs llvmlite (pip install 'pybpf[jit]')", feature="jit")
    depth = None if debug_checks else stack_depth
    mod = _Module(
        cfg,
        debug_checks,
        dict(map_sites or {}),
        depth,
        frozenset(inline_helpers),
        loop_budget=loop_budget,
        rings=None if debug_checks else rings,
    )
    for function in cfg.functions.values():
        _FunctionLowering(mod, function).lower()
    i64 = _int(64)
    entry = ir.Function(mod.module, ir.FunctionType(i64, [mod.ctx_type]), name=ENTRY)
    entry.attributes.add("nounwind")
    entry.attributes.add("noinline")  # the repeat loop must really call it every time
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    (ctx,) = entry.args

    def slot(index):
        return b.gep(ctx, [_const(64, index)])

    b.store(_const(64, 0), slot(Slot.STATUS))
    b.store(b.load(slot(Slot.MAY_GOTO_INIT)), slot(Slot.MAY_GOTO))
    b.store(b.load(slot(Slot.BUDGET_INIT)), slot(Slot.BUDGET))
    b.store(b.load(slot(Slot.TAIL_COUNT_INIT)), slot(Slot.TAIL_COUNT))
    args = [b.load(slot(Slot.ARG1 + i)) for i in range(5)]
    b.ret(b.call(mod.functions[0], [ctx, _const(64, 0)] + args))
    _build_repeat(mod, entry)
    if tail_entry:
        build_tail_entry(mod.module, mod.ctx_type, mod.functions[0])
    return mod.module


def _build_repeat(mod: _Module, entry) -> None:
    """``i64 pybpf_repeat(ctx, n)``: run the entry ``n`` times (n >= 1).

    Each run starts afresh (the entry resets the status and the budgets); the loop stops
    at the first run that leaves a non-zero status. Returns the last run's r0
    (BPF_PROG_TEST_RUN's repeat loop, in native code).
    """
    i64 = _int(64)
    fn = ir.Function(mod.module, ir.FunctionType(i64, [mod.ctx_type, i64]), name=REPEAT)
    fn.attributes.add("nounwind")
    ctx, n = fn.args
    start = fn.append_basic_block("start")
    loop = fn.append_basic_block("loop")
    done = fn.append_basic_block("done")
    b = ir.IRBuilder(start)
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(i64)
    i.add_incoming(_const(64, 0), start)
    r0 = b.call(entry, [ctx])
    status = b.load(b.gep(ctx, [_const(64, Slot.STATUS)]))
    following = b.add(i, _const(64, 1))
    i.add_incoming(following, loop)
    more = b.and_(b.icmp_unsigned("==", status, _const(64, 0)), b.icmp_unsigned("<", following, n))
    b.cbranch(more, loop, done)
    b.position_at_end(done)
    b.ret(r0)


def runtime_module():
    """The ``ir.Module`` of code every program shares: :data:`ACCESS_OK`."""
    if ir is None:
        raise NotSupportedError("the JIT needs llvmlite (pip install 'pybpf[jit]')", feature="jit")
    module = ir.Module(name="pybpf_runtime")
    _build_access_ok(module, _int(64).as_pointer())
    return module
