"""JIT batch runs reused across calls: one plan (and its context copy) for many batches.

A :class:`~pybpf.jit.batch.BatchPlan` handed to ``run_batch(plan=...)`` gives what a plan
built per call gives, keeps its native context copy between batches (and maps a new one
after :meth:`~pybpf.jit.batch.BatchPlan.close`); :class:`~pybpf.jit.PacketBatch` checks its
bounds in one pass and names the first packet outside; a failing run hands back the r0 of
the packets before it.
"""

from __future__ import annotations

import struct
from array import array

import pytest

from pybpf.errors import HelperError, InputError
from pybpf.isa import assemble
from pybpf.jit import JitProgram, PacketArg, PacketBatch
from pybpf.jit.batch import BatchPlan
from pybpf.memory import Region
from test_jit import EXIT, I, needs_jit

pytestmark = needs_jit

# r1 = ctx: r0 = ctx[0] (the packet's length, patched in) + ctx[4] (a template constant);
# the run stores r0 into ctx[8] (the next packet must see the template there again)
CTX_READER = """
    r2 = *(u32 *)(r1 + 8)
    r0 = *(u32 *)(r1 + 0)
    r3 = *(u32 *)(r1 + 4)
    r0 += r3
    r0 += r2
    *(u32 *)(r1 + 8) = r0
    exit
"""


def _plan() -> BatchPlan:
    template = struct.pack("<III", 0, 1000, 0)
    return BatchPlan((PacketArg.CONTEXT,), template, {0: (PacketArg.LENGTH, 4)})


def test_a_plan_reused_across_batches_gives_what_a_fresh_plan_gives():
    insns = assemble(CTX_READER)
    rounds = [[b"a"], [b"xy" * n for n in range(1, 40)], [], [b"q" * 300] * 3]
    with JitProgram(insns) as jit, _plan() as plan:
        region = None
        for packets in rounds:
            fresh = jit.run_batch(
                packets, args=(PacketArg.CONTEXT,), context=plan.template,
                context_fields={0: (PacketArg.LENGTH, 4)},
            )  # fmt: skip
            reused = jit.run_batch(packets, plan=plan)
            assert reused.retvals == fresh.retvals == [1000 + len(p) for p in packets]
            assert reused.data_out == fresh.data_out == packets
            if region is None:
                region = plan.context_region()
            assert plan.context_region() is region and not region.closed  # kept mapped
        plan.close()
        assert region.closed
        assert jit.run_batch([b"abc"], plan=plan).retvals == [1003]  # a new copy, mapped
        assert plan.context_region() is not region
    assert plan.context_region() is not None  # close() is what unmaps it
    plan.close()
    plan.close()  # idempotent


def test_a_plan_without_context_maps_nothing():
    with JitProgram([I.mov(0, "r2"), EXIT], entry_registers=(1, 2, 10)) as jit:
        plan = BatchPlan((PacketArg.DATA, PacketArg.LENGTH))
        assert jit.run_batch([b"ab", b"c"], plan=plan).retvals == [2, 1]
        assert plan.context_region() is None


def test_a_failing_run_hands_back_the_r0_of_the_packets_before_it():
    def helper(ctx, r1, *rest):
        if r1 == 3:
            raise ValueError("boom")
        return r1 * 10

    with JitProgram([I.call(7), EXIT], helpers={7: helper}) as jit:
        plan = BatchPlan((PacketArg.LENGTH,))
        with pytest.raises(HelperError) as info:
            jit.run_batch([b"a", b"bb", b"ccc", b"dddd"], plan=plan)
        assert info.value.packet_index == 2 and info.value.retvals == [10, 20]
        assert jit.run_batch([b"a", b"bb"], plan=plan).retvals == [10, 20]  # usable


def test_packet_bounds_are_checked_in_one_pass_and_name_the_first_outside():
    with Region(64, kind="packet") as region:
        offsets = array("Q", [0, 8, 60, 16, 63])
        lengths = array("Q", [8, 8, 4, 48, 2])
        with pytest.raises(InputError) as info:
            PacketBatch(region, offsets, lengths)
        assert info.value.offset == 63  # packet 4 (63+2); packet 3 ends at 64 exactly
        lengths[4] = 1
        batch = PacketBatch(region, offsets, lengths)
        offsets[0] = 60  # the batch took a copy: changing the caller's array later is moot
        assert list(batch.offsets) == [0, 8, 60, 16, 63] and len(batch) == 5
        assert not region.closed  # a caller's region stays the caller's
        with pytest.raises(InputError):
            PacketBatch(region, [1 << 64], [0])
        assert len(PacketBatch(region, [], [])) == 0


def test_packets_back_to_back_get_their_offsets_from_their_sizes():
    packets = [b"abcdef", b"ghijklmnop", b"qrs"]
    with Region(32, kind="packet") as region:
        region.view[:19] = b"".join(packets)
        batch = PacketBatch.back_to_back(region, map(len, packets))
        assert list(batch.offsets) == [0, 6, 16] and list(batch.lengths) == [6, 10, 3]
        assert batch.packets() == packets
        seen = PacketBatch.back_to_back(region, [6, 10, 3], skip=2, limit=8)
        assert seen.packets() == [b"cdef", b"ijklmn", b"s"]  # 2 in, at most 8 - 2 bytes
        with JitProgram([I.mov(0, "r2"), EXIT], entry_registers=(1, 2, 10)) as jit:
            assert jit.run_batch(seen, args=(0, PacketArg.LENGTH)).retvals == [4, 6, 1]
        assert len(PacketBatch.back_to_back(region, [])) == 0
        for sizes, options in (([30, 3], {}), ([6, 1], {"skip": 2}), ([-1], {})):
            with pytest.raises(InputError):
                PacketBatch.back_to_back(region, sizes, **options)
    with pytest.raises(InputError):
        PacketBatch.back_to_back(region, [1])  # closed


def test_plans_sharing_one_context_region():
    insns = assemble(CTX_READER)
    fields = {0: (PacketArg.LENGTH, 4)}
    with JitProgram(insns) as jit, Region(12, kind="ctx") as shared:
        plans = [
            BatchPlan((PacketArg.CONTEXT,), struct.pack("<III", 0, base, 0), fields,
                      context_region=shared)
            for base in (100, 200)
        ]  # fmt: skip
        for _ in range(2):
            for plan, base in zip(plans, (100, 200), strict=True):
                got = jit.run_batch([b"ab", b"cde"], plan=plan).retvals
                assert got == [base + 2, base + 3] and plan.context_region() is shared
        for plan in plans:
            plan.close()
        assert not shared.closed  # the caller's
        for bad in (Region(8, kind="ctx"), Region(12, kind="ctx", writable=False)):
            with bad, pytest.raises(InputError):
                BatchPlan((PacketArg.CONTEXT,), bytes(12), context_region=bad)
        with pytest.raises(InputError):
            BatchPlan((0,), context_region=shared)  # no template
    with pytest.raises(InputError):
        jit2 = JitProgram(insns)
        try:
            jit2.run_batch([b"x"], plan=plans[0])  # the shared region is closed now
        finally:
            jit2.close()
