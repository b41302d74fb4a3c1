"""Atomics: both backends give the same results; native ones are atomic across threads and
processes; the Python fallback works without llvmlite; the shared lock recovers from a dead
holder."""

from __future__ import annotations

import ctypes
import mmap
import multiprocessing
import os
import subprocess
import sys
import threading

import pytest

from pybpf.errors import InputError, InternalError
from pybpf.memory import Region, atomics
from pybpf.memory.lock import SharedLock, process_alive
from pybpf.memory.native import module_ir, native_atomics

NATIVE = native_atomics() is not None
BACKENDS = ["python"] + (["native"] if NATIVE else [])
needs_native = pytest.mark.skipif(not NATIVE, reason="llvmlite is not installed")
needs_fork = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork() here"
)


@pytest.fixture(params=BACKENDS)
def backend(request):
    previous = atomics.backend()
    atomics.set_backend(request.param)
    yield request.param
    atomics.set_backend(previous)


def _model(op: str, old: int, operand: int, size: int) -> int:
    mask = (1 << (8 * size)) - 1
    return {
        "add": old + operand,
        "or": old | operand,
        "and": old & operand,
        "xor": old ^ operand,
        "xchg": operand,
    }[op] & mask


@pytest.mark.parametrize("size", [1, 2, 4, 8])
@pytest.mark.parametrize("op", ["add", "or", "and", "xor", "xchg"])
def test_rmw_matches_the_model(backend, size, op):
    import random

    rng = random.Random(size * 31 + len(op))
    with Region(32) as region:
        for _ in range(20):
            old = rng.getrandbits(8 * size)
            operand = rng.getrandbits(64)
            region.view[8 : 8 + size] = old.to_bytes(size, "little")
            region.view[8 + size : 16 + size] = b"\xaa" * 8  # neighbours stay untouched
            assert atomics.atomic_rmw(region, 8, size, op, operand) == old
            new = int.from_bytes(region.view[8 : 8 + size], "little")
            assert new == _model(op, old, operand & ((1 << (8 * size)) - 1), size)
            assert bytes(region.view[8 + size : 16 + size]) == b"\xaa" * 8


@pytest.mark.parametrize("size", [1, 2, 4, 8])
def test_cmpxchg_load_store(backend, size):
    mask = (1 << (8 * size)) - 1
    with Region(16) as region:
        atomics.store_release(region, 0, size, 0x1122334455667788)
        assert atomics.load_acquire(region, 0, size) == 0x1122334455667788 & mask
        assert atomics.cmpxchg(region, 0, size, 5, 9) == 0x1122334455667788 & mask  # no swap
        assert atomics.load_acquire(region, 0, size) == 0x1122334455667788 & mask
        old = atomics.cmpxchg(region, 0, size, 0x1122334455667788, -1)
        assert old == 0x1122334455667788 & mask
        assert atomics.load_acquire(region, 0, size) == mask
        # address-based forms see the same memory
        assert atomics.load_at(region.address, size) == mask
        assert atomics.cmpxchg_at(region.address, size, mask, 3) == mask
        assert atomics.rmw_at(region.address, size, "add", 4) == 3
        assert atomics.load_at(region.address, size) == 7


def test_misaligned_and_bad_arguments(backend):
    with Region(16) as region:
        region.view[:] = bytes(range(16))
        # a misaligned access takes the Python path: same result, no fault
        assert atomics.atomic_rmw(region, 3, 4, "add", 1) == 0x06050403
        assert region.read(3, 4) == bytes([4, 4, 5, 6])
        with pytest.raises(InputError):
            atomics.atomic_rmw(region, 14, 4, "add", 1)  # past the end
        with pytest.raises(InputError):
            atomics.atomic_rmw(region, 0, 3, "add", 1)
        with pytest.raises(InputError):
            atomics.atomic_rmw(region, 0, 4, "nand", 1)
    with pytest.raises(InternalError):
        atomics.load_acquire(region, 0, 4)  # closed


def test_backend_selection():
    previous = atomics.backend()
    try:
        assert atomics.set_backend("python") == "python"
        assert atomics.backend() == "python"
        assert atomics.set_backend("auto") == ("native" if NATIVE else "python")
        with pytest.raises(InputError):
            atomics.set_backend("fast")
    finally:
        atomics.set_backend(previous)


def test_module_ir_defines_every_primitive():
    ir = module_ir()
    for width in (8, 16, 32, 64):
        for name in ("cas", "add", "or", "and", "xor", "xchg", "load", "store"):
            assert f"@{name}{width}(" in ir


@needs_native
def test_native_is_compiled_once():
    assert native_atomics() is native_atomics()
    assert native_atomics().llvm_version >= (14,)


def _hammer(address: int, n: int) -> None:
    for _ in range(n):
        atomics.rmw_at(address, 8, "add", 1)


def test_threads_lose_no_increment(backend):
    with Region(8) as region:
        threads = [threading.Thread(target=_hammer, args=(region.address, 3000)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert atomics.load_acquire(region, 0, 8) == 12000


def _child_hammer(address: int, n: int, lock_address: int) -> None:
    atomics.set_backend("native")
    lock = SharedLock(lock_address)
    for i in range(n):
        atomics.rmw_at(address, 8, "add", 1)
        if i % 10 == 0:
            with lock:  # a plain (non-atomic) increment under the shared lock
                cell = ctypes.c_uint64.from_address(address + 8)
                cell.value += 1


@needs_native
@needs_fork
def test_processes_lose_no_increment_with_native_atomics():
    mm = mmap.mmap(-1, 64)  # MAP_SHARED anonymous: shared with forked children
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_child_hammer, args=(base, 4000, base + 16)) for _ in range(3)]
    for c in children:
        c.start()
    _child_hammer(base, 4000, base + 16)
    for c in children:
        c.join(30)
        assert c.exitcode == 0
    assert ctypes.c_uint64.from_address(base).value == 16000
    assert ctypes.c_uint64.from_address(base + 8).value == 1600


def _take_and_die(lock_address: int) -> None:
    lock = SharedLock(lock_address)
    lock.acquire()
    os._exit(0)  # dies holding the lock


@needs_fork
def test_shared_lock_recovers_from_a_dead_holder():
    mm = mmap.mmap(-1, 64)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_take_and_die, args=(base,))
    child.start()
    child.join(10)
    holder = atomics.load_at(base, 8)
    assert holder >> 32 == child.pid and not process_alive(child.pid)
    recovered = []
    lock = SharedLock(base, recover=lambda: recovered.append(True))
    lock.acquire()
    assert recovered == [True] and lock.recovered == 1
    assert lock.holder() == lock.token
    lock.release()
    assert lock.holder() == 0
    with lock:  # an ordinary acquire: nothing to recover
        pass
    assert recovered == [True]


def test_shared_lock_excludes_threads(backend):
    with Region(16) as region:
        lock = SharedLock(region.address)
        cell = ctypes.c_uint64.from_address(region.address + 8)

        def work():
            for _ in range(500):
                with lock:
                    value = cell.value
                    cell.value = value + 1

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert cell.value == 2000
        with pytest.raises(InputError):
            SharedLock(region.address + 4)


def test_process_alive():
    assert process_alive(os.getpid())
    assert not process_alive(0)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not process_alive(proc.pid)


def test_without_llvmlite_pybpf_uses_python_locks():
    script = (
        "import sys; sys.modules['llvmlite'] = None\n"
        "from pybpf.memory import atomics, Region\n"
        "assert not atomics.native_available() and atomics.backend() == 'python'\n"
        "r = Region(8); assert atomics.atomic_rmw(r, 0, 8, 'add', 5) == 0\n"
        "assert atomics.cmpxchg(r, 0, 8, 5, 7) == 5 and atomics.load_acquire(r, 0, 8) == 7\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
