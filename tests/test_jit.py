"""JIT: exact semantics against the interpreter, errors, helpers, frames, refusals, lifetime.

The interpreter is the reference: most tests run one program on both engines over the
same memory region and require the same r0, the same memory and the same error (type and
attributes). ``same()`` and ``outcome()`` are shared with ``test_jit_diff.py``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from pybpf.errors import (
    BudgetExceededError,
    DecodeError,
    HelperError,
    InputError,
    MemoryAccessError,
    NotSupportedError,
    PybpfError,
    UninitializedRegisterError,
)
from pybpf.isa import AluOp, AtomicOp, CallKind, Class, Instruction, JmpOp, Source
from pybpf.isa.opcodes import STACK_SIZE, alu_opcode, jmp_opcode
from pybpf.jit import JitProgram, available, unavailable_reason
from pybpf.memory import AddressSpace, Region
from pybpf.vm import Interpreter
from test_vm import EXIT, I

needs_jit = pytest.mark.skipif(not available(), reason=f"JIT unavailable: {unavailable_reason()}")

M64 = (1 << 64) - 1
INT_MIN = 1 << 63


# ---- comparing engines -----------------------------------------------------------------------
def outcome(prog, region: Region | None, args=(), *, memory=None, **run_kw):
    """Run ``prog`` (an Interpreter or JitProgram) once: ``("ok", r0, mem)`` or the error."""
    space = memory if memory is not None else AddressSpace([region] if region else [])
    try:
        r0 = prog.run(args, memory=space, **run_kw)
    except PybpfError as exc:
        return error_facts(exc, region)
    return ("ok", r0, bytes(region.view) if region else b"")


def error_facts(exc: PybpfError, region: Region | None) -> tuple:
    """An error's type and attributes; addresses only when they are near the input region."""
    facts = [type(exc).__name__, exc.pc]
    for name in ("size", "access", "depth", "budget", "helper_id", "register", "feature"):
        if hasattr(exc, name):
            facts.append((name, getattr(exc, name)))
    address = getattr(exc, "address", None)
    # Other mappings (the engines' stacks) may sit on a neighbouring page: only addresses
    # right at the input region are comparable between engines.
    if (
        address is not None
        and region is not None
        and -8 <= address - region.address < region.size + 8
    ):
        facts.append(("offset", address - region.address))
    return ("error", *facts)


def same(
    insns,
    mem: bytes = bytes(64),
    args=None,
    *,
    debug_checks: bool = True,
    run_kw=None,
    **kw,
):
    """Run ``insns`` on both engines over one region holding ``mem``; both outcomes.

    ``args`` default: (region address, len(mem)). Load errors are outcomes too.
    """
    run_kw = run_kw or {}
    entry = kw.pop("entry_registers", (1, 2, 10))
    results = []
    with Region.from_bytes(mem or b"\0", kind="input") as region:
        run_args = (region.address, len(mem)) if args is None else args
        for make in (Interpreter, JitProgram):
            region.view[:] = mem or b"\0"
            extra = {"debug_checks": debug_checks} if make is JitProgram else {}
            try:
                prog = make(insns, entry_registers=entry, **extra, **kw)
            except PybpfError as exc:
                results.append(error_facts(exc, region))
                continue
            try:
                results.append(outcome(prog, region, run_args, **run_kw))
            finally:
                prog.close()
    return results


def check_same(insns, *a, **kw):
    """Assert both engines agree; returns the common outcome."""
    interp, jit = same(insns, *a, **kw)
    assert jit == interp, (insns, interp, jit)
    return interp


def alu(op, dst, x, *, w64=True, off=0):
    return I.alu(op, dst, x, w64=w64, off=off)


def sdiv(dst, x, *, w64=True):
    return alu(AluOp.DIV, dst, x, w64=w64, off=1)


def smod(dst, x, *, w64=True):
    return alu(AluOp.MOD, dst, x, w64=w64, off=1)


def end(bits, dst, *, cls=Class.ALU, source=Source.K):
    return Instruction(alu_opcode(cls, AluOp.END, source), dst, imm=bits)


def movsx(dst, src, bits, *, w64=True):
    cls = Class.ALU64 if w64 else Class.ALU
    return Instruction(alu_opcode(cls, AluOp.MOV, Source.X), dst, src, bits)


def gotol(off):
    return Instruction(jmp_opcode(Class.JMP32, JmpOp.JA, Source.K), imm=off)


def neg(dst, *, w64=True):
    return Instruction(alu_opcode(Class.ALU64 if w64 else Class.ALU, AluOp.NEG, Source.K), dst)


def ret_reg(*body, reg=0):
    """``body`` then r0 = reg; exit."""
    return [*body, I.mov(0, f"r{reg}"), EXIT]


# ---- without llvmlite ------------------------------------------------------------------------
def test_jit_imports_and_refuses_without_llvmlite():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["llvmlite"] = None  # importing it now raises ImportError
        import pybpf.jit
        from pybpf.errors import NotSupportedError
        from pybpf.isa import assemble
        assert not pybpf.jit.available() and pybpf.jit.unavailable_reason()
        try:
            pybpf.jit.JitProgram(assemble("r0 = 1\\nexit"))
        except NotSupportedError as exc:
            assert exc.feature == "jit"
        else:
            raise SystemExit("no refusal")
        from pybpf.conformance.runner import _attempt
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


pytestmark = needs_jit


# ---- ALU semantics at the edges (constants: folded by LLVM; registers: computed) -------------
EDGE_PROGRAMS = {
    "div64 by zero": [I.lddw(0, 77), alu(AluOp.DIV, 0, 0), EXIT],
    "div64 by zero reg": [I.lddw(0, 77), I.mov(3, 0), alu(AluOp.DIV, 0, "r3"), EXIT],
    "mod64 by zero keeps dst": [I.lddw(0, M64 - 5), I.mov(3, 0), alu(AluOp.MOD, 0, "r3"), EXIT],
    "mod32 by zero zero-extends": [I.lddw(0, M64 - 5), alu(AluOp.MOD, 0, 0, w64=False), EXIT],
    "div32 by zero": [I.lddw(0, M64), I.mov(3, 0), alu(AluOp.DIV, 0, "r3", w64=False), EXIT],
    "div32 ignores high bits": [I.lddw(0, (7 << 32) | 9), I.lddw(3, 1 << 32 | 2),
                                alu(AluOp.DIV, 0, "r3", w64=False), EXIT],  # fmt: skip
    "div imm is u32 in alu32": [I.lddw(0, 0xFFFFFFFF), alu(AluOp.DIV, 0, -1, w64=False), EXIT],
    "div imm sign-extends in alu64": [I.lddw(0, M64), alu(AluOp.DIV, 0, -1), EXIT],
    "sdiv64 INT_MIN / -1": [I.lddw(0, INT_MIN), sdiv(0, -1), EXIT],
    "sdiv64 INT_MIN / -1 reg": [I.lddw(0, INT_MIN), I.mov(3, -1), sdiv(0, "r3"), EXIT],
    "smod64 INT_MIN % -1": [I.lddw(0, INT_MIN), I.mov(3, -1), smod(0, "r3"), EXIT],
    "sdiv32 INT_MIN / -1": [I.lddw(0, 0x80000000), sdiv(0, -1, w64=False), EXIT],
    "smod32 INT_MIN % -1 reg": [I.lddw(0, 0x80000000), I.mov(3, -1), smod(0, "r3", w64=False),
                                EXIT],  # fmt: skip
    "sdiv64 by zero": [I.lddw(0, INT_MIN), I.mov(3, 0), sdiv(0, "r3"), EXIT],
    "smod64 by zero": [I.lddw(0, INT_MIN | 5), I.mov(3, 0), smod(0, "r3"), EXIT],
    "smod32 by zero": [I.lddw(0, M64 - 1), smod(0, 0, w64=False), EXIT],
    "smod truncates": [I.mov(0, -13), smod(0, 3), EXIT],
    "sdiv truncates": [I.mov(0, -13), I.mov(3, 4), sdiv(0, "r3"), EXIT],
    "lsh64 by 64 masks": [I.mov(0, 3), I.mov(3, 65), alu(AluOp.LSH, 0, "r3"), EXIT],
    "rsh64 by -1 masks": [I.lddw(0, M64), I.mov(3, -1), alu(AluOp.RSH, 0, "r3"), EXIT],
    "arsh64 imm 63": [I.lddw(0, INT_MIN), alu(AluOp.ARSH, 0, 63), EXIT],
    "lsh32 by 32 masks": [I.mov(0, 3), I.mov(3, 33), alu(AluOp.LSH, 0, "r3", w64=False), EXIT],
    "arsh32 sign bit": [I.lddw(0, 0x1_8000_0000), alu(AluOp.ARSH, 0, 4, w64=False), EXIT],
    "arsh32 by reg 255": [I.lddw(0, 0x8000_0000), I.mov(3, 255),
                          alu(AluOp.ARSH, 0, "r3", w64=False), EXIT],  # fmt: skip
    "add32 wraps and zero-extends": [I.lddw(0, M64), alu(AluOp.ADD, 0, 1, w64=False), EXIT],
    "add64 signed overflow wraps": [I.lddw(0, INT_MIN - 1), alu(AluOp.ADD, 0, 1), EXIT],
    "mul64 overflow": [I.lddw(0, 0x7FFF_FFFF_FFFF_FFFF), alu(AluOp.MUL, 0, 3), EXIT],
    "mul32 overflow": [I.lddw(0, 0xFFFF_FFFF), I.mov(3, -1), alu(AluOp.MUL, 0, "r3", w64=False),
                       EXIT],  # fmt: skip
    "neg64 INT_MIN": [I.lddw(0, INT_MIN), neg(0), EXIT],
    "neg32": [I.lddw(0, 0x1_0000_0001), neg(0, w64=False), EXIT],
    "mov32 zero-extends": [I.lddw(3, M64), I.mov(0, "r3", w64=False), EXIT],
    "mov32 imm -1": [I.mov(0, -1, w64=False), EXIT],
    "mov64 imm -1": [I.mov(0, -1), EXIT],
    "movsx8 64": [I.mov(3, 0x80), movsx(0, 3, 8), EXIT],
    "movsx16 64": [I.lddw(3, 0x1_8001), movsx(0, 3, 16), EXIT],
    "movsx32 64": [I.lddw(3, 0xF_8000_0000), movsx(0, 3, 32), EXIT],
    "movsx8 32": [I.mov(3, 0xFF), movsx(0, 3, 8, w64=False), EXIT],
    "movsx16 32": [I.mov(3, 0x8000), movsx(0, 3, 16, w64=False), EXIT],
    "be16": [I.lddw(0, 0x1122_3344_5566_7788), end(16, 0, source=Source.X), EXIT],
    "be32": [I.lddw(0, 0x1122_3344_5566_7788), end(32, 0, source=Source.X), EXIT],
    "be64": [I.lddw(0, 0x1122_3344_5566_7788), end(64, 0, source=Source.X), EXIT],
    "le16": [I.lddw(0, 0x1122_3344_5566_7788), end(16, 0), EXIT],
    "le32": [I.lddw(0, 0x1122_3344_5566_7788), end(32, 0), EXIT],
    "le64": [I.lddw(0, 0x1122_3344_5566_7788), end(64, 0), EXIT],
    "bswap16": [I.lddw(0, 0x1122_3344_5566_7788), end(16, 0, cls=Class.ALU64), EXIT],
    "bswap32": [I.lddw(0, 0x1122_3344_5566_7788), end(32, 0, cls=Class.ALU64), EXIT],
    "bswap64": [I.lddw(0, 0x1122_3344_5566_7788), end(64, 0, cls=Class.ALU64), EXIT],
    "jmp32 ignores high bits": [I.lddw(3, 0x5_0000_0001), I.mov(0, 1),
                                I.jmp(JmpOp.JEQ, 3, 1, 1, w64=False), I.mov(0, 2), EXIT],
    "jsgt32 signed": [I.mov(3, -1, w64=False), I.mov(0, 1),
                      I.jmp(JmpOp.JSGT, 3, 0, 1, w64=False), I.mov(0, 2), EXIT],
    "jsgt64 imm sign-extends": [I.lddw(3, M64), I.mov(0, 1), I.jmp(JmpOp.JSGT, 3, -2, 1),
                                I.mov(0, 2), EXIT],  # fmt: skip
    "jset": [I.mov(3, 6), I.mov(0, 1), I.jmp(JmpOp.JSET, 3, 8, 1), I.mov(0, 2), EXIT],
    "jlt unsigned": [I.mov(3, -1), I.mov(0, 1), I.jmp(JmpOp.JLT, 3, 5, 1), I.mov(0, 2), EXIT],
    "gotol": [I.mov(0, 1), gotol(1), I.mov(0, 2), EXIT],
    "lddw": [I.lddw(0, 0xDEAD_BEEF_CAFE_F00D), EXIT],
}  # fmt: skip


@pytest.mark.parametrize("name", list(EDGE_PROGRAMS))
def test_edge_semantics_match_the_interpreter(name):
    result = check_same(EDGE_PROGRAMS[name])
    assert result[0] == "ok"


@pytest.mark.parametrize("opt_level", [0, 1, 2, 3])
def test_every_optimisation_level_agrees(opt_level):
    prog = [I.lddw(0, INT_MIN), I.mov(3, -1), sdiv(0, "r3"), I.mov(4, 0), alu(AluOp.MOD, 0, "r4"),
            I.mov(5, 70), alu(AluOp.LSH, 0, "r5"), end(64, 0, cls=Class.ALU64), EXIT]  # fmt: skip
    interp = Interpreter(prog)
    with JitProgram(prog, opt_level=opt_level) as jit:
        assert jit.run() == interp.run()
    interp.close()


def test_signed_compares_and_loads_sign_extend():
    mem = bytes([0x80, 0xFF, 0x00, 0x80, 0xFE, 0xFF, 0xFF, 0xFF]) + bytes(56)
    prog = [I.ldx(1, 3, 1, 0, signed=True), I.ldx(2, 4, 1, 2, signed=True),
            I.ldx(4, 5, 1, 4, signed=True), I.mov(0, "r3"), I.add(0, "r4"), I.add(0, "r5"),
            I.stx(8, 1, 8, 0), I.ldx(2, 6, 1, 0), I.stx(2, 1, 16, 6), EXIT]  # fmt: skip
    assert check_same(prog, mem)[0] == "ok"


# ---- memory: loads, stores, atomics, errors --------------------------------------------------
def test_loads_and_stores_every_size():
    prog = [I.ldx(8, 0, 1, 0), I.ldx(4, 3, 1, 8), I.ldx(2, 4, 1, 12), I.ldx(1, 5, 1, 14),
            I.stx(8, 1, 16, 3), I.stx(4, 1, 24, 0), I.stx(2, 1, 28, 0), I.stx(1, 1, 30, 0),
            I.st(8, 1, 32, -2), I.st(4, 1, 40, -3), I.st(2, 1, 44, -4), I.st(1, 1, 46, -5),
            I.add(0, "r4"), I.add(0, "r5"), EXIT]  # fmt: skip
    assert check_same(prog, bytes(range(64)))[0] == "ok"


@pytest.mark.parametrize(
    "off, size, access",
    [(-1, 1, "read"), (63, 2, "read"), (64, 1, "read"), (-8, 8, "write"), (60, 8, "write")],
)
def test_out_of_bounds_accesses_fail_like_the_interpreter(off, size, access):
    insn = I.ldx(size, 2, 1, off) if access == "read" else I.stx(size, 1, off, 2)
    result = check_same([I.mov(0, 0), I.mov(3, 0), insn, EXIT])
    assert result[:3] == ("error", "MemoryAccessError", 2)
    assert ("offset", off) in result and ("access", access) in result


def test_permissions_of_regions_are_checked():
    with Region(16, kind="ctx", writable=False) as ro, Region(16, kind="w", readable=False) as wo:
        space = AddressSpace([ro, wo])
        progs = {
            "read ro": [I.ldx(4, 0, 1, 0), EXIT],
            "write ro": [I.st(4, 1, 4, 7), I.mov(0, 0), EXIT],
            "write wo": [I.st(4, 2, 4, 7), I.mov(0, 0), EXIT],
            "read wo": [I.ldx(4, 0, 2, 0), EXIT],
            "atomic wo": [I.mov(3, 1), I.atomic(8, AtomicOp.ADD, 2, 0, 3), I.mov(0, 0), EXIT],
            "atomic ro": [I.mov(3, 1), I.atomic(8, AtomicOp.ADD, 1, 0, 3), I.mov(0, 0), EXIT],
            "load_acq wo": [I.atomic(4, AtomicOp.LOAD_ACQ, 0, 0, 2), EXIT],
        }
        for name, prog in progs.items():
            results = []
            for make in (Interpreter, lambda p, **k: JitProgram(p, debug_checks=True, **k)):
                with make(prog, entry_registers=(1, 2, 10)) as engine:
                    try:
                        results.append(("ok", engine.run((ro.address, wo.address), memory=space)))
                    except MemoryAccessError as exc:
                        results.append((exc.pc, exc.address, exc.size, exc.access))
            assert results[0] == results[1], name


def test_stack_frame_bounds_and_zeroing():
    for off, access in ((-STACK_SIZE - 1, "read"), (0, "read"), (-STACK_SIZE - 8, "write"),
                        (-STACK_SIZE, "read"), (-4, "write"), (-2, "read")):  # fmt: skip
        insn = I.ldx(8 if off != -2 else 2, 0, 10, off) if access == "read" else I.st(4, 10, off, 0)
        result = check_same([I.mov(0, 0), insn, EXIT])
        assert result[0] == ("error" if off in (-STACK_SIZE - 1, 0, -STACK_SIZE - 8) else "ok")
    prog = [I.ldx(8, 0, 10, -8), I.st(8, 10, -8, 99), EXIT]
    with JitProgram(prog) as jit:
        assert jit.run() == 0 and jit.run() == 0  # every run starts with a zeroed frame


@pytest.mark.parametrize("size", [4, 8])
@pytest.mark.parametrize("op", [op for op in AtomicOp if op not in (AtomicOp.LOAD_ACQ,)])
def test_atomics_match_the_interpreter(op, size):
    mem = bytes(range(1, 65))
    prog = [I.lddw(0, 0x0807060504030201 if op != AtomicOp.CMPXCHG else 0x1234),
            I.lddw(3, 0xF0F0_F0F0_0F0F_0F0F), I.atomic(size, op, 1, 8, 3),
            I.add(0, "r3"), I.ldx(8, 4, 1, 8), I.add(0, "r4"), EXIT]  # fmt: skip
    assert check_same(prog, mem)[0] == "ok"
    cmp_equal = [I.ldx(size, 0, 1, 16), I.mov(3, 7), I.atomic(size, AtomicOp.CMPXCHG, 1, 16, 3),
                 I.ldx(8, 4, 1, 16), I.add(0, "r4"), EXIT]  # fmt: skip
    assert check_same(cmp_equal, mem)[0] == "ok"


@pytest.mark.parametrize("size", [1, 2, 4, 8])
def test_load_acquire_and_store_release(size):
    prog = [I.atomic(size, AtomicOp.LOAD_ACQ, 0, 0, 1), I.lddw(3, M64 - 0x1234),
            I.atomic(size, AtomicOp.STORE_REL, 1, 8, 3), EXIT]  # fmt: skip
    assert check_same(prog, bytes(range(180, 180 + 64)))[0] == "ok"


def test_misaligned_atomics_match_the_interpreter_under_debug_checks():
    prog = [I.mov(3, 5), I.atomic(8, AtomicOp.FETCH_ADD, 1, 3, 3), I.mov(0, "r3"),
            I.mov(4, 9), I.atomic(4, AtomicOp.XCHG, 1, 21, 4), I.add(0, "r4"), EXIT]  # fmt: skip
    assert check_same(prog, bytes(range(64)))[0] == "ok"


def test_atomic_add_is_atomic_across_threads():
    """Native code runs without the GIL: two threads add concurrently to one counter."""
    loops = 200_000
    prog = [I.mov(2, loops), I.mov(3, 1), I.atomic(8, AtomicOp.ADD, 1, 0, 3),
            I.add(2, -1), I.jmp(JmpOp.JNE, 2, 0, -3), I.mov(0, 0), EXIT]  # fmt: skip
    with Region(8, kind="input") as region, JitProgram(prog) as jit:
        threads = [threading.Thread(target=jit.run, args=((region.address,),)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert int.from_bytes(region.read(0, 8), "little") == 4 * loops


# ---- frames and calls -----------------------------------------------------------------------
def test_local_calls_frames_and_register_preservation():
    prog = [
        *(I.mov(r, r * 11) for r in range(1, 10)),
        I.st(8, 10, -8, 5),
        I.mov(1, "r10"),
        I.add(1, -16),  # pointer into the caller's frame
        I.call_local(4),
        I.add(0, "r6"),
        I.ldx(8, 3, 10, -16),  # written by the callee through the pointer
        I.add(0, "r3"),
        EXIT,
        # callee: r0 = r5 + its own zeroed -8 slot; clobber r6-r9; write the caller's slot
        I.ldx(8, 0, 10, -8),
        I.add(0, "r5"),
        *(I.mov(r, 0) for r in range(6, 10)),
        I.st(8, 1, 0, 1000),
        EXIT,
    ]
    assert check_same(prog)[:2] == ("ok", 55 + 66 + 1000)


def test_dead_callee_frames_and_call_depth():
    dangling = [I.call_local(2), I.ldx(8, 0, 0, -8), EXIT, I.mov(0, "r10"), EXIT]
    assert check_same(dangling)[:3] == ("error", "MemoryAccessError", 1)

    def chain(depth):
        prog = []
        for _ in range(depth - 1):
            prog += [I.call_local(1), EXIT]
        return prog + [I.mov(0, depth), EXIT]

    assert check_same(chain(8))[:2] == ("ok", 8)
    assert check_same(chain(9)) == ("error", "CallDepthError", 14, ("depth", 9))
    assert check_same([I.call_local(-1), EXIT])[1] == "CallDepthError"


def test_budget_stops_runaway_loops_at_the_interpreters_pc():
    prog = [I.mov(0, 0), I.add(0, 1), I.ja(-2), EXIT]
    for budget in (1001, 1000, 7, 2):
        result = check_same(prog, budget=budget)
        assert result[1] == "BudgetExceededError" and ("budget", budget) in result
    assert check_same([I.mov(0, 7), EXIT], budget=2)[:2] == ("ok", 7)
    assert check_same([I.mov(0, 7), EXIT], budget=1)[1] == "BudgetExceededError"
    with JitProgram(prog) as unchecked:
        assert unchecked.debug_checks is False  # verified programs are not bounded


def test_may_goto_budget(monkeypatch):
    import pybpf.jit.state as state
    import pybpf.vm.machine as machine

    monkeypatch.setattr(machine, "MAY_GOTO_LOOPS", 3)
    monkeypatch.setattr(state, "MAY_GOTO_LOOPS", 3)
    may_goto = Instruction(jmp_opcode(Class.JMP, JmpOp.JCOND, Source.K), off=2)
    prog = [I.mov(0, 0), may_goto, I.add(0, 1), I.ja(-3), EXIT]
    assert check_same(prog)[:2] == ("ok", 3)


# ---- helpers -----------------------------------------------------------------------------------
def test_helper_arguments_result_and_context():
    seen = []

    def helper(ctx, r1, r2, r3, r4, r5):
        seen.append((r1, r2, r3, r4, r5, ctx.pc, ctx.helper_id))
        return -1  # masked to u64

    prog = [*(I.mov(r, r) for r in range(1, 7)), I.call(1000), I.add(0, "r6"), EXIT]
    assert check_same(prog, helpers={1000: helper})[:2] == ("ok", (M64 + 6) & M64)
    assert seen[0] == seen[1] == (1, 2, 3, 4, 5, 6, 1000)
    assert check_same([I.call(1000), EXIT], helpers={1000: lambda ctx, *r: None})[:2] == ("ok", 0)
    with JitProgram([I.call(8), EXIT]) as jit:  # bpf_get_smp_processor_id sees run(cpu=)
        assert jit.run(cpu=3) == 3 and jit.run() == 0


def test_failing_helpers_stop_the_run_like_the_interpreter():
    def broken(ctx, *regs):
        raise ZeroDivisionError("boom")

    def reads_null(ctx, *regs):
        return ctx.memory.read(0, 4)

    assert check_same([I.call(1000), EXIT], helpers={}) == (
        "error", "HelperError", 0, ("helper_id", 1000)
    )  # fmt: skip
    assert check_same([I.mov(0, 0), I.call(7), EXIT], helpers={7: broken})[:3] == (
        "error", "HelperError", 1
    )  # fmt: skip
    assert check_same([I.call(7), EXIT], helpers={7: lambda ctx, *r: "x"})[1] == "HelperError"
    result = check_same([I.mov(0, 0), I.mov(0, 0), I.call(7), EXIT], helpers={7: reads_null})
    assert result[:3] == ("error", "MemoryAccessError", 2)
    with JitProgram([I.mov(0, 0), I.call(7), EXIT], helpers={7: broken}) as jit:
        with pytest.raises(HelperError) as info:
            jit.run()
    assert isinstance(info.value.__cause__, ZeroDivisionError)  # never lost


def test_keyboard_interrupt_in_a_helper_propagates():
    def interrupted(ctx, *regs):
        raise KeyboardInterrupt

    with JitProgram([I.call(7), EXIT], helpers={7: interrupted}) as jit:
        with pytest.raises(KeyboardInterrupt):
            jit.run()
        jit.close()  # refused if the interrupted run had left its state in use


def test_callx_and_trace_printk_reading_the_stack():
    from test_vm import _printk_program

    helpers = {5: lambda ctx, *r: r[0] + 40}
    assert check_same([I.mov(1, 2), I.mov(3, 5), I.callx(3), EXIT], helpers=helpers)[:2] == (
        "ok", 42
    )  # fmt: skip
    assert check_same([I.mov(3, 6), I.callx(3), EXIT], helpers=helpers)[3] == ("helper_id", 6)
    for fmt, args in ((b"v=%u!\n", (77,)), (b"x=%d %s\n", (5, 0)), (b"%n", (1,))):
        prog = _printk_program(fmt, *args)
        lines: list[list[str]] = [[], []]
        with Interpreter(prog, trace=lines[0].append) as a:
            with JitProgram(prog, trace=lines[1].append) as b:
                assert b.run() == a.run()
        assert lines[0] == lines[1]


def test_helper_called_from_a_callee_sees_live_frames():
    def read_both(ctx, r1, r2, *rest):  # r1: the caller's frame, r2: the callee's frame
        return int.from_bytes(ctx.memory.read(r1, 8), "little") + int.from_bytes(
            ctx.memory.read(r2, 8), "little"
        )

    prog = [I.st(8, 10, -8, 30), I.mov(1, "r10"), I.add(1, -8), I.call_local(1), EXIT,
            I.st(8, 10, -8, 12), I.mov(2, "r10"), I.add(2, -8), I.call(1000), EXIT]  # fmt: skip
    assert check_same(prog, helpers={1000: read_both})[:2] == ("ok", 42)


def test_regions_added_by_a_helper_are_checked_after_it():
    extra = Region.from_bytes(b"\x2a" * 8, kind="map_value")

    def add_region(ctx, *regs):
        ctx.memory.add(extra)
        return extra.address

    def drop_region(ctx, *regs):
        ctx.memory.remove(extra)
        return 0

    prog = [I.call(1000), I.ldx(1, 0, 0, 0), EXIT]
    with JitProgram(prog, helpers={1000: add_region}, debug_checks=True) as jit:
        space = AddressSpace()
        assert jit.run(memory=space) == 0x2A
        space.remove(extra)
    prog = [I.mov(6, "r1"), I.call(1000), I.ldx(1, 0, 6, 0), EXIT]
    with JitProgram(prog, helpers={1000: drop_region}, debug_checks=True) as jit:
        with pytest.raises(MemoryAccessError) as info:
            jit.run((extra.address,), memory=AddressSpace([extra]))
        assert info.value.pc == 2
    extra.close()


def test_helper_may_reenter_the_same_program():
    def again(ctx, r1, *rest):
        return jit.run((r1 - 1,)) + 1 if r1 else 0

    with JitProgram([I.call(1000), EXIT], helpers={1000: again}) as jit:
        assert jit.run((5,)) == 5
    closer = JitProgram([I.call(1000), EXIT], helpers={1000: lambda *a: closer.close()})
    with pytest.raises(InputError):  # cannot close while a run is live
        closer.run()
    closer.close()


def test_concurrent_runs_in_threads():
    prog = [I.mov(6, "r1"), I.mov(7, 0), I.add(7, "r6"), I.mov(1, "r6"), I.call(1000),
            I.add(6, -1), I.jmp(JmpOp.JNE, 6, 0, -5), I.mov(0, "r7"), EXIT]  # fmt: skip
    results = []
    with JitProgram(prog, helpers={1000: lambda ctx, *r: r[0]}) as jit:

        def work(n):
            results.append(jit.run((n,)))

        threads = [threading.Thread(target=work, args=(n,)) for n in (200, 300, 400, 500)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(results) == [n * (n + 1) // 2 for n in (200, 300, 400, 500)]


# ---- load-time refusals ----------------------------------------------------------------------
REFUSED = [
    [I.ja(5), EXIT],
    [I.ja(-2), EXIT],
    [I.mov(0, 0), I.ja(1), I.lddw(1, 1), EXIT],
    [I.mov(0, 0), I.call_local(5), EXIT],
    [I.mov(0, 0)],
    [I.mov(0, 0), I.jmp(JmpOp.JEQ, 0, 0, -2)],
    [I.mov(10, 0), I.mov(0, 0), EXIT],
    [I.mov(0, 0), I.ldx(8, 10, 10, -8), EXIT],
    [I.mov(0, 0), I.atomic(8, AtomicOp.FETCH_ADD, 1, 0, 10), EXIT],
    [],
    [Instruction(0xFF), EXIT],
    [Instruction(0x85, src=CallKind.KFUNC, imm=1), EXIT],
    [I.lddw(0, 3, src=1), EXIT],
    [I.ld_abs(4, 0), EXIT],
    [Instruction(alu_opcode(Class.ALU64, AluOp.MOV, Source.X), 0, 1, 1, 1), EXIT],
    [I.mov(0, "r3"), EXIT],
    [I.add(0, 1), EXIT],
    [EXIT],
    [I.call(5), I.mov(0, "r1"), EXIT],
    [I.mov(0, 0), I.jmp(JmpOp.JEQ, 1, 0, 1), I.mov(3, 1), I.add(0, "r3"), EXIT],
    [I.mov(0, 0), I.call_local(1), EXIT, I.mov(0, "r6"), EXIT],
    [I.mov(1, 1), I.call(6), EXIT],
    [I.ld_abs(1, 0), EXIT],
]


@pytest.mark.parametrize("prog", REFUSED, ids=range(len(REFUSED)))
def test_refusals_match_the_interpreter(prog):
    kw = {"legacy_packet": True} if prog is REFUSED[-1] else {}
    interp, jit = same(prog, entry_registers=(1, 10), **kw)
    assert interp[0] == "error" and jit == interp
    assert interp[1] in {
        "InputError",
        "DecodeError",
        "NotSupportedError",
        "UninitializedRegisterError",
    }


def test_refusal_types_are_the_documented_ones():
    with pytest.raises(DecodeError):
        JitProgram([Instruction(0xFF), EXIT])
    with pytest.raises(UninitializedRegisterError) as info:
        JitProgram([I.mov(0, 0), I.call_local(1), EXIT, I.mov(0, "r6"), EXIT])
    assert (info.value.pc, info.value.register) == (3, 6)
    with pytest.raises(NotSupportedError) as info:
        JitProgram([I.lddw(0, 3, src=1), EXIT])
    assert info.value.feature == "lddw_pseudo"
    with pytest.raises(InputError):
        JitProgram([I.mov(0, 0), EXIT], entry_registers=(11,))
    with pytest.raises(InputError):
        JitProgram([I.mov(0, 0), EXIT], budget=0)


def test_lddw_resolver_is_called_once_at_compile_time():
    seen = []

    def resolver(insn, pc):
        seen.append((insn.src, insn.imm, pc))
        return 0x1234_0000_0000 + insn.imm

    with JitProgram([I.mov(0, 0), I.lddw(0, 7, src=1), EXIT], lddw_resolver=resolver) as jit:
        assert jit.run() == jit.run() == 0x1234_0000_0007
    assert seen == [(1, 7, 1)]
    with pytest.raises(InputError):
        JitProgram([I.lddw(0, 7, src=1), EXIT], lddw_resolver=lambda i, pc: "x")


# ---- legacy packet loads ---------------------------------------------------------------------
def test_ld_abs_and_ld_ind_match_the_interpreter():
    packet = bytes.fromhex("0102030405060708")
    progs = [
        [I.mov(6, "r1"), I.ld_abs(2, 2), I.mov(7, "r0"), I.mov(8, 1), I.ld_ind(4, 8, 3),
         I.add(0, "r7"), EXIT],
        [I.mov(6, "r1"), I.ld_abs(4, 6), I.mov(0, 9), EXIT],  # out of bounds: r0 = 0
        [I.mov(6, "r1"), I.mov(8, -1), I.ld_ind(1, 8, 0), I.mov(0, 9), EXIT],  # negative
        [I.mov(6, "r1"), I.call_local(2), I.add(0, 5), EXIT, I.mov(6, "r1"), I.ld_abs(1, 100),
         EXIT],
    ]  # fmt: skip
    for prog in progs:
        result = check_same(prog, args=(0,), entry_registers=(1, 10), legacy_packet=True,
                            run_kw={"packet": packet})  # fmt: skip
        assert result[0] == "ok"
    result = check_same(progs[0], args=(0,), entry_registers=(1, 10), legacy_packet=True)
    assert result[:2] == ("error", "NotSupportedError")


# ---- static properties of the generated IR ---------------------------------------------------
def _every_family():
    prog = [I.mov(0, 0), I.mov(3, 1), I.mov(4, 2)]
    for w64 in (True, False):
        for op in (AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.DIV, AluOp.MOD, AluOp.LSH, AluOp.RSH,
                   AluOp.ARSH, AluOp.AND, AluOp.OR, AluOp.XOR):  # fmt: skip
            prog += [alu(op, 0, "r3", w64=w64), alu(op, 0, 5, w64=w64)]
            if op in (AluOp.DIV, AluOp.MOD):
                prog += [alu(op, 0, "r3", w64=w64, off=1), alu(op, 0, 5, w64=w64, off=1)]
        prog += [neg(0, w64=w64), movsx(0, 3, 8, w64=w64)]
    prog += [end(16, 0, source=Source.X), end(64, 0, cls=Class.ALU64)]
    prog.append(I.mov(5, "r10"))
    for op in AtomicOp:
        prog.append(I.atomic(8, op, 5, -8, 4))
    return prog + [I.ldx(8, 4, 10, -16), I.stx(4, 10, -16, 4), EXIT]


@pytest.mark.parametrize("debug_checks", [False, True])
def test_lowered_ir_has_no_undefined_behaviour_markers(debug_checks):
    from pybpf.jit.blocks import analyse
    from pybpf.jit.lower import lower_program

    text = str(lower_program(analyse(_every_family()), debug_checks=debug_checks))
    for marker in (" nsw", " nuw", " exact", "undef", "poison", "freeze"):
        assert marker not in text, marker
    assert "llvm.bswap.i16" in text and "llvm.bswap.i64" in text
    assert "atomicrmw add i64* " in text and "seq_cst" in text and "monotonic" in text
    assert "cmpxchg" in text and "acquire" in text and "release" in text
    for div in ("udiv", "sdiv", "urem", "srem"):  # every divisor is a select, never raw
        for line in text.splitlines():
            if f" {div} " in line:
                divisor = line.rsplit(",", 1)[1].strip()
                assert divisor.startswith('%"') or divisor.isdigit() and divisor != "0", line


# ---- lifetime, execute(), inspection ---------------------------------------------------------
def test_close_is_idempotent_and_runs_after_close_are_refused():
    jit = JitProgram([I.mov(0, 1), EXIT])
    assert "compile" in repr(jit) and jit.compile_seconds > 0
    assert "ret" in jit.assembly()
    jit.close()
    jit.close()
    with pytest.raises(InputError):
        jit.run()
    assert "closed" in repr(jit)


def test_run_validates_its_arguments():
    with JitProgram([I.mov(0, "r1"), EXIT]) as jit:
        assert jit.run((-1,)) == M64
        with pytest.raises(InputError):
            jit.run((1, 2, 3, 4, 5, 6))
        with pytest.raises(InputError):
            jit.run(("1",))


def test_execute_follows_the_conformance_convention():
    from pybpf.jit import execute
    from pybpf.vm import execute as vm_execute

    progs = [
        ([I.mov(0, "r2"), EXIT], b"\x01\x02\x03"),
        ([I.ldx(2, 0, 1, 1), EXIT], b"\x01\x02\x03"),
        ([I.mov(0, "r1"), I.add(0, "r2"), EXIT], None),
        ([I.st(1, 1, 0, 9), I.ldx(1, 0, 1, 0), EXIT], b"\x00"),
    ]
    for prog, mem in progs:
        assert execute(prog, mem) == vm_execute(prog, mem)
    with pytest.raises(BudgetExceededError):
        execute([I.mov(0, 0), I.ja(-1), EXIT], budget=100)
    with pytest.raises(MemoryAccessError):
        execute([I.ldx(1, 0, 1, 3), EXIT], b"\x00")


def test_cli_exec_with_the_jit_engine(tmp_path):
    src = tmp_path / "p.s"
    src.write_text("r0 = *(u16 *)(r1 + 1)\nr0 <<= 3\nexit\n")
    out = []
    for engine in ("interpreter", "jit"):
        proc = subprocess.run(
            [sys.executable, "-m", "pybpf", "exec", str(src), "--mem", "01 02 03",
             "--engine", engine],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        out.append(proc.stdout)
    assert out[0] == out[1] and str(0x0302 << 3) in out[1]


def test_run_repeat_runs_in_a_native_loop():
    prog = [I.mov(0, 0), I.add(0, "r1"), I.ldx(8, 3, 1, 0), I.add(3, 1), I.stx(8, 1, 0, 3),
            I.ldx(8, 4, 10, -8), I.add(0, "r4"), I.st(8, 10, -8, 7), EXIT]  # fmt: skip
    with Region(8, kind="input") as region, JitProgram(prog) as jit:
        space = AddressSpace([region])
        r0, ns = jit.run_repeat((region.address,), memory=space, repeat=1000)
        assert r0 == jit.run((region.address,), memory=space) == region.address  # fresh frames
        assert ns > 0 and int.from_bytes(region.read(0, 8), "little") == 1001  # shared memory
        with pytest.raises(InputError):
            jit.run_repeat(repeat=0)
    with JitProgram([I.mov(0, 0), I.ja(-1), EXIT], debug_checks=True, budget=50) as jit:
        with pytest.raises(BudgetExceededError):
            jit.run_repeat(repeat=3)  # every run gets the whole budget, and the first fails
    with JitProgram([I.call(7), EXIT], helpers={7: lambda ctx, *r: r[0] + 1}) as jit:
        assert jit.run_repeat((41,), repeat=10)[0] == 42


def test_the_benchmarks_synthetic_program_runs_the_same_on_both_engines():
    """benchmarks/jit.py's compile-time program (the suite's programs: test_benchmarks)."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import jit as jit_bench  # benchmarks/jit.py

    synthetic = jit_bench.synthetic_program(100)
    assert len(synthetic) == 100 and check_same(synthetic)[0] == "ok"


def test_dump_jited_lists_functions_without_directives():
    from pybpf.jit import jit_listing

    prog = [I.mov(0, 0), I.lddw(1, 7, src=1), I.call_local(1), EXIT, I.mov(0, "r10"), EXIT]
    text = jit_listing(prog, opt_level=0)  # map references need no maps; nothing runs
    lines = text.splitlines()
    assert lines[0] == "pybpf_entry:" and "bpf_fn_5:" in lines and "bpf_fn_0:" in lines
    assert not any(line.lstrip().startswith((".p2align", ".cfi", ".size", ".type", "#"))
                   for line in lines)  # fmt: skip
    assert "pybpf_repeat:" not in lines and "pybpf_lddw:" not in lines
    records = jit_listing(prog, json=True, opt_level=0, harness=True)
    names = [r["name"] for r in records]
    assert names[0] == "pybpf_entry" and "pybpf_repeat" in names and "pybpf_lddw" not in names
    insns = [i for r in records for i in r["insns"]]
    assert all(set(i) <= {"operation", "operands", "label"} and i["operation"] for i in insns)
    assert any(i["operation"].startswith("ret") for i in insns)
    assert any("label" in i for i in insns)  # the repeat loop's jump target
    with JitProgram([I.mov(0, 1), EXIT]) as jit:
        assert jit.dump_jited().startswith("pybpf_entry:")
        assert jit.dump_jited(json=True)[0]["name"] == "pybpf_entry"
