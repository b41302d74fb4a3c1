"""Packet helpers: XDP head/meta/tail moves, skb byte access, redirects, cookies; Linux beside."""

from __future__ import annotations

import errno
import struct
from pathlib import Path

import pytest

import pybpf
from kernel import requires_bpf
from pybpf.errors import InputError
from pybpf.maps import create_map
from pybpf.maptypes import MapType
from pybpf.memory import AddressSpace, Region
from pybpf.objects.context import XDP_LINEAR_MAX, XDP_PACKET_HEADROOM
from pybpf.runtime import ExecutionContext, default_helpers
from pybpf.runtime.packet import (
    XDP_FRAME_SIZE,
    PacketState,
    bind_packet,
    redirect,
    redirect_map,
    unbind_packet,
    xdp_adjust_head,
    xdp_adjust_meta,
    xdp_adjust_tail,
)

PACKET = Path(__file__).parents[1] / "examples" / "c" / "packet_helpers.o"
ABORTED, DROP, PASS, TX, REDIRECT = range(5)
_M64 = (1 << 64) - 1


def _md(data=0, data_end=0) -> bytes:
    return struct.pack("<6I", data, data_end, 0, 0, 0, 0)


def _le16(n: int) -> bytes:
    return (n & 0xFFFF).to_bytes(2, "little")


@pytest.fixture(scope="module")
def obj():
    with pybpf.load(PACKET) as o:
        yield o


def _run(obj, name, data_in, ctx_in=None):
    return obj.programs[name].test_run(data_in, ctx_in=ctx_in)


def test_the_helpers_are_registered_and_no_longer_refused():
    ids = default_helpers().ids()
    for helper_id in (9, 23, 26, 44, 46, 51, 54, 65):
        assert helper_id in ids


# ---- adjust_head ---------------------------------------------------------------------------
def test_push_prepends_a_header_and_data_out_grows(obj):
    pkt = bytes(range(1, 41))
    r = _run(obj, "xdp_push", pkt)
    assert r.retval == PASS
    assert r.data_out == struct.pack("<II", 0xEFBEADDE, len(pkt) + 8) + pkt


def test_push_moves_metadata_with_data(obj):
    pkt = bytes(range(1, 49))
    r = _run(obj, "xdp_push", pkt, _md(8, 48))
    assert r.retval == PASS
    assert r.data_out[:8] == pkt[:8]  # the metadata, moved down with data
    assert r.data_out[8:16] == struct.pack("<II", 0xEFBEADDE, 48)
    assert r.data_out[16:] == pkt[8:]
    assert struct.unpack("<2I", r.ctx_out[:8]) == (8, 56)


@pytest.mark.parametrize("delta", [0, 4, 16, 30 - 14, -(XDP_PACKET_HEADROOM - XDP_FRAME_SIZE)])
def test_pop_strips_the_front_within_limits(obj, delta):
    pkt = _le16(delta) + bytes(range(28))
    r = _run(obj, "xdp_pop", pkt)
    assert r.retval == PASS
    expected = pkt[delta:] if delta >= 0 else bytes(-delta) + pkt
    assert r.data_out == expected


@pytest.mark.parametrize(
    "delta", [30 - 13, 1000, -(XDP_PACKET_HEADROOM - XDP_FRAME_SIZE) - 1, -4000]
)
def test_pop_refuses_past_eth_hlen_or_into_the_xdp_frame(obj, delta):
    pkt = _le16(delta) + bytes(range(28))
    r = _run(obj, "xdp_pop", pkt)
    assert (r.retval, r.data_out) == (DROP, pkt)


# ---- adjust_tail ---------------------------------------------------------------------------
@pytest.mark.parametrize("delta", [-4, -16, 0, 10, XDP_LINEAR_MAX - 32])
def test_tail_trims_and_grows_with_zeros(obj, delta):
    pkt = _le16(delta) + bytes(range(1, 31))
    r = _run(obj, "xdp_tail", pkt)
    assert r.retval == PASS
    assert r.data_out == (pkt[:delta] if delta < 0 else pkt + bytes(delta))


@pytest.mark.parametrize("delta", [-19, -100, XDP_LINEAR_MAX - 31])
def test_tail_refuses_under_eth_hlen_or_past_the_tailroom(obj, delta):
    pkt = _le16(delta) + bytes(range(1, 31))
    r = _run(obj, "xdp_tail", pkt)
    assert (r.retval, r.data_out) == (DROP, pkt)


def test_tail_shrink_is_reported_in_ctx_out(obj):
    pkt = bytes(8) + _le16(-4) + bytes(range(30))  # 8 bytes of metadata first
    r = _run(obj, "xdp_tail", pkt, _md(8, 40))
    assert r.data_out == pkt[:36]
    assert struct.unpack("<2I", r.ctx_out[:8]) == (8, 36)


# ---- adjust_meta ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "delta, ret, metalen",
    [(-4, 0, 4), (-216, 0, 216), (-2, -errno.EACCES, 0), (4, -errno.EINVAL, 0),
     (-(XDP_PACKET_HEADROOM - XDP_FRAME_SIZE) - 4, -errno.EINVAL, 0)],
)
def test_meta_reserves_aligned_metadata_in_the_headroom(obj, delta, ret, metalen):
    pkt = _le16(delta) + bytes(30)
    r = _run(obj, "xdp_meta", pkt)
    assert r.retval == PASS
    meta, data = r.data_out[:metalen], r.data_out[metalen:]
    assert struct.unpack("<iI", data[:8]) == (ret, metalen)
    if metalen:
        assert meta[:4] == struct.pack("<I", 0x44332211)


def test_meta_can_give_back_metadata(obj):
    pkt = bytes(8) + _le16(8) + bytes(30)
    r = _run(obj, "xdp_meta", pkt, _md(8, len(pkt)))
    assert r.data_out == bytes(8) + pkt[16:]  # no metadata left; r = 0 and metalen 0 written
    assert struct.unpack("<2I", r.ctx_out[:8]) == (0, len(pkt) - 8)


# ---- redirect ------------------------------------------------------------------------------
def test_xdp_redirect_returns_xdp_redirect_or_aborted(obj):
    assert _run(obj, "xdp_redir", bytes([3, 0]) + bytes(20)).retval == REDIRECT
    assert _run(obj, "xdp_redir", bytes([3, 1]) + bytes(20)).retval == ABORTED


def _helper_ctx(kind: str):
    buf = Region(XDP_PACKET_HEADROOM + XDP_LINEAR_MAX, kind="packet")
    state = PacketState(kind, buf, 256, 300, 256, XDP_PACKET_HEADROOM + XDP_LINEAR_MAX)
    legacy = Region.wrap(buf.address + 256, 44, kind="packet", owner=buf)
    ctx = ExecutionContext(AddressSpace([buf]), packet=legacy)
    bind_packet(state, legacy.address, 0x1000)
    return ctx, state, lambda: (unbind_packet(legacy.address, 0x1000), buf.close())


def test_redirect_records_its_target():
    ctx, state, done = _helper_ctx("skb")
    try:
        assert redirect(ctx, 5, 1, 0, 0, 0) == 7  # TC_ACT_REDIRECT
        assert ctx.extra["redirect"] == state.redirect == (5, None, 1)
        assert redirect(ctx, 5, 4, 0, 0, 0) == 2  # TC_ACT_SHOT
    finally:
        done()


def test_redirect_map_looks_the_key_up_and_falls_back_to_the_flags():
    ctx, state, done = _helper_ctx("xdp")
    m = create_map(type=MapType.HASH, key_size=4, value_size=4, max_entries=4)
    m.update_raw((1).to_bytes(4, "little"), bytes(4))
    try:
        assert redirect_map(ctx, m.handle, 1, 0, 0, 0) == REDIRECT
        assert state.redirect == (m, 1, 0)
        assert redirect_map(ctx, m.handle, 7, DROP, 0, 0) == DROP
        assert state.redirect is None
        assert redirect_map(ctx, m.handle, 1, 1 << 5, 0, 0) == ABORTED
    finally:
        m.close()
        done()


def test_adjust_helpers_move_pointers_only_within_the_buffer():
    ctx, state, done = _helper_ctx("xdp")
    try:
        assert xdp_adjust_head(ctx, 0x1000, -200 & _M64, 0, 0, 0) == 0 and state.data == 56
        assert xdp_adjust_head(ctx, 0x1000, -17 & _M64, 0, 0, 0) == -errno.EINVAL
        assert xdp_adjust_meta(ctx, 0x1000, -16 & _M64, 0, 0, 0) == 0 and state.data_meta == 40
        assert xdp_adjust_head(ctx, 0x1000, -1 & _M64, 0, 0, 0) == -errno.EINVAL
        assert xdp_adjust_tail(ctx, 0x1000, 3520, 0, 0, 0) == -errno.EINVAL
    finally:
        done()


# ---- skb bytes and cookies -----------------------------------------------------------------
def test_tc_copies_bytes_and_refuses_out_of_range(obj):
    pkt = bytes(range(60))
    r = _run(obj, "tc_bytes", pkt)
    assert r.retval == 7  # every check held, then TC_ACT_REDIRECT
    assert r.data_out == pkt[:6] + pkt[:6] + pkt[12:]


def test_socket_filters_load_bytes_from_the_network_header(obj):
    frame = bytes(12) + b"\x86\xdd" + bytes(range(1, 41))
    assert _run(obj, "sock_bytes", frame).retval == int.from_bytes(bytes([1, 2, 3, 4]), "little")


def test_socket_cookies_are_stable_in_a_run_and_new_per_run(obj):
    prog = obj.programs["tc_bytes"]
    assert prog.test_run(bytes(range(60)), repeat=3).retval == 7
    from pybpf.objects.context import SkbContext
    from pybpf.progtypes import ProgType
    from pybpf.progtypes.contexts import rules_for

    skb = SkbContext(rules_for(ProgType.SCHED_CLS).context)
    a, b = skb.prepare(bytes(60), None), skb.prepare(bytes(60), None)
    try:
        assert a.state.cookie and b.state.cookie and a.state.cookie != b.state.cookie
    finally:
        a.close()
        b.close()


# ---- the kernel beside ---------------------------------------------------------------------
CASES = {
    "xdp_push": [(bytes(40), None), (bytes(range(1, 41)), None), (bytes(range(1, 41)), _md(8, 40))],
    "xdp_pop": [(_le16(d) + bytes(range(30)), None) for d in (0, 8, 18, 19, -216, -217)]
    + [(bytes(8) + _le16(4) + bytes(30), _md(8, 40))],
    "xdp_tail": [(_le16(d) + bytes(range(30)), None) for d in (-4, -18, -19, 64, 3488, 3489)]
    + [(bytes(8) + _le16(-4) + bytes(30), _md(8, 40))],
    "xdp_meta": [(_le16(d) + bytes(30), None) for d in (-4, -6, -252, -216, -220, 4)]
    + [(bytes(8) + _le16(d) + bytes(30), _md(8, 40)) for d in (4, 8, 12)],
    "xdp_redir": [(bytes([3, 0]) + bytes(30), None), (bytes([3, 2]) + bytes(30), None)],
    "tc_bytes": [(bytes(range(60)), None), (bytes(range(14)), None), (bytes(range(120)), None)],
    "sock_bytes": [(bytes(12) + b"\x08\x00" + bytes(range(1, 41)), None), (bytes(16), None)],
}


def _outcome(prog, data_in, ctx_in):
    try:
        r = prog.test_run(data_in, ctx_in=ctx_in)
    except (InputError, OSError) as err:
        return ("error", err.errno)
    return (r.retval, r.data_out, r.ctx_out)


@requires_bpf
@pytest.mark.parametrize("engine", ["interpreter", "jit"])
def test_packet_helpers_run_as_on_linux(engine):
    if engine == "jit":
        from pybpf.jit import available

        if not available():
            pytest.skip("llvmlite is not installed")
    with (
        pybpf.load(PACKET, engine=engine) as ours_obj,
        pybpf.load(PACKET, backend="kernel") as linux,
    ):
        for name, cases in CASES.items():
            for data_in, ctx_in in cases:
                ours = _outcome(ours_obj.programs[name], data_in, ctx_in)
                assert ours == _outcome(linux.programs[name], data_in, ctx_in), (name, data_in)
