"""JIT map calls on ARRAYs whose values hold special fields (a ``struct bpf_spin_lock``, a
``bpf_timer``, kptrs): lookups are inlined (the value's address, whose lock word is the real
one), plain updates copy around the fields natively, ``BPF_F_LOCK`` updates take the helper;
the JIT and the interpreter give the same results and leave the same map bytes."""

from __future__ import annotations

import pytest

from pybpf.isa import assemble
from pybpf.jit import JitProgram
from pybpf.maps import create_map
from pybpf.maptypes import MapType as T
from pybpf.memory import atomics
from pybpf.runtime import default_helpers
from pybpf.runtime.maps import map_lddw_resolver
from pybpf.vm import Interpreter
from test_jit import needs_jit

pytestmark = needs_jit
LOCK, TIMER = ("bpf_spin_lock", 4, 4), ("bpf_timer", 16, 16)  # value: 40 bytes
KPTR = ("kptr", 8, 8)  # in a 24-byte per-CPU value
BPF_F_LOCK = 4

# r1 = key, r2 = a u64 filling the 40-byte value, r3 = flags: r0 = map_update_elem's
UPDATE = """
*(u32 *)(r10 - 4) = r1
*(u64 *)(r10 - 48) = r2
*(u64 *)(r10 - 40) = r2
*(u64 *)(r10 - 32) = r2
*(u64 *)(r10 - 24) = r2
*(u64 *)(r10 - 16) = r2
r4 = r3
r1 = map[fd:1] ll
r2 = r10
r2 += -4
r3 = r10
r3 += -48
call 2
exit
"""
# r1 = key: r0 = the value's u32 at 4 (the lock word) << 32 | its u32 at 0, or 1 << 63
LOOKUP = """
*(u32 *)(r10 - 4) = r1
r1 = map[fd:1] ll
r2 = r10
r2 += -4
call 1
r6 = r0
r0 = 1
r0 <<= 63
if r6 == 0 goto out
r0 = *(u32 *)(r6 + 4)
r0 <<= 32
r1 = *(u32 *)(r6 + 0)
r0 |= r1
out:
exit
"""


def counting_helpers():
    helpers = default_helpers()
    calls = {1: 0, 2: 0}
    for hid in calls:
        fn = helpers.get(hid)

        def wrapped(ctx, *regs, _fn=fn, _hid=hid):
            calls[_hid] += 1
            return _fn(ctx, *regs)

        helpers.register(hid, wrapped)
    return helpers, calls


def build(engine, source, m, helpers=None, **kw):
    common = {
        "helpers": helpers or default_helpers(),
        "lddw_resolver": map_lddw_resolver({1: m}),
        "entry_registers": (1, 2, 3, 10),
    }
    if engine == "vm":
        return Interpreter(assemble(source), **common)
    return JitProgram(assemble(source), **common, **kw)


def make(kind):
    if kind == T.ARRAY:
        return create_map(type=kind, key_size=4, value_size=40, max_entries=4,
                          special_fields=(LOCK, TIMER))  # fmt: skip
    return create_map(type=kind, key_size=4, value_size=24, max_entries=4, ncpus=2,
                      special_fields=(KPTR,))  # fmt: skip


def _words(m, key: int) -> list[int]:
    """The special fields' first u64 (u32 for the lock) of ``key``'s value, every CPU's."""
    k = key.to_bytes(4, "little")
    out = []
    for cpu in range(m.ncpus if m.percpu else 1):
        address = m.value_address(k, cpu)
        out += [atomics.load_at(address + o, min(n, 8)) for _, o, n in m.definition.special_fields]
    return out


def _mark(m, key: int, held: bool) -> None:
    """Give the special fields of ``key``'s value(s) marker bytes; the lock: ``held``."""
    k = key.to_bytes(4, "little")
    for cpu in range(m.ncpus if m.percpu else 1):
        address = m.value_address(k, cpu)
        for kind, o, n in m.definition.special_fields:
            if kind == "bpf_spin_lock":
                atomics.store_at(address + o, 4, int(held))
            else:
                for i in range(0, n, 8):
                    atomics.store_at(address + o + i, 8, 0x1122334455667788 + i)


def outcomes(engine, kind, **kw):
    """r0 of every step, the special fields after each phase and the map's bytes."""
    with make(kind) as m:
        update, lookup = build(engine, UPDATE, m, **kw), build(engine, LOOKUP, m, **kw)
        if engine == "jit" and kw.get("inline_maps", True):
            assert update.map_sites and lookup.map_sites
        cpus = (0, 1) if m.percpu else (0,)
        out = []
        for key in range(4):
            _mark(m, key, held=True)  # plain copies never wait for the lock, never write it
        for cpu in cpus:
            for step, (key, flags) in enumerate([(0, 0), (1, 2), (2, 1), (9, 0), (3, 8),
                                                 (3, 0x10), (1, 0), (0, 2)]):  # fmt: skip
                out.append(update.run((key, 0x0101010101010101 * (step + 1), flags), cpu=cpu))
                out.append(lookup.run((key,), cpu=cpu))
        out.append([_words(m, key) for key in range(4)])
        if m.spin_lock_offset >= 0:  # BPF_F_LOCK: the helper, under the (now free) lock
            for key in range(4):
                _mark(m, key, held=False)
            for key, flags in [(0, BPF_F_LOCK), (1, BPF_F_LOCK | 2), (2, BPF_F_LOCK | 1),
                               (7, BPF_F_LOCK), (3, BPF_F_LOCK | 8)]:  # fmt: skip
                out.append(update.run((key, 0xA5A5A5A5A5A5A5A5 + key, flags)))
                out.append(lookup.run((key,)))
            out.append([_words(m, key) for key in range(4)])
        memory = m.memory()
        out.append(bytes(memory))
        memory.release()
        update.close()
        lookup.close()
    return out


@pytest.mark.parametrize("kind", [T.ARRAY, T.PERCPU_ARRAY])
def test_special_field_arrays_match_the_interpreter(kind):
    expected = outcomes("vm", kind)
    assert outcomes("jit", kind) == expected
    assert outcomes("jit", kind, debug_checks=True) == expected
    assert outcomes("jit", kind, inline_maps=False) == expected
    steps = 16 if kind == T.ARRAY else 32
    results = set(expected[0:steps:2])  # updates' r0: successes and each error happened
    assert {0, -22 & (1 << 64) - 1, -7 & (1 << 64) - 1, -17 & (1 << 64) - 1} <= results
    fields = expected[steps]
    assert all(w == 1 or w == 0x1122334455667788 for words in fields for w in words)


def test_lookups_and_plain_updates_stay_native():
    helpers, calls = counting_helpers()
    with make(T.ARRAY) as m:
        update = build("jit", UPDATE, m, helpers)
        lookup = build("jit", LOOKUP, m, helpers)
        _mark(m, 1, held=True)
        assert update.run((1, 0x0202020202020202, 0)) == 0
        assert lookup.run((1,)) == 1 << 32 | 0x02020202  # the real lock word: held
        assert calls == {1: 0, 2: 0}
        assert _words(m, 1) == [1, 0x1122334455667788]
        atomics.store_at(m.value_address((1).to_bytes(4, "little")) + 4, 4, 0)
        assert update.run((1, 0x0303030303030303, BPF_F_LOCK)) == 0
        assert calls == {1: 0, 2: 1}  # BPF_F_LOCK: the helper copies under the lock
        assert lookup.run((1,)) == 0x03030303
        assert calls[1] == 0
        update.close()
        lookup.close()


def test_the_code_depends_on_the_fields():
    shapes = []
    for fields in ((), (LOCK,), (LOCK, TIMER)):
        with create_map(type=T.ARRAY, key_size=4, value_size=40, max_entries=4,
                        special_fields=fields) as m:  # fmt: skip
            prog = build("jit", UPDATE, m)
            (site,) = prog.map_sites.values()
            shapes.append(site.shape())
            prog.close()
    assert len(set(shapes)) == 3
