"""Process helpers: the current task's ids and name, and ``jiffies64``.

"Current" is the running Python process and thread unless the hook running the program
supplies its task in ``ctx.extra["task"]``: a mapping with any of ``pid`` (thread id),
``tgid`` (process id), ``uid``, ``gid`` and ``comm`` (bytes or str); missing keys come
from the process.

- ``get_current_pid_tgid`` (14): ``tgid << 32 | pid`` (``os.getpid()`` and the native
  thread id);
- ``get_current_uid_gid`` (15): ``gid << 32 | uid`` (0 where the OS has no uids);
- ``get_current_comm`` (16): ``(buf, size)``: the task name (at most 15 bytes,
  ``TASK_COMM_LEN`` 16) copied as ``strscpy_pad`` does: truncated to ``size - 1`` bytes,
  NUL-terminated and zero-padded to ``size``; returns 0;
- ``jiffies64`` (118): ``INITIAL_JIFFIES + boot time * HZ`` as a 64-bit kernel counts
  (``INITIAL_JIFFIES`` = ``(u32)(-300 * HZ)``); ``HZ`` is :data:`HZ` unless
  ``ctx.extra["hz"]`` gives another.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

from pybpf.runtime.basics import ktime_get_boot_ns
from pybpf.runtime.context import ExecutionContext
from pybpf.runtime.registry import HelperRegistry

__all__ = [
    "PROCESS_HELPERS",
    "register_process",
    "HZ",
    "TASK_COMM_LEN",
    "current_comm",
    "get_current_pid_tgid",
    "get_current_uid_gid",
    "get_current_comm",
    "jiffies64",
]

HZ = 1000
TASK_COMM_LEN = 16
_M32 = (1 << 32) - 1


def _task(ctx: ExecutionContext) -> Mapping[str, Any]:
    task = ctx.extra.get("task")
    return task if isinstance(task, Mapping) else {}


def current_comm() -> bytes:
    """The name of the running thread as Linux shows it (at most 15 bytes)."""
    for path in (f"/proc/self/task/{threading.get_native_id()}/comm", "/proc/self/comm"):
        try:
            with open(path, "rb") as f:
                return f.read().rstrip(b"\n")[: TASK_COMM_LEN - 1]
        except OSError:
            continue
    name = os.path.basename(sys.executable or sys.argv[0] or "python")
    return name.encode("utf-8", "replace")[: TASK_COMM_LEN - 1]


def get_current_pid_tgid(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``u64 bpf_get_current_pid_tgid(void)``: ``tgid << 32 | pid``."""
    task = _task(ctx)
    pid = task.get("pid", threading.get_native_id())
    tgid = task.get("tgid", os.getpid())
    return (tgid & _M32) << 32 | (pid & _M32)


def get_current_uid_gid(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``u64 bpf_get_current_uid_gid(void)``: ``gid << 32 | uid``."""
    task = _task(ctx)
    uid = task.get("uid", os.getuid() if hasattr(os, "getuid") else 0)
    gid = task.get("gid", os.getgid() if hasattr(os, "getgid") else 0)
    return (gid & _M32) << 32 | (uid & _M32)


def get_current_comm(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_get_current_comm(void *buf, u32 size_of_buf)``."""
    size = r2 & _M32
    if size == 0:
        return 0
    comm = _task(ctx).get("comm")
    if comm is None:
        comm = current_comm()
    elif isinstance(comm, str):
        comm = comm.encode("utf-8", "replace")
    comm = bytes(comm).split(b"\0", 1)[0][: TASK_COMM_LEN - 1][: size - 1]
    ctx.memory.write(r1, comm + bytes(size - len(comm)), ctx.pc)
    return 0


def jiffies64(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``u64 bpf_jiffies64(void)``."""
    hz = int(ctx.extra.get("hz", HZ))
    initial = (-300 * hz) & _M32
    return initial + ktime_get_boot_ns(ctx, 0, 0, 0, 0, 0) * hz // 1_000_000_000


PROCESS_HELPERS = {
    "get_current_pid_tgid": get_current_pid_tgid,
    "get_current_uid_gid": get_current_uid_gid,
    "get_current_comm": get_current_comm,
    "jiffies64": jiffies64,
}


def register_process(registry: HelperRegistry) -> HelperRegistry:
    """Bind the process helpers into ``registry``; returns it."""
    for name, fn in PROCESS_HELPERS.items():
        registry.register(name, fn)
    return registry
