"""Kernel differential test: the same random user-space operation sequences on a Linux map
(through pybpf.syscall) and on a pybpf map give the same results (values or errno) and the
same final contents, for HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY, QUEUE, STACK and LPM_TRIE;
creation errors match too; LRU maps keep their invariants on both. Skipped where bpf() does
not work."""

from __future__ import annotations

import errno
import random
import struct
from pathlib import Path

import pytest

from kernel import requires_bpf
from pybpf import syscall as sc
from pybpf.errors import MapError, SyscallError
from pybpf.maps import create_map
from pybpf.maptypes import MapFlag
from pybpf.maptypes import MapType as T
from pybpf.syscall.attr import MapElemAttr, address, in_buffer, out_buffer
from pybpf.syscall.fd import fd_number

pytestmark = requires_bpf

OPS = 400  # operations per sequence
SEEDS = [1, 2]


def possible_cpus() -> int:
    """num_possible_cpus(): the kernel's per-CPU value count."""
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    except OSError:
        return 1
    total = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        total += int(hi or lo) - int(lo) + 1
    return total


NCPUS = possible_cpus()


@pytest.fixture(autouse=True)
def _state(monkeypatch, tmp_path):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


# ---- one interface over both maps -------------------------------------------------------------
class Kernel:
    def __init__(self, kind, key_size, value_size, max_entries, flags, user_value):
        self.fd = sc.map_create(kind, key_size, value_size, max_entries, flags)
        self.key_size = key_size
        self.user_value = user_value

    def lookup(self, key):
        return sc.map_lookup(self.fd, key, self.user_value)

    def update(self, key, value, flags):
        sc.map_update(self.fd, key, value, flags)

    def delete(self, key):
        sc.map_delete(self.fd, key)

    def pop(self, key):
        key_buf = in_buffer(key)
        value_buf = out_buffer(self.user_value)
        attr = MapElemAttr(
            map_fd=fd_number(self.fd), key=address(key_buf), value=address(value_buf)
        )
        try:
            sc.bpf(sc.Cmd.MAP_LOOKUP_AND_DELETE_ELEM, attr)
        except SyscallError as err:
            if err.errno == errno.ENOENT:
                return None
            raise
        return bytes(value_buf)

    def next_key(self, key):
        return sc.map_get_next_key(self.fd, key, self.key_size)

    def contents(self):
        return {k: self.lookup(k) for k in sc.map_keys(self.fd, self.key_size)}

    def close(self):
        self.fd.close()


class Pybpf:
    def __init__(self, kind, key_size, value_size, max_entries, flags, user_value):
        self.m = create_map(
            type=kind,
            key_size=key_size,
            value_size=value_size,
            max_entries=max_entries,
            flags=flags,
            ncpus=NCPUS,
        )
        assert self.m.user_value_size == user_value

    def lookup(self, key):
        return self.m.lookup_raw(key)

    def update(self, key, value, flags):
        self.m.update_raw(key, value, flags)

    def delete(self, key):
        self.m.delete_raw(key)

    def pop(self, key):
        return self.m.lookup_and_delete_raw(key)

    def next_key(self, key):
        return self.m.get_next_key(key)

    def contents(self):
        return {k: self.lookup(k) for k in self.m.keys_raw()}

    def close(self):
        self.m.close()


def outcome(fn, *args):
    """``("ok", result)`` or ``("errno", n)``: what an operation did."""
    try:
        return ("ok", fn(*args))
    except (SyscallError, MapError) as err:
        return ("errno", err.errno)


def both(kind, key_size, value_size, max_entries, flags=0):
    percpu = kind in (T.PERCPU_HASH, T.PERCPU_ARRAY, T.LRU_PERCPU_HASH)
    user_value = NCPUS * ((value_size + 7) & ~7) if percpu else value_size
    args = (kind, key_size, value_size, max_entries, flags, user_value)
    return Kernel(*args), Pybpf(*args), user_value


def run_sequence(kind, key_size, value_size, max_entries, flags, make_key, seed, ordered):
    rng = random.Random(seed)
    kernel, ours, user_value = both(kind, key_size, value_size, max_entries, flags)
    try:
        log = []
        for step in range(OPS):
            op = rng.choice(
                ["lookup", "update", "update", "update", "update", "delete", "next", "pop"]
            )
            key = make_key(rng)
            if op == "lookup":
                args = (key,)
            elif op == "update":
                value = rng.randbytes(user_value)
                args = (key, value, rng.choice([0, 0, 1, 2, 2, 3, 4, 5]))
            elif op == "next":
                args = (rng.choice([None, key]),)
            else:
                args = (key,)
            name = {"next": "next_key"}.get(op, op)
            a = outcome(getattr(kernel, name), *args)
            b = outcome(getattr(ours, name), *args)
            if op == "next" and not ordered and a[0] == b[0] == "ok":
                # Linux walks buckets, pybpf slots: the orders differ, so only the first
                # key's existence compares (a missing key restarts the walk in both)
                walk_start = args[0] is None or ours.lookup(args[0]) is None
                a = ("ok", a[1] is None if walk_start else "some order")
                b = ("ok", b[1] is None if walk_start else "some order")
            log.append((step, op, args, a, b))
            assert a == b, f"step {step}: {op}{args!r}: kernel {a}, pybpf {b}"
        assert kernel.contents() == ours.contents()
        return log
    finally:
        kernel.close()
        ours.close()


def small_key(size, space):
    return lambda rng: rng.randrange(space).to_bytes(size, "little")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "kind,value_size",
    [(T.HASH, 8), (T.HASH, 5), (T.PERCPU_HASH, 8), (T.PERCPU_HASH, 3)],
)
def test_hash_sequences(kind, value_size, seed):
    log = run_sequence(kind, 4, value_size, 16, 0, small_key(4, 40), seed, ordered=False)
    outcomes = {entry[3] for entry in log if entry[1] == "update"}
    assert ("errno", errno.E2BIG) in outcomes and ("errno", errno.EEXIST) in outcomes


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind,value_size", [(T.ARRAY, 8), (T.ARRAY, 6), (T.PERCPU_ARRAY, 12)])
def test_array_sequences(kind, value_size, seed):
    log = run_sequence(kind, 4, value_size, 8, 0, small_key(4, 10), seed, ordered=True)
    outcomes = {entry[3] for entry in log}
    assert ("errno", errno.E2BIG) in outcomes and ("errno", errno.EINVAL) in outcomes


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", [T.QUEUE, T.STACK])
def test_queue_stack_sequences(kind, seed):
    rng = random.Random(seed)
    kernel, ours, _ = both(kind, 0, 4, 5)
    try:
        for step in range(OPS):
            op = rng.choice(["push", "push", "push", "peek", "pop", "pop", "delete", "next"])
            if op == "push":
                flags = rng.choice([0, 0, 1, 2, 2, 3, 4])
                value = rng.randbytes(4)
                a = outcome(kernel.update, b"", value, flags)
                b = outcome(ours.update, None, value, flags)
            elif op == "peek":
                a, b = outcome(kernel.lookup, b""), outcome(ours.lookup, None)
            elif op == "pop":
                a, b = outcome(kernel.pop, b""), outcome(ours.pop, None)
            elif op == "delete":
                a, b = outcome(kernel.delete, b""), outcome(ours.delete, None)
            else:
                a, b = outcome(kernel.next_key, None), outcome(ours.next_key, None)
            assert a == b, f"step {step}: {op}: kernel {a}, pybpf {b}"
        rest_kernel = []
        while (v := kernel.pop(b"")) is not None:
            rest_kernel.append(v)
        rest_ours = []
        while (v := ours.pop(None)) is not None:
            rest_ours.append(v)
        assert rest_kernel == rest_ours
    finally:
        kernel.close()
        ours.close()


def lpm_key(rng):
    prefixlen = rng.choice([0, 1, 7, 8, 8, 12, 16, 16, 24, 31, 32, 32, 33])
    data = rng.choice([b"\x0a\x00", b"\x0a\x01", b"\x0b\x80", b"\xc0\xa8"]) + rng.randbytes(2)
    return struct.pack("<I", prefixlen) + data


@pytest.mark.parametrize("seed", SEEDS)
def test_lpm_trie_sequences(seed):
    rng = random.Random(seed)
    kernel, ours, _ = both(T.LPM_TRIE, 8, 4, 12, MapFlag.NO_PREALLOC)
    try:
        for step in range(OPS):
            op = rng.choice(["lookup", "lookup", "update", "update", "update", "delete"])
            key = lpm_key(rng)
            if op == "update":
                args = (key, rng.randbytes(4), rng.choice([0, 0, 1, 2, 3]))
            else:
                args = (key,)
            a = outcome(getattr(kernel, op), *args)
            b = outcome(getattr(ours, op), *args)
            assert a == b, f"step {step}: {op}{args!r}: kernel {a}, pybpf {b}"
        assert kernel.contents() == ours.contents()
        assert outcome(kernel.pop, lpm_key(rng)) == outcome(ours.pop, lpm_key(rng))
    finally:
        kernel.close()
        ours.close()


CREATE = [
    (T.HASH, 0, 8, 4, 0),
    (T.HASH, 4, 0, 4, 0),
    (T.HASH, 4, 8, 0, 0),
    (T.HASH, 600, 8, 4, 0),
    (T.HASH, (1 << 22) - 56, 8, 1, 0),
    (T.HASH, (1 << 22) - 55, 8, 1, 0),
    (T.HASH, 4, 8, 4, MapFlag.NO_COMMON_LRU),
    (T.HASH, 4, 8, 4, MapFlag.MMAPABLE),
    (T.LRU_HASH, 4, 8, 4, MapFlag.NO_PREALLOC),
    (T.PERCPU_HASH, 4, 40000, 4, 0),
    (T.ARRAY, 8, 8, 4, 0),
    (T.ARRAY, 4, 0, 4, 0),
    (T.ARRAY, 4, 8, 0, 0),
    (T.PERCPU_ARRAY, 4, 8, 4, MapFlag.MMAPABLE),
    (T.ARRAY, 4, 8, 4, MapFlag.PRESERVE_ELEMS),
    (T.ARRAY, 4, 8, 4, MapFlag.RDONLY | MapFlag.WRONLY),
    (T.ARRAY, 4, 8, 4, MapFlag.RDONLY_PROG | MapFlag.WRONLY_PROG),
    (T.PROG_ARRAY, 4, 8, 4, 0),
    (T.QUEUE, 4, 4, 4, 0),
    (T.QUEUE, 0, 0, 4, 0),
    (T.STACK, 0, 4, 0, 0),
    (T.LPM_TRIE, 8, 4, 4, 0),
    (T.LPM_TRIE, 4, 4, 4, MapFlag.NO_PREALLOC),
    (T.LPM_TRIE, 261, 4, 4, MapFlag.NO_PREALLOC),
    (T.RINGBUF, 0, 0, 4000, 0),
    (T.RINGBUF, 4, 0, 4096, 0),
    (T.RINGBUF, 0, 0, 3 * 4096, 0),
]


@pytest.mark.parametrize("kind,key_size,value_size,max_entries,flags", CREATE)
def test_creation_errors_match(kind, key_size, value_size, max_entries, flags):
    try:
        sc.map_create(kind, key_size, value_size, max_entries, flags).close()
        expected = None
    except SyscallError as err:
        expected = err.errno
    try:
        create_map(
            type=kind,
            key_size=key_size,
            value_size=value_size,
            max_entries=max_entries,
            flags=flags,
        ).close()
        got = None
    except MapError as err:
        got = err.errno
    assert got == expected


@pytest.mark.parametrize("kind", [T.LRU_HASH, T.LRU_PERCPU_HASH])
def test_lru_invariants_on_both(kind):
    n = 64
    kernel, ours, user_value = both(kind, 4, 8, n)
    try:
        for m in (kernel, ours):
            for i in range(4 * n):
                m.update(i.to_bytes(4, "little"), bytes(user_value), 0)
                keys = m.contents()
                assert len(keys) <= n
            assert (4 * n - 1).to_bytes(4, "little") in keys  # the newest key stays
    finally:
        kernel.close()
        ours.close()


@pytest.mark.parametrize("seed", SEEDS)
def test_prog_array_sequences(seed):
    """PROG_ARRAY: Linux takes program fds and reports program ids; pybpf takes the ids."""
    from pybpf.isa import assemble, encode

    code = encode(assemble("r0 = 2\nexit"))
    programs = [sc.prog_load(sc.ProgType.XDP, code)[0] for _ in range(3)]
    ids = [sc.prog_info(fd).id for fd in programs]
    rng = random.Random(seed)
    kernel = sc.map_create(T.PROG_ARRAY, 4, 4, 4)
    ours = create_map(type=T.PROG_ARRAY, key_size=4, value_size=4, max_entries=4)
    try:
        for step in range(OPS // 2):
            op = rng.choice(["lookup", "update", "update", "delete", "next"])
            key = rng.randrange(6).to_bytes(4, "little")
            if op == "update":
                which = rng.randrange(3)
                flags = rng.choice([0, 0, 0, 1, 2])
                a = outcome(
                    sc.map_update,
                    kernel,
                    key,
                    programs[which].fileno().to_bytes(4, "little"),
                    flags,
                )
                b = outcome(ours.update_raw, key, ids[which].to_bytes(4, "little"), flags)
            elif op == "lookup":
                a = outcome(sc.map_lookup, kernel, key, 4)
                b = outcome(ours.lookup_raw, key)
            elif op == "delete":
                a = outcome(sc.map_delete, kernel, key)
                b = outcome(ours.delete_raw, key)
            else:
                a = outcome(sc.map_get_next_key, kernel, key, 4)
                b = outcome(ours.get_next_key, key)
            assert a == b, f"step {step}: {op} {key.hex()}: kernel {a}, pybpf {b}"
        for i in range(4):
            key = i.to_bytes(4, "little")
            assert sc.map_lookup(kernel, key, 4) == ours.lookup_raw(key)
    finally:
        kernel.close()
        ours.close()
        for fd in programs:
            fd.close()
