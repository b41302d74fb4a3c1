"""Ring calls: ring buffer helpers 130-134 as calls of native producers, without entering Python.

In code compiled without debug checks (verified programs: what the loader compiles for
them), :func:`lower_ring_call` replaces ``bpf_ringbuf_output`` (130),
``bpf_ringbuf_reserve`` (131), ``bpf_ringbuf_submit`` (132), ``bpf_ringbuf_discard``
(133) and ``bpf_ringbuf_query`` (134) by calls of the maps layer's native producers
(:mod:`pybpf.maps.ringnative`), which do what :class:`pybpf.maps.ringbuf.RingBuf` does on
the same lock and words:

- output, reserve and query take the map in r1: native when the ring buffer is known at
  compile time (on every path to the call r1 holds what an ``lddw`` of a RINGBUF map
  loaded: :func:`pybpf.jit.mapcalls.map_registers` over this module's :class:`RingSite`
  table), else the Python helper;
- submit and discard take only the record: the native commit compares its address with
  the data areas of the ring buffers this program loads (as
  :func:`pybpf.maps.ringbuf.ringbuf_of_record` does with every live one; a header's
  ``pg_off`` is never trusted), and an address none of them holds takes the Python helper
  (which finds other rings, or raises the interpreter's error).

Whatever the native code cannot decide exactly (a busy lock, a record that is not a
reserved one, a closed map, ... :data:`pybpf.maps.ringnative.PYTHON_PATH`) takes the
ordinary helper call, so results and errors stay the interpreter's. Only helper ids the
program's registry maps to the runtime's own functions (:mod:`pybpf.runtime.maps`) are
lowered; a registry that replaces them (tests, tracing) keeps the Python call, and so does
code compiled with debug checks (a reserved record would have to become a checked region
of the run: the Python helper adds the ring's data area to the run's address space), and
any process whose atomics are not native (the lock would not exclude Python's holders),
and ``JitProgram(inline_maps=False)``. The program's ring buffers join the run's address
space before any Python helper runs (the dispatcher's ``expose``, as the Python reserve
adds them), so a helper may write into a record reserved natively.

What the code needs at run time lives in the module's :data:`RING_TABLE` global (the four
native entry points, then one descriptor address per ring buffer, then one lock token
per ring buffer: :meth:`RingCalls.rows`), filled by the program after loading and refreshed
when a map closes or the process forks, so cached code does not depend on addresses; the
code depends only on :meth:`RingCalls.shape` (part of the code cache key).
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pybpf.errors import InternalError
from pybpf.isa import Instruction
from pybpf.isa.opcodes import Pseudo
from pybpf.jit.layout import Slot
from pybpf.maps import registry
from pybpf.maps.ringbuf import RingBuf
from pybpf.maps.ringnative import PYTHON_PATH, native_ring_ops
from pybpf.maptypes import MapType
from pybpf.memory import atomics

try:  # the JIT is optional
    from llvmlite import ir
except ImportError:  # pragma: no cover - exercised only where llvmlite is missing
    ir = None  # type: ignore[assignment]

__all__ = [
    "RING_TABLE",
    "RING_HELPERS",
    "RingSite",
    "RingCalls",
    "ring_helper_ids",
    "plan_ring_calls",
    "declare_ring_table",
    "lower_ring_call",
]

RING_TABLE = "pybpf_rings"
OUTPUT, RESERVE, SUBMIT, DISCARD, QUERY = 130, 131, 132, 133, 134
RING_HELPERS = (OUTPUT, RESERVE, SUBMIT, DISCARD, QUERY)
_ENTRIES = 4  # rows 0-3: reserve, output, commit, query entry points
_M64 = (1 << 64) - 1


@dataclass
class RingSite:
    """One ``lddw`` of a ring buffer; ``index``: the ring's number in the program (its
    descriptor is row ``4 + index`` of :data:`RING_TABLE`)."""

    pc: int
    map: Any
    index: int


@dataclass
class RingCalls:
    """The ring buffers one program reaches natively and the helper ids it lowers."""

    sites: dict[int, RingSite]
    maps: tuple
    helpers: frozenset[int]
    _descriptors: dict[int, Any] = field(default_factory=dict)

    def shape(self) -> tuple:
        """What the generated code depends on (for the code cache key)."""
        sites = tuple((s.pc, s.index) for s in self.sites.values())
        return (sites, len(self.maps), tuple(sorted(self.helpers)))

    def rows(self) -> list[int]:
        """:data:`RING_TABLE` now: entry points, descriptors, tokens (zeros for a closed
        map: the code then calls Python)."""
        ops = native_ring_ops()
        assert ops is not None
        descs, tokens = [], []
        for i, m in enumerate(self.maps):
            if m.closed:
                descs.append(0)
                tokens.append(0)
                continue
            desc = self._descriptors.get(i)
            if desc is None:
                desc = self._descriptors[i] = m.descriptor()  # kept alive with the plan
            descs.append(ctypes.addressof(desc))
            tokens.append(m.lock.current_token())
        entries = [ops.reserve_address, ops.output_address, ops.commit_address, ops.query_address]
        return entries + descs + tokens

    def fill(self, address: int) -> None:
        """Write :meth:`rows` into the table global at ``address`` (code without the
        table, such as a stale cache entry, is refused: nothing is written at 0)."""
        if not address:
            raise InternalError(f"the compiled code has no {RING_TABLE} table")
        rows = self.rows()
        (ctypes.c_uint64 * len(rows)).from_address(address)[:] = rows


def ring_helper_ids(helpers: Any) -> frozenset[int]:
    """The ring buffer helper ids ``helpers`` (a registry) maps to the runtime's own."""
    from pybpf.runtime import maps as runtime_maps

    own = {
        OUTPUT: runtime_maps.ringbuf_output,
        RESERVE: runtime_maps.ringbuf_reserve,
        SUBMIT: runtime_maps.ringbuf_submit,
        DISCARD: runtime_maps.ringbuf_discard,
        QUERY: runtime_maps.ringbuf_query,
    }
    return frozenset(i for i, fn in own.items() if helpers.get(i) is fn)


def plan_ring_calls(
    table: tuple[Instruction | None, ...],
    lddw_values: Mapping[int, int],
    helpers: Any,
    *,
    debug_checks: bool,
) -> RingCalls | None:
    """The ring calls of a program (``None`` when nothing is lowered: debug checks, no
    native atomics or producers, no ``lddw`` of a live RINGBUF map, or no helper id the
    registry leaves to the runtime)."""
    if debug_checks or atomics.backend() != "native":
        return None
    ids = ring_helper_ids(helpers)
    if not ids:
        return None
    sites: dict[int, RingSite] = {}
    maps: list = []
    for pc, value in sorted(lddw_values.items()):
        insn = table[pc]
        if insn is None or insn.src not in (Pseudo.MAP_FD, Pseudo.MAP_IDX):
            continue
        m = registry.by_handle(value)
        if type(m) is not RingBuf or m.closed or m.type != MapType.RINGBUF:
            continue
        index = next((i for i, known in enumerate(maps) if known is m), len(maps))
        if index == len(maps):
            maps.append(m)
        sites[pc] = RingSite(pc, m, index)
    if not sites or native_ring_ops() is None:
        return None
    return RingCalls(sites, tuple(maps), ids)


def declare_ring_table(module: Any, rings: RingCalls):
    """The zero-initialised :data:`RING_TABLE` global of ``module``."""
    i64 = ir.IntType(64)
    table_type = ir.ArrayType(i64, _ENTRIES + 2 * len(rings.maps))
    table = ir.GlobalVariable(module, table_type, name=RING_TABLE)
    table.initializer = ir.Constant(table_type, None)
    return table


def _c(value: int):
    value &= _M64
    return ir.Constant(ir.IntType(64), value - (1 << 64) if value >> 63 else value)


def lower_ring_call(fl: Any, helper: int, pc: int, site: RingSite | None) -> None:
    """Emit helper ``helper`` (one of the plan's ids) at ``pc`` into the function being
    lowered (``fl``: a :class:`pybpf.jit.lower._FunctionLowering`); ``site``: the ring
    buffer r1 surely holds (output, reserve, query), else ``None``. Sets r0."""
    rings: RingCalls = fl.mod.rings
    b = fl.b
    i64, i32 = ir.IntType(64), ir.IntType(32)
    commit = helper in (SUBMIT, DISCARD)
    if not commit and site is None:
        fl.helper_call(_c(helper), pc)
        return
    args = fl.call_args()  # r1..r5 loaded here: both paths use them
    slow = fl.fn.append_basic_block(f"ring{pc}.slow")
    merge = fl.fn.append_basic_block(f"ring{pc}.done")
    results = []

    def row(k: int):
        return b.load(b.gep(fl.mod.ring_table, [ir.Constant(i32, 0), ir.Constant(i32, k)]))

    def native(entry: int, values: list):
        fn_type = ir.FunctionType(i64, [i64] * len(values))
        return b.call(b.inttoptr(row(entry), fn_type.as_pointer()), values)

    def fast_unless(python) -> None:
        cont = fl.fn.append_basic_block(f"ring{pc}.fast")
        b.cbranch(python, slow, cont)
        b.position_at_end(cont)

    if commit:
        first = b.gep(fl.mod.ring_table, [ir.Constant(i32, 0), ir.Constant(i32, _ENTRIES)])
        descs = b.ptrtoint(first, i64)
        discard = _c(1 if helper == DISCARD else 0)
        r = native(2, [descs, _c(len(rings.maps)), args[0], discard])
        fast_unless(b.icmp_unsigned("==", r, _c(PYTHON_PATH)))
    else:
        desc = row(_ENTRIES + site.index)
        fast_unless(b.icmp_unsigned("==", desc, _c(0)))  # 0: the map is closed
        token = row(_ENTRIES + len(rings.maps) + site.index)
        if helper == RESERVE:  # (map, size, flags)
            r = native(0, [desc, args[1], args[2], token])
        elif helper == OUTPUT:  # (map, data, size, flags)
            r = native(1, [desc, args[1], args[2], args[3], token])
        else:  # QUERY (map, flags): always decided natively
            r = native(3, [desc, args[1]])
        if helper != QUERY:
            fast_unless(b.icmp_unsigned("==", r, _c(PYTHON_PATH)))
    results.append((r, b.block))
    b.branch(merge)
    b.position_at_end(slow)  # the interpreter's path, for everything else
    call = b.call(fl.dispatcher(), [fl.ctx, _c(helper), _c(pc), fl.depth] + args)
    failed = b.icmp_unsigned("!=", fl.load_slot(Slot.STATUS), _c(0))
    ok = fl.fn.append_basic_block(f"ring{pc}.called")
    b.cbranch(failed, fl.unwind, ok)
    b.position_at_end(ok)
    results.append((call, b.block))
    b.branch(merge)
    b.position_at_end(merge)
    r0 = b.phi(i64)
    for value, block in results:
        r0.add_incoming(value, block)
    fl.set(0, r0)
