"""Writes mixed.pcap: two UDP datagrams (one empty), a TCP SYN and an ARP request.

Run from the repository root: ``python examples/captures/make_mixed.py``. It uses pybpf's
own capture writer; the committed ``mixed.pcap`` is its output.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pybpf.hooks import open_writer

MAC_DST = bytes.fromhex("020000000002")
MAC_SRC = bytes.fromhex("020000000001")


def eth(proto: int) -> bytes:
    return MAC_DST + MAC_SRC + struct.pack(">H", proto)


def ipv4(proto: int, payload: bytes) -> bytes:
    ips = (bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    head = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, *ips)
    return head + payload


def udp(payload: bytes) -> bytes:
    return eth(0x0800) + ipv4(17, struct.pack(">HHHH", 4000, 53, 8 + len(payload), 0) + payload)


def tcp() -> bytes:
    return eth(0x0800) + ipv4(6, struct.pack(">HHIIBBHHH", 4000, 80, 1, 0, 0x50, 0x02, 8192, 0, 0))


def arp() -> bytes:
    body = struct.pack(">HHBBH", 1, 0x0800, 6, 4, 1) + MAC_SRC + bytes(4) + bytes(6) + bytes(4)
    return eth(0x0806) + body


FRAMES = [udp(b""), udp(b"query"), tcp(), arp()]

if __name__ == "__main__":
    with open_writer(Path(__file__).with_name("mixed.pcap")) as writer:
        for i, frame in enumerate(FRAMES):
            writer.write(frame, 1_700_000_000_000_000_000 + i * 1000)
