"""Process helpers: pid/tgid, uid/gid and comm of the running process or of a hook's task;
jiffies64."""

from __future__ import annotations

import os
import threading

from pybpf.isa import assemble
from pybpf.memory import AddressSpace, Region
from pybpf.runtime import ExecutionContext, default_helpers
from pybpf.runtime.process import (
    current_comm,
    get_current_comm,
    get_current_pid_tgid,
    get_current_uid_gid,
    jiffies64,
)
from pybpf.vm import Interpreter


def test_ids_of_the_running_process():
    ctx = ExecutionContext(AddressSpace())
    value = get_current_pid_tgid(ctx, 0, 0, 0, 0, 0)
    assert (value >> 32, value & 0xFFFFFFFF) == (os.getpid(), threading.get_native_id())
    if hasattr(os, "getuid"):
        value = get_current_uid_gid(ctx, 0, 0, 0, 0, 0)
        assert (value >> 32, value & 0xFFFFFFFF) == (os.getgid(), os.getuid())


def test_a_hook_supplies_the_task():
    task = {"pid": 7, "tgid": 5, "uid": 1000, "gid": 100, "comm": "a-very-long-task-name"}
    ctx = ExecutionContext(AddressSpace(), extra={"task": task})
    assert get_current_pid_tgid(ctx, 0, 0, 0, 0, 0) == 5 << 32 | 7
    assert get_current_uid_gid(ctx, 0, 0, 0, 0, 0) == 100 << 32 | 1000
    with Region(32) as r:
        ctx.memory.add(r)
        r.view[:] = b"\xee" * 32
        assert get_current_comm(ctx, r.address, 32, 0, 0, 0) == 0
        assert bytes(r.view) == b"a-very-long-tas" + bytes(17)  # 15 bytes + NUL + padding
        r.view[:] = b"\xee" * 32
        assert get_current_comm(ctx, r.address, 4, 0, 0, 0) == 0
        assert bytes(r.view[:5]) == b"a-v\0\xee"


COMM = """
r1 = r10
r1 += -16
r2 = 16
call 16
r0 = *(u64 *)(r10 - 16)
exit
"""


def test_comm_in_the_interpreter():
    expected = current_comm()
    assert 0 < len(expected) <= 15
    with Interpreter(assemble(COMM), helpers=default_helpers()) as vm:
        value = vm.run().to_bytes(8, "little")
    assert value == (expected + bytes(16))[:8]


def test_jiffies64_counts_boot_time_at_hz():
    ctx = ExecutionContext(AddressSpace(), extra={"hz": 100})
    a = jiffies64(ctx, 0, 0, 0, 0, 0)
    b = jiffies64(ctx, 0, 0, 0, 0, 0)
    initial = (-300 * 100) & 0xFFFFFFFF
    assert initial <= a <= b
    ctx.extra["hz"] = 1000
    assert jiffies64(ctx, 0, 0, 0, 0, 0) - ((-300 * 1000) & 0xFFFFFFFF) >= (a - initial) * 10
