"""Interpreter speed guard: ns per executed instruction on small loops (a loose bound).

The bound is ten times the figure measured on the reference 2-vCPU VM (60-150 ns/insn), so
only a real regression (for example a dispatch loop that stopped being threaded) trips it.
"""

from __future__ import annotations

import time

from pybpf.isa import JmpOp
from pybpf.memory import AddressSpace, Region
from pybpf.vm import Interpreter
from test_vm import EXIT, I

BOUND_NS = 1500


def _ns_per_insn(prog, executed: int, *args, memory=None, expect=None) -> float:
    vm = Interpreter(prog, entry_registers=(1, 2, 10))
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        r0 = vm.run(args, memory=memory)
        best = min(best, time.perf_counter() - start)
    vm.close()
    if expect is not None:
        assert r0 == expect
    return best * 1e9 / executed


def test_alu_and_branch_loop_speed():
    n = 10_000
    prog = [I.mov(0, 0), I.mov(1, 0), I.add(0, "r1"), I.add(1, 1), I.jmp(JmpOp.JLT, 1, n, -3), EXIT]
    ns = _ns_per_insn(prog, 2 + 3 * n + 1, expect=n * (n - 1) // 2)
    print(f"alu loop: {ns:.0f} ns/insn")
    assert ns < BOUND_NS


def test_memory_loop_speed():
    data = bytes(range(256)) * 16
    with Region.from_bytes(data) as region:
        prog = [
            I.mov(0, 0),
            I.mov(3, "r1"),
            I.add(3, "r2"),
            I.ldx(1, 4, 1, 0),
            I.stx(8, 10, -8, 4),
            I.add(0, "r4"),
            I.add(1, 1),
            I.jmp(JmpOp.JLT, 1, "r3", -5),
            EXIT,
        ]
        ns = _ns_per_insn(
            prog, 3 + 5 * len(data) + 1, region.address, len(data),
            memory=AddressSpace([region]), expect=sum(data),
        )  # fmt: skip
    print(f"memory loop: {ns:.0f} ns/insn")
    assert ns < BOUND_NS
