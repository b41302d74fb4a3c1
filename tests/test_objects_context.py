"""Runtime contexts: xdp_md rewritten at load, test_run's XDP context and packet, Linux beside."""

from __future__ import annotations

import dataclasses
import errno
import struct
from pathlib import Path

import pytest

import pybpf
from kernel import requires_bpf
from pybpf.errors import ExecutionError, InputError, VerifierError
from pybpf.isa import Class, Instruction, JmpOp, Mode, Size, Source
from pybpf.isa.opcodes import jmp_opcode, mem_opcode
from pybpf.objects.context import (
    XDP_LINEAR_MAX,
    XDP_PACKET_HEADROOM,
    rewrite_context_accesses,
    runtime_layout,
)
from pybpf.progtypes import ProgType
from pybpf.progtypes.contexts import rules_for

EXAMPLES = Path(__file__).parents[1] / "examples" / "c"
XDP_CTX = EXAMPLES / "xdp_ctx.o"
XDP_COUNTER = EXAMPLES / "xdp_counter.o"
XDP_MD = rules_for(ProgType.XDP).context
ABORTED, DROP, PASS, TX = range(4)


def _md(data=0, data_end=0, meta=0, ingress=0, rx_queue=0, egress=0) -> bytes:
    return struct.pack("<6I", data, data_end, meta, ingress, rx_queue, egress)


def _ldx(size: Size, dst: int, src: int, off: int) -> Instruction:
    return Instruction(mem_opcode(Class.LDX, Mode.MEM, size), dst, src, off, 0)


# ---- layout and rewrite -----------------------------------------------------------------
def test_xdp_runtime_layout_has_pointers_first_then_scalars():
    rt = runtime_layout(XDP_MD)
    assert [rt.offsets[n] for n in ("data", "data_end", "data_meta")] == [0, 8, 16]
    assert [rt.offsets[n] for n in ("ingress_ifindex", "rx_queue_index", "egress_ifindex")] == [
        24,
        28,
        32,
    ]
    assert rt.size == 40
    packed = rt.pack({"data": 1 << 40, "rx_queue_index": 7})
    assert int.from_bytes(packed[0:8], "little") == 1 << 40 and packed[28] == 7


def test_rewrite_widens_packet_pointers_and_moves_scalars():
    rt = runtime_layout(XDP_MD)
    insns = [
        _ldx(Size.W, 2, 1, 4),  # data_end
        _ldx(Size.W, 3, 1, 0),  # data
        _ldx(Size.W, 4, 1, 16),  # rx_queue_index
        _ldx(Size.B, 5, 1, 13),  # second byte of ingress_ifindex
        Instruction(jmp_opcode(Class.JMP, JmpOp.EXIT, Source.K), 0, 0, 0, 0),
    ]
    accesses = {0: (4, 4, True), 1: (0, 4, True), 2: (16, 4, True), 3: (13, 1, True)}
    out = rewrite_context_accesses(insns, accesses, rt)
    assert len(out) == len(insns) and out[4] == insns[4]
    assert (out[0].size, out[0].off, out[0].dst, out[0].src) == (Size.DW, 8, 2, 1)
    assert (out[1].size, out[1].off) == (Size.DW, 0)
    assert (out[2].size, out[2].off) == (Size.W, 28)
    assert (out[3].size, out[3].off) == (Size.B, 25)


@pytest.mark.parametrize(
    "insn, access",
    [
        (_ldx(Size.H, 2, 1, 0), (0, 2, True)),  # narrow load of a packet pointer
        (_ldx(Size.W, 2, 1, 24), (24, 4, True)),  # past xdp_md
        (_ldx(Size.DW, 2, 1, 12), (12, 8, True)),  # straddles two fields
        (_ldx(Size.W, 2, 1, 0), (4, 4, True)),  # base register moved: modified ctx pointer
        (_ldx(Size.W, 2, 1, 0), (-1, 4, True)),  # variable offset
        (Instruction(mem_opcode(Class.STX, Mode.MEM, Size.W), 1, 2, 12, 0), (12, 4, False)),
    ],
)
def test_rewrite_refuses_what_the_runtime_cannot_map(insn, access):
    with pytest.raises(VerifierError) as err:
        rewrite_context_accesses([insn], {0: access}, runtime_layout(XDP_MD), program="p")
    assert err.value.pc == 0 and err.value.program == "p"


# ---- portable test runs -----------------------------------------------------------------
@pytest.fixture(scope="module", params=["interpreter", "jit"])
def xdp_ctx(request):
    if request.param == "jit":
        from pybpf.jit import available

        if not available():
            pytest.skip("llvmlite is not installed")
    with pybpf.load(XDP_CTX, engine=request.param) as obj:
        yield obj.programs["xdp_ctx"]


def _words(data: bytes) -> tuple[int, ...]:
    return struct.unpack("<4I", data[:16])


def test_xdp_program_reads_a_real_xdp_md(xdp_ctx):
    assert xdp_ctx.context == "runtime"
    pkt = bytes(range(15)) + bytes([TX]) + bytes(range(100, 124))
    r = xdp_ctx.test_run(pkt)
    assert r.retval == TX and r.ctx_out is None
    assert _words(r.data_out) == (1, 0, len(pkt), 0)  # loopback, queue 0, length, no meta
    assert r.data_out[16:] == pkt[16:]


def test_xdp_metadata_comes_first_in_data_in_and_data_out(xdp_ctx):
    meta = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    body = bytes(15) + bytes([PASS]) + bytes(8)
    r = xdp_ctx.test_run(meta + body, ctx_in=_md(8, 8 + len(body)))
    assert r.retval == PASS
    assert r.data_out[:4] == bytes(b ^ 0xFF for b in meta[:4]) and r.data_out[4:8] == meta[4:]
    assert _words(r.data_out[8:]) == (1, 0, len(body), 8)
    assert r.ctx_out == _md(8, 8 + len(body), 0, 0, 0, 0)


def test_xdp_data_end_short_of_data_in_leaves_the_rest_as_fragments(xdp_ctx):
    pkt = bytes(range(40))
    r = xdp_ctx.test_run(pkt, ctx_in=_md(0, 20))
    assert _words(r.data_out) == (1, 0, 20, 0) and r.data_out[20:] == pkt[20:]
    big = bytes(XDP_LINEAR_MAX + 100)
    r = xdp_ctx.test_run(big)
    assert _words(r.data_out)[2] == XDP_LINEAR_MAX and len(r.data_out) == len(big)


def test_xdp_repeat_keeps_the_buffers(xdp_ctx):
    meta = b"\x0f\0\0\0"
    body = bytes(20)
    r = xdp_ctx.test_run(meta + body, ctx_in=_md(4, 24), repeat=3)
    assert r.data_out[:4] == b"\xf0\xff\xff\xff"  # flipped three times
    assert XDP_PACKET_HEADROOM == 256


@pytest.mark.parametrize(
    "data_in, ctx_in, code",
    [
        (bytes(13), None, errno.EINVAL),  # shorter than an Ethernet header
        (b"", None, errno.EINVAL),
        (bytes(20), _md(8, 20), errno.EINVAL),  # 12 bytes after the metadata
        (bytes(40), _md(0, 41), errno.EINVAL),  # data_end past data_in
        (bytes(40), _md(8, 4), errno.EINVAL),  # data after data_end
        (bytes(40), _md(0, 40, meta=4), errno.EINVAL),
        (bytes(40), _md(6, 40), errno.EINVAL),  # metadata not a multiple of 4
        (bytes(40), _md(36, 40), errno.EINVAL),  # more than 32 bytes of metadata
        (bytes(40), _md(0, 40, egress=1), errno.EINVAL),
        (bytes(40), _md(0, 40, rx_queue=1), errno.EINVAL),
        (bytes(40), _md(0, 40, ingress=1, rx_queue=1), errno.EINVAL),
        (bytes(40), _md(0, 40, ingress=99), errno.ENODEV),
        (bytes(40), _md(0, 40) + b"\1\0\0\0", errno.E2BIG),
    ],
)
def test_xdp_bad_arguments_fail_as_linux(xdp_ctx, data_in, ctx_in, code):
    with pytest.raises(InputError) as err:
        xdp_ctx.test_run(data_in, ctx_in=ctx_in)
    assert err.value.errno == code and err.value.program == "xdp_ctx"


def test_xdp_counter_sees_its_packets():
    udp = _ipv4(17)
    with pybpf.load(XDP_COUNTER) as obj:
        prog = obj.programs["xdp_count"]
        assert prog.test_run(udp).retval == DROP
        assert prog.test_run(_ipv4(6)).retval == PASS
        assert prog.test_run(udp[:14]).retval == PASS  # no IP header
        assert obj.maps["proto_count"][17] == 1 and obj.maps["proto_count"][6] == 1
        assert obj.bss.seen == 3


def _ipv4(proto: int, payload: bytes = bytes(8)) -> bytes:
    eth = bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x00"
    ip = bytes([0x45, 0, 0, 20 + len(payload), 0, 0, 0, 0, 64, proto, 0, 0]) + bytes(8)
    return eth + ip + payload


def _unchecked() -> pybpf.Object:
    """xdp_ctx with its ``data + 16 > data_end`` check replaced by ``ja +0``."""
    obj = pybpf.Object.open(XDP_CTX)
    spec = obj.spec.programs["xdp_ctx"]
    insns = list(spec.instructions)
    at = next(i for i, x in enumerate(insns) if x.cls == Class.JMP and x.jmp_op == JmpOp.JGT)
    insns[at] = Instruction(jmp_opcode(Class.JMP, JmpOp.JA, Source.K), 0, 0, 0, 0)
    obj.spec.programs["xdp_ctx"] = dataclasses.replace(spec, instructions=tuple(insns))
    return obj


def test_verifier_rejection_fails_the_load_and_verify_false_skips_it():
    with pytest.raises(VerifierError) as err:
        _unchecked().load()
    assert err.value.program == "xdp_ctx" and err.value.pc is not None
    with _unchecked().load(verify=False) as obj:
        prog = obj.programs["xdp_ctx"]
        assert prog.context == "buffer"  # r1 = the packet bytes, as before rewrites
        with pytest.raises(ExecutionError):  # data = the packet's first word, 0
            prog.test_run(bytes(64))


# ---- the kernel beside ------------------------------------------------------------------
CASES = [
    (bytes(range(15)) + bytes([TX]) + bytes(24), None, 1),
    (bytes(14), None, 1),
    (bytes(range(16)), None, 1),
    (bytes(range(200)), None, 2),
    (bytes(range(40)), _md(0, 40), 1),
    (bytes(range(40)), _md(8, 40), 1),
    (bytes(range(40)), _md(32, 40, ingress=1), 3),
    (bytes(range(40)), _md(0, 20), 1),
    (bytes(range(40)), _md(8, 8), 1),
    (bytes(range(40)), _md(0, 40) + bytes(4), 1),
    (bytes(4000), None, 1),
    (bytes(13), None, 1),
    (bytes(40), _md(6, 40), 1),
    (bytes(40), _md(0, 40, egress=3), 1),
    (bytes(40), _md(0, 40, ingress=99), 1),
]


def _outcome(prog, data_in, ctx_in, repeat):
    try:
        r = prog.test_run(data_in, ctx_in=ctx_in, repeat=repeat)
    except (InputError, OSError) as err:
        return ("error", err.errno)
    return (r.retval, r.data_out, r.ctx_out)


@requires_bpf
@pytest.mark.parametrize("engine", ["interpreter", "jit"])
def test_xdp_ctx_runs_as_on_linux(engine):
    if engine == "jit":
        from pybpf.jit import available

        if not available():
            pytest.skip("llvmlite is not installed")
    with (
        pybpf.load(XDP_CTX, engine=engine) as ours,
        pybpf.load(XDP_CTX, backend="kernel") as linux,
    ):
        a, b = ours.programs["xdp_ctx"], linux.programs["xdp_ctx"]
        assert a.tag == b.tag  # tags hash the instructions before the rewrite, as Linux
        for data_in, ctx_in, repeat in CASES:
            assert _outcome(a, data_in, ctx_in, repeat) == _outcome(b, data_in, ctx_in, repeat)


@requires_bpf
def test_xdp_counter_runs_as_on_linux():
    packets = [_ipv4(p) for p in (17, 6, 1, 17, 47)] + [bytes(14), _ipv4(17)[:20], bytes(64)]
    with pybpf.load(XDP_COUNTER) as ours, pybpf.load(XDP_COUNTER, backend="kernel") as linux:
        for pkt in packets:
            a = ours.programs["xdp_count"].test_run(pkt)
            b = linux.programs["xdp_count"].test_run(pkt)
            assert (a.retval, a.data_out) == (b.retval, b.data_out)
        counts = {k: ours.maps["proto_count"][k] for k in (1, 6, 17, 47)}
        assert counts == {1: 1, 6: 1, 17: 2, 47: 1}
        theirs = linux.maps["proto_count"]
        for key, n in counts.items():
            assert int.from_bytes(theirs.lookup(key.to_bytes(4, "little")), "little") == n


# ---- tc (__sk_buff) ---------------------------------------------------------------------
TC_CTX = EXAMPLES / "tc_ctx.o"
SKB_FIELDS = (
    "len pkt_type mark queue_mapping protocol vlan_present vlan_tci vlan_proto priority "
    "ingress_ifindex ifindex tc_index cb0 cb1 cb2 cb3 cb4 hash tc_classid napi_id length "
    "meta wire_len gso_segs gso_size"
).split()


def _frame(dest: bytes, ethertype: bytes, size: int = 114) -> bytes:
    return dest + bytes(6) + ethertype + bytes(size - 14)


def _skb(**fields: int) -> bytes:
    out = bytearray(192)
    for name, value in fields.items():
        f = next(f for f in rules_for(ProgType.SCHED_CLS).context.fields if f.name == name)
        out[f.offset : f.end] = value.to_bytes(f.size, "little")
    return bytes(out)


def _seen(data_out: bytes) -> dict[str, int]:
    return dict(zip(SKB_FIELDS, struct.unpack("<25I", data_out[14:114]), strict=True))


@pytest.fixture(scope="module")
def tc_ctx():
    with pybpf.load(TC_CTX) as obj:
        yield obj.programs["tc_ctx"]


def test_tc_program_reads_a_real_sk_buff(tc_ctx):
    assert tc_ctx.context == "runtime"
    r = tc_ctx.test_run(_frame(b"\xff" * 6, b"\x08\x00"))
    seen = _seen(r.data_out)
    assert seen["len"] == seen["length"] == 114 and seen["meta"] == 0
    assert seen["protocol"] == 0x0008 and seen["pkt_type"] == 2 and seen["ifindex"] == 1
    assert r.ctx_out is None and r.retval == 0
    assert _seen(tc_ctx.test_run(_frame(bytes(6), b"\x86\xdd")).data_out)["pkt_type"] == 0
    other = _seen(tc_ctx.test_run(_frame(b"\x02" + bytes(5), b"\x00\x10")).data_out)
    assert other["pkt_type"] == 3 and other["protocol"] == 0x0400  # 802.2 LLC


def test_tc_ctx_in_sets_fields_and_ctx_out_returns_the_writes(tc_ctx):
    ctx = _skb(mark=7, priority=9, ingress_ifindex=5, **{"cb[1]": 3}, wire_len=200, gso_size=9)
    r = tc_ctx.test_run(_frame(bytes(6), b"\x08\x00"), ctx_in=ctx)
    seen = _seen(r.data_out)
    assert (seen["mark"], seen["priority"], seen["ingress_ifindex"], seen["cb1"]) == (7, 9, 5, 3)
    assert seen["wire_len"] == 200 and seen["gso_size"] == 9
    expect = _skb(mark=8, priority=11, ingress_ifindex=5, ifindex=1, **{"cb[0]": 255, "cb[1]": 3})
    expect = expect[:160] + _skb(wire_len=200, gso_size=9)[160:]
    assert r.ctx_out == expect


@pytest.mark.parametrize(
    "data_in, ctx_in, code",
    [
        (bytes(13), None, errno.EINVAL),
        (bytes(3713), None, errno.EINVAL),
        (bytes(114), _skb(len=1), errno.EINVAL),
        (bytes(114), _skb(tc_index=1), errno.EINVAL),
        (bytes(114), _skb(wire_len=100), errno.EINVAL),
        (bytes(114), _skb(ifindex=99), errno.ENODEV),
        (bytes(114), _skb() + b"\1", errno.E2BIG),
    ],
)
def test_tc_bad_arguments_fail_as_linux(tc_ctx, data_in, ctx_in, code):
    with pytest.raises(InputError) as err:
        tc_ctx.test_run(data_in, ctx_in=ctx_in)
    assert err.value.errno == code


TC_CASES = [
    (_frame(b"\xff" * 6, b"\x08\x00"), None),
    (_frame(bytes(6), b"\x86\xdd"), None),
    (_frame(b"\x01" + bytes(5), b"\x08\x06"), None),
    (_frame(b"\x02" + bytes(5), b"\x00\x10"), None),
    (bytes(12) + b"\x00\x10\xff\xff" + bytes(100), None),
    (bytes(14), None),
    (bytes(3712), None),
    (_frame(bytes(6), b"\x08\x00", size=300), _skb(mark=7, priority=9, ingress_ifindex=5)),
    (_frame(bytes(6), b"\x08\x00"), _skb(**{"cb[4]": 1}, wire_len=1000, gso_segs=3)),
    (_frame(bytes(6), b"\x08\x00"), _skb(ifindex=1, tstamp=12345, hwtstamp=777)),
    (bytes(13), None),
    (bytes(114), _skb(hash=1)),
    (_frame(bytes(6), b"\x08\x00", size=33), None),  # IPv4 without a whole header
    (_frame(bytes(6), b"\x86\xdd", size=53), None),
    (bytes(114), _skb(wire_len=100)),
]


@requires_bpf
def test_tc_ctx_runs_as_on_linux():
    with pybpf.load(TC_CTX) as ours, pybpf.load(TC_CTX, backend="kernel") as linux:
        a, b = ours.programs["tc_ctx"], linux.programs["tc_ctx"]
        assert a.tag == b.tag
        for data_in, ctx_in in TC_CASES:
            for verdict in (0, 2, 7):
                frame = bytearray(data_in)
                if len(frame) > 13:
                    frame[13] = frame[13] & ~7 | verdict
                got = _outcome(a, bytes(frame), ctx_in, 1)
                assert got == _outcome(b, bytes(frame), ctx_in, 1), (data_in[:16], ctx_in)


# ---- socket filters ---------------------------------------------------------------------
SOCK_CTX = EXAMPLES / "sock_ctx.o"


def _ip_frame(size: int, ethertype: bytes = b"\x08\x00") -> bytes:
    return b"\xff" * 6 + bytes(6) + ethertype + bytes(i & 0xFF for i in range(size - 14))


def test_socket_filter_sees_the_packet_from_the_network_header():
    with pybpf.load(SOCK_CTX) as obj:
        prog = obj.programs["sock_ctx"]
        assert prog.context == "runtime"
        frame = _ip_frame(114)
        r = prog.test_run(frame, ctx_in=_skb(mark=7))
        assert r.retval == 100 + 7
        cb = struct.unpack("<5I", r.ctx_out[48:68])
        assert cb[0] == 100 and cb[1] == 0x0008 and cb[2] == 2 | 1 << 8
        assert cb[3] == 0 | 0x0203 << 8 and cb[4] == 0x0C0D0E0F  # LD_ABS from L3, big-endian
        assert r.data_out == bytes(14) + frame[14:]  # the link-layer header comes back zeroed
        with pytest.raises(InputError) as err:
            prog.test_run(_ip_frame(33))  # shorter than an IPv4 header after Ethernet
        assert err.value.errno == errno.EINVAL


SOCK_CASES = [
    (_ip_frame(114), _skb(mark=7)),
    (_ip_frame(114), None),
    (_ip_frame(34), _skb(**{"cb[2]": 9})),
    (_ip_frame(114), _skb(wire_len=100)),
    (_ip_frame(114), _skb(wire_len=99)),
    (_ip_frame(33), None),
    (_ip_frame(54, b"\x86\xdd"), None),
    (_ip_frame(44, b"\x86\xdd"), None),
    (bytes(19), None),  # LD_ABS past the end: the program stops with 0
    (bytes(12) + b"\x08\x06" + bytes(30), _skb(priority=3, ingress_ifindex=2)),
    (bytes(13), None),
]


@requires_bpf
def test_socket_filter_runs_as_on_linux():
    with pybpf.load(SOCK_CTX) as ours, pybpf.load(SOCK_CTX, backend="kernel") as linux:
        a, b = ours.programs["sock_ctx"], linux.programs["sock_ctx"]
        for data_in, ctx_in in SOCK_CASES:
            assert _outcome(a, data_in, ctx_in, 1) == _outcome(b, data_in, ctx_in, 1), data_in


# ---- cgroup_skb ---------------------------------------------------------------------------
CGSKB_CTX = EXAMPLES / "cgskb_ctx.o"
_IPV4 = bytes([0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 192, 168, 1, 2])
_IPV6 = bytes([0x60]) + bytes(7) + bytes(range(32))


def test_cgroup_skb_sees_l3_and_a_socket_from_the_ip_header():
    with pybpf.load(CGSKB_CTX) as obj:
        prog = obj.programs["cgskb_ctx"]
        r = prog.test_run(b"\xff" * 6 + bytes(6) + b"\x08\x00" + _IPV4 + bytes(10), _skb())
        cb = struct.unpack("<5I", r.ctx_out[48:68])
        assert cb[:2] == (30, 2) and r.retval == 1
        assert cb[2].to_bytes(4, "little") == bytes([10, 0, 0, 1])  # local = source
        assert cb[3].to_bytes(4, "little") == bytes([192, 168, 1, 2])  # remote = destination
        assert cb[4] == 0x45 | 30 << 8


CGSKB_CASES = [
    (b"\xff" * 6 + bytes(6) + b"\x08\x00" + _IPV4 + bytes(10), _skb()),
    (b"\xff" * 6 + bytes(6) + b"\x08\x00" + b"\x46" + _IPV4[1:] + bytes(4), _skb(mark=1)),
    (bytes(6) + bytes(6) + b"\x86\xdd" + _IPV6 + bytes(10), _skb()),
    (bytes(12) + b"\x08\x06" + bytes(30), _skb()),
    (bytes(14), _skb()),
]


@requires_bpf
def test_cgroup_skb_runs_as_on_linux():
    with pybpf.load(CGSKB_CTX) as ours, pybpf.load(CGSKB_CTX, backend="kernel") as linux:
        a, b = ours.programs["cgskb_ctx"], linux.programs["cgskb_ctx"]
        for data_in, ctx_in in CGSKB_CASES:
            assert _outcome(a, data_in, ctx_in, 1) == _outcome(b, data_in, ctx_in, 1), data_in
