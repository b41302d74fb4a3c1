"""Legacy LD_ABS/LD_IND loads at Linux's negative offsets (SKF_NET_OFF, SKF_LL_OFF) in the
interpreter and the JIT, in socket filter and tc test runs, and against Linux's test runs
(``tests/fixtures/legacy/legacy_loads.c``; the corpus programs that use them)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import pybpf
from kernel import requires_bpf
from pybpf.isa import AluOp, Class, Instruction, JmpOp, Mode, Size, Source
from pybpf.isa.opcodes import alu_opcode, jmp_opcode, mem_opcode
from pybpf.jit import JitProgram, available, unavailable_reason
from pybpf.memory import Region
from pybpf.runtime.packet import (
    SKF_AD_OFF,
    SKF_LL_OFF,
    SKF_NET_OFF,
    PacketState,
    bind_packet,
    unbind_packet,
)
from pybpf.vm import Interpreter

FIXTURE = Path(__file__).parent / "fixtures" / "legacy" / "legacy_loads.o"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
ENGINES = ["interpreter", pytest.param("jit", marks=pytest.mark.skipif(
    not available(), reason=f"no JIT: {unavailable_reason()}"))]  # fmt: skip
_SIZES = {1: Size.B, 2: Size.H, 4: Size.W}
_EXIT = Instruction(jmp_opcode(Class.JMP, JmpOp.EXIT, Source.K))


def _mov(dst: int, src: int) -> Instruction:
    return Instruction(alu_opcode(Class.ALU64, AluOp.MOV, Source.X), dst=dst, src=src)


def _mov_imm(dst: int, imm: int) -> Instruction:
    return Instruction(alu_opcode(Class.ALU64, AluOp.MOV, Source.K), dst=dst, imm=imm)


def _program(n: int, k: int | None = None) -> list[Instruction]:
    """r0 = the n-byte legacy load at k (LD_ABS), or with k None at r1 (LD_IND r7 + 0 with
    r7 = r1, the run's argument), then r0 |= 1 << 40 so a successful load of 0 differs
    from a failed one (r0 = 0)."""
    if k is None:
        load = [_mov(7, 1), Instruction(mem_opcode(Class.LD, Mode.IND, _SIZES[n]), src=7)]
    else:
        load = [Instruction(mem_opcode(Class.LD, Mode.ABS, _SIZES[n]), imm=k)]
    mark = [
        _mov_imm(8, 1),
        Instruction(alu_opcode(Class.ALU64, AluOp.LSH, Source.K), dst=8, imm=40),
        Instruction(alu_opcode(Class.ALU64, AluOp.OR, Source.X), dst=0, src=8),
    ]
    return [_mov(6, 1), *load, *mark, _EXIT]


class _Skb:
    """A buffer laid out as Linux's test-run skb: ``headroom`` bytes, then ``frame``; the
    legacy packet starts ``skip`` bytes into the frame (14: a socket filter's L3 view)."""

    def __init__(self, frame: bytes, skip: int, headroom: int = 64, mac: int | None = 0,
                 net: int | None = 14) -> None:  # fmt: skip
        self.frame, self.skip, self.headroom = frame, skip, headroom
        self.buffer = Region.from_bytes(bytes(range(1, headroom + 1)) + frame, kind="packet")
        start = headroom + skip
        self.legacy = Region.wrap(self.buffer.address + start, len(frame) - skip,
                                  kind="packet", writable=False, owner=self.buffer)  # fmt: skip
        self.state = PacketState("skb", self.buffer, start, headroom + len(frame), start,
                                 headroom + len(frame))  # fmt: skip
        self.state.mac_header = None if mac is None else headroom + mac
        self.state.network_header = None if net is None else headroom + net
        bind_packet(self.state, self.legacy.address)

    def expected(self, k: int, n: int) -> int:
        """What Linux's load gives (``None``: the load fails), computed from the layout."""
        buf = bytes(self.buffer.view)
        end = self.headroom + len(self.frame)
        if k >= 0:
            at = self.headroom + self.skip + k
            lo = self.headroom + self.skip
        elif k >= SKF_NET_OFF and self.state.network_header is not None:
            at, lo = self.state.network_header + k - SKF_NET_OFF, 0
        elif SKF_LL_OFF <= k < SKF_NET_OFF and self.state.mac_header is not None:
            at, lo = self.state.mac_header + k - SKF_LL_OFF, 0
        else:
            return 0
        if at < lo or at + n > end:
            return 0
        return int.from_bytes(buf[at : at + n], "big") | 1 << 40

    def close(self) -> None:
        unbind_packet(self.legacy.address)
        self.buffer.close()


def _engine(name: str, insns: list[Instruction]):
    make = Interpreter if name == "interpreter" else JitProgram
    return make(insns, legacy_packet=True)


FRAME = bytes(range(0xA0, 0xA0 + 60))  # no zero byte: a loaded 0 would be a failed load
OFFSETS = [
    0, 5, 45, 46,  # in the packet; 46: past its end for a 4-byte load from L3
    SKF_NET_OFF, SKF_NET_OFF + 9, SKF_NET_OFF + 42, SKF_NET_OFF + 43, SKF_NET_OFF + 45,
    SKF_LL_OFF, SKF_LL_OFF + 12, SKF_LL_OFF + 56, SKF_LL_OFF + 57, SKF_LL_OFF + 59,
    SKF_NET_OFF - 1, SKF_LL_OFF - 1, SKF_AD_OFF, SKF_AD_OFF + 4, -1, -0x7FFFFFFF, 0x7FFFFFFF,
]  # fmt: skip


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("skip", [0, 14], ids=["tc", "socket_filter"])
def test_negative_offsets_read_the_headers(engine: str, skip: int) -> None:
    skb = _Skb(FRAME, skip)
    try:
        for n in (1, 2, 4):
            prog = _engine(engine, _program(n))  # LD_IND: the offset is the argument
            try:
                for k in OFFSETS:
                    got = prog.run((k & (1 << 64) - 1,), packet=skb.legacy)
                    assert got == skb.expected(k, n), (hex(k), n)
            finally:
                prog.close()
            for k in OFFSETS[4::3]:  # LD_ABS: the offset is the instruction's
                prog = _engine(engine, _program(n, k))
                try:
                    assert prog.run((0,), packet=skb.legacy) == skb.expected(k, n), (hex(k), n)
                finally:
                    prog.close()
    finally:
        skb.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_the_headers_come_from_the_packet_state(engine: str) -> None:
    """A state whose mac header is 2 bytes before the buffer's head: loads there fail (the
    head bound); one without headers (or no state at all) fails every negative load."""
    cases = [
        (_Skb(FRAME, 0, headroom=0, mac=-2, net=14), [(SKF_LL_OFF, 0), (SKF_LL_OFF + 1, 0),
                                                     (SKF_LL_OFF + 2, 1), (SKF_NET_OFF, 1)]),
        (_Skb(FRAME, 14, mac=None, net=None), [(SKF_LL_OFF, 0), (SKF_NET_OFF, 0), (0, 1)]),
        (_Skb(FRAME, 0, mac=None, net=4), [(SKF_LL_OFF, 0), (SKF_NET_OFF, 1)]),
    ]  # fmt: skip
    unbound = Region.from_bytes(FRAME, kind="packet", writable=False)
    try:
        for skb, loads in cases:
            for k, ok in loads:
                prog = _engine(engine, _program(1, k))
                try:
                    got = prog.run((0,), packet=skb.legacy)
                    assert got == skb.expected(k, 1) and (got != 0) == bool(ok), hex(k)
                    assert prog.run((0,), packet=unbound) == (0 if k < 0 else 1 << 40 | 0xA0)
                finally:
                    prog.close()
    finally:
        unbound.close()
        for skb, _ in cases:
            skb.close()


# ---- test runs (the fixture) -------------------------------------------------------------
def _frame(vlan: bool = False) -> bytes:
    eth = bytes(range(1, 13)) + (b"\x81\x00\x00\x05" if vlan else b"") + b"\x08\x00"
    ip = bytes([0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    return eth + ip + bytes(range(100, 120))


def _ctx(k: int, n: int) -> bytes:
    ctx = bytearray(192)
    struct.pack_into("<III", ctx, 48, k & 0xFFFFFFFF, n, 0xDEAD)
    return bytes(ctx)


def _ind_expected(frame: bytes, skip: int, k: int, n: int) -> tuple[int, int]:
    """(retval, cb[2]) of ``*_ind`` on ``frame`` (mac header at 0, network header at 14)."""
    if k >= 0:
        at = skip + k
    elif k >= SKF_NET_OFF:
        at = 14 + k - SKF_NET_OFF
    elif k >= SKF_LL_OFF:
        at = k - SKF_LL_OFF
    else:
        return 0, 0xDEAD
    if at + n > len(frame):
        return 0, 0xDEAD
    return 1, int.from_bytes(frame[at : at + n], "big")


def _ind_outcome(prog, frame: bytes, k: int, n: int) -> tuple[int, int]:
    r = prog.test_run(frame, ctx_in=_ctx(k, n))
    return r.retval, struct.unpack_from("<I", r.ctx_out, 56)[0]


RUN_OFFSETS = [
    (0, 4), (SKF_NET_OFF, 1), (SKF_NET_OFF + 12, 4), (SKF_NET_OFF + 36, 4),
    (SKF_NET_OFF + 37, 4), (SKF_LL_OFF + 12, 2), (SKF_LL_OFF + 50, 4), (SKF_LL_OFF + 51, 4),
    (SKF_LL_OFF - 1, 1), (-1, 1), (SKF_AD_OFF, 4),
]  # fmt: skip


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["sock", "tc"])
def test_test_runs_put_the_headers_where_linux_does(engine: str, kind: str) -> None:
    skip = 14 if kind == "sock" else 0
    with pybpf.load(FIXTURE, engine=engine) as obj:
        ind, abs_ = obj.programs[f"{kind}_ind"], obj.programs[f"{kind}_abs"]
        for vlan in (False, True):  # the network header stays ETH_HLEN after the mac header
            frame = _frame(vlan)
            for k, n in RUN_OFFSETS:
                assert _ind_outcome(ind, frame, k, n) == _ind_expected(frame, skip, k, n)
            r = abs_.test_run(frame, ctx_in=bytes(192))
            words = [frame[23], frame[26:30], frame[6:10], frame[skip + 2 : skip + 4], frame[30:34]]
            want = [w if isinstance(w, int) else int.from_bytes(w, "big") for w in words]
            assert list(struct.unpack_from("<5I", r.ctx_out, 48)) == want
            assert r.retval == 1 + int.from_bytes(frame[12:14], "big")


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _checksummed(frame: bytes) -> bytes:
    out = bytearray(frame)
    out[24:26] = bytes(2)
    out[24:26] = _ip_checksum(bytes(out[14:34])).to_bytes(2, "big")
    return bytes(out)


@pytest.mark.parametrize("engine", ENGINES)
def test_csum_replace_after_a_legacy_load_edits_the_skb(engine: str) -> None:
    """tcbpf1_kern.c's set_ip_tos: the TOS read at SKF_LL_OFF + 15, the IP checksum updated
    by bpf_l3_csum_replace in the skb's own buffer (not the read-only legacy view)."""
    frame = _checksummed(_frame())
    with pybpf.load(FIXTURE, engine=engine) as obj:
        r = obj.programs["tc_tos"].test_run(frame)
    assert r.retval == 1  # both helpers returned 0
    out = r.data_out
    assert out[15] == 8 and out[24:26] != frame[24:26]
    assert _ip_checksum(out[14:34]) == 0  # still a valid header checksum
    assert out[:15] + out[16:24] + out[26:] == frame[:15] + frame[16:24] + frame[26:]


# ---- against Linux ---------------------------------------------------------------------
@requires_bpf
@pytest.mark.parametrize("engine", ENGINES)
def test_fixture_runs_as_on_linux(engine: str) -> None:
    with pybpf.load(FIXTURE, engine=engine) as ours, \
            pybpf.load(FIXTURE, backend="kernel") as linux:  # fmt: skip
        for kind in ("sock", "tc"):
            a, b = ours.programs[f"{kind}_ind"], linux.programs[f"{kind}_ind"]
            for frame in (_frame(), _frame(vlan=True)):
                for k, n in RUN_OFFSETS + [(SKF_LL_OFF, 4), (SKF_NET_OFF + 39, 1)]:
                    assert _ind_outcome(a, frame, k, n) == _ind_outcome(b, frame, k, n), k
                a2, b2 = ours.programs[f"{kind}_abs"], linux.programs[f"{kind}_abs"]
                ra, rb = (
                    a2.test_run(frame, ctx_in=bytes(192)),
                    b2.test_run(frame, ctx_in=bytes(192)),
                )
                assert (ra.retval, ra.ctx_out[48:68]) == (rb.retval, rb.ctx_out[48:68])
        a, b = ours.programs["tc_tos"], linux.programs["tc_tos"]
        for frame in (_frame(), _checksummed(_frame()), _frame(vlan=True)):
            ra, rb = a.test_run(frame), b.test_run(frame)
            assert (ra.retval, ra.data_out) == (rb.retval, rb.data_out)


def _eth(proto: int, payload: bytes) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", proto) + payload


def _ipv4(proto: int, body: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 64, proto, 0,
                       b"\n\0\0\1", b"\n\0\0\2") + body  # fmt: skip


_UDP = struct.pack("!HHHH", 1234, 53, 12, 0) + b"abcd"
_TCP = struct.pack("!HHIIBBHHH", 1234, 80, 1, 0, 0x50, 0x02, 1000, 0, 0)


@requires_bpf
@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no corpus at {CORPUS}")
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("path", "name", "prog_type"),
    [("linux/tcbpf1_kern.o", "classifier", "sched_cls"),
     ("suricata/lb.o", "loadbalancer", "socket_filter")],
)  # fmt: skip
def test_corpus_programs_run_as_on_linux(engine: str, path: str, name: str, prog_type: str):
    from pybpf.elf import read_object
    from pybpf.objects import Object
    from pybpf.progtypes import ProgType

    if not (CORPUS / path).is_file():
        pytest.skip(f"no {CORPUS / path}")
    frames = [_eth(0x0800, _ipv4(17, _UDP)), _eth(0x0800, _ipv4(6, _TCP)), bytes(64)]
    results = []
    for backend in (engine, "kernel"):
        spec = read_object((CORPUS / path).read_bytes())
        spec.set_program_type(name, ProgType.from_name(prog_type))
        spec.program(name).attach_type = None
        obj = Object(spec)
        try:
            if backend == "kernel":
                obj.load(backend="kernel", programs=[name])
            else:
                obj.load(engine=backend, programs=[name])
            runs = [obj.programs[name].test_run(f) for f in frames]
            results.append([(r.retval, bytes(r.data_out)) for r in runs])
        finally:
            obj.close()
    assert results[0] == results[1]
    assert any(retval for retval, _ in results[1]) or path.startswith("linux")


@pytest.mark.parametrize("engine", ["interpreter", "jit"])
def test_capture_runner_sets_the_headers_as_test_run_does(engine):
    """tcbpf1's classifier reads the TOS at SKF_LL_OFF + 15 and rewrites the IP checksum:
    the capture runner's frames give the bytes test_run gives (IP checksum 0x07ee)."""
    path = CORPUS / "linux" / "tcbpf1_kern.o"
    if not path.exists():
        pytest.skip(f"the corpus is not at {CORPUS}")
    if engine == "jit" and not available():
        pytest.skip(unavailable_reason() or "no JIT")
    from pybpf.hooks.packetrun import PacketRunner

    eth = bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x00"
    ip = bytes([0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    tcp = struct.pack(">HHIIBBHHH", 1234, 80, 0, 0, 0x50, 2, 1024, 0, 0)
    frame = eth + ip + tcp
    with pybpf.load(path, engine=engine, programs=["classifier"]) as obj:
        prog = obj.programs["classifier"]
        single = prog.test_run(frame)
        runner = PacketRunner(prog)
        try:
            retval, data_out, _target = runner.run(frame)
        finally:
            runner.close()
    assert single.data_out[24:26] == bytes.fromhex("07ee")
    assert (retval, data_out) == (single.retval, single.data_out)
