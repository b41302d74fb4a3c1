"""Interpreter: memory checks, budget, calls and frames, helpers, load-time refusals, execute().

The small builder at the top (``I``) is shared with the other ``test_vm_*`` modules.
"""

from __future__ import annotations

import errno
import threading

import pytest

from pybpf.errors import (
    BudgetExceededError,
    CallDepthError,
    DecodeError,
    HelperError,
    InputError,
    MemoryAccessError,
    NotSupportedError,
    UninitializedRegisterError,
)
from pybpf.isa import AluOp, AtomicOp, CallKind, Class, Instruction, JmpOp, Mode, Size, Source
from pybpf.isa.opcodes import STACK_SIZE, alu_opcode, jmp_opcode, mem_opcode
from pybpf.memory import AddressSpace, Region
from pybpf.runtime import HelperRegistry, default_helpers
from pybpf.vm import Interpreter, execute


# ---- a tiny instruction builder --------------------------------------------------------------
class I:  # noqa: E742 - short on purpose: programs read like assembly
    """Instruction constructors (``x`` is a register when given as ``"rN"``, else an imm)."""

    SIZES = {1: Size.B, 2: Size.H, 4: Size.W, 8: Size.DW}

    @staticmethod
    def _src(x):
        if isinstance(x, str):
            return Source.X, int(x[1:]), 0
        return Source.K, 0, x

    @classmethod
    def alu(cls, op, dst, x=0, *, w64=True, off=0):
        source, src, imm = cls._src(x)
        klass = Class.ALU64 if w64 else Class.ALU
        return Instruction(alu_opcode(klass, op, source), dst, src, off, imm)

    @classmethod
    def mov(cls, dst, x, *, w64=True):
        return cls.alu(AluOp.MOV, dst, x, w64=w64)

    @classmethod
    def add(cls, dst, x, *, w64=True):
        return cls.alu(AluOp.ADD, dst, x, w64=w64)

    @staticmethod
    def lddw(dst, value, src=0):
        value &= (1 << 64) - 1
        lo, hi = value & 0xFFFFFFFF, value >> 32
        to_i32 = lambda v: v - (1 << 32) if v >= 1 << 31 else v  # noqa: E731
        return Instruction(0x18, dst, src, 0, to_i32(lo), to_i32(hi))

    @classmethod
    def jmp(cls, op, dst, x, off, *, w64=True):
        source, src, imm = cls._src(x)
        klass = Class.JMP if w64 else Class.JMP32
        return Instruction(jmp_opcode(klass, op, source), dst, src, off, imm)

    @staticmethod
    def ja(off):
        return Instruction(jmp_opcode(Class.JMP, JmpOp.JA, Source.K), off=off)

    @classmethod
    def ldx(cls, size, dst, src, off=0, *, signed=False):
        mode = Mode.MEMSX if signed else Mode.MEM
        return Instruction(mem_opcode(Class.LDX, mode, cls.SIZES[size]), dst, src, off)

    @classmethod
    def stx(cls, size, dst, off, src):
        return Instruction(mem_opcode(Class.STX, Mode.MEM, cls.SIZES[size]), dst, src, off)

    @classmethod
    def st(cls, size, dst, off, imm):
        return Instruction(mem_opcode(Class.ST, Mode.MEM, cls.SIZES[size]), dst, 0, off, imm)

    @classmethod
    def atomic(cls, size, op, dst, off, src):
        code = mem_opcode(Class.STX, Mode.ATOMIC, cls.SIZES[size])
        return Instruction(code, dst, src, off, int(op))

    @staticmethod
    def call(helper_id):
        return Instruction(jmp_opcode(Class.JMP, JmpOp.CALL, Source.K), imm=helper_id)

    @staticmethod
    def call_local(off):
        code = jmp_opcode(Class.JMP, JmpOp.CALL, Source.K)
        return Instruction(code, src=CallKind.LOCAL, imm=off)

    @staticmethod
    def callx(reg):
        return Instruction(jmp_opcode(Class.JMP, JmpOp.CALL, Source.X), dst=reg)

    @staticmethod
    def ld_abs(size, imm):
        return Instruction(mem_opcode(Class.LD, Mode.ABS, I.SIZES[size]), imm=imm)

    @staticmethod
    def ld_ind(size, src, imm):
        return Instruction(mem_opcode(Class.LD, Mode.IND, I.SIZES[size]), src=src, imm=imm)

    EXIT = Instruction(jmp_opcode(Class.JMP, JmpOp.EXIT, Source.K))


EXIT = I.EXIT


def run(insns, *args, memory=None, **kw):
    """Load and run once; r1.. come from ``args``."""
    entry = kw.pop("entry_registers", tuple(range(1, len(args) + 1)) + (10,))
    vm = Interpreter(insns, entry_registers=entry, **kw)
    try:
        return vm.run(args, memory=memory)
    finally:
        vm.close()


# ---- memory checks ----------------------------------------------------------------------------
def test_loads_and_stores_on_input_memory():
    data = bytes(range(16))
    prog = [
        I.ldx(8, 0, 1, 0),
        I.ldx(2, 3, 1, 8),
        I.add(0, "r3"),
        I.stx(4, 1, 12, 0),  # writes back the low 32 bits
        EXIT,
    ]
    with Region.from_bytes(data, kind="input") as region:
        r0 = run(prog, region.address, memory=AddressSpace([region]))
        expected = int.from_bytes(data[:8], "little") + int.from_bytes(data[8:10], "little")
        assert r0 == expected
        assert region.read(12, 4) == (expected & 0xFFFFFFFF).to_bytes(4, "little")


@pytest.mark.parametrize(
    "off, size, access",
    [(-1, 1, "read"), (15, 2, "read"), (16, 1, "read"), (-8, 8, "write"), (12, 8, "write")],
)
def test_out_of_bounds_access_names_pc_address_size(off, size, access):
    mov = I.mov(0, 0)
    insn = I.ldx(size, 2, 1, off) if access == "read" else I.stx(size, 1, off, 0)
    with Region(16, kind="input") as region:
        with pytest.raises(MemoryAccessError) as info:
            run([mov, mov, insn, EXIT], region.address, memory=AddressSpace([region]))
    err = info.value
    assert (err.pc, err.address, err.size, err.access) == (2, region.address + off, size, access)


def test_write_to_read_only_region_is_refused():
    with Region(8, kind="ctx", writable=False) as ctx:
        space = AddressSpace([ctx])
        assert run([I.ldx(4, 0, 1, 0), EXIT], ctx.address, memory=space) == 0
        with pytest.raises(MemoryAccessError) as info:
            run([I.st(4, 1, 4, 7), I.mov(0, 0), EXIT], ctx.address, memory=space)
    assert info.value.access == "write" and info.value.pc == 0
    assert info.value.address == ctx.address + 4


def test_null_and_wild_pointers_fault():
    with pytest.raises(MemoryAccessError) as info:
        run([I.mov(1, 0), I.ldx(8, 0, 1, 0), EXIT])
    assert (info.value.address, info.value.pc) == (0, 1)
    with pytest.raises(MemoryAccessError) as info:
        run([I.lddw(1, 0xDEAD0000), I.st(1, 1, -1, 0), I.mov(0, 0), EXIT])
    assert info.value.address == 0xDEAD0000 - 1 and info.value.pc == 2


def test_stack_is_512_bytes_below_r10():
    prog = [
        I.st(8, 10, -STACK_SIZE, 41),
        I.ldx(8, 0, 10, -STACK_SIZE),
        I.add(0, 1),
        EXIT,
    ]
    assert run(prog) == 42
    for off, access in ((-STACK_SIZE - 1, "read"), (0, "read"), (-STACK_SIZE - 8, "write")):
        insn = I.ldx(1, 0, 10, off) if access == "read" else I.st(8, 10, off, 0)
        with pytest.raises(MemoryAccessError) as info:
            run([I.mov(0, 0), insn, EXIT])
        assert info.value.pc == 1 and info.value.access == access


def test_stack_is_zeroed_for_each_run_and_freed_from_the_space():
    vm = Interpreter([I.ldx(8, 0, 10, -8), I.st(8, 10, -8, 99), EXIT])
    space = AddressSpace()
    assert vm.run(memory=space) == 0
    assert vm.run(memory=space) == 0  # the previous run's 99 is gone
    assert len(space) == 0
    vm.close()


def test_memory_access_to_stack_address_after_run_faults():
    # r0 = r10 leaks the stack address; another program (or a later run) cannot use it.
    leaker = Interpreter([I.mov(0, "r10"), EXIT])
    leaked = leaker.run()
    with pytest.raises(MemoryAccessError):
        run([I.lddw(1, leaked - 8), I.ldx(8, 0, 1, 0), EXIT])
    reader = Interpreter([I.ldx(8, 0, 1, -8), EXIT])
    with pytest.raises(MemoryAccessError):
        reader.run((leaked,))
    leaker.close()
    reader.close()


# ---- budget, calls, frames ----------------------------------------------------------------
def test_budget_exceeded_names_pc_and_budget():
    prog = [I.mov(0, 0), I.add(0, 1), I.ja(-2), EXIT]
    with pytest.raises(BudgetExceededError) as info:
        run(prog, budget=1001)
    assert info.value.budget == 1001
    assert info.value.pc == 1  # after 1 + 2*500 instructions the next one is at pc 1
    assert run([I.mov(0, 7), EXIT], budget=2) == 7
    with pytest.raises(BudgetExceededError):
        run([I.mov(0, 7), EXIT], budget=1)


def test_budget_default_comes_from_settings(monkeypatch):
    monkeypatch.setenv("PYBPF_INSN_BUDGET", "50")
    vm = Interpreter([I.mov(0, 0), I.ja(-1), EXIT])
    assert vm.budget == 50
    with pytest.raises(BudgetExceededError):
        vm.run()


def test_local_call_preserves_r6_to_r9_and_passes_r1_to_r5():
    prog = [
        *(I.mov(r, r * 11) for r in range(1, 10)),
        I.call_local(2),  # pc 9 -> func at 12
        I.add(0, "r6"),
        EXIT,
        # func: r0 = r1 + r5, clobber r6-r9 and its own stack
        I.mov(0, "r1"),
        I.add(0, "r5"),
        *(I.mov(r, 0) for r in range(6, 10)),
        I.st(8, 10, -8, 1),
        EXIT,
    ]
    assert run(prog) == 11 + 55 + 66


def test_callee_frame_is_separate_and_freed_on_return():
    prog = [
        I.st(8, 10, -8, 5),
        I.call_local(3),
        I.ldx(8, 0, 10, -8),  # caller's slot untouched by the callee
        I.add(0, "r0"),
        EXIT,
        # callee at pc 5: writes its own -8, returns a pointer into its frame in r0
        I.st(8, 10, -8, 77),
        I.mov(0, "r10"),
        EXIT,
    ]
    assert run(prog) == 10
    dangling = [I.call_local(2), I.ldx(8, 0, 0, -8), EXIT, I.mov(0, "r10"), EXIT]
    with pytest.raises(MemoryAccessError) as info:
        run(dangling)
    assert info.value.pc == 1


def test_call_depth_limit_is_eight_frames():
    def chain(depth):
        # main calls f1, f1 calls f2, ... each function: call next; exit
        prog = []
        for _ in range(depth - 1):
            prog += [I.call_local(1), EXIT]
        prog += [I.mov(0, depth), EXIT]
        return prog

    assert run(chain(8)) == 8  # the innermost r0 comes back through every exit
    with pytest.raises(CallDepthError) as info:
        run(chain(9))
    assert info.value.depth == 9 and info.value.pc == 14
    with pytest.raises(CallDepthError):
        run([I.call_local(-1), EXIT])  # unbounded recursion


def test_may_goto_falls_through_until_its_budget_is_spent(monkeypatch):
    import pybpf.vm.machine as machine

    monkeypatch.setattr(machine, "MAY_GOTO_LOOPS", 3)
    may_goto = Instruction(jmp_opcode(Class.JMP, JmpOp.JCOND, Source.K), off=2)
    prog = [I.mov(0, 0), may_goto, I.add(0, 1), I.ja(-3), EXIT]
    assert run(prog) == 3


# ---- helpers -----------------------------------------------------------------------------------
def test_helper_call_uses_registry_and_clobbers_nothing_else():
    seen = []

    def helper(ctx, r1, r2, r3, r4, r5):
        seen.append((r1, r2, r3, r4, r5, ctx.pc, ctx.helper_id))
        return -1  # masked to u64

    prog = [*(I.mov(r, r) for r in range(1, 7)), I.call(1000), I.add(0, "r6"), EXIT]
    r0 = run(prog, helpers={1000: helper})
    assert seen == [(1, 2, 3, 4, 5, 6, 1000)]
    assert r0 == ((1 << 64) - 1 + 6) & ((1 << 64) - 1)


def test_unknown_helper_and_failing_helpers():
    with pytest.raises(HelperError) as info:
        run([I.call(1000), EXIT], helpers={})
    assert info.value.helper_id == 1000 and info.value.pc == 0

    def broken(ctx, *regs):
        raise ZeroDivisionError("boom")

    with pytest.raises(HelperError) as info:
        run([I.mov(0, 0), I.call(7), EXIT], helpers={7: broken})
    assert info.value.helper_id == 7 and info.value.pc == 1
    assert isinstance(info.value.__cause__, ZeroDivisionError)

    def bad_result(ctx, *regs):
        return "not a number"

    with pytest.raises(HelperError):
        run([I.call(7), EXIT], helpers={7: bad_result})

    def reads_null(ctx, *regs):
        return ctx.memory.read(0, 4)

    with pytest.raises(MemoryAccessError) as info:
        run([I.mov(0, 0), I.mov(0, 0), I.call(7), EXIT], helpers={7: reads_null})
    assert info.value.pc == 2 and info.value.address == 0


def test_callx_calls_the_helper_whose_id_is_in_the_register():
    calls = []
    helpers = {5: lambda ctx, *r: calls.append(r[0]) or 40}
    prog = [I.mov(1, 9), I.mov(3, 5), I.callx(3), I.add(0, 2), EXIT]
    assert run(prog, helpers=helpers) == 42 and calls == [9]
    with pytest.raises(HelperError) as info:
        run([I.mov(3, 6), I.callx(3), EXIT], helpers=helpers)
    assert info.value.helper_id == 6 and info.value.pc == 1


def test_default_helpers_time_random_cpu():
    assert {5, 6, 7, 8} <= set(default_helpers().ids())
    t1 = run([I.call(5), EXIT])
    t2 = run([I.call(5), EXIT])
    assert 0 < t1 <= t2
    values = {run([I.call(7), EXIT]) for _ in range(5)}
    assert all(v < 1 << 32 for v in values) and len(values) > 1
    vm = Interpreter([I.call(8), EXIT])
    assert vm.run(cpu=3) == 3 and vm.run() == 0


def _printk_program(fmt: bytes, *args):
    """Write fmt on the stack, then call trace_printk(fmt, len, args...)."""
    fmt = fmt + b"\0" * (-len(fmt) % 8 or 8)
    prog = []
    base = -len(fmt)
    for i in range(0, len(fmt), 8):
        prog.append(I.lddw(1, int.from_bytes(fmt[i : i + 8], "little")))
        prog.append(I.stx(8, 10, base + i, 1))
    prog += [I.mov(1, "r10"), I.add(1, base), I.mov(2, len(fmt))]
    for reg, value in zip((3, 4, 5), args, strict=False):
        prog.append(I.lddw(reg, value))
    return prog + [I.call(6), EXIT]


def test_trace_printk_formats_from_program_memory():
    lines = []
    prog = _printk_program(b"x=%d u=%u %lld%%\n", 0xFFFFFFFF, 0xFFFFFFFF, -5)
    vm = Interpreter(prog, trace=lines.append)
    text = "x=-1 u=4294967295 -5%\n"
    assert vm.run() == len(text) and lines == [text]
    vm.close()


def test_trace_printk_refuses_what_linux_refuses():
    lines = []
    for fmt in (b"%n", b"%d %d %d %d", b"%.3d", b"\x01"):
        prog = _printk_program(fmt, 1, 2, 3)
        vm = Interpreter(prog, trace=lines.append)
        assert vm.run() == (-errno.EINVAL) & ((1 << 64) - 1)
        vm.close()
    assert lines == []


def test_helper_may_reenter_the_same_interpreter():
    depth = []

    def again(ctx, r1, *rest):
        depth.append(r1)
        return vm.run((r1 - 1,)) + 1 if r1 else 0

    prog = [I.call(1000), EXIT]
    vm = Interpreter(prog, helpers={1000: again})
    assert vm.run((3,)) == 3 and depth == [3, 2, 1, 0]
    vm.close()


def test_concurrent_runs_in_threads():
    prog = [I.mov(0, 0), I.add(0, "r1"), I.st(8, 10, -8, 1), I.add(1, -1),
            I.jmp(JmpOp.JNE, 1, 0, -4), EXIT]  # fmt: skip
    vm = Interpreter(prog)
    results = []

    def work(n):
        results.append(vm.run((n,)))

    threads = [threading.Thread(target=work, args=(n,)) for n in (2000, 3000, 4000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(n * (n + 1) // 2 for n in (2000, 3000, 4000))
    vm.close()


# ---- load-time refusals -----------------------------------------------------------------------
def test_uninitialized_register_reads_are_refused_at_load():
    cases = [
        ([I.mov(0, "r2"), EXIT], 0, 2),
        ([I.add(0, 1), EXIT], 0, 0),  # add reads its destination
        ([I.mov(0, 0), I.stx(8, 10, -8, 6), EXIT], 1, 6),
        ([EXIT], 0, 0),  # exit reads r0
        ([I.call(5), I.mov(0, "r1"), EXIT], 1, 1),  # r1-r5 die at a helper call
        # one path writes r3, the other does not
        ([I.mov(0, 0), I.jmp(JmpOp.JEQ, 1, 0, 1), I.mov(3, 1), I.add(0, "r3"), EXIT], 3, 3),
        # a subprogram starts with r1-r5 only
        ([I.mov(0, 0), I.call_local(1), EXIT, I.mov(0, "r6"), EXIT], 3, 6),
        ([I.mov(1, 1), I.call(6), EXIT], 1, 2),  # trace_printk reads r1 and r2
    ]
    for prog, pc, reg in cases:
        with pytest.raises(UninitializedRegisterError) as info:
            Interpreter(prog)
        assert (info.value.pc, info.value.register) == (pc, reg), prog


def test_initialized_on_every_path_is_accepted():
    prog = [
        I.jmp(JmpOp.JEQ, 1, 0, 2),
        I.mov(3, 1),
        I.ja(1),
        I.mov(3, 2),
        I.mov(0, "r3"),
        I.call_local(1),  # r0 defined after the call
        EXIT,
        I.mov(0, "r1"),  # callee may read r1
        EXIT,
    ]
    assert run(prog, 0) == 0
    assert run([I.call(5), I.mov(0, 1), EXIT]) == 1
    assert Interpreter([I.mov(0, "r2"), EXIT], entry_registers=(1, 2)).run((1, 9)) == 9


@pytest.mark.parametrize(
    "prog, error",
    [
        ([I.ja(5), EXIT], InputError),  # out of range
        ([I.ja(-2), EXIT], InputError),
        ([I.mov(0, 0), I.ja(1), I.lddw(1, 1), EXIT], InputError),  # into an lddw's 2nd slot
        ([I.mov(0, 0), I.call_local(5), EXIT], InputError),
        ([I.mov(0, 0)], InputError),  # falls off the end
        ([I.mov(0, 0), I.jmp(JmpOp.JEQ, 0, 0, -2)], InputError),  # conditional at the end
        ([I.mov(10, 0), I.mov(0, 0), EXIT], InputError),  # writes r10
        ([I.mov(0, 0), I.ldx(8, 10, 10, -8), EXIT], InputError),
        ([I.mov(0, 0), I.atomic(8, AtomicOp.FETCH_ADD, 1, 0, 10), EXIT], InputError),
        ([], InputError),
        ([Instruction(0xFF), EXIT], DecodeError),
        ([Instruction(0x85, src=CallKind.KFUNC, imm=1), EXIT], NotSupportedError),
        ([I.lddw(0, 3, src=1), EXIT], NotSupportedError),  # map fd needs a loader
        ([I.ld_abs(4, 0), EXIT], NotSupportedError),
    ],
)
def test_structural_refusals(prog, error):
    with pytest.raises(error) as info:
        Interpreter(prog)
    if prog:
        assert info.value.pc is not None


def test_refusal_pcs():
    with pytest.raises(InputError) as info:
        Interpreter([I.mov(0, 0), I.mov(0, 1), I.ja(9), EXIT])
    assert info.value.pc == 2
    with pytest.raises(InputError) as info:
        Interpreter([I.mov(0, 0), I.mov(10, 1), EXIT])
    assert info.value.pc == 1


def test_lddw_pseudo_sources_use_the_resolver():
    seen = []

    def resolver(insn, pc):
        seen.append((insn.src, insn.imm, pc))
        return 0x1234_0000_0000 + insn.imm

    prog = [I.mov(0, 0), I.lddw(0, 7, src=1), EXIT]
    assert run(prog, lddw_resolver=resolver) == 0x1234_0000_0007
    assert seen == [(1, 7, 1)]


# ---- legacy packet loads ------------------------------------------------------------------------
def test_ld_abs_and_ld_ind_read_network_order_and_stop_on_out_of_bounds():
    packet = bytes.fromhex("0102030405060708")
    prog = [I.mov(6, "r1"), I.ld_abs(2, 2), I.mov(7, "r0"), I.mov(8, 1), I.ld_ind(4, 8, 3),
            I.add(0, "r7"), EXIT]  # fmt: skip
    vm = Interpreter(prog, legacy_packet=True)
    assert vm.run((0,), packet=packet) == 0x0304 + 0x05060708
    oob = Interpreter([I.mov(6, "r1"), I.ld_abs(4, 6), I.mov(0, 9), EXIT], legacy_packet=True)
    assert oob.run((0,), packet=packet) == 0  # exits with r0 = 0
    with pytest.raises(NotSupportedError):
        oob.run((0,))
    with pytest.raises(UninitializedRegisterError) as info:
        Interpreter([I.ld_abs(1, 0), EXIT], legacy_packet=True)  # r6 must hold the context
    assert info.value.register == 6


# ---- execute (bpf_conformance convention) --------------------------------------------------------
def test_execute_passes_mem_address_and_length():
    assert execute([I.mov(0, "r2"), EXIT], b"\x01\x02\x03") == 3
    assert execute([I.ldx(2, 0, 1, 1), EXIT], b"\x01\x02\x03") == 0x0302
    assert execute([I.mov(0, "r1"), I.add(0, "r2"), EXIT]) == 0
    assert execute([I.st(1, 1, 0, 9), I.ldx(1, 0, 1, 0), EXIT], b"\x00") == 9


def test_execute_custom_helpers_and_budget():
    registry = HelperRegistry({"ktime_get_ns": lambda ctx, *r: 12})
    assert execute([I.call(5), EXIT], helpers=registry) == 12
    with pytest.raises(BudgetExceededError):
        execute([I.mov(0, 0), I.ja(-1), EXIT], budget=100)


def test_run_validates_its_arguments():
    vm = Interpreter([I.mov(0, "r1"), EXIT])
    assert vm.run((-1,)) == (1 << 64) - 1  # masked to u64
    with pytest.raises(InputError):
        vm.run((1, 2, 3, 4, 5, 6))
    with pytest.raises(InputError):
        vm.run(("1",))
    with pytest.raises(InputError):
        Interpreter([I.mov(0, 0), EXIT], budget=0)
    vm.close()
