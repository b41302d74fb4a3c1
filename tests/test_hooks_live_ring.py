"""PACKET_MMAP rings on a live link: bursts across ring blocks, frames longer than a block or
a transmit slot, interfaces that go down under queued frames, and the socket fallback.

The wire is ``tests/test_hooks_live.py``'s (its own namespaces), with a 9000-byte MTU on
every interface so frames longer than a small ring block can be sent. Linux, root, iproute2.
"""

from __future__ import annotations

import errno
import json
import struct
import time
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import SyscallError
from pybpf.objects.context import XDP_LINEAR_MAX
from pybpf.state import StateDirectory
from test_hooks_live import EXAMPLES, Wire, _why_not, build_wire, in_ns, serving, sh

pytestmark = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")

MTU = 9000

# sends the frames given as hex on stdin (one JSON list), then reports every frame with the
# marker it receives within the time given (a big queue: a burst must not overflow it)
PEER = """
import json, socket, sys, time
dev, marker, seconds = sys.argv[1], sys.argv[2].encode(), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)
s.bind((dev, 3))
s.settimeout(0.05)
print("ready", flush=True)
sends = json.loads(sys.stdin.readline())
for hexframe in sends:
    s.send(bytes.fromhex(hexframe))
seen, end = [], time.monotonic() + seconds
while time.monotonic() < end:
    try:
        data, addr = s.recvfrom(65536)
    except socket.timeout:
        continue
    if addr[2] != socket.PACKET_OUTGOING and marker in data:
        seen.append(data.hex())
print(json.dumps(seen), flush=True)
"""


@pytest.fixture(scope="module")
def wire():
    with build_wire() as w:
        for ns, dev in ((w.client, w.a), (w.server, w.d)):
            sh("ip", "-n", ns, "link", "set", dev, "mtu", str(MTU))
        for dev in (w.b, w.c):
            sh("ip", "link", "set", dev, "mtu", str(MTU))
        yield w


def _frame(verdict: int, marker: bytes, label: bytes, size: int = 60) -> bytes:
    # xdp_ctx returns byte 15 & 3 (1 drop, 2 pass, 3 tx) and writes xdp_md over bytes 0-15
    head = bytes.fromhex("ffffffffffff" "020000000001") + b"\x88\xb5"
    return (head + bytes([0, verdict]) + marker + label).ljust(size, b"\0")


def _exchange(w: Wire, marker: bytes, frames: list[bytes], seconds: float = 0.5):
    """Send ``frames`` from the client; the marked frames the client and the server saw."""
    server = in_ns(w.server, PEER, w.d, marker.decode(), str(seconds))
    client = in_ns(w.client, PEER, w.a, marker.decode(), str(seconds))
    try:
        for peer in (server, client):
            assert peer.stdout.readline().strip() == "ready", peer.stderr.read()
        server.stdin.write("[]\n")
        server.stdin.flush()
        out, _ = client.communicate(json.dumps([f.hex() for f in frames]) + "\n", timeout=30)
        server_out, _ = server.communicate(timeout=30)
    finally:
        client.kill()
        server.kill()

    def seen(text: str) -> list[bytes]:
        return [bytes.fromhex(h) for h in json.loads(text.strip().splitlines()[-1])]

    return seen(out), seen(server_out)


def _link(w: Wire, tmp_path: Path, **options):
    from pybpf.hooks.live import LiveLink

    obj = pybpf.load(EXAMPLES / "xdp_ctx.o", engine="jit")
    link = LiveLink(obj.programs["xdp_ctx"], w.b, to=w.c,
                    state=StateDirectory(tmp_path / "state"), **options)  # fmt: skip
    return obj, link


def test_a_burst_larger_than_a_ring_block(wire: Wire, tmp_path: Path) -> None:
    from pybpf.hooks import live_ring

    marker = b"PYBPF-BURST"
    count = 3000  # ~144 ring bytes each: more than 3 blocks of 128 KiB
    assert count * 144 > live_ring.RX_BLOCK_SIZE * 3
    frames = [_frame(2, marker, b"%05d" % i) for i in range(count)]
    obj, link = _link(wire, tmp_path, ring=True)
    with serving(link):
        _, across = _exchange(wire, marker, frames, seconds=1.5)
    labels = [f[16 + len(marker) : 16 + len(marker) + 5] for f in across]
    assert labels == [b"%05d" % i for i in range(count)]  # every one, in order
    assert link.counters["pass"] >= count and link.counters["rx_overruns"] == 0
    assert link.counters["forwarded"] == link.counters["pass"]
    assert link.counters["send_errors"] == 0
    obj.close()


def test_ring_blocks_wrap_around(wire: Wire) -> None:
    from pybpf.hooks.live_ring import RingPort

    marker = b"PYBPF-WRAP"
    # 8 blocks of one page: ~28 small frames a block, so 150 frames fill 6 blocks and the
    # second round goes round the ring's end
    with RingPort(wire.b, block_size=4096, blocks=8, retire_ms=1) as port:
        for round_ in range(2):
            frames = [_frame(2, marker, b"%d-%03d" % (round_, i)) for i in range(150)]
            _exchange(wire, marker, frames, seconds=0.2)
            got = []
            for _ in range(50):
                got += [f for f in port.receive(64) if marker in f]
                if len(got) >= len(frames):
                    break
                time.sleep(0.01)
            assert got == frames
        assert port.overruns() == 0 and port.truncated() == 0


def test_a_frame_longer_than_a_ring_block_is_counted_never_run(
    wire: Wire, tmp_path: Path, monkeypatch
) -> None:
    from pybpf.hooks import live_ring

    marker = b"PYBPF-LONG"
    frames = [_frame(2, marker, b"long", 6000), _frame(2, marker, b"short")]
    monkeypatch.setattr(live_ring, "RX_BLOCK_SIZE", 4096)  # the 6000 bytes cannot fit
    obj, link = _link(wire, tmp_path, ring=True)
    with serving(link):
        _, across = _exchange(wire, marker, frames, seconds=0.5)
    assert [f[16 + len(marker) :].rstrip(b"\0") for f in across] == [b"short"]
    assert link.counters["rx_truncated"] == 1
    assert link.counters["pass"] == link.counters["rx"]  # the long one never ran
    obj.close()
    monkeypatch.undo()  # default blocks: the same frame runs whole and goes across
    obj, link = _link(wire, tmp_path, ring=True)
    with serving(link):
        _, across = _exchange(wire, marker, frames, seconds=0.5)
    assert [len(f) for f in across] == [6000, 60]
    # the program ran on it: xdp_md's data_end - data is its linear part (as in Linux's
    # generic XDP), the rest came along unchanged
    assert struct.unpack("<4I", across[0][:16])[2] == min(6000, XDP_LINEAR_MAX)
    assert across[0][16:] == frames[0][16:]
    assert link.counters["rx_truncated"] == 0
    obj.close()


def test_a_frame_longer_than_a_transmit_slot_is_sent_directly(wire: Wire) -> None:
    from pybpf.hooks.live_ring import RingPort

    marker = b"PYBPF-SLOT"
    small, large = _frame(2, marker, b"small"), _frame(2, marker, b"large", 5000)
    server = in_ns(wire.server, PEER, wire.d, marker.decode(), "0.5")
    try:
        assert server.stdout.readline().strip() == "ready"
        with RingPort(wire.c, receive=False, tx_frame_size=2048) as port:
            assert port.tx_room < len(large)
            server.stdin.write("[]\n")
            server.stdin.flush()
            assert port.queue(small, "a") and port.queue(large, "b") and port.queue(small, "c")
            assert port.flush() == []
        out, _ = server.communicate(timeout=30)
    finally:
        server.kill()
    across = [bytes.fromhex(h) for h in json.loads(out.strip().splitlines()[-1])]
    assert across == [small, large, small]  # in the order queued


def test_queued_frames_come_back_when_the_interface_goes_down(wire: Wire) -> None:
    from pybpf.hooks.live_ring import RingPort

    with RingPort(wire.c, receive=False) as port:
        try:
            sh("ip", "link", "set", wire.c, "down")
            assert all(port.queue(_frame(2, b"DOWN", b"%d" % i), i) for i in range(3))
            assert port.flush() == [0, 1, 2]  # refused, oldest first
        finally:
            sh("ip", "link", "set", wire.c, "up")
        assert port.queue(_frame(2, b"UP", b"x"), "up")  # a fresh ring takes frames again
        assert port.flush() == []


def test_links_fall_back_to_sockets_when_rings_are_refused(
    wire: Wire, tmp_path: Path, monkeypatch
) -> None:
    from pybpf.hooks import live_ring
    from pybpf.hooks.live import LiveLink
    from pybpf.hooks.live_port import PacketPort

    monkeypatch.setattr(live_ring, "TPACKET_V3", 99)  # no such version: the kernel says EINVAL
    obj = pybpf.load(EXAMPLES / "xdp_ctx.o", engine="jit")
    with pytest.raises(SyscallError) as info:
        LiveLink(obj.programs["xdp_ctx"], wire.b, ring=True, state=StateDirectory(tmp_path))
    assert info.value.errno == errno.EINVAL
    obj.close()
    marker = b"PYBPF-FALLBACK"
    obj, link = _link(wire, tmp_path)
    assert isinstance(link, LiveLink) and isinstance(link.port, PacketPort)
    record = link.record.to_json()
    assert record["io"] == link.io == "socket" and "EINVAL" in record["io_fallback"]
    with serving(link):
        back, across = _exchange(wire, marker, [_frame(2, marker, b"p"), _frame(3, marker, b"t")])
    assert [f[16 + len(marker) :].rstrip(b"\0") for f in across] == [b"p"]
    assert [f[16 + len(marker) :].rstrip(b"\0") for f in back] == [b"t"]
    assert link.counters["transmitted"] == 1
    obj.close()


def test_ring_link_reports_its_io_and_skips_its_own_frames(wire: Wire, tmp_path: Path) -> None:
    marker = b"PYBPF-OWN"
    obj, link = _link(wire, tmp_path)  # the default: rings where the kernel has them
    assert link.io == link.record.to_json()["io"] == "ring"
    assert "io_fallback" not in link.record.to_json()
    with serving(link):
        back, _ = _exchange(wire, marker, [_frame(3, marker, b"%d" % i) for i in range(5)])
    assert len(back) == 5
    # what the link transmitted on b never came back to it as input (it would run again:
    # xdp_ctx wrote a 0 over byte 15 of each, so as aborted)
    assert link.counters["tx"] == link.counters["transmitted"] == 5
    assert link.counters["aborted"] == 0
    obj.close()


@pytest.mark.parametrize("io", ("ring", "socket"))
def test_ports_give_frames_back_as_sent_vlan_tags_included(wire: Wire, io: str) -> None:
    from pybpf.hooks.live_port import PacketPort
    from pybpf.hooks.live_ring import RingPort

    marker = b"PYBPF-VLAN"
    plain = _frame(2, marker, b"plain")
    # an 802.1Q tag (VLAN 5, priority 3): the receiving stack strips it before the taps
    tagged = plain[:12] + bytes.fromhex("8100" "6005") + plain[12:]
    opened = RingPort(wire.b) if io == "ring" else PacketPort(wire.b)
    with opened as port:
        _exchange(wire, marker, [plain, tagged], seconds=0.1)
        got: list[bytes] = []
        for _ in range(100):
            got += [f for f in port.receive(64) if marker in f]
            if len(got) >= 2:
                break
            time.sleep(0.01)
    assert got == [plain, tagged]
