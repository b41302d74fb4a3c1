"""Live link benchmark: a flood through a live XDP link, frames/s and frames per CPU-second.

Run ``python benchmarks/live.py [--seconds S] [--engine jit|interpreter] [--io ring,socket]
[--sender socket|ring] [--json]`` as root (Linux, iproute2).

It builds the wire of ``tests/test_hooks_live.py`` in namespaces of its own: veth ``a`` in
a client namespace paired with ``b`` here, ``c`` here paired with ``d`` in a server
namespace. A :class:`~pybpf.hooks.live.LiveLink` runs ``examples/c/drop_empty_udp.o`` on
``b`` with ``to=c`` while a sender process in the client namespace floods ``a`` with UDP
frames (half of them empty, which the program drops; the others pass and go out of ``c``;
their destination MAC is nobody's, so the server's stack drops them quietly) for ``S``
seconds (default 3). The sender writes with one ``send()`` per frame (``--sender socket``,
the default) or through a transmit ring, one kick per 256 frames (``--sender ring``).

For each receive/transmit path of the link (``--io``: ``ring``, the PACKET_MMAP rings of
:mod:`pybpf.hooks.live_ring`, and ``socket``, one ``recvmsg``/``send`` per frame) it
prints the frames the program saw (``rx``), frames/s of wall time, this process's user
and system CPU seconds (the link runs in this process; the machine may be shared, so the
per-CPU-second figure is the one to compare), frames per CPU-second, and what was dropped,
forwarded and lost (``rx_overruns``: frames the kernel dropped because the link did not
read them in time). Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OBJECT = ROOT / "examples" / "c" / "drop_empty_udp.o"

SENDER = r"""
import socket, struct, sys, time
dev, seconds, how = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def frame(payload):
    udp = struct.pack("!HHHH", 40000, 53, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 17, 0,
                     socket.inet_aton("10.232.0.1"), socket.inet_aton("10.232.0.2"))
    words = struct.unpack("!10H", ip)
    s = sum(words)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    ip = ip[:10] + struct.pack("!H", ~s & 0xFFFF) + ip[12:]
    eth = bytes.fromhex("02aabbccddee" "020000000001") + b"\x08\x00"
    return (eth + ip + udp).ljust(60, b"\0")
frames = [frame(b""), frame(b"0123456789")] * 128
sent = 0
if how == "ring":
    from pybpf.hooks.live_ring import RingPort
    port = RingPort(dev, receive=False)
    queue, flush = port.queue, port.flush
    print("ready", flush=True)
    sys.stdin.readline()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for f in frames:
            if queue(f):
                sent += 1
        flush()
else:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((dev, 0))
    send = s.send
    print("ready", flush=True)
    sys.stdin.readline()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for f in frames:
            try:
                send(f)
                sent += 1
            except OSError:
                pass
print(sent, flush=True)
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=10)


class Wire:
    """The two namespaces and four veth interfaces (removed by :meth:`close`)."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000:04d}"
        self.client, self.server = f"pbbc{tag}", f"pbbs{tag}"
        self.a, self.b, self.c, self.d = (f"pb{x}{tag}" for x in "abcd")
        sh("ip", "netns", "add", self.client)
        sh("ip", "netns", "add", self.server)
        sh("ip", "link", "add", self.a, "type", "veth", "peer", "name", self.b)
        sh("ip", "link", "add", self.c, "type", "veth", "peer", "name", self.d)
        sh("ip", "link", "set", self.a, "netns", self.client)
        sh("ip", "link", "set", self.d, "netns", self.server)
        for ns, dev in ((self.client, self.a), (self.server, self.d)):
            sh("ip", "netns", "exec", ns, "sh", "-c",
               "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6")  # fmt: skip
            sh("ip", "-n", ns, "link", "set", dev, "up")
        for dev in (self.b, self.c):
            Path(f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6").write_text("1")
            sh("ip", "link", "set", dev, "up")

    def close(self) -> None:
        for cmd in (("link", "del", self.b), ("link", "del", self.c),
                    ("netns", "del", self.client), ("netns", "del", self.server)):  # fmt: skip
            subprocess.run(("ip", *cmd), capture_output=True, timeout=10)


def flood(wire: Wire, engine: str, io: str, seconds: float, sender: str) -> dict:
    """One flood through a fresh link on ``b``; the link's figures."""
    import pybpf
    from pybpf.hooks.live import LiveLink

    obj = pybpf.load(OBJECT, engine=engine)
    prog = obj.programs["drop_empty_udp"]
    options = {"ring": io == "ring"}
    try:
        link = LiveLink(prog, wire.b, to=wire.c, **options)
    except TypeError:  # a LiveLink without rings: its one path is the socket's
        if io == "ring":
            obj.close()
            return {"io": io, "error": "no ring path"}
        link = LiveLink(prog, wire.b, to=wire.c)
    gen = subprocess.Popen(
        ["ip", "netns", "exec", wire.client, sys.executable, "-c", SENDER, wire.a,
         str(seconds), sender],  # fmt: skip
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert gen.stdout.readline().strip() == "ready", gen.stderr.read()
        for _ in range(20):  # settle: whatever the namespaces sent on their own
            link.poll(0.005)
        link.counters.clear()
        gen.stdin.write("go\n")
        gen.stdin.flush()
        t0, wall0 = os.times(), time.perf_counter()
        link.serve(duration=seconds + 0.3)
        t1, wall = os.times(), time.perf_counter() - wall0
        user, system = t1.user - t0.user, t1.system - t0.system
        cpu = user + system
        sent = int(gen.communicate(timeout=30)[0].split()[-1])
    finally:
        gen.kill()
        info = link.record.to_json()
        link.detach()
        obj.close()
    c = link.counters
    rx = c["rx"]
    return {
        "engine": engine,
        "io": info.get("io", "socket"),
        "sender": sender,
        "sent": sent,
        "rx": rx,
        "fps": round(rx / wall),
        "cpu_s": round(cpu, 3),
        "user_s": round(user, 3),
        "sys_s": round(system, 3),
        "fps_per_cpu_s": round(rx / cpu) if cpu else None,
        "drop": c["drop"],
        "forwarded": c["forwarded"],
        "send_errors": c["send_errors"],
        "rx_overruns": c["rx_overruns"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--engine", default="jit", choices=("jit", "interpreter"))
    parser.add_argument("--io", default="ring,socket", help="comma-separated: ring, socket")
    parser.add_argument("--sender", default="socket", choices=("socket", "ring"))
    parser.add_argument("--repeat", type=int, default=1, help="floods per path (best kept)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("ip"):
        print("live.py needs Linux, root and iproute2", file=sys.stderr)
        return 2
    wire = Wire()
    rows = []
    try:
        for io in args.io.split(","):
            runs = [flood(wire, args.engine, io, args.seconds, args.sender)
                    for _ in range(args.repeat)]  # fmt: skip
            rows.append(max(runs, key=lambda r: r.get("fps_per_cpu_s") or 0))
    finally:
        wire.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cols = ("engine", "io", "sender", "sent", "rx", "fps", "user_s", "sys_s", "fps_per_cpu_s",
            "drop",
            "forwarded", "send_errors", "rx_overruns")  # fmt: skip
    print(" ".join(f"{c:>12}" for c in cols))
    for row in rows:
        print(" ".join(f"{row.get(c, '-')!s:>12}" for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
