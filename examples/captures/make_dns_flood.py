"""Writes dns_udp_flood.pcap: DNS traffic with a flood of empty UDP datagrams mixed in.

Run from the repository root: ``python examples/captures/make_dns_flood.py``. The committed
``dns_udp_flood.pcap`` is its output (seeded, so the same every time): 300 frames, DNS queries
and answers between clients in 10.0.0.0/24 and a server at 10.0.0.53 (over UDP, and a few over
TCP), interleaved with empty UDP datagrams to port 53 from 192.0.2.0/24 (some with IP options),
plus the frames an empty-UDP filter must leave alone: empty UDP over IPv6, a later IPv4
fragment, ARP and ICMP.
"""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from frames import arp, icmp4, tcp4, udp4, udp6  # noqa: E402

from pybpf.hooks import open_writer  # noqa: E402

SERVER = "10.0.0.53"
NAMES = ["example.com", "www.example.org", "mail.example.net", "ns1.example.com", "a.b.c.test"]


def question(name: str) -> bytes:
    """A DNS question section for ``name`` (type A, class IN)."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return labels + b"\0" + struct.pack("!HH", 1, 1)


def dns_query(txid: int, name: str) -> bytes:
    return struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + question(name)


def dns_answer(txid: int, name: str, address: bytes) -> bytes:
    answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + address
    return struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + question(name) + answer


def frames(rng: random.Random, count: int = 300) -> list[bytes]:
    """``count`` frames of the mix described in the module docstring."""
    out: list[bytes] = []
    while len(out) < count:
        roll = rng.random()
        if roll < 0.45:  # a flood datagram: empty UDP to the DNS port
            src = f"192.0.2.{rng.randrange(1, 255)}"
            options = b"\x01\x01\x01\x00" if rng.random() < 0.1 else b""  # NOP NOP NOP EOL
            out.append(udp4(src, SERVER, rng.randrange(1024, 65536), 53, b"", options=options))
        elif roll < 0.85:  # a DNS exchange over UDP
            client, port = f"10.0.0.{rng.randrange(2, 50)}", rng.randrange(1024, 65536)
            txid, name = rng.randrange(65536), rng.choice(NAMES)
            out.append(udp4(client, SERVER, port, 53, dns_query(txid, name)))
            addr = bytes([93, 184, rng.randrange(256), rng.randrange(256)])
            out.append(udp4(SERVER, client, 53, port, dns_answer(txid, name, addr)))
        elif roll < 0.90:  # DNS over TCP (a length-prefixed query)
            query = dns_query(rng.randrange(65536), rng.choice(NAMES))
            payload = struct.pack("!H", len(query)) + query
            out.append(tcp4(f"10.0.0.{rng.randrange(2, 50)}", SERVER, 40000, 53, payload, 0x18))
        elif roll < 0.94:  # empty UDP over IPv6: not IPv4, passes
            out.append(udp6("2001:db8::7", "2001:db8::53", rng.randrange(1024, 65536), 53))
        elif roll < 0.96:  # a later fragment of a datagram: no UDP header to look at
            out.append(udp4("192.0.2.9", SERVER, 9, 53, b"", frag=185))
        elif roll < 0.98:
            out.append(arp())
        else:
            out.append(icmp4("10.0.0.9", SERVER))
    return out[:count]


if __name__ == "__main__":
    target = Path(__file__).with_name("dns_udp_flood.pcap")
    with open_writer(target) as writer:
        for i, frame in enumerate(frames(random.Random(53))):
            writer.write(frame, 1_700_000_000_000_000_000 + i * 250_000)
    print(f"wrote {target}")
