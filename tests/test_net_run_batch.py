"""The packet runner's fast paths give what one ``test_run`` per frame gives.

:class:`~pybpf.hooks.packetrun.PacketRunner` reuses its regions between frames and, on the
JIT, runs frames through the batch loop; both must give every frame the verdict and the
output bytes a fresh ``BPF_PROG_TEST_RUN`` gives it (xdp, tc, socket filter, cgroup_skb
contexts; frames of many shapes, in runs that share a context and runs that do not).
"""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import InputError
from pybpf.hooks import open_writer
from pybpf.hooks.packetrun import PacketRunner, batch_blockers
from pybpf.hooks.runner import run_capture
from pybpf.isa.asm import assemble
from pybpf.objects import Object
from pybpf.progtypes import ProgType
from pybpf.spec import ObjectSpec, ProgramSpec

EXAMPLES = Path(__file__).parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
from frames import arp, icmp4, tcp4, udp4, udp6  # noqa: E402

FRAMES = (
    [udp4(payload=b"")] * 9  # one context shared by 9 frames: an skb batch
    + [udp4(payload=b"x" * n) for n in (1, 10, 100, 1000)]
    + [tcp4(payload=b"hello"), arp(), icmp4(), udp6(payload=b"v6"), tcp4(src="10.9.9.9")]
    + [udp6(payload=b"q" * 3)] * 8
    + [udp4(payload=bytes(range(256)) * 15)]  # longer than XDP's 3520 linear bytes
)
SMALL = [f for f in FRAMES if len(f) < 3000]  # skb test runs take at most 3712 bytes

CASES = [
    ("drop_empty_udp.o", "drop_empty_udp", FRAMES, True),
    ("xdp_ctx.o", "xdp_ctx", FRAMES, True),
    ("xdp_counter.o", "xdp_count", FRAMES, True),
    ("tc_ctx.o", "tc_ctx", SMALL, True),
    ("sock_ctx.o", "sock_ctx", SMALL, False),
    ("cgskb_ctx.o", "cgskb_ctx", SMALL, False),
]


@pytest.mark.parametrize("engine", ["interpreter", "jit"])
@pytest.mark.parametrize(("file", "name", "frames", "compare_data"), CASES)
def test_runner_matches_one_test_run_per_frame(engine, file, name, frames, compare_data):
    obj = pybpf.load(EXAMPLES / "c" / file, engine=engine)
    prog = obj.programs[name]
    expected = [prog.test_run(f) for f in frames]
    with PacketRunner(prog) as fast, PacketRunner(prog, batch=False) as slow:
        assert fast.batched == (engine == "jit")
        assert not slow.batched
        for runner in (fast, slow):
            got = runner.run_many(frames)
            assert [r for r, _, _ in got] == [e.retval for e in expected]
            if compare_data:
                assert [d for _, d, _ in got] == [e.data_out for e in expected]
            # twice: nothing of one round leaks into the next
            assert [r for r, _, _ in runner.run_many(frames[::-1])] == [
                e.retval for e in expected[::-1]
            ]
    obj.close()


@pytest.mark.parametrize("engine", ["interpreter", "jit"])
def test_ingress_ifindex_and_rx_queue_in_every_path(engine):
    prog = pybpf.load(EXAMPLES / "c" / "xdp_ctx.o", engine=engine).programs["xdp_ctx"]
    frames = [udp4(payload=b"x" * n) for n in range(20)]
    for batch in (True, False):
        with PacketRunner(prog, ingress_ifindex=7, rx_queue=3, batch=batch) as runner:
            for frame, (_, data, _) in zip(frames, runner.run_many(frames), strict=True):
                assert struct.unpack("<4I", data[:16]) == (7, 3, len(frame), 0)


def test_helpers_that_need_the_packet_state_keep_frames_one_by_one():
    obj = pybpf.load(EXAMPLES / "c" / "packet_helpers.o", engine="jit")
    assert batch_blockers(obj.programs["xdp_push"]) == ["xdp_adjust_head"]
    with PacketRunner(obj.programs["xdp_redir"]) as runner:
        assert not runner.batched and runner.blockers == ["redirect"]
    assert batch_blockers(pybpf.load(EXAMPLES / "c" / "drop_empty_udp.o").programs[
        "drop_empty_udp"]) == []  # fmt: skip


@pytest.mark.parametrize("engine", ["interpreter", "jit"])
def test_short_frames_are_refused_with_their_index(engine):
    prog = pybpf.load(EXAMPLES / "c" / "drop_empty_udp.o", engine=engine).programs[
        "drop_empty_udp"]  # fmt: skip
    with PacketRunner(prog) as runner, pytest.raises(InputError) as info:
        runner.run_many([udp4(), udp4(), b"\x01" * 10])
    assert info.value.packet_index == 2


def test_capture_run_counts_batches_of_many_chunks():
    # more frames than one chunk, through the JIT's batch loop, counted once each
    buf = io.BytesIO()
    writer = open_writer(buf, "pcap")
    frames = [udp4(payload=b"" if i % 3 == 0 else b"abc") for i in range(1000)]
    for i, frame in enumerate(frames):
        writer.write(frame, i)
    writer.flush()
    obj = pybpf.load(EXAMPLES / "c" / "drop_empty_udp.o", engine="jit")
    outs = {"drop": io.BytesIO()}
    summary = run_capture(obj.programs["drop_empty_udp"], io.BytesIO(buf.getvalue()), outs)
    assert dict(summary.verdicts) == {"drop": 334, "pass": 666}
    assert summary.written["drop"] == 334
    value = obj.maps["dropped_packet_map"].lookup_raw(struct.pack("<I", 0))
    assert struct.unpack("<Q", value)[0] == 334


# ---- reuse across batches -------------------------------------------------------------------
def _maps(obj) -> dict:
    return {
        name: sorted((k, m.lookup_raw(k)) for k in m.keys_raw())
        for name, m in obj.maps.items()
    }


@pytest.mark.parametrize(
    ("file", "name", "size"), [("xdp_ctx.o", "xdp_ctx", 4000), ("tc_ctx.o", "tc_ctx", 1400)]
)
def test_one_runner_reused_across_batch_and_frame_sizes(file, name, size):
    # batches of many sizes (one frame, past the first buffer's 64 KiB, back to small)
    # and frames of many sizes: each gives what test_run gives, with nothing left over
    obj = pybpf.load(EXAMPLES / "c" / file, engine="jit")
    prog = obj.programs[name]
    rounds = [
        [udp4(payload=b"a")],
        [udp4(payload=b"y" * (i % size)) for i in range(120)],
        [udp4(payload=b"")] * 3,
        [udp4(payload=b"z" * (i % 300)) for i in range(300)],
        [udp4(payload=b"b" * 7)] * 9,
    ]
    with PacketRunner(prog) as runner:
        assert runner.batched
        for frames in rounds:
            expected = [prog.test_run(f) for f in frames]
            got = runner.run_many(frames)
            assert [(r, d) for r, d, _ in got] == [(e.retval, e.data_out) for e in expected]
    obj.close()


def test_a_runner_closed_and_reopened_gives_the_same_results():
    obj = pybpf.load(EXAMPLES / "c" / "xdp_counter.o", engine="jit")
    prog = obj.programs["xdp_count"]
    first = PacketRunner(prog)
    want = first.run_many(FRAMES)
    first.close()
    first.close()  # idempotent
    with pytest.raises(InputError):
        first.run_many(FRAMES)
    with PacketRunner(prog) as again:
        assert again.run_many(FRAMES) == want
    obj.close()


def _failing_on_tcp(obj) -> None:
    """``bpf_printk`` of xdp_count raises for TCP frames (a helper failing mid-batch)."""

    def trace(text: str) -> None:
        if text.endswith("proto 6"):
            raise ValueError("no TCP today")

    obj.programs["xdp_count"].runner.trace = trace


def test_an_error_mid_batch_matches_frame_by_frame_and_leaves_the_runner_usable():
    frames = [udp4(payload=b"x" * n) for n in range(20)] + [tcp4()] + [udp4()] * 20
    outcome = {}
    for batch in (True, False):
        obj = pybpf.load(EXAMPLES / "c" / "xdp_counter.o", engine="jit")
        _failing_on_tcp(obj)
        prog = obj.programs["xdp_count"]
        with PacketRunner(prog, batch=batch) as runner:
            assert runner.batched == batch
            with pytest.raises(Exception) as info:
                runner.run_many(frames)
            err = info.value
            counted = prog.run_cnt
            again = runner.run_many(frames[:20] + frames[21:])  # usable: no TCP this time
            outcome[batch] = (type(err), err.packet_index, err.partial, counted, again,
                              _maps(obj))  # fmt: skip
        obj.close()
    assert outcome[True][1] == 20 and len(outcome[True][2]) == 20
    assert outcome[True] == outcome[False]


@pytest.mark.parametrize(("file", "name"), [("xdp_ctx.o", "xdp_ctx"), ("tc_ctx.o", "tc_ctx")])
def test_a_refused_frame_mid_batch_runs_the_frames_before_it(file, name):
    frames = [udp4(payload=b"")] * 10 + [udp6(payload=b"v6")] * 9 + [b"\x01" * 10, udp4()]
    outcome = {}
    for batch in (True, False):
        obj = pybpf.load(EXAMPLES / "c" / file, engine="jit")
        prog = obj.programs[name]
        with PacketRunner(prog, batch=batch) as runner:
            with pytest.raises(InputError) as info:
                runner.run_many(frames)
            outcome[batch] = (info.value.packet_index, info.value.partial, prog.run_cnt)
            assert runner.run_many(frames[:19]) == info.value.partial  # still usable
        obj.close()
    assert outcome[True] == outcome[False] and outcome[True][0] == 19
    assert len(outcome[True][1]) == 19


def _with_dst(frame: bytes, mac: bytes) -> bytes:
    return mac + frame[6:]


def _remote_ip4_low_bit():
    """A cgroup_skb program returning the low bit of the frame's remote (source) address's
    last byte, as its context holds it."""
    insns = assemble("r0 = *(u32 *)(r1 + 92)\nr0 >>= 24\nr0 &= 1\nexit")
    spec = ObjectSpec(
        name="remote",
        programs={"remote": ProgramSpec("remote", "cgroup_skb/ingress", tuple(insns),
                                        license="GPL", type=ProgType.CGROUP_SKB)},
        maps={},
        license="GPL",
    )  # fmt: skip
    return Object(spec).load(engine="jit"), "remote"


@pytest.mark.parametrize(("file", "name", "compare_data"), [
    ("tc_ctx.o", "tc_ctx", True), ("sock_ctx.o", "sock_ctx", False),
    ("cgskb_ctx.o", "cgskb_ctx", False), (None, "remote", False)])  # fmt: skip
def test_skb_frames_differing_only_in_what_their_context_reads(file, name, compare_data):
    # destination MACs (unicast, multicast, broadcast, zero: pkt_type), protocols and
    # addresses: each shape in a run long enough for the batch loop, then all interleaved
    macs = [bytes.fromhex(m) for m in ("020000000002", "01005e000001", "ff" * 6, "00" * 6)]
    shapes = [
        _with_dst(f, mac)
        for mac in macs
        for f in (udp4(), udp4(src="10.1.2.4", dst="10.0.0.5"), udp6(), udp6(dst="fd00::9"),
                  arp(), udp4(payload=bytes(80)), udp6(payload=bytes(80)))  # tc_ctx: 114+
    ]  # fmt: skip
    frames = [s for s in shapes for _ in range(8)] + shapes * 3
    obj = pybpf.load(EXAMPLES / "c" / file, engine="jit") if file else _remote_ip4_low_bit()[0]
    prog = obj.programs[name]
    expected = [prog.test_run(f) for f in frames]
    if file is None:  # the addresses decide
        assert {e.retval for e in expected} == {0, 1}
    with PacketRunner(prog) as runner:
        for _ in range(2):
            got = runner.run_many(frames)
            assert [r for r, _, _ in got] == [e.retval for e in expected]
            if compare_data:
                assert [d for _, d, _ in got] == [e.data_out for e in expected]
    obj.close()


def test_more_contexts_than_the_runner_keeps_plans_for():
    obj = pybpf.load(EXAMPLES / "c" / "tc_ctx.o", engine="jit")
    prog = obj.programs["tc_ctx"]
    shapes = [udp4(src=f"10.0.{i}.1", payload=bytes(80)) for i in range(80)]  # 80 contexts
    frames = [s for s in shapes for _ in range(8)]
    expected = [(e.retval, e.data_out) for e in map(prog.test_run, frames)]
    with PacketRunner(prog) as runner:
        for _ in range(2):
            assert [(r, d) for r, d, _ in runner.run_many(frames)] == expected
    obj.close()
