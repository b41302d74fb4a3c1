"""Batch loop: the native loop that runs a program over many packets (LLVM IR, built once).

:func:`batch_module` builds the module of :data:`BATCH`::

    i64 pybpf_batch(i64* ctx, i64* desc)

compiled once per process (:func:`pybpf.jit.compile.runtime_address`) and shared by every
program: it calls the program's entry (``i64 (i64* ctx)``) through the descriptor's
``ENTRY`` field, so programs that never run a batch pay nothing for it at compile time.
``desc`` is a batch descriptor (:class:`~pybpf.jit.layout.BatchField`). For each packet
``i`` the loop computes its start, end and length, sets r1..r5 (the ``ARG`` slots) to
``ARG_VALUES[j] + value(ARG_KINDS[j])`` (:class:`~pybpf.jit.layout.PacketArg`), points
the legacy ``LD_ABS``/``LD_IND`` packet at it, refreshes the context copy from its
template and patches the fields that name the packet, then calls the program's entry
(which starts each run afresh: status, budgets, stack) and stores r0 in ``RESULTS[i]``.
Under debug checks (``Slot.BATCH_ROW``) row 0 of the region table is the current packet
alone, so a program may not reach its neighbours, and the access caches are emptied.

It returns the number of packets run: ``COUNT``, or the index of the packet whose run
left a non-zero status (the loop stops there; that packet's r0 is meaningless).
Everything it reads was checked in Python (:mod:`pybpf.jit.batch`): kinds are in range,
patches lie inside the context and have size 4 or 8.
"""

from __future__ import annotations

from pybpf.errors import NotSupportedError
from pybpf.jit.layout import PATCH_FIELDS, BatchField, PacketArg, Slot

try:  # the JIT is optional
    from llvmlite import ir
except ImportError:  # pragma: no cover - exercised only where llvmlite is missing
    ir = None  # type: ignore[assignment]

__all__ = ["BATCH", "batch_module"]

BATCH = "pybpf_batch"
_KINDS = len(PacketArg)


def _c(value: int):
    return ir.Constant(ir.IntType(64), value)


def batch_module():
    """The ``ir.Module`` holding ``pybpf_batch`` (see the module docstring)."""
    if ir is None:
        raise NotSupportedError("the JIT needs llvmlite (pip install 'pybpf[jit]')", feature="jit")
    module = ir.Module(name="pybpf_batch")
    i64, i32, i8 = ir.IntType(64), ir.IntType(32), ir.IntType(8)
    p64 = i64.as_pointer()
    fn = ir.Function(module, ir.FunctionType(i64, [p64, p64]), name=BATCH)
    fn.attributes.add("nounwind")
    ctx, desc = fn.args
    memcpy = ir.Function(
        module,
        ir.FunctionType(ir.VoidType(), [i8.as_pointer(), i8.as_pointer(), i64, ir.IntType(1)]),
        name="llvm.memcpy.p0.p0.i64",
    )
    start = fn.append_basic_block("start")
    loop = fn.append_basic_block("loop")
    copy_bb = fn.append_basic_block("ctx_copy")
    patch_head = fn.append_basic_block("patch_head")
    patch_body = fn.append_basic_block("patch_body")
    patch32 = fn.append_basic_block("patch32")
    patch64 = fn.append_basic_block("patch64")
    patch_next = fn.append_basic_block("patch_next")
    row_bb = fn.append_basic_block("row")
    run_bb = fn.append_basic_block("run")
    stopped = fn.append_basic_block("stopped")
    done = fn.append_basic_block("done")
    b = ir.IRBuilder(start)

    def field(index: int):
        return b.load(b.gep(desc, [_c(index)]))

    def slot(index: int):
        return b.gep(ctx, [_c(index)])

    def array(index: int):
        return b.inttoptr(field(index), p64)

    count = field(BatchField.COUNT)
    base = field(BatchField.BASE)
    offsets, lengths = array(BatchField.OFFSETS), array(BatchField.LENGTHS)
    results = array(BatchField.RESULTS)
    kinds = [field(BatchField.ARG_KINDS + j) for j in range(5)]
    consts = [field(BatchField.ARG_VALUES + j) for j in range(5)]
    ctx_copy = field(BatchField.CTX)
    template = field(BatchField.CTX_TEMPLATE)
    ctx_size = field(BatchField.CTX_SIZE)
    patches = array(BatchField.PATCHES)
    npatches = field(BatchField.NPATCHES)
    entry = b.inttoptr(field(BatchField.ENTRY), ir.FunctionType(i64, [p64]).as_pointer())
    row = b.icmp_unsigned("!=", b.load(slot(Slot.BATCH_ROW)), _c(0))
    values = b.alloca(i64, size=_c(_KINDS), name="values")  # indexed by PacketArg
    b.store(_c(0), b.gep(values, [_c(PacketArg.ZERO)]))
    b.store(ctx_copy, b.gep(values, [_c(PacketArg.CONTEXT)]))
    b.store(_c(1), slot(Slot.HAS_PACKET))
    b.cbranch(b.icmp_unsigned("==", count, _c(0)), done, loop)

    # ---- one packet -----------------------------------------------------------------------
    b.position_at_end(loop)
    i = b.phi(i64, name="i")
    i.add_incoming(_c(0), start)
    data = b.add(base, b.load(b.gep(offsets, [i])), name="data")
    length = b.load(b.gep(lengths, [i]), name="length")
    end = b.add(data, length, name="end")
    b.store(data, b.gep(values, [_c(PacketArg.DATA)]))
    b.store(end, b.gep(values, [_c(PacketArg.DATA_END)]))
    b.store(length, b.gep(values, [_c(PacketArg.LENGTH)]))
    for j in range(5):
        value = b.add(consts[j], b.load(b.gep(values, [kinds[j]])))
        b.store(value, slot(Slot.ARG1 + j))
    b.store(data, slot(Slot.PACKET))
    b.store(length, slot(Slot.PACKET_SIZE))
    b.store(data, slot(Slot.BATCH_DATA))
    b.store(end, slot(Slot.BATCH_END))
    b.cbranch(b.icmp_unsigned("!=", ctx_size, _c(0)), copy_bb, patch_head)

    b.position_at_end(copy_bb)  # the context starts from its template for every packet
    b.call(
        memcpy,
        [b.inttoptr(ctx_copy, i8.as_pointer()), b.inttoptr(template, i8.as_pointer()),
         ctx_size, ir.Constant(ir.IntType(1), 0)],
    )  # fmt: skip
    b.branch(patch_head)

    b.position_at_end(patch_head)
    k = b.phi(i64, name="k")
    k.add_incoming(_c(0), loop)
    k.add_incoming(_c(0), copy_bb)
    b.cbranch(b.icmp_unsigned("<", k, npatches), patch_body, row_bb)

    b.position_at_end(patch_body)
    at = b.mul(k, _c(PATCH_FIELDS))
    offset = b.load(b.gep(patches, [at]))
    kind = b.load(b.gep(patches, [b.add(at, _c(1))]))
    size = b.load(b.gep(patches, [b.add(at, _c(2))]))
    value = b.load(b.gep(values, [kind]))
    address = b.add(ctx_copy, offset)
    b.cbranch(b.icmp_unsigned("==", size, _c(4)), patch32, patch64)
    b.position_at_end(patch32)
    b.store(b.trunc(value, i32), b.inttoptr(address, i32.as_pointer()), align=1)
    b.branch(patch_next)
    b.position_at_end(patch64)
    b.store(value, b.inttoptr(address, p64), align=1)
    b.branch(patch_next)
    b.position_at_end(patch_next)
    k.add_incoming(b.add(k, _c(1)), patch_next)
    b.branch(patch_head)

    b.position_at_end(row_bb)  # debug checks: the packet alone is row 0; caches emptied
    with b.if_then(row):
        table = b.inttoptr(b.load(slot(Slot.REGIONS)), p64)
        b.store(data, b.gep(table, [_c(0)]))
        b.store(end, b.gep(table, [_c(1)]))
        b.store(_c(0), slot(Slot.RCACHE_SIZE))
        b.store(_c(0), slot(Slot.WCACHE_SIZE))
    b.branch(run_bb)

    b.position_at_end(run_bb)
    r0 = b.call(entry, [ctx])
    b.store(r0, b.gep(results, [i]))
    following = b.add(i, _c(1))
    failed = b.icmp_unsigned("!=", b.load(slot(Slot.STATUS)), _c(0))
    more = fn.append_basic_block("more")
    b.cbranch(failed, stopped, more)
    b.position_at_end(more)
    i.add_incoming(following, more)
    b.cbranch(b.icmp_unsigned("<", following, count), loop, done)

    b.position_at_end(stopped)
    b.ret(i)
    b.position_at_end(done)
    b.ret(count)
    return module
