"""Pinned map fuzzing: a pin file whose bytes were corrupted (a torn disk write, a bug, a
file copied in) opens and works, or raises InputError/MapError; never another exception,
a hang (a cycle in a hash chain or free list) or a blow-up (a count read as billions).

Seeds are real pins of every shared-buffer family (hash, LRU hash, per-CPU hash, array,
LPM trie, queue, stack, ring buffer) with a few entries; mutations hit the common header's
definition fields, the lock word (a dead holder; this process under a token it never
had is a test of its own, as taking that over waits a second; a word naming another
live process is waited on, a documented limit), each family's own area and the entries.
The mutated file is put in the state directory as a new pin of this user's (so the
ownership checks pass) and opened with ``open_pinned``; every user-space operation is
then tried. CI runs a fixed-seed, bounded
number of inputs; a longer run::

    PYBPF_FUZZ_EXAMPLES=20000 python -m pytest -q tests/test_fuzz_pins.py

Crashing inputs are kept in ``tests/fixtures/fuzz/pins/`` and replayed here.
"""

from __future__ import annotations

import itertools
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz_guard import corpus, fuzz_settings, guard
from pybpf.errors import InputError, MapError
from pybpf.maps import MapDefinition, create_map, open_pinned
from pybpf.maps.buffer import HEADER_SIZE, LOCK_OFFSET
from pybpf.maps.native import native_map_ops
from pybpf.maptypes import MapFlag, MapType
from pybpf.state import StateDirectory

ALLOWED = (InputError, MapError)
FIXTURES = Path(__file__).parent / "fixtures" / "fuzz" / "pins"
_WORDS = [0, 1, 2, 3, 4, 7, 8, 16, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
_OPS_LIMIT = 64  # entries looked at per input


def _defs() -> list[tuple[MapDefinition, list[tuple[bytes, bytes]]]]:
    def k(i: int, n: int = 4) -> bytes:
        return i.to_bytes(n, "little")

    return [
        (MapDefinition(MapType.HASH, 4, 8, 8), [(k(i), k(i * 3, 8)) for i in range(5)]),
        (MapDefinition(MapType.LRU_HASH, 4, 8, 8), [(k(i), k(i, 8)) for i in range(9)]),
        (MapDefinition(MapType.PERCPU_HASH, 4, 8, 4, ncpus=2), [(k(1), bytes(16))]),
        (MapDefinition(MapType.ARRAY, 4, 8, 4), [(k(i), k(i + 1, 8)) for i in range(4)]),
        (
            MapDefinition(MapType.LPM_TRIE, 8, 8, 8, flags=MapFlag.NO_PREALLOC),
            [(k(p) + bytes([10, 1, 2, 3]), k(p, 8)) for p in (8, 16, 24, 32)],
        ),
        (MapDefinition(MapType.QUEUE, 0, 8, 4), [(b"", k(i, 8)) for i in range(3)]),
        (MapDefinition(MapType.STACK, 0, 8, 4), [(b"", k(i, 8)) for i in range(3)]),
        (MapDefinition(MapType.RINGBUF, 0, 0, 4096), []),
    ]


def _seed_bytes() -> list[bytes]:
    """Real pin files, made once in a throwaway state directory."""
    import tempfile

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        state = StateDirectory(tmp)
        for i, (d, entries) in enumerate(_defs()):
            with create_map(d, pin=f"seed{i}", state=state) as m:
                for key, value in entries:
                    m.update_raw(key, value)
                if d.type == MapType.RINGBUF:
                    m.output(b"x" * 24)
                    m.output(b"y" * 40)
                out.append(state.pin_path(f"seed{i}").read_bytes())
    return out


SEEDS = _seed_bytes()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    out = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["definition", "lock", "family", "data", "data"]))
        if where == "lock":  # held by a process that is gone (this one's: see below)
            pid = draw(st.sampled_from([0, 0x7FFFFFFE, 0xFFFFFFFF]))
            token = pid << 32 | draw(st.sampled_from([0, 1, 0xFFFFFFFF]))
            out[LOCK_OFFSET : LOCK_OFFSET + 8] = struct.pack("=Q", token)
            continue
        if where == "definition":  # type .. ncpus, inner
            pos = draw(st.sampled_from([16, 20, 24, 28, 32, 36, 56, 60, 64, 68]))
        elif where == "family":
            pos = draw(st.integers(128, HEADER_SIZE - 4)) & ~3
        else:
            pos = draw(st.integers(HEADER_SIZE, len(out) - 4)) & ~3
        if draw(st.booleans()):
            value = draw(st.sampled_from(_WORDS))
        else:
            old = int.from_bytes(out[pos : pos + 4], "little")
            value = (old + draw(st.sampled_from([-1, 1, 8, 64]))) & 0xFFFFFFFF
        out[pos : pos + 4] = struct.pack("<I", value)
    return bytes(out)


_names = itertools.count()


def exercise(data: bytes) -> str:
    """Put ``data`` in place as a pin of ours, open it and try every user-space operation."""
    state = StateDirectory()
    name = f"fuzz{os.getpid()}-{next(_names)}"
    target = state.prepare_pin(name)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    try:
        with open_pinned(name, state=state) as m:
            d = m.definition
            keys = []
            key = None
            try:
                for _ in range(_OPS_LIMIT):  # walking the keys must end (or fail cleanly)
                    key = m.get_next_key(key)
                    if key is None:
                        break
                    keys.append(key)
                for key in keys[:_OPS_LIMIT]:
                    m.lookup_raw(key)
            except ALLOWED:  # (queues and stacks have no keys)
                pass
            len(m)
            probe = bytes(d.key_size)
            for op in (
                lambda: m.update_raw(probe, bytes(m.value_size * (m.ncpus if m.percpu else 1))),
                lambda: m.lookup_raw(probe),
                lambda: m.delete_raw(probe),
            ):
                try:
                    op()
                except ALLOWED:
                    pass
        return "opened"
    finally:
        os.unlink(target)


def _run(data: bytes) -> None:
    guard("pins", lambda: exercise(data), allowed=ALLOWED, seconds=10, max_bytes=64 << 20)


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))


@fuzz_settings(300)
@given(mutated())
def test_corrupted_pins_open_or_fail_cleanly(data: bytes) -> None:
    """300 inputs in CI; ``PYBPF_FUZZ_EXAMPLES=N`` for more."""
    _run(data)


@pytest.mark.parametrize("path", corpus("pins"), ids=lambda p: p.name)
def test_regressions(path: Path) -> None:
    _run(path.read_bytes())


NATIVE_REPLAY = """
import sys
sys.path.insert(0, sys.argv[1])
from pybpf.memory import atomics
atomics.set_backend("native")
import test_fuzz_pins as t
for path in t.corpus("pins"):
    try:
        t.exercise(path.read_bytes())
    except t.ALLOWED:
        pass
# every bucket names a slot past the end: the first (native) lookups must still find the
# seed's keys (i -> 3 * i), through the rebuilt index
from pybpf.maps import open_pinned
from pybpf.state import StateDirectory
state = StateDirectory()
target = state.prepare_pin("buckets")
target.write_bytes((t.FIXTURES / "hash-bucket-past-the-end.bin").read_bytes())
with open_pinned("buckets", state=state) as m:
    assert m._desc is not None
    for i in range(5):
        assert m.lookup_raw(i.to_bytes(4, "little")) == (3 * i).to_bytes(8, "little"), i
print(atomics.backend())
"""


@pytest.mark.skipif(native_map_ops() is None, reason="native map operations need llvmlite")
def test_regressions_on_the_native_lookup_path(tmp_path: Path) -> None:
    """The corpus again with the native hash lookup (the JIT's too), in a child process: a
    slot index past the end once made it read outside the buffer (a key the map lists
    not found, or SIGSEGV)."""
    env = {**os.environ, "PYBPF_STATE": str(tmp_path / "state")}
    proc = subprocess.run(
        [sys.executable, "-c", NATIVE_REPLAY, str(Path(__file__).parent)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == "native"


def test_a_lock_word_naming_this_process_under_a_token_it_never_had_is_taken_over() -> None:
    data = bytearray(SEEDS[0])  # the hash map
    struct.pack_into("=Q", data, LOCK_OFFSET, os.getpid() << 32)  # serial 0: never given
    assert guard("pins", lambda: exercise(bytes(data)), allowed=(), seconds=10) is None


def test_seeds_open_cleanly() -> None:
    assert len(SEEDS) == 8
    for data in SEEDS:
        assert guard("pins", lambda d=data: exercise(d), allowed=()) is None
