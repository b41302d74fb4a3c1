"""Concurrency and crashes: threads and processes running programs (interpreter and JIT) that
atomically increment the same keys of maps pinned by name add up exactly; a process
SIGKILLed at random points while its programs insert and delete in a pinned hash map, or
while it writes a capture file, leaves files that reopen cleanly.

``tests/test_maps_shared.py`` covers user-space pins, forked incrementers on one pin and
kills at each step of a user-space update; this file goes through the object loader
(``Pinning.BY_NAME``), threads, spawned interpreters, both engines and capture writers.
``PYBPF_CONCURRENCY_ROUNDS=N`` runs N rounds per worker (default 120: 8 workers x 6 keys x
120 = 5760 counted updates) and ``PYBPF_CONCURRENCY_KILLS=N`` kills N children per crash
test (default 4) instead of the CI defaults::

    PYBPF_CONCURRENCY_ROUNDS=2000 PYBPF_CONCURRENCY_KILLS=40 python -m pytest -q \
        tests/test_concurrency.py
"""

from __future__ import annotations

import errno
import io
import multiprocessing
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path

import pytest

from pybpf.errors import CaptureError, MapError
from pybpf.hooks import open_capture, open_writer
from pybpf.isa import assemble
from pybpf.jit import available
from pybpf.maps import BPF_NOEXIST, open_pinned
from pybpf.maptypes import MapType
from pybpf.memory.native import native_atomics
from pybpf.objects import Object
from pybpf.spec import MapSpec, ObjectSpec, ProgramSpec, Reference, RefKind
from pybpf.spec.map import Pinning

ROUNDS = int(os.environ.get("PYBPF_CONCURRENCY_ROUNDS", "0") or 0) or 120
KILLS = int(os.environ.get("PYBPF_CONCURRENCY_KILLS", "0") or 0) or 4
KEYS = 6
ENGINES = ["interpreter", "jit"] if available() else ["interpreter"]
HAS_FORK = "fork" in multiprocessing.get_all_start_methods()
FORK = multiprocessing.get_context("fork") if HAS_FORK else None
needs_fork = pytest.mark.skipif(not HAS_FORK, reason="no fork() here")
needs_native = pytest.mark.skipif(
    native_atomics() is None, reason="cross-process atomics need llvmlite"
)

# r1 = the data buffer: the u32 key at offset 0. Creates the key if missing (a racing
# creator's EEXIST is fine), then adds 1 with an atomic instruction.
INCREMENT = """
r6 = r1
r7 = *(u32 *)(r6 + 0)
*(u32 *)(r10 - 4) = r7
r1 = 0 ll
r2 = r10
r2 += -4
call 1
if r0 != 0 goto add
*(u64 *)(r10 - 16) = 0
r1 = 0 ll
r2 = r10
r2 += -4
r3 = r10
r3 += -16
r4 = 1
call 2
r1 = 0 ll
r2 = r10
r2 += -4
call 1
if r0 == 0 goto fail
add:
r1 = 1
lock *(u64 *)(r0 + 0) += r1
r0 = 0
exit
fail:
r0 = 1
exit
"""

# r1 = the data buffer: u32 key, u32 op (0: insert key -> key * 3 + 1, 1: delete).
CHURN = """
r6 = r1
r7 = *(u32 *)(r6 + 0)
r8 = *(u32 *)(r6 + 4)
*(u32 *)(r10 - 4) = r7
r2 = r7
r2 *= 3
r2 += 1
*(u64 *)(r10 - 16) = r2
if r8 != 0 goto del
r1 = 0 ll
r2 = r10
r2 += -4
r3 = r10
r3 += -16
r4 = 0
call 2
exit
del:
r1 = 0 ll
r2 = r10
r2 += -4
call 3
exit
"""


def spec_for(text: str, map_spec: MapSpec) -> ObjectSpec:
    """An object with one untyped program whose every ``lddw`` loads ``map_spec``."""
    insns = tuple(assemble(text))
    pcs, pc = [], 0
    for insn in insns:
        if insn.is_lddw:
            pcs.append(pc)
        pc += 2 if insn.is_lddw else 1
    refs = tuple(Reference(p, RefKind.MAP, map_spec.name) for p in pcs)
    prog = ProgramSpec("p", "raw", insns, references=refs, license="GPL")
    return ObjectSpec(name="conc", programs={"p": prog}, maps={map_spec.name: map_spec},
                      license="GPL")  # fmt: skip


COUNTS = {
    "hash": MapSpec("counts", MapType.HASH, 4, 8, 64, pinning=Pinning.BY_NAME),
    "array": MapSpec("counts", MapType.ARRAY, 4, 8, 64, pinning=Pinning.BY_NAME),
}


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


def k4(i: int) -> bytes:
    return i.to_bytes(4, "little")


def increment_rounds(obj: Object, seed: int, rounds: int) -> int:
    """Run the increment program over every key ``rounds`` times; returns the runs made."""
    prog = obj.programs["p"]
    rng = random.Random(seed)
    runs = 0
    for _ in range(rounds):
        for key in rng.sample(range(KEYS), KEYS):
            assert prog.test_run(k4(key) + bytes(4)).retval == 0
            runs += 1
    return runs


WORKER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from test_concurrency import COUNTS, INCREMENT, increment_rounds, spec_for
    from threading import Thread
    from pybpf.objects import Object
    kind, engine, seed, rounds, threads = sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])
    spec = spec_for(INCREMENT, COUNTS[kind])
    objs = [Object(spec).load(engine=engine) for _ in range(threads)]
    print("ready", flush=True)
    sys.stdin.readline()  # everyone starts together
    done = [0] * threads
    def work(i):
        done[i] = increment_rounds(objs[i], seed * 100 + i, rounds)
    workers = [Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(json.dumps(sum(done)), flush=True)
    """
)


def _forked_worker(kind: str, go, results) -> None:
    """A forked process: two threads on the interpreter, each with its own loaded object."""
    objs = [Object(spec_for(INCREMENT, COUNTS[kind])).load() for _ in range(2)]
    go.wait(60)
    done = [0, 0]

    def work(i: int) -> None:
        done[i] = increment_rounds(objs[i], 500 + i, ROUNDS)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(sum(done))


@needs_native
@needs_fork
def test_threads_and_processes_add_up_exactly():
    """A spawned process (JIT), a forked one (interpreter) and this one (both engines), two
    threads each, increment the same keys of a hash map pinned by name (keys created
    concurrently too): 8 workers."""
    kind = "hash"
    spec = spec_for(INCREMENT, COUNTS[kind])
    engine = ENGINES[-1]  # a spawned interpreter (nothing shared but the pin) on the JIT
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(Path(__file__).parent), kind, engine,
             "1", str(ROUNDS), "2"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ,
        )  # fmt: skip
    ]
    go, results = FORK.Event(), FORK.Queue()
    forked = FORK.Process(target=_forked_worker, args=(kind, go, results))
    forked.start()
    mine = [Object(spec).load(engine=engine) for engine in ENGINES for _ in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    go.set()
    local = [0] * len(mine)

    def work(i: int) -> None:
        local[i] = increment_rounds(mine[i], 1000 + i, ROUNDS)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(mine))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    remote = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        remote.append(int(out.strip().splitlines()[-1]))
    remote.append(results.get(timeout=300))
    forked.join(60)
    assert forked.exitcode == 0
    total = sum(local) + sum(remote)
    workers = len(mine) + 2 * len(procs) + 2
    assert total == workers * ROUNDS * KEYS
    with open_pinned("/sys/fs/bpf/counts") as m:
        m.set_codecs("uint", "uint")
        got = {k: v for k, v in m.items() if v}
    assert got == {key: workers * ROUNDS for key in range(KEYS)}
    assert sum(got.values()) == total  # every one of the updates counted, none lost
    for obj in mine:
        obj.close()


@pytest.mark.parametrize("kind", sorted(COUNTS))
@pytest.mark.parametrize("engine", ENGINES)
def test_threads_sharing_one_program_add_up_exactly(engine, kind):
    """One loaded program run from several threads at once (each run has its own state)."""
    spec = spec_for(INCREMENT, COUNTS[kind])
    with Object(spec).load(engine=engine) as obj:
        threads = [
            threading.Thread(target=increment_rounds, args=(obj, seed, ROUNDS))
            for seed in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        counts = obj.maps["counts"].set_codecs("uint", "uint")
        assert {k: v for k, v in counts.items() if v} == {key: 4 * ROUNDS for key in range(KEYS)}


# ---- killed while programs update a pinned hash map ----------------------------------------
CHURN_MAP = MapSpec("churn", MapType.HASH, 4, 8, 24, pinning=Pinning.BY_NAME)
def _churn(engine: str, seed: int, ready) -> None:
    """A forked child: insert/delete through the program until killed."""
    prog = Object(spec_for(CHURN, CHURN_MAP)).load(engine=engine).programs["p"]
    rng = random.Random(seed)
    ready.set()
    while True:
        key, op = rng.randrange(40), int(rng.random() < 0.45)
        prog.test_run(k4(key) + k4(op))


def check_consistent(m, capacity: int) -> list[bytes]:
    """Keys unique, values the churn's, and exactly ``capacity`` entries fit, then E2BIG."""
    keys = m.keys_raw()
    assert len(set(keys)) == len(keys) == len(m)
    for key in keys:
        assert m.lookup_raw(key) == (int.from_bytes(key, "little") * 3 + 1).to_bytes(8, "little")
    extra = [k4(10_000 + i) for i in range(capacity - len(keys))]
    for key in extra:
        m.update_raw(key, bytes(8), BPF_NOEXIST)
    with pytest.raises(MapError) as info:
        m.update_raw(k4(99_999), bytes(8))
    assert info.value.errno == errno.E2BIG
    for key in extra:
        m.delete_raw(key)
    return keys


@needs_fork
def test_programs_killed_mid_update_leave_a_consistent_pinned_map():
    """Children run insert/delete programs (on each engine in turn) and are SIGKILLed."""
    spec = spec_for(CHURN, CHURN_MAP)
    rng = random.Random(11)
    with Object(spec).load(engine="interpreter") as obj:
        for round_ in range(KILLS):
            engine = ENGINES[round_ % len(ENGINES)]
            ready = FORK.Event()
            child = FORK.Process(target=_churn, args=(engine, round_, ready))
            child.start()
            assert ready.wait(60)
            time.sleep(0.05 + rng.random() * 0.15)
            os.kill(child.pid, signal.SIGKILL)
            child.join(30)
            assert child.exitcode == -signal.SIGKILL
            with open_pinned("/sys/fs/bpf/churn") as reopened:
                keys = check_consistent(reopened, CHURN_MAP.max_entries)
            assert len(keys) > 0  # the child did run
        # the survivors' programs still work on the recovered map
        assert obj.programs["p"].test_run(k4(1) + k4(0)).retval in (0, -errno.E2BIG & 0xFFFFFFFF)
        check_consistent(obj.maps["churn"], CHURN_MAP.max_entries)


# ---- killed while writing a capture ------------------------------------------------------
def _write_forever(path: Path, fmt: str, ready) -> None:
    """A forked child: numbered, checksummed frames of varied sizes, flushed often."""
    with open_writer(path, format=fmt) as out:
        ready.set()
        i = 0
        while True:
            body = bytes((i * 7 + j) & 0xFF for j in range(40 + (i * 131) % 3000))
            out.write(struct.pack("<II", i, zlib.crc32(body)) + body, timestamp_ns=i * 1000)
            if i % 5 == 4:
                out.flush()
            i += 1


def read_intact(path: Path) -> tuple[int, CaptureError | None]:
    """Frames read from a killed writer's file: each intact and in order; then how it ended."""
    n = 0
    try:
        with open_capture(path) as cap:
            for frame in cap:
                index, crc = struct.unpack_from("<II", frame.data)
                assert index == n and zlib.crc32(frame.data[8:]) == crc
                assert frame.timestamp_ns == n * 1000
                n += 1
    except CaptureError as err:
        assert err.packet in (None, n + 1)  # only the tail may be cut
        return n, err
    return n, None


@needs_fork
def test_a_writer_killed_mid_capture_leaves_a_readable_file(tmp_path):
    rng = random.Random(7)
    totals = []
    for round_ in range(KILLS):
        fmt = ("pcap", "pcapng")[round_ % 2]
        path = tmp_path / f"killed{round_}.{fmt}"
        ready = FORK.Event()
        child = FORK.Process(target=_write_forever, args=(path, fmt, ready))
        child.start()
        assert ready.wait(60)
        time.sleep(0.02 + rng.random() * 0.2)
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
        frames, err = read_intact(path)
        data = path.read_bytes()
        if frames == 0 and err is not None:
            assert len(data) < 4096  # killed before the first flush reached the file
        totals.append(frames)
        # what was read is exactly what a truncation at the last complete record leaves
        if err is not None and err.offset is not None:
            assert read_intact_bytes(data[: err.offset]) == (frames, None)
    assert max(totals) > 0


def read_intact_bytes(data: bytes) -> tuple[int, CaptureError | None]:
    path = io.BytesIO(data)
    n = 0
    try:
        with open_capture(path) as cap:
            for frame in cap:
                index, _ = struct.unpack_from("<II", frame.data)
                assert index == n
                n += 1
    except CaptureError as err:
        return n, err
    return n, None
