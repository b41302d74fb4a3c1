"""Ports: checksums completed for offloaded frames, TAP devices, and redirects on a live link."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
from frames import arp, tcp4, udp4, udp6  # noqa: E402

from pybpf.hooks.live_port import fix_checksum  # noqa: E402
from pybpf.state import StateDirectory  # noqa: E402
from test_hooks_live import (  # noqa: E402
    EXAMPLES,
    RAW_PEER,
    Wire,
    _why_not,
    build_wire,
    in_ns,
    serving,
)  # fmt: skip


def _sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _pseudo4(frame: bytes, l4: bytes) -> bytes:
    return frame[26:34] + struct.pack("!BBH", 0, frame[23], len(l4))


def _pseudo6(frame: bytes, l4: bytes) -> bytes:
    return frame[22:54] + struct.pack("!IxxxB", len(l4), frame[20])


@pytest.mark.parametrize(
    ("frame", "l4_at", "field", "pseudo"),
    [
        (udp4(payload=b"hello world"), 34, 6, _pseudo4),
        (udp4(payload=b"odd"), 34, 6, _pseudo4),
        (tcp4(payload=b"GET / HTTP/1.0\r\n"), 34, 16, _pseudo4),
        (udp6(payload=b"v6 payload"), 54, 6, _pseudo6),
    ],
)
def test_offloaded_checksums_are_completed(frame, l4_at, field, pseudo):
    # what a sender leaving the checksum to offload hands over: the pseudo-header's sum
    l4 = frame[l4_at:]
    partial = _sum(pseudo(frame, l4)).to_bytes(2, "big")
    at = l4_at + field
    offloaded = frame[:at] + partial + frame[at + 2 :]
    fixed = fix_checksum(offloaded)
    assert fixed[:at] == frame[:at] and fixed[at + 2 :] == frame[at + 2 :]
    # a valid checksum: pseudo-header plus segment (its checksum included) sums to 0xffff
    assert _sum(pseudo(fixed, fixed[l4_at:]) + fixed[l4_at:]) == 0xFFFF
    assert fixed[at : at + 2] != b"\0\0"


def test_frames_without_tcp_or_udp_are_left_alone():
    for frame in (arp(), udp4()[:30], bytes(14)):
        assert fix_checksum(frame) == frame


live = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")


@live
def test_tap_device_both_ways(tmp_path):
    from pybpf.hooks.live_port import PacketPort, TapPort

    name = f"pbt{os.getpid() % 100000}"
    with TapPort(name) as tap:
        try:
            subprocess.run(["ip", "link", "set", name, "up"], check=True, timeout=10)
            Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").write_text("1")
            with PacketPort(name) as port:
                head = bytes.fromhex("ffffffffffff020000000001")
                frame = (head + b"\x88\xb5PYBPF").ljust(60, b"\0")
                assert tap.send(frame)  # the host receives it on the device
                assert _eventually(lambda: port.receive(), frame)
                assert port.send(frame[::-1].ljust(60, b"\0"))  # the host sends: the tap reads
                assert _eventually(lambda: tap.receive(), frame[::-1].ljust(60, b"\0"))
        finally:
            subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=10)


def _eventually(read, wanted: bytes, seconds: float = 2.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if wanted in read():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture(scope="module")
def wire():
    if _why_not() is not None:
        pytest.skip(_why_not())
    with build_wire() as w:
        yield w


@live
@pytest.mark.parametrize("io", ("ring", "socket"))
def test_redirect_to_an_ifindex_on_a_live_link(wire: Wire, io: str, tmp_path):
    import pybpf
    from pybpf.hooks.live import LiveLink

    c_index = int(Path(f"/sys/class/net/{wire.c}/ifindex").read_text())
    assert c_index <= 255  # xdp_redir takes the ifindex from one byte (build_wire sees to it)
    obj = pybpf.load(EXAMPLES / "packet_helpers.o", engine="jit")
    # xdp_redir: bpf_redirect(data[0], data[1]): the destination MAC's first bytes choose
    marker = b"PYBPF-REDIR"
    frames = [(bytes([c_index, 0, 0, 0, 0, 0]) + bytes.fromhex("020000000001") + b"\x88\xb5"
               + marker + label).ljust(60, b"\0")
              for label in (b"one", b"two")]  # fmt: skip
    frames.append((bytes([250, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1]) + b"\x88\xb5" + marker
                   + b"nowhere").ljust(60, b"\0"))  # fmt: skip
    link = LiveLink(obj.programs["xdp_redir"], wire.b, ring=io == "ring",
                    state=StateDirectory(tmp_path / "s"))  # fmt: skip
    assert link.io == io
    assert not link.runner.batched  # bpf_redirect needs the per-frame packet state
    with serving(link):
        server = in_ns(wire.server, RAW_PEER, wire.d, marker.decode(), "[]", "1.0")
        client = in_ns(wire.client, RAW_PEER, wire.a, marker.decode(),
                       json.dumps([f.hex() for f in frames]), "0.3")  # fmt: skip
        try:
            for peer in (server, client):
                assert peer.stdout.readline().strip() == "ready"
            server.stdin.write("go\n")
            server.stdin.flush()
            client.communicate(input="go\n", timeout=10)
            out, _ = server.communicate(timeout=10)
        finally:
            client.kill()
            server.kill()
    across = [bytes.fromhex(h) for h in json.loads(out.strip().splitlines()[-1])]
    assert [f[14 + len(marker) :].rstrip(b"\0") for f in across] == [b"one", b"two"]
    assert link.counters[f"redirect:{c_index}"] == 2 and link.counters["redirected"] == 2
    assert link.counters["redirect:250"] == 1 and link.counters["redirect_unknown"] == 1
    obj.close()
