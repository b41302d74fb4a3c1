"""Map calls: helpers 1-3 on array and hash maps as native code, without entering Python.

When the map a ``call`` names is known at compile time (on every path to the call, r1
holds what an ``lddw`` of a map loaded, perhaps through ``mov`` and callee-saved
registers: :func:`map_registers`), :func:`lower_map_call` replaces the helper call by
native code that does what :mod:`pybpf.runtime.maps` does:

- ``ARRAY``/``PERCPU_ARRAY`` (:mod:`pybpf.maps.array`'s layout: element ``i`` at
  ``values + i * slot``, CPU ``c``'s copy ``c * round8(value_size)`` further):
  ``map_lookup_elem`` is inlined (bounds check, address arithmetic);
  ``map_update_elem`` checks the flags and the index and copies the value
  (``-EINVAL``, ``-E2BIG``, ``-EEXIST`` as Linux); ``map_delete_elem`` is ``-EINVAL``
  (``-EPERM`` for ``BPF_F_RDONLY_PROG`` maps, also for updates). Values with special
  fields (a ``struct bpf_spin_lock``, ...: ``definition.special_fields``) are the same
  sites: a lookup is still the value's address (the lock word in it is the real one), a
  plain update copies the bytes between the fields, one ``memcpy`` per gap, never the
  fields themselves (``copy_map_value``), and an update with ``BPF_F_LOCK`` on a value
  with a lock takes the helper (which copies under the lock);
- ``HASH``, ``PERCPU_HASH``, ``LRU_HASH``, ``LRU_PERCPU_HASH``: the three helpers call the
  maps layer's native operations (:mod:`pybpf.maps.native`, with the map's descriptor
  and lock token): ``map_lookup_elem`` the lookup (LRU lookups set the reference bit),
  ``map_update_elem`` the update (flags, ``-EEXIST``/``-ENOENT``/``-E2BIG``, LRU
  eviction, the running CPU's copy of a per-CPU value: all decided there) and
  ``map_delete_elem`` the delete. ``HASH_OF_MAPS`` and the other hash-based families
  (LPM trie, DEVMAP_HASH) are not sites: their helpers stay the interpreter's.

Prog arrays are sites too (``"progarray"``): their ``bpf_tail_call`` is native
(:mod:`pybpf.jit.tailcalls`).

Code compiled with debug checks inlines the same calls after checking that the key (and
an update's value) is readable, as the helper's read of them would; the program then
exposes the sites' maps in the run's address space before the run, so the values the
native code finds are in the checked regions (the Python lookup adds them the same way).

Whatever the native path cannot decide exactly takes the ordinary helper call, so results
and errors stay the interpreter's: a busy lock or a suspect index (the native operations'
``BUSY`` and ``PYTHON`` answers, given before they write anything), a CPU outside a
per-CPU map's CPUs, a closed map (its table entries are zeroed).

What the code needs at run time lives in the module's :data:`SITE_TABLE` global (one
``u64`` row per entry, :meth:`MapSite.row`), filled by the program after loading and
refreshed when a map closes or the process forks; the code itself depends only on the
maps' shapes (:meth:`MapSite.shape`, part of the code cache key).
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pybpf.isa import AluOp, Class, Instruction, Source
from pybpf.isa.opcodes import Pseudo
from pybpf.jit.layout import PERM_READ, Slot
from pybpf.jit.tailcalls import shadow_of
from pybpf.maps import registry
from pybpf.maps.array import ArrayMap, ProgArray
from pybpf.maps.definition import BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST, round8
from pybpf.maps.hash import HashMap
from pybpf.maps.native import BUSY, PYTHON, native_map_ops
from pybpf.maptypes import MapFlag, MapType
from pybpf.memory import atomics
from pybpf.runtime.loadcheck import successors

try:  # the JIT is optional
    from llvmlite import ir
except ImportError:  # pragma: no cover - exercised only where llvmlite is missing
    ir = None  # type: ignore[assignment]

__all__ = [
    "MapSite",
    "find_sites",
    "map_registers",
    "track",
    "lower_map_call",
    "SITE_TABLE",
    "MAP_HELPERS",
]

SITE_TABLE = "pybpf_maps"
LOOKUP, UPDATE, DELETE = 1, 2, 3
MAP_HELPERS = (LOOKUP, UPDATE, DELETE)
_ARRAYS = (MapType.ARRAY, MapType.PERCPU_ARRAY)
_HASHES = (MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH)
_M64 = (1 << 64) - 1


@dataclass
class MapSite:
    """One ``lddw`` of a map whose calls are lowered natively; ``index``: its first row in
    :data:`SITE_TABLE` (array: values base; hash: descriptor, token, then the lookup,
    update and delete functions; prog array: see :mod:`pybpf.jit.tailcalls`)."""

    pc: int
    map: Any
    kind: str  # "array", "hash" or "progarray" (bpf_tail_call: pybpf.jit.tailcalls)
    index: int = 0
    _descriptor: Any = None
    tail_key: int = 0  # progarray: the calling program's tailcalls.tail_key

    @property
    def rows(self) -> int:
        """Rows of :data:`SITE_TABLE` this site uses."""
        return {"array": 1, "hash": 5}.get(self.kind, 3)

    @property
    def stride(self) -> int:
        """Bytes from one slot of an array's values to the next."""
        return round8(self.map.value_size) * (self.map.ncpus if self.map.percpu else 1)

    def shape(self) -> tuple:
        """What the generated code depends on (for the code cache key)."""
        m = self.map
        return (self.pc, self.kind, int(m.type), m.key_size, m.value_size, m.max_entries,
                m.ncpus, bool(m.flags & MapFlag.RDONLY_PROG), self.index,
                m.spin_lock_offset, m.definition.special_spans)  # fmt: skip

    def row(self) -> list[int]:
        """This site's table rows now (zeros for a closed map: the code then calls Python)."""
        m = self.map
        if m.closed:
            return [0] * self.rows
        if self.kind == "array":
            return [m.slot_addresses(0)[1]]
        if self.kind == "progarray":
            return [m.slot_addresses(0)[1], ctypes.addressof(shadow_of(m)), self.tail_key]
        if self._descriptor is None:
            self._descriptor = m.descriptor()  # kept alive with the site
        ops = native_map_ops()
        if ops is None:  # (sites are hash sites only with native operations)
            return [0] * self.rows
        address = ctypes.addressof(self._descriptor)
        return [address, m.lock.current_token(), ops.hash_lookup_address,
                ops.hash_update_address, ops.hash_delete_address]  # fmt: skip


def _kind(m: Any) -> str | None:
    if type(m) is ArrayMap and m.type in _ARRAYS:  # (special fields included)
        return "array"
    if (
        type(m) is HashMap
        and m.type in _HASHES
        and native_map_ops() is not None
        and atomics.backend() == "native"
    ):
        return "hash"
    return None


def find_sites(
    table: tuple[Instruction | None, ...],
    lddw_values: Mapping[int, int],
    *,
    maps: bool = True,
    tail_calls: bool = True,
) -> dict[int, MapSite]:
    """The ``lddw`` pcs that load a live array or hash map (with ``maps``) or a prog array
    (with ``tail_calls``), as sites (table rows assigned)."""
    sites: dict[int, MapSite] = {}
    index = 0
    for pc, value in sorted(lddw_values.items()):
        insn = table[pc]
        if insn is None or insn.src not in (Pseudo.MAP_FD, Pseudo.MAP_IDX):
            continue
        m = registry.by_handle(value)
        if m is None or m.closed:
            continue
        if type(m) is ProgArray:
            kind = "progarray" if tail_calls else None
        else:
            kind = _kind(m) if maps else None
        if kind is None:
            continue
        site = sites[pc] = MapSite(pc, m, kind, index)
        index += site.rows
    return sites


# ---- which registers hold which map ------------------------------------------------------------
Known = dict[int, MapSite]


def track(regs: Known, insn: Instruction, pc: int, sites: Mapping[int, MapSite]) -> None:
    """Update ``regs`` (register -> the map site it surely holds) for ``insn`` at ``pc``."""
    if insn.is_lddw:
        site = sites.get(pc)
        if site is not None:
            regs[insn.dst] = site
        else:
            regs.pop(insn.dst, None)
    elif insn.is_call or insn.is_callx or insn.is_legacy_packet_load:
        for reg in range(6):  # r0 is the result, r1-r5 are clobbered
            regs.pop(reg, None)
    elif insn.cls == Class.ALU64 and insn.alu_op == AluOp.MOV and insn.source == Source.X:
        site = regs.get(insn.src) if not insn.movsx_bits else None
        if site is not None:
            regs[insn.dst] = site
        else:
            regs.pop(insn.dst, None)
    elif insn.cls in (Class.ALU, Class.ALU64, Class.LDX) or insn.is_atomic:
        for reg in (insn.dst, insn.src, 0):  # whatever it may write
            regs.pop(reg, None)


def map_registers(
    blocks: Iterable[Any], table: tuple[Instruction | None, ...], sites: Mapping[int, MapSite]
) -> dict[int, Known]:
    """What each block (by start pc) knows at entry: registers that hold the same map on
    every path into it (a forward must-analysis over one function's blocks)."""
    blocks = list(blocks)
    if not sites or not blocks:
        return {}
    entry_known: dict[int, Known] = {blocks[0].start: {}}
    changed = True
    while changed:
        changed = False
        for block in blocks:
            if block.start not in entry_known:
                continue
            regs = dict(entry_known[block.start])
            for pc in block.pcs:
                insn = table[pc]
                assert insn is not None
                track(regs, insn, pc, sites)
            last = table[block.last]
            assert last is not None
            for succ in successors(last, block.last):
                old = entry_known.get(succ)
                new = dict(regs) if old is None else {
                    r: s for r, s in old.items() if regs.get(r) is s
                }  # fmt: skip
                if new != old:
                    entry_known[succ] = new
                    changed = True
    return entry_known


# ---- lowering ----------------------------------------------------------------------------------
def _c(value: int):
    value &= _M64
    return ir.Constant(ir.IntType(64), value - (1 << 64) if value >> 63 else value)


def _errno(code: int):
    return _c(-code)


def _gaps(size: int, spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(offset, size)`` of the bytes of a ``size``-byte value outside ``spans`` (its
    special fields, by offset): what a plain copy copies
    (:func:`pybpf.maps.definition.copy_into`)."""
    out, start = [], 0
    for offset, n in spans:
        if offset > start:
            out.append((start, offset - start))
        start = max(start, offset + n)
    if start < size:
        out.append((start, size - start))
    return out


def lower_map_call(fl: Any, helper: int, site: MapSite, pc: int) -> None:
    """Emit helper ``helper`` (1-3) on ``site``'s map at ``pc`` into the function being
    lowered (``fl``: a :class:`pybpf.jit.lower._FunctionLowering`); sets r0."""
    m = site.map
    rdonly = bool(m.flags & MapFlag.RDONLY_PROG)
    if helper != LOOKUP and rdonly:
        fl.set(0, _errno(errno.EPERM))
        return
    if site.kind == "array" and helper == DELETE:
        fl.set(0, _errno(errno.EINVAL))
        return
    if site.kind == "progarray":  # the verifier refuses map helpers on prog arrays
        fl.helper_call(_c(helper), pc)
        return
    _Emitter(fl, helper, site, pc).emit()


class _Emitter:
    """The fast path of one map call, a slow path through the helper, and the merge."""

    def __init__(self, fl: Any, helper: int, site: MapSite, pc: int) -> None:
        self.fl, self.helper, self.site, self.pc = fl, helper, site, pc
        self.b = fl.b
        self.i64 = ir.IntType(64)
        self.args = fl.call_args()  # r1..r5 loaded here: both paths may use them
        self.slow = fl.fn.append_basic_block(f"map{pc}.slow")
        self.merge = fl.fn.append_basic_block(f"map{pc}.done")
        self.results: list[tuple[Any, Any]] = []

    def row(self, k: int):
        i32 = ir.IntType(32)
        where = [ir.Constant(i32, 0), ir.Constant(i32, self.site.index + k)]
        return self.b.load(self.b.gep(self.fl.mod.site_table, where))

    def slow_unless(self, ok) -> None:
        """Continue in a new block when ``ok``; otherwise take the helper call."""
        cont = self.fl.fn.append_basic_block(f"map{self.pc}.fast")
        self.b.cbranch(ok, cont, self.slow)
        self.b.position_at_end(cont)

    def done(self, value) -> None:
        self.results.append((value, self.b.block))
        self.b.branch(self.merge)

    def cpu_offset(self):
        """``cpu * stride`` for per-CPU maps (CPUs outside the map take the slow path)."""
        m = self.site.map
        if not m.percpu:
            return None
        cpu = self.fl.load_slot(Slot.CPU)
        self.slow_unless(self.b.icmp_unsigned("<", cpu, _c(m.ncpus)))
        return self.b.mul(cpu, _c(round8(m.value_size)))

    def emit(self) -> None:
        b = self.b
        fl, m = self.fl, self.site.map
        if fl.mod.debug:  # checked code: the key (and an update's value) must be readable
            fl.access(self.args[1], m.key_size, PERM_READ, self.pc, 2, 0)
            if self.helper == UPDATE:
                fl.access(self.args[2], m.value_size, PERM_READ, self.pc, 3, 0)
        if self.site.kind == "array":
            self.array()
        elif self.helper == LOOKUP:
            self.hash_lookup()
        elif self.helper == UPDATE:
            self.hash_update()
        else:
            self.hash_delete()
        b.position_at_end(self.slow)  # the interpreter's path, for everything else
        call = b.call(
            self.fl.dispatcher(),
            [self.fl.ctx, _c(self.helper), _c(self.pc), self.fl.depth] + self.args,
        )
        failed = b.icmp_unsigned("!=", self.fl.load_slot(Slot.STATUS), _c(0))
        ok = self.fl.fn.append_basic_block(f"map{self.pc}.called")
        b.cbranch(failed, self.fl.unwind, ok)
        b.position_at_end(ok)
        self.done(call)
        b.position_at_end(self.merge)
        r0 = b.phi(self.i64)
        for value, block in self.results:
            r0.add_incoming(value, block)
        self.fl.set(0, r0)

    def array(self) -> None:
        b, m = self.b, self.site.map
        base = self.row(0)
        self.slow_unless(b.icmp_unsigned("!=", base, _c(0)))  # 0: the map is closed
        offset = self.cpu_offset()
        key = b.inttoptr(self.args[1], ir.IntType(32).as_pointer())
        index = b.zext(b.load(key, align=1), self.i64)
        inside = b.icmp_unsigned("<", index, _c(m.max_entries))
        address = b.add(base, b.mul(index, _c(round8(m.value_size) * m.ncpus)))
        if offset is not None:
            address = b.add(address, offset)
        if self.helper == LOOKUP:
            self.done(b.select(inside, address, _c(0)))
            return
        flags = self.args[3]  # map_update_elem(map, key, value, flags)
        if m.spin_lock_offset >= 0:  # BPF_F_LOCK: the helper copies under the value's lock
            self.slow_unless(b.icmp_unsigned("==", b.and_(flags, _c(BPF_F_LOCK)), _c(0)))
        bad_flags = b.icmp_unsigned(">", flags, _c(BPF_EXIST))  # BPF_F_LOCK included
        result = b.select(
            bad_flags,
            _errno(errno.EINVAL),
            b.select(
                inside,
                b.select(b.icmp_unsigned("==", flags, _c(BPF_NOEXIST)), _errno(errno.EEXIST),
                         _c(0)),
                _errno(errno.E2BIG),
            ),
        )  # fmt: skip
        store = self.fl.fn.append_basic_block(f"map{self.pc}.store")
        skip = self.fl.fn.append_basic_block(f"map{self.pc}.nostore")
        b.cbranch(b.icmp_unsigned("==", result, _c(0)), store, skip)
        b.position_at_end(store)
        i8p = ir.IntType(8).as_pointer()
        for start, size in _gaps(m.value_size, m.definition.special_spans):
            b.call(
                self.fl.mod.memcpy,
                [b.inttoptr(b.add(address, _c(start)), i8p),
                 b.inttoptr(b.add(self.args[2], _c(start)), i8p), _c(size),
                 ir.Constant(ir.IntType(1), 0)],
            )  # fmt: skip
        self.done(_c(0))
        b.position_at_end(skip)
        self.done(result)

    def hash_lookup(self) -> None:
        b, m = self.b, self.site.map
        desc = self.row(0)
        self.slow_unless(b.icmp_unsigned("!=", desc, _c(0)))
        offset = self.cpu_offset()
        i64 = self.i64
        fn_type = ir.FunctionType(i64, [i64] * 6)
        lookup = b.inttoptr(self.row(2), fn_type.as_pointer())
        mark = _c(1 if m.type in (MapType.LRU_HASH, MapType.LRU_PERCPU_HASH) else 0)
        r = b.call(lookup, [desc, self.args[1], self.row(1), mark, _c(0), _c(0)])
        # r: 0 missing, 1 busy lock, 2 suspect chain (Python waits or rebuilds), else the
        # value's address (CPU 0's copy)
        busy_or_suspect = b.icmp_unsigned("<", b.sub(r, _c(1)), _c(2))
        self.slow_unless(b.not_(busy_or_suspect))
        value = r if offset is None else b.add(r, offset)
        self.done(b.select(b.icmp_unsigned("==", r, _c(0)), _c(0), value))

    def hash_call(self, row: int, args: list) -> None:
        """Call the native update (``row`` 3) or delete (4) on the descriptor; r0 is its
        result unless it answers 1 (busy lock) or 2 (take the Python path)."""
        b, i64 = self.b, self.i64
        fn_type = ir.FunctionType(i64, [i64] * len(args))
        fn = b.inttoptr(self.row(row), fn_type.as_pointer())
        r = b.call(fn, args)
        python = b.icmp_unsigned("<", b.sub(r, _c(BUSY)), _c(PYTHON))  # BUSY or PYTHON
        self.slow_unless(b.not_(python))
        self.done(r)

    def hash_update(self) -> None:
        b, m = self.b, self.site.map
        desc = self.row(0)
        self.slow_unless(b.icmp_unsigned("!=", desc, _c(0)))
        cpu = _c(0)
        if m.percpu:  # CPUs outside the map: the helper's error
            cpu = self.fl.load_slot(Slot.CPU)
            self.slow_unless(b.icmp_unsigned("<", cpu, _c(m.ncpus)))
        # map_update_elem(map, key, value, flags): the native update checks the flags
        self.hash_call(3, [desc, self.args[1], self.args[2], self.args[3], self.row(1), cpu])

    def hash_delete(self) -> None:
        b = self.b
        desc = self.row(0)
        self.slow_unless(b.icmp_unsigned("!=", desc, _c(0)))
        self.hash_call(4, [desc, self.args[1], self.row(1)])
