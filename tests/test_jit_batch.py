"""JIT batch runs: many packets, one native call, the same results as one interpreter run each.

The reference for every packet is a separate :class:`~pybpf.vm.Interpreter` run on a copy
of that packet alone: same r0, same packet bytes afterwards, same error (type, pc, size,
access) for the same packet.
"""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

import pytest

from pybpf.errors import HelperError, InputError, MemoryAccessError, PybpfError
from pybpf.isa import AluOp, assemble
from pybpf.jit import JitProgram, PacketArg, PacketBatch
from pybpf.memory import AddressSpace, Region
from pybpf.vm import Interpreter
from test_jit import EXIT, I, needs_jit

pytestmark = needs_jit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import jit as jit_bench  # noqa: E402 - benchmarks/jit.py: its batch program and figure

DROP_EMPTY_UDP = jit_bench.DROP_EMPTY_UDP

# r1 = data, r2 = data_end: sums the bytes and adds 1 to each (writes the packet).
SUM_AND_BUMP = """
    r0 = 0
    r3 = r1
loop:
    r4 = r3
    r4 += 1
    if r4 > r2 goto out
    r5 = *(u8 *)(r3 + 0)
    r0 += r5
    r5 += 1
    *(u8 *)(r3 + 0) = r5
    r3 = r4
    goto loop
out:
    exit
"""
END_ARGS = (PacketArg.DATA, PacketArg.DATA_END)


def udp_packet(payload: bytes, *, ihl: int = 5, proto: int = 17, ethertype: int = 0x800) -> bytes:
    eth = bytes(12) + struct.pack("!H", ethertype)
    ip = bytes([0x40 | ihl]) + bytes(8) + bytes([proto]) + bytes(10) + bytes(4 * (ihl - 5))
    udp = struct.pack("!HHHH", 1, 2, 8 + len(payload), 0)
    return eth + ip + udp + payload


def random_packets(rng: random.Random, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.4:
            out.append(udp_packet(b"" if rng.random() < 0.5 else bytes(rng.randrange(1, 30))))
        elif kind < 0.6:
            out.append(udp_packet(b"", ihl=rng.choice([5, 6, 7]), proto=rng.choice([6, 17])))
        elif kind < 0.8:
            out.append(udp_packet(b"x")[: rng.randrange(0, 44)])  # truncated
        else:
            out.append(rng.randbytes(rng.randrange(0, 80)))
    return out


def interpreter_runs(insns, packets, args_of, **kw):
    """One interpreter run per packet (a region of its own): [(r0 or error facts, data)]."""
    vm = Interpreter(insns, entry_registers=(1, 2, 10), **kw)
    out = []
    for packet in packets:
        with Region.from_bytes(packet or b"\0", kind="packet") as region:
            try:
                r0 = vm.run(args_of(region.address, len(packet)), memory=AddressSpace([region]))
            except PybpfError as exc:
                r0 = facts(exc)
            out.append((r0, bytes(region.view[: len(packet)])))
    return out


def facts(exc: PybpfError) -> tuple:
    return (type(exc).__name__, exc.pc, getattr(exc, "size", None), getattr(exc, "access", None))


@pytest.mark.parametrize("debug_checks", [False, True])
def test_batch_matches_one_interpreter_run_per_packet(debug_checks):
    packets = random_packets(random.Random(6), 300)
    for source in (DROP_EMPTY_UDP, SUM_AND_BUMP):
        insns = assemble(source)
        expected = interpreter_runs(insns, packets, lambda a, n: (a, a + n))
        with JitProgram(insns, entry_registers=(1, 2, 10), debug_checks=debug_checks) as jit:
            result = jit.run_batch(packets, args=END_ARGS)
        assert list(zip(result.retvals, result.data_out, strict=True)) == expected
        assert result.ns_per_packet > 0
        if source == DROP_EMPTY_UDP:  # the generator makes both verdicts
            assert 0 < result.retvals.count(1) < result.retvals.count(2)


def test_batch_over_one_buffer_with_offsets_writes_in_place():
    insns = assemble(SUM_AND_BUMP)
    with Region.from_bytes(bytes(range(32)), kind="packet") as region, JitProgram(
        insns, entry_registers=(1, 2, 10)
    ) as jit:
        batch = PacketBatch(region, offsets=[0, 4, 4, 30], lengths=[4, 0, 2, 2])
        result = jit.run_batch(batch, args=END_ARGS)
        # packets 1 and 2 overlap packet 0's neighbour: packet 2 sees bytes 4, 5
        assert result.retvals == [0 + 1 + 2 + 3, 0, 4 + 5, 30 + 31]
        assert result.data_out is None
        assert batch.packets() == [bytes([1, 2, 3, 4]), b"", bytes([5, 6]), bytes([31, 32])]
        assert region.read(6, 2) == bytes([6, 7])  # untouched between packets
        assert jit.run_batch(batch, args=END_ARGS).retvals[0] == 1 + 2 + 3 + 4  # again
        batch.close()
        assert not region.closed  # the caller's region stays the caller's


def test_arguments_lengths_and_constants():
    insns = [I.mov(0, "r1"), I.add(0, "r2"), I.add(0, "r3"), I.add(0, "r4"), I.add(0, "r5"),
             EXIT]  # fmt: skip
    with Region(64, kind="packet") as region, JitProgram(
        insns, entry_registers=(1, 2, 3, 4, 5, 10)
    ) as jit:
        batch = PacketBatch(region, offsets=[0, 8, 16], lengths=[3, 0, 40])
        lengths = jit.run_batch(batch, args=(PacketArg.LENGTH, 7, (PacketArg.LENGTH, 100)))
        assert lengths.retvals == [n + 7 + n + 100 for n in (3, 0, 40)]
        ends = jit.run_batch(batch, args=(PacketArg.DATA_END, (PacketArg.DATA, -1), 0, 0, 5))
        base = region.address
        assert ends.retvals == [(base + o + n) + (base + o - 1) + 5
                                for o, n in ((0, 3), (8, 0), (16, 40))]  # fmt: skip


def test_context_template_is_fresh_for_each_packet_and_names_the_packet():
    # ctx: u64 data, u64 data_end, u32 len, u32 counter. The program returns
    # data_end - data + 1000 * counter and bumps the counter (which must not carry over).
    insns = [I.ldx(8, 2, 1, 0), I.ldx(8, 3, 1, 8), I.ldx(4, 4, 1, 16), I.ldx(4, 5, 1, 20),
             I.mov(0, "r3"), I.alu(AluOp.SUB, 0, "r2"), I.add(5, 1), I.stx(4, 1, 20, 5),
             I.mov(6, "r5"), I.alu(AluOp.MUL, 6, 1000), I.add(0, "r6"),
             I.alu(AluOp.SUB, 0, "r4"), I.add(0, "r4"), EXIT]  # fmt: skip
    template = bytes(20) + struct.pack("<I", 4)
    fields = {0: PacketArg.DATA, 8: PacketArg.DATA_END, 16: (PacketArg.LENGTH, 4)}
    for debug in (False, True):
        with JitProgram(insns, debug_checks=debug) as jit:
            result = jit.run_batch(
                [b"ab", b"abcdef", b""], args=(PacketArg.CONTEXT,), context=template,
                context_fields=fields,
            )  # fmt: skip
            assert result.retvals == [2 + 5000, 6 + 5000, 0 + 5000]


def test_ld_abs_reads_each_packet():
    insns = [I.mov(6, "r1"), I.ld_abs(1, 0), I.mov(7, "r0"), I.ld_abs(2, 1), I.add(0, "r7"), EXIT]
    packets = [b"\x01\x00\x02", b"\x05", b"\x10\x00\x01\xff"]
    with JitProgram(insns, legacy_packet=True) as jit:
        vm = Interpreter(insns, legacy_packet=True)
        expected = [vm.run((0,), packet=p) for p in packets]
        assert jit.run_batch(packets, args=(0,)).retvals == expected == [3, 0, 0x10 + 0x0001]


def test_helpers_run_in_batches_and_see_the_packet_memory():
    seen = []

    def helper(ctx, r1, r2, r3, r4, r5):
        seen.append(ctx.memory.read(r1, r2))
        return r2 * 2

    insns = [I.call(7), EXIT]
    with JitProgram(insns, entry_registers=(1, 2, 10), helpers={7: helper}) as jit:
        assert jit.run_batch([b"ab", b"xyz"]).retvals == [4, 6]
    assert seen == [b"ab", b"xyz"]


@pytest.mark.parametrize("debug_checks", [False, True])
def test_a_failing_run_stops_the_batch_with_its_index(debug_checks):
    def helper(ctx, r1, *rest):
        if r1 == 3:
            raise ValueError("boom")
        return r1

    insns = [I.call(7), EXIT]
    with JitProgram(insns, helpers={7: helper}, debug_checks=debug_checks) as jit:
        with pytest.raises(HelperError) as info:
            jit.run_batch([b"a", b"bb", b"ccc", b"dddd"], args=(PacketArg.LENGTH,))
        assert info.value.packet_index == 2 and info.value.pc == 0
        assert jit.run_batch([b"a"], args=(PacketArg.LENGTH,)).retvals == [1]  # state reset
        assert jit.run((9,)) == 9  # a plain run after a batch gets its own arguments


@pytest.mark.parametrize(
    "source, which", [("r0 = *(u8 *)(r2 + 0)", 0), ("r0 = *(u8 *)(r1 - 1)", 1)]
)
def test_debug_checks_keep_each_run_inside_its_own_packet(source, which):
    """One byte past the end of packet 0, or before the start of packet 1: inside the
    batch buffer (the packets are back to back) but outside the run's own packet."""
    insns = assemble(source + "\nexit")
    packets = [b"abcdefgh", b"ijklmnop"]
    expected = interpreter_runs(insns, packets, lambda a, n: (a, a + n))[which][0]
    assert expected[0] == "MemoryAccessError"
    with JitProgram(insns, entry_registers=(1, 2, 10), debug_checks=True) as jit:
        with PacketBatch.from_packets(packets, align=1) as both:
            with pytest.raises(MemoryAccessError) as info:
                jit.run_batch(PacketBatch(both.region, [8 * which], [8]), args=END_ARGS)
            assert facts(info.value) == expected and info.value.packet_index == 0
            with pytest.raises(MemoryAccessError) as info:
                jit.run_batch(both, args=END_ARGS)
            assert info.value.packet_index == 0


def test_empty_batches_and_refused_plans():
    with JitProgram([I.mov(0, "r1"), EXIT]) as jit:
        empty = jit.run_batch([])
        assert empty.retvals == [] and empty.data_out == [] and empty.ns_per_packet == 0
        for bad in (
            {"args": (1, 2, 3, 4, 5, 6)},
            {"args": ("r1",)},
            {"args": ((99, 0),)},
            {"args": (PacketArg.CONTEXT,)},  # no context
            {"context_fields": {0: PacketArg.DATA}},  # no context
            {"context": bytes(8), "context_fields": {4: PacketArg.DATA}},  # past the end
            {"context": bytes(8), "context_fields": {0: (PacketArg.DATA, 2)}},
        ):
            with pytest.raises(InputError):
                jit.run_batch([b"x"], **bad)
    with Region(8, kind="packet") as region:
        with pytest.raises(InputError):
            PacketBatch(region, [0, 4], [4, 5])  # outside the buffer
        with pytest.raises(InputError):
            PacketBatch(region, [0], [1, 2])
        with pytest.raises(InputError):
            PacketBatch(b"abc", [-1], [1])


def test_the_benchmark_batch_figure_runs():
    figure = jit_bench.batch_figure(64, 1)  # asserts its own verdict counts
    assert figure["packets"] == 64 and figure["ns_per_packet"] > 0
