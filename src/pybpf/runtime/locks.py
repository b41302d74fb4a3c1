"""Lock helpers: ``bpf_spin_lock``/``bpf_spin_unlock`` on a ``struct bpf_spin_lock`` in memory.

``struct bpf_spin_lock`` is one 32-bit word in a map value: 0 when free, 1 when held (the
value of x86's queued spin lock when held without contention). ``spin_lock`` (93) spins
with :func:`pybpf.memory.atomics.cmpxchg_at` (hardware atomics with the native backend, so
programs in other threads and processes mapping the same value exclude each other) and
yields the CPU while waiting; ``spin_unlock`` (94) is a store-release of 0. Both return 0.

Linux's verifier guarantees that a program holds at most one lock, never takes it twice
and releases it before exiting; pybpf checks the first two at run time instead of
deadlocking: locking a word this run already holds, or unlocking one it does not hold,
stops the run with :class:`~pybpf.errors.HelperError`. The word must be writable and
4-byte aligned (else :class:`~pybpf.errors.MemoryAccessError` / ``HelperError``). A lock
whose holder died stays held (a 32-bit word has no room for the holder's pid).
"""

from __future__ import annotations

import time

from pybpf.errors import HelperError
from pybpf.memory import atomics
from pybpf.runtime.context import ExecutionContext
from pybpf.runtime.registry import HelperRegistry

__all__ = ["LOCK_HELPERS", "register_locks", "spin_lock", "spin_unlock", "HELD_KEY"]

HELD_KEY = "spin_locks_held"  # ctx.extra slot: addresses of the locks this run holds


def _word(ctx: ExecutionContext, address: int) -> int:
    ctx.memory.resolve(address, 4, "write", ctx.pc)
    if address % 4:
        raise HelperError(
            f"bpf_spin_lock at {address:#x} is not 4-byte aligned",
            helper_id=ctx.helper_id,
            pc=ctx.pc,
        )
    return address


def spin_lock(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_spin_lock(struct bpf_spin_lock *lock)``."""
    address = _word(ctx, r1)
    held = ctx.extra.setdefault(HELD_KEY, set())
    if address in held:
        raise HelperError(
            f"bpf_spin_lock at {address:#x} is already held by this program (deadlock)",
            helper_id=ctx.helper_id,
            pc=ctx.pc,
        )
    attempts = 0
    while atomics.cmpxchg_at(address, 4, 0, 1) != 0:
        attempts += 1
        time.sleep(0 if attempts < 64 else 0.0001)
    held.add(address)
    return 0


def spin_unlock(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_spin_unlock(struct bpf_spin_lock *lock)``."""
    address = _word(ctx, r1)
    held = ctx.extra.setdefault(HELD_KEY, set())
    if address not in held:
        raise HelperError(
            f"bpf_spin_unlock at {address:#x}: this program does not hold the lock",
            helper_id=ctx.helper_id,
            pc=ctx.pc,
        )
    held.discard(address)
    atomics.store_at(address, 4, 0)
    return 0


LOCK_HELPERS = {"spin_lock": spin_lock, "spin_unlock": spin_unlock}


def register_locks(registry: HelperRegistry) -> HelperRegistry:
    """Bind the spin lock helpers into ``registry``; returns it."""
    for name, fn in LOCK_HELPERS.items():
        registry.register(name, fn)
    return registry
