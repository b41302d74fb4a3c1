"""JIT native ring buffer helpers (130-134): the same r0 and the same consumed bytes as the
interpreter, without entering Python, and the Python helper whenever the native producers
cannot decide (busy lock, records of rings the program does not load, bad records)."""

from __future__ import annotations

import ctypes
import os
import random
import struct
import threading
import time
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import HelperError
from pybpf.isa import assemble
from pybpf.jit import JitProgram
from pybpf.jit import calls as jit_calls
from pybpf.jit.ringcalls import RING_TABLE
from pybpf.maps import create_map
from pybpf.maps.ringbuf import RingBuf
from pybpf.maps.ringnative import native_ring_ops
from pybpf.maptypes import MapType as T
from pybpf.memory import atomics
from pybpf.runtime import default_helpers
from pybpf.runtime.maps import map_lddw_resolver
from pybpf.vm import Interpreter
from test_jit import needs_jit

pytestmark = needs_jit
M64 = (1 << 64) - 1
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "c"
needs_native = pytest.mark.skipif(
    atomics.backend() != "native" or native_ring_ops() is None,
    reason="native ring producers need llvmlite's native atomics",
)


@pytest.fixture(autouse=True)
def _state(monkeypatch, tmp_path):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


# r1 = record size, r2 = reserve flags, r3 = 0 submit / 1 discard, r4 = output flags,
# r5 = query flags. Reserves a record and fills it with (i * 7 + size) bytes, commits it,
# outputs 16 bytes (size, query flags), queries. r0 = query << 16 | (output & 0xff) << 8
# | 1 when the reserve gave a record.
SEQUENCE = """
r6 = r1
r7 = r3
r8 = r4
r9 = r5
r1 = map[fd:1] ll
r3 = r2
r2 = r6
call 131
*(u64 *)(r10 - 40) = 0
if r0 == 0 goto output
*(u64 *)(r10 - 40) = 1
r1 = r0
r2 = 0
fill:
if r2 >= r6 goto filled
r3 = r2
r3 *= 7
r3 += r6
r4 = r1
r4 += r2
*(u8 *)(r4 + 0) = r3
r2 += 1
goto fill
filled:
r2 = 0
if r7 == 1 goto discard
call 132
goto output
discard:
call 133
output:
*(u64 *)(r10 - 32) = r6
*(u64 *)(r10 - 24) = r9
r1 = map[fd:1] ll
r2 = r10
r2 += -32
r3 = 16
r4 = r8
call 130
r0 &= 0xff
r0 <<= 8
r6 = *(u64 *)(r10 - 40)
r6 |= r0
r1 = map[fd:1] ll
r2 = r9
call 134
r0 <<= 16
r0 |= r6
exit
"""


def build(engine, source, maps, helpers=None, **kw):
    insns = assemble(source)
    common = {
        "helpers": helpers or default_helpers(),
        "lddw_resolver": map_lddw_resolver(maps),
        "entry_registers": (1, 2, 3, 4, 5, 10),
    }
    if engine == "vm":
        return Interpreter(insns, **common)
    return JitProgram(insns, **common, **kw)


def ring(size: int = 4096):
    return create_map(type=T.RINGBUF, key_size=0, value_size=0, max_entries=size)


def steps(seed: int, n: int) -> list[tuple]:
    """(r1..r5) per run, or "consume" between runs: sizes that wrap and fill the ring."""
    rng = random.Random(seed)
    out: list[tuple] = []
    for _ in range(n):
        if rng.random() < 0.06:
            out.append(("consume",))
            continue
        size = rng.choice([0, 1, 7, 8, 13, 100, 333, 1000, 2000, 4000, 4088, 4089, 1 << 31])
        flags = rng.choice([0, 0, 0, 0, 1, 2, 4, 1 << 40])
        out.append((size, flags, rng.randrange(2), rng.choice([0, 0, 1, 2, 3, 4, 8]),
                    rng.choice([0, 1, 2, 3, 4, 1 << 33])))  # fmt: skip
    return out


def play(engine: str, plan: list[tuple], **kw):
    """Every run's r0 and every record consumed, in order, on one engine (the interpreter's
    ring on RingBuf's Python code alone, the reference the native producers must match)."""
    with ring() as rb:
        if engine == "vm":
            rb._nat = False
        prog = build(engine, SEQUENCE, {1: rb}, **kw)
        results, records = [], []
        for step in plan:
            if step[0] == "consume":
                results.append(("consumed", rb.consume(records.append)))
            else:
                results.append(prog.run(step))
        results.append(("consumed", rb.consume(records.append)))
        results.append(("positions", rb.consumer_pos, rb.producer_pos))
        if engine == "jit":
            prog.close()
        return results, records


@needs_native
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_results_and_bytes_as_the_interpreter(seed):
    plan = steps(seed, 160)
    want = play("vm", plan)
    got = play("jit", plan)
    assert got == want
    results, records = want
    runs = [r for r in results if isinstance(r, int)]
    assert any(r & 1 for r in runs) and any(not r & 1 for r in runs)  # records and NULLs
    assert any((r >> 8) & 0xFF == 0xF5 for r in runs)  # -EAGAIN (0xf5): the ring was full
    assert any((r >> 8) & 0xFF == 0xEA for r in runs)  # -EINVAL (0xea): bad output flags
    assert results[-1][2] > 3 * 4096  # positions went round the ring: records wrapped


def test_debug_checks_and_inline_maps_off_keep_the_python_path():
    plan = steps(4, 60)
    want = play("vm", plan)
    assert play("jit", plan, debug_checks=True) == want
    assert play("jit", plan, inline_maps=False) == want
    with ring() as rb:
        assert build("jit", SEQUENCE, {1: rb}, debug_checks=True)._rings is None
        assert build("jit", SEQUENCE, {1: rb}, inline_maps=False)._rings is None


class Spy:
    """Counts the Python ring buffer methods and the JIT's helper dispatches."""

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        for name in ("reserve", "commit", "output", "query"):
            original = getattr(RingBuf, name)

            def wrapped(self_, *a, _original=original, _name=name, **k):
                self.calls.append(_name)
                return _original(self_, *a, **k)

            monkeypatch.setattr(RingBuf, name, wrapped)
        dispatch = jit_calls.HelperDispatcher._dispatch

        def counted(self_, ctx, helper_id, *rest):
            self.calls.append(f"dispatch {helper_id}")
            return dispatch(self_, ctx, helper_id, *rest)

        monkeypatch.setattr(jit_calls.HelperDispatcher, "_dispatch", counted)


@needs_native
def test_the_jit_no_longer_enters_python(monkeypatch):
    spy = Spy(monkeypatch)
    plan = [(24, 0, i % 2, 0, i % 4) for i in range(20)] + [(5000, 0, 0, 0, 0)]
    want = play("vm", plan)
    assert "reserve" in spy.calls and "commit" in spy.calls and "output" in spy.calls
    spy.calls.clear()
    with ring() as rb:
        prog = build("jit", SEQUENCE, {1: rb})
        assert prog._rings is not None and prog._rings.helpers == {130, 131, 132, 133, 134}
        results = [prog.run(step) for step in plan]
        records: list[bytes] = []
        results.append(("consumed", rb.consume(records.append)))
        results.append(("positions", rb.consumer_pos, rb.producer_pos))
        assert (results, records) == want
        assert spy.calls == []  # neither the dispatcher nor a RingBuf method ran
        prog.close()


@needs_native
def test_a_replaced_helper_keeps_the_python_call(monkeypatch):
    helpers = default_helpers()
    seen = []
    original = helpers.get(131)
    helpers.register(131, lambda ctx, *r: seen.append(r[:3]) or original(ctx, *r))
    with ring() as rb:
        prog = build("jit", SEQUENCE, {1: rb}, helpers=helpers)
        assert 131 not in prog._rings.helpers and 132 in prog._rings.helpers
        assert prog.run((16, 0, 0, 0, 0)) & 1
        assert seen == [(rb.handle, 16, 0)]
        assert rb.consume(lambda data: None) == 2
        prog.close()


@needs_native
def test_a_busy_lock_takes_the_python_path(monkeypatch):
    plan = [(32, 0, 0, 0, 0), (32, 0, 1, 0, 0)]
    want = play("vm", plan)
    spy = Spy(monkeypatch)
    with ring() as rb:
        prog = build("jit", SEQUENCE, {1: rb})
        holder = create_map(type=T.ARRAY, key_size=4, value_size=4, max_entries=1)
        token = holder.lock.current_token()  # another lock object of this process
        atomics.store_at(rb.lock.address, 8, token)
        timer = threading.Timer(0.05, lambda: atomics.store_at(rb.lock.address, 8, 0))
        timer.start()
        started = time.monotonic()
        first = prog.run(plan[0])  # native reserve spins, then Python waits for the holder
        assert time.monotonic() - started >= 0.04
        timer.join()
        assert spy.calls[:2] == ["dispatch 131", "reserve"]
        spy.calls.clear()
        # a dead holder: Python recovers the lock as the interpreter would
        atomics.store_at(rb.lock.address, 8, (0x7FFFFFFE << 32) | 5)
        second = prog.run(plan[1])
        assert rb.lock.recovered == 1 and spy.calls[:2] == ["dispatch 131", "reserve"]
        records: list[bytes] = []
        consumed = rb.consume(records.append)
        assert ([first, second, ("consumed", consumed),
                 ("positions", rb.consumer_pos, rb.producer_pos)], records) == want  # fmt: skip
        prog.close()
        holder.close()


# r1 = another ring buffer's handle (not known at compile time): reserve there (Python),
# submit natively: the record is in no ring of the program's table, so Python commits it
COMMIT_ELSEWHERE = """
r6 = r1
r1 = map[fd:1] ll
r2 = 0
call 134
r1 = r6
r2 = 8
r3 = 0
call 131
if r0 == 0 goto out
*(u64 *)(r0 + 0) = r6
r1 = r0
r2 = 0
call 132
r0 = 1
out:
exit
"""


@needs_native
def test_records_of_rings_the_program_does_not_load_commit_in_python(monkeypatch):
    spy = Spy(monkeypatch)
    with ring() as known, ring() as other:
        prog = build("jit", COMMIT_ELSEWHERE, {1: known})
        assert prog._rings.maps == (known,)
        assert prog.run((other.handle,)) == 1
        assert spy.calls == ["dispatch 131", "reserve", "dispatch 132", "commit"]
        got: list[bytes] = []
        assert other.consume(got.append) == 1 and got == [struct.pack("<Q", other.handle)]
        assert known.consume(got.append) == 0
        prog.close()


BAD_COMMITS = """
r6 = r1
r1 = map[fd:1] ll
r2 = 8
r3 = 0
call 131
if r0 == 0 goto out
r7 = r0
r1 = r0
r2 = 0
call 132
if r6 == 0 goto out
r1 = r7
if r6 == 1 goto again
r1 = r10
r1 += -8
again:
r2 = 0
call 133
out:
exit
"""


@pytest.mark.parametrize("mode", [1, 2])  # 1: submit twice, 2: discard a stack address
def test_a_bad_record_raises_the_interpreters_error(mode):
    errors = []
    for engine in ("vm", "jit"):
        with ring() as rb:
            prog = build(engine, BAD_COMMITS, {1: rb})
            assert prog.run((0,)) == 0
            with pytest.raises(HelperError) as info:
                prog.run((mode,))
            errors.append((type(info.value), info.value.pc, info.value.helper_id))
            assert rb.consume(lambda data: None) == 2
    assert errors[0] == errors[1] and errors[0][1:] == (17, 133)


@needs_native
def test_closed_ring_and_code_cache(tmp_path):
    plan = [(40, 0, 0, 1, 0), (3000, 0, 0, 0, 3), (3000, 0, 0, 0, 0)]
    want = play("vm", plan)
    cache = tmp_path / "cache"
    assert play("jit", plan, cache=cache) == want
    with ring() as rb:  # the same instructions and shapes: a hit, filled for this ring
        prog = build("jit", SEQUENCE, {1: rb}, cache=cache)
        assert prog.cache_hit
        results = [prog.run(step) for step in plan]
        records: list[bytes] = []
        rb.consume(records.append)
        assert (results, records) == ([r for r in want[0] if isinstance(r, int)], want[1])
        vm = build("vm", SEQUENCE, {1: rb})
        rb.close()  # the table row goes: the Python helper raises the interpreter's error
        errors = []
        for engine in (vm, prog):
            with pytest.raises(HelperError) as info:
                engine.run(plan[0])
            errors.append((info.value.pc, info.value.helper_id))
        assert errors[0] == errors[1] and errors[0][1] == 131
        prog.close()


@needs_native
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_uses_its_own_lock_token():
    with ring() as rb:
        prog = build("jit", SEQUENCE, {1: rb})
        assert prog.run((8, 0, 0, 0, 0)) & 1
        table_words = 4 + 2 * len(prog._rings.maps)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            ok = False
            try:
                ok = bool(prog.run((8, 0, 0, 0, 0)) & 1)
                address = prog._code.global_address(RING_TABLE)
                table = (ctypes.c_uint64 * table_words).from_address(address)
                ok = ok and table[5] == rb.lock.current_token() and table[5] >> 32 == os.getpid()
            finally:
                os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        got: list[bytes] = []
        assert rb.consume(got.append) == 4  # the parent's and the child's records
        prog.close()


# ---- the committed ring buffer sample ----------------------------------------------------------
def _syn(seq: int) -> bytes:
    ip = bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    tcp = struct.pack(">HHIIBBHHH", 4000, 443, seq, 0, 5 << 4, 0x02, 1024, 0, 0)
    return bytes(12) + b"\x08\x00" + ip + tcp


@needs_native
def test_events_sample_on_both_engines(monkeypatch):
    outcome = {}
    for engine in ("interpreter", "jit"):
        spy = Spy(monkeypatch) if engine == "jit" else None
        with pybpf.load(EXAMPLES / "events.o", engine=engine, pin_maps_dir=None) as obj:
            prog = obj.programs["syn_events"]
            if engine == "jit":
                assert prog.verified and prog._runner._rings is not None
            got: list[bytes] = []
            rb = pybpf.RingBuffer(obj.maps["events"], got.append)
            retvals = [prog.test_run(_syn(seq)).retval for seq in range(150)]
            rb.consume()
            lost = obj.maps["lost"][0]
            outcome[engine] = (retvals, got, lost)
            if spy is not None:
                assert not [c for c in spy.calls if c in ("reserve", "commit", "dispatch 131")]
            monkeypatch.undo()
    assert outcome["jit"] == outcome["interpreter"]
    assert outcome["jit"][2] > 0 and len(outcome["jit"][1]) > 100  # a full ring lost events


# ---- the maps layer's native producers against RingBuf's methods ------------------------------
@needs_native
def test_native_producers_match_the_python_methods():
    ops = native_ring_ops()
    rng = random.Random(11)
    with ring() as py, ring() as nat:
        py._nat = False  # RingBuf's Python code alone
        desc = nat.descriptor()
        d = ctypes.addressof(desc)
        descs = (ctypes.c_uint64 * 2)(0, d)  # a closed ring's zero word is skipped
        token = nat.lock.current_token()
        pending: list[tuple[int, int]] = []
        decided = 0
        for _ in range(300):
            op = rng.choice(["reserve", "reserve", "output", "commit", "consume", "query"])
            if op == "reserve":
                size, flags = rng.choice([0, 5, 8, 100, 1000, 4088, 5000]), rng.choice([0, 0, 1])
                a = 0 if flags else py.reserve(size)
                b = ops.reserve(d, size, flags, token)
                assert (a == 0) == (b == 0) and b != 1
                if a:
                    data = rng.randbytes(size)
                    ctypes.memmove(a, data, size)
                    ctypes.memmove(b, data, size)
                    pending.append((a, b))
            elif op == "output":
                data, flags = (
                    rng.randbytes(rng.choice([0, 3, 200, 3000, 5000])),
                    rng.choice([0, 3, 4]),
                )
                buf = ctypes.create_string_buffer(data, len(data) + 1)
                b = ops.output(d, ctypes.addressof(buf), len(data), flags, token)
                if b == 1:  # a record that never fits: Python decides (reads the data first)
                    assert len(data) + 8 > nat.size
                    b = nat.output(data, flags)
                else:
                    decided += 1
                assert py.output(data, flags) & M64 == b & M64
            elif op == "commit" and pending:
                a, b = pending.pop(rng.randrange(len(pending)))
                discard = rng.randrange(2)
                assert py.commit(a, bool(discard))
                assert ops.commit(ctypes.addressof(descs), 2, b, discard) == 0
                assert ops.commit(ctypes.addressof(descs), 2, b, discard) == 1  # not reserved
            elif op == "consume":
                got_py: list[bytes] = []
                got_nat: list[bytes] = []
                assert py.consume(got_py.append) == nat.consume(got_nat.append)
                assert got_py == got_nat
            else:
                for flags in (0, 1, 2, 3, 4, 1 << 40):
                    assert py.query(flags) & M64 == ops.query(d, flags)
        assert decided and nat.producer_pos == py.producer_pos > 4 * nat.size
        assert ops.commit(ctypes.addressof(descs), 2, ctypes.addressof(buf), 0) == 1


@needs_native
def test_ringbuf_methods_use_the_native_producers_and_agree_with_python():
    rng = random.Random(5)
    with ring() as fast, ring() as slow:
        slow._nat = False
        for _ in range(200):
            size = rng.choice([0, 9, 64, 700, 3000, 4089, 1 << 31, -1])
            if size < 0:
                assert fast.commit(12345) is slow.commit(12345) is False
                continue
            a, b = fast.reserve(size), slow.reserve(size)
            assert (a == 0) == (b == 0)
            if a:
                data = rng.randbytes(size)
                ctypes.memmove(a, data, size)
                ctypes.memmove(b, data, size)
                discard = rng.randrange(2) == 0
                assert fast.commit(a, discard) and slow.commit(b, discard)
                assert not fast.commit(a) and not slow.commit(b)  # committed already
            if rng.random() < 0.2:
                got_fast: list[bytes] = []
                got_slow: list[bytes] = []
                assert fast.consume(got_fast.append) == slow.consume(got_slow.append)
                assert got_fast == got_slow
        assert fast._nat and fast.producer_pos == slow.producer_pos > 4 * fast.size


# a Python helper (bpf_get_current_comm) writes into a record reserved natively
COMM = """
r1 = map[fd:1] ll
r2 = 16
r3 = 0
call 131
if r0 == 0 goto out
r6 = r0
r1 = r0
r2 = 16
call 16
r7 = r0
r1 = r6
r2 = 0
call 132
r0 = r7
r0 += 1
out:
exit
"""


@needs_native
def test_python_helpers_reach_a_natively_reserved_record(monkeypatch):
    outcome = []
    for engine in ("vm", "jit"):
        spy = Spy(monkeypatch)
        with ring() as rb:
            prog = build(engine, COMM, {1: rb})
            r0 = prog.run(())
            got: list[bytes] = []
            rb.consume(got.append)
            outcome.append((r0, got))
            if engine == "jit":
                assert spy.calls == ["dispatch 16"]
                prog.close()
        monkeypatch.undo()
    assert outcome[0] == outcome[1] and outcome[0][0] == 1 and outcome[0][1][0].strip(b"\0")


# r1 = sequence number, r2 = producer: one 24-byte record (i, producer, i), r0 = 1; 0 if full
PRODUCE = """
r6 = r1
r7 = r2
r1 = map[fd:1] ll
r2 = 24
r3 = 0
call 131
if r0 == 0 goto full
*(u64 *)(r0 + 0) = r6
*(u64 *)(r0 + 8) = r7
*(u64 *)(r0 + 16) = r6
r1 = r0
r2 = 0
call 132
r0 = 1
exit
full:
r0 = 0
exit
"""


@needs_native
def test_concurrent_native_and_python_producers_lose_nothing():
    n = 3000
    with create_map(type=T.RINGBUF, key_size=0, value_size=0, max_entries=1 << 14) as rb:
        progs = [build("jit", PRODUCE, {1: rb}) for _ in range(2)]

        def native(k: int) -> None:  # JIT runs release the GIL: truly parallel
            for i in range(n):
                while not progs[k].run((i, k)):
                    time.sleep(0)

        def python() -> None:  # RingBuf.output on the same lock
            for i in range(n):
                while rb.output(struct.pack("<QQQ", i, 2, i)):
                    time.sleep(0)

        got: dict[int, list[int]] = {0: [], 1: [], 2: []}

        def take(data: bytes) -> None:
            i, k, again = struct.unpack("<QQQ", data)
            assert i == again
            got[k].append(i)

        threads = [threading.Thread(target=native, args=(k,)) for k in range(2)]
        threads.append(threading.Thread(target=python))
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            rb.consume(take)
        rb.consume(take)
        assert got == {k: list(range(n)) for k in range(3)}
        for prog in progs:
            prog.close()
