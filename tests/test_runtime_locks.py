"""Spin lock helpers: mutual exclusion between runs in threads, misuse stops the run."""

from __future__ import annotations

import sys
import threading

import pytest

from pybpf.errors import HelperError, MemoryAccessError
from pybpf.isa import assemble
from pybpf.memory import AddressSpace, Region
from pybpf.runtime import ExecutionContext, default_helpers
from pybpf.runtime.locks import spin_lock, spin_unlock
from pybpf.vm import Interpreter

# r1 = a value { u32 lock; u32 pad; u64 counter } : a non-atomic read-modify-write
# protected by the lock (with a window between the load and the store)
PROGRAM = """
r6 = r1
call 93
r2 = *(u64 *)(r6 + 8)
r3 = r2
r3 += 0
r3 += 1
*(u64 *)(r6 + 8) = r3
r1 = r6
call 94
r0 = 0
exit
"""


def test_lock_word_and_misuse():
    with Region(8) as r:
        ctx = ExecutionContext(AddressSpace([r]))
        assert spin_lock(ctx, r.address, 0, 0, 0, 0) == 0
        assert r.view[:4] == b"\x01\0\0\0"
        with pytest.raises(HelperError):
            spin_lock(ctx, r.address, 0, 0, 0, 0)  # would deadlock
        assert spin_unlock(ctx, r.address, 0, 0, 0, 0) == 0
        assert r.view[:4] == b"\0\0\0\0"
        with pytest.raises(HelperError):
            spin_unlock(ctx, r.address, 0, 0, 0, 0)
        with pytest.raises(HelperError):
            spin_lock(ctx, r.address + 2, 0, 0, 0, 0)
        with pytest.raises(MemoryAccessError):
            spin_lock(ctx, r.address + 8, 0, 0, 0, 0)


def test_a_held_lock_makes_others_wait():
    with Region(8) as r:
        owner = ExecutionContext(AddressSpace([r]))
        spin_lock(owner, r.address, 0, 0, 0, 0)
        done = threading.Event()

        def other():
            ctx = ExecutionContext(AddressSpace([r]))
            spin_lock(ctx, r.address, 0, 0, 0, 0)
            done.set()
            spin_unlock(ctx, r.address, 0, 0, 0, 0)

        t = threading.Thread(target=other)
        t.start()
        assert not done.wait(0.05)
        spin_unlock(owner, r.address, 0, 0, 0, 0)
        t.join(5)
        assert done.is_set()


def test_programs_in_threads_lose_no_update():
    threads, runs = 4, 300
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, inside the locked section too
    with Region(16, kind="map_value") as value:
        vms = [
            Interpreter(assemble(PROGRAM), helpers=default_helpers(), entry_registers=(1, 10))
            for _ in range(threads)
        ]

        def work(vm):
            space = AddressSpace([value])
            for _ in range(runs):
                vm.run((value.address,), memory=space)

        workers = [threading.Thread(target=work, args=(vm,)) for vm in vms]
        for w in workers:
            w.start()
        try:
            for w in workers:
                w.join()
        finally:
            sys.setswitchinterval(interval)
        for vm in vms:
            vm.close()
        assert int.from_bytes(value.view[8:16], "little") == threads * runs
        assert bytes(value.view[:4]) == bytes(4)
