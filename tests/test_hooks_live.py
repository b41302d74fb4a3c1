"""Live links over real veth pairs: frames from a client namespace through a program to a server.

The wire (built per module, torn down after): namespace ``client`` holds veth ``a``
(10.231.0.1/24), whose peer ``b`` is in this process's namespace; ``c`` (here too) is paired
with ``d`` in namespace ``server`` (10.231.0.2/24). A :class:`LiveLink` on ``b`` with
``to=c`` is the only way from the client to the server (and ``c`` back to ``b`` its return
path), so what the program drops never arrives. Linux, root and iproute2 only.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import InputError
from pybpf.state import StateDirectory

EXAMPLES = Path(__file__).parents[1] / "examples" / "c"
ENGINES = ("interpreter", "jit")
IOS = ("ring", "socket")  # PACKET_MMAP rings, one recvmsg/send per frame
CLIENT_IP, SERVER_IP, PORT = "10.231.0.1", "10.231.0.2", 5353
_SEQ = itertools.count()


def _why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "live links need Linux"
    if os.geteuid() != 0:
        return "live links need root (netns, veth, AF_PACKET)"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=10)


@dataclass
class Wire:
    """Names of the namespaces and interfaces of one wire."""

    client: str
    server: str
    a: str
    b: str
    c: str
    d: str


@contextmanager
def build_wire():
    """The topology of the module docstring; everything is removed on the way out."""
    tag = f"{os.getpid() % 10000:04d}{next(_SEQ)}"
    w = Wire(f"pbc{tag}", f"pbs{tag}", f"pa{tag}", f"pb{tag}", f"pc{tag}", f"pd{tag}")
    try:
        try:
            sh("ip", "netns", "add", w.client)
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot create a network namespace: {exc.stderr.decode().strip()}")
        sh("ip", "netns", "add", w.server)
        for ns in (w.client, w.server):  # no IPv6 chatter: the links see our frames only
            for conf in ("all", "default"):
                sh("ip", "netns", "exec", ns, "sh", "-c",
                   f"echo 1 > /proc/sys/net/ipv6/conf/{conf}/disable_ipv6")  # fmt: skip
        sh("ip", "link", "add", w.a, "type", "veth", "peer", "name", w.b)
        used = {int(f.read_text()) for f in Path("/sys/class/net").glob("*/ifindex")}
        free = next(i for i in range(200, 60, -1) if i not in used)  # fits in a byte
        sh("ip", "link", "add", w.c, "index", str(free), "type", "veth", "peer", "name", w.d)
        sh("ip", "link", "set", w.a, "netns", w.client)
        sh("ip", "link", "set", w.d, "netns", w.server)
        for ns, dev, addr in ((w.client, w.a, CLIENT_IP), (w.server, w.d, SERVER_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for dev in (w.b, w.c):
            Path(f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6").write_text("1")
            sh("ip", "link", "set", dev, "up")
        yield w
    finally:
        for cmd in (("link", "del", w.b), ("link", "del", w.c),
                    ("netns", "del", w.client), ("netns", "del", w.server)):  # fmt: skip
            subprocess.run(("ip", *cmd), capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def wire():
    with build_wire() as w:
        yield w


def in_ns(ns: str, script: str, *args: str) -> subprocess.Popen:
    """Run a Python ``script`` in namespace ``ns`` (stdout piped)."""
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


UDP_SERVER = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
got = []
try:
    while True:
        data, _ = s.recvfrom(4096)
        if data == b"END":
            break
        got.append(len(data))
except socket.timeout:
    got.append("timeout")
print(json.dumps(got), flush=True)
"""

UDP_CLIENT = """
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for n in json.loads(sys.argv[3]):
    s.sendto(b"x" * n, (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.005)
time.sleep(0.05)
s.sendto(b"END", (sys.argv[1], int(sys.argv[2])))
"""


def udp_exchange(w: Wire, sizes: list[int]) -> list:
    """Send UDP datagrams of ``sizes`` bytes from the client to the server; what arrived."""
    server = in_ns(w.server, UDP_SERVER, SERVER_IP, str(PORT), "4")
    try:
        assert server.stdout.readline().strip() == "ready"
        client = in_ns(w.client, UDP_CLIENT, SERVER_IP, str(PORT), json.dumps(sizes))
        assert client.wait(timeout=10) == 0, client.stderr.read()
        out, err = server.communicate(timeout=10)
    finally:
        server.kill()
    return json.loads(out.strip().splitlines()[-1])


@contextmanager
def serving(link):
    """``link.serve()`` in a thread for the block."""
    stop = threading.Event()
    thread = threading.Thread(target=link.serve, args=(stop.is_set,), daemon=True)
    thread.start()
    try:
        yield link
    finally:
        stop.set()
        thread.join(timeout=5)
        link.detach()


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


@pytest.mark.parametrize(("engine", "io"), [("interpreter", "ring"), ("jit", "ring"),
                                          ("jit", "socket")])  # fmt: skip
def test_drop_empty_udp_over_a_live_veth_link(
    wire: Wire, engine: str, io: str, tmp_path: Path
) -> None:
    from pybpf.hooks.live import LiveLink

    obj = pybpf.load(EXAMPLES / "drop_empty_udp.o", engine=engine)
    prog = obj.programs["drop_empty_udp"]
    dropped, filt = obj.maps["dropped_packet_map"], obj.maps["interface_index_map"]
    dropped.update_raw(_u32(0), struct.pack("<Q", 1000))
    for ns in (wire.client, wire.server):  # ARP has to go through the link again
        sh("ip", "-n", ns, "neigh", "flush", "all")
    link = LiveLink(prog, wire.b, to=wire.c, ring=io == "ring",
                    state=StateDirectory(tmp_path / "state"))  # fmt: skip
    assert link.runner.batched == (engine == "jit")
    assert link.io == link.record.to_json()["io"] == io
    with serving(link):
        # empty datagrams are dropped (never arrive) and counted; the others pass
        assert udp_exchange(wire, [0, 10, 0, 5]) == [10, 5]
        assert struct.unpack("<Q", dropped.lookup_raw(_u32(0)))[0] == 1002
        assert link.counters["drop"] == 2
        assert link.counters["forwarded"] == link.counters["pass"] >= 3
        assert link.counters["returned"] >= 1  # the server's ARP reply came back
        # the program sees b's ifindex as ingress_ifindex: a filter on another one lets
        # empty datagrams through, a filter on b's drops them again
        filt.update_raw(_u32(0), _u32(link.port.ifindex + 1000))
        assert udp_exchange(wire, [0]) == [0]
        filt.update_raw(_u32(0), _u32(link.port.ifindex))
        assert udp_exchange(wire, [0, 1]) == [1]
    assert link.counters["drop"] == 3
    assert struct.unpack("<Q", dropped.lookup_raw(_u32(0)))[0] == 1003
    assert not link.attached
    obj.close()


RAW_PEER = """
import json, socket, sys, time
dev, marker, sends = sys.argv[1], sys.argv[2].encode(), json.loads(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((dev, 3))
s.settimeout(0.05)
print("ready", flush=True)
sys.stdin.readline()
for hexframe in sends:
    s.send(bytes.fromhex(hexframe))
seen, end = [], time.monotonic() + float(sys.argv[4])
while time.monotonic() < end:
    try:
        data, addr = s.recvfrom(65536)
    except socket.timeout:
        continue
    if addr[2] != socket.PACKET_OUTGOING and marker in data:
        seen.append(data.hex())
print(json.dumps(seen), flush=True)
"""


def _raw_frame(verdict: int, marker: bytes, label: bytes) -> bytes:
    # xdp_ctx returns byte 15 & 3 and writes what it sees of xdp_md over bytes 0-15
    head = bytes.fromhex("ffffffffffff" "020000000001") + b"\x88\xb5"
    body = bytes([0, verdict]) + marker + label
    return (head + body).ljust(60, b"\0")


@pytest.mark.parametrize("io", IOS)
def test_tx_pass_and_drop_with_raw_frames(wire: Wire, io: str, tmp_path: Path) -> None:
    from pybpf.hooks.live import LiveLink

    obj = pybpf.load(EXAMPLES / "xdp_ctx.o", engine="jit")
    marker = b"PYBPF-LIVE"
    frames = [_raw_frame(3, marker, b"tx"), _raw_frame(2, marker, b"pass"),
              _raw_frame(1, marker, b"drop")]  # fmt: skip
    link = LiveLink(obj.programs["xdp_ctx"], wire.b, to=wire.c, ring=io == "ring",
                    state=StateDirectory(tmp_path / "state"))  # fmt: skip
    assert link.io == io
    with serving(link):
        server = in_ns(wire.server, RAW_PEER, wire.d, marker.decode(), "[]", "1.0")
        client = in_ns(wire.client, RAW_PEER, wire.a, marker.decode(),
                       json.dumps([f.hex() for f in frames]), "1.0")  # fmt: skip
        try:
            for peer in (server, client):
                assert peer.stdout.readline().strip() == "ready"
            server.stdin.write("go\n")
            server.stdin.flush()
            client_out, _ = client.communicate(input="go\n", timeout=10)
            server_out, _ = server.communicate(timeout=10)
        finally:
            client.kill()
            server.kill()
    back = [bytes.fromhex(h) for h in json.loads(client_out.strip().splitlines()[-1])]
    across = [bytes.fromhex(h) for h in json.loads(server_out.strip().splitlines()[-1])]
    # TX came back out of b to the client, as the program left it: b's ifindex, queue 0,
    # the frame's length, no metadata
    assert [f[16 + len(marker) :].rstrip(b"\0") for f in back] == [b"tx"]
    assert struct.unpack("<4I", back[0][:16]) == (link.port.ifindex, 0, 60, 0)
    # PASS went across to the server; DROP went nowhere
    assert [f[16 + len(marker) :].rstrip(b"\0") for f in across] == [b"pass"]
    assert link.counters["tx"] == link.counters["transmitted"] == 1
    assert link.counters["drop"] == 1 and link.counters["pass"] >= 1
    obj.close()


def test_link_refuses_bad_arguments(wire: Wire, tmp_path: Path) -> None:
    from pybpf.hooks.live import LiveLink

    obj = pybpf.load(EXAMPLES / "sock_ctx.o")
    state = StateDirectory(tmp_path / "state")
    with pytest.raises(InputError):
        LiveLink(next(iter(obj.programs.values())), wire.b, state=state)
    xdp = pybpf.load(EXAMPLES / "drop_empty_udp.o").programs["drop_empty_udp"]
    with pytest.raises(InputError):
        LiveLink(xdp, "pybpf-no-such0", state=state)
    with pytest.raises(InputError):
        LiveLink(xdp, wire.b, to=wire.b, state=state)


@pytest.mark.parametrize("io", IOS)
def test_tc_program_on_a_live_link(wire: Wire, io: str, tmp_path: Path) -> None:
    from pybpf.hooks.live import LiveLink

    # tc_ctx writes 25 words of __sk_buff from byte 14 on and returns byte 13 & 7:
    # ethertype 0x88b0 -> TC_ACT_OK (passes), 0x88b2 -> TC_ACT_SHOT (dropped)
    marker = b"PYBPF-TC"
    head = bytes.fromhex("ffffffffffff" "020000000001")
    frames = [(head + proto + bytes(106) + marker + label).ljust(160, b"\0")
              for proto, label in ((b"\x88\xb0", b"ok"), (b"\x88\xb2", b"shot"))]  # fmt: skip
    obj = pybpf.load(EXAMPLES / "tc_ctx.o", engine="jit")
    link = LiveLink(obj.programs["tc_ctx"], wire.b, to=wire.c, ring=io == "ring",
                    state=StateDirectory(tmp_path / "state"))  # fmt: skip
    assert link.io == io
    assert link.record.to_json()["attach_type"] == "tc_ingress"
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
            server_out, _ = server.communicate(timeout=10)
        finally:
            client.kill()
            server.kill()
    across = [bytes.fromhex(h) for h in json.loads(server_out.strip().splitlines()[-1])]
    assert [f[120 + len(marker) :].rstrip(b"\0") for f in across] == [b"ok"]
    words = struct.unpack("<25I", across[0][14:114])
    assert words[0] == 160 and words[9] == link.port.ifindex  # len, ingress_ifindex
    assert link.counters["ok"] == 1 and link.counters["shot"] == 1
    obj.close()
