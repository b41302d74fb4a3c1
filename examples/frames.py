"""Frames: the Ethernet/IPv4/IPv6/UDP/TCP frames the sample scripts and their tests send.

Imported by the scripts beside it (``python examples/x.py`` puts this directory on
``sys.path``) and by ``tests/test_samples*.py``. IPv4 headers carry a valid checksum; UDP
checksums are 0 (none), which IPv4 allows.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = [
    "ETH_P_IP",
    "ETH_P_IPV6",
    "ETH_P_ARP",
    "IPPROTO_ICMP",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "XDP_ACTIONS",
    "ether",
    "ipv4",
    "ipv6",
    "udp4",
    "udp6",
    "tcp4",
    "icmp4",
    "arp",
    "xdp_md",
]

ETH_P_IP, ETH_P_IPV6, ETH_P_ARP = 0x0800, 0x86DD, 0x0806
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
XDP_ACTIONS = ("aborted", "drop", "pass", "tx", "redirect")
MAC_DST = bytes.fromhex("020000000002")
MAC_SRC = bytes.fromhex("020000000001")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ether(proto: int, payload: bytes) -> bytes:
    """An Ethernet II frame of ``payload`` with EtherType ``proto``."""
    return MAC_DST + MAC_SRC + struct.pack("!H", proto) + payload


def ipv4(
    src: str, dst: str, proto: int, payload: bytes, *, options: bytes = b"", frag: int = 0
) -> bytes:
    """An IPv4 packet (``options`` padded to 4 bytes; ``frag`` = the flags/offset field)."""
    options += bytes(-len(options) % 4)
    ihl = 5 + len(options) // 4
    head = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        ihl * 4 + len(payload),
        1,
        frag,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    ) + options
    head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
    return head + payload


def ipv6(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    """An IPv6 packet with no extension headers."""
    return (
        struct.pack("!IHBB", 6 << 28, len(payload), proto, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + payload
    )


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def udp4(
    src: str = "10.0.0.1",
    dst: str = "10.0.0.2",
    sport: int = 4000,
    dport: int = 53,
    payload: bytes = b"",
    **ip: bytes | int,
) -> bytes:
    """An Ethernet/IPv4/UDP frame (``ip``: :func:`ipv4`'s ``options``/``frag``)."""
    return ether(ETH_P_IP, ipv4(src, dst, IPPROTO_UDP, _udp(sport, dport, payload), **ip))


def udp6(
    src: str = "fd00::1", dst: str = "fd00::2", sport: int = 4000, dport: int = 53,
    payload: bytes = b"",
) -> bytes:
    """An Ethernet/IPv6/UDP frame."""
    return ether(ETH_P_IPV6, ipv6(src, dst, IPPROTO_UDP, _udp(sport, dport, payload)))


def tcp4(
    src: str = "10.0.0.1",
    dst: str = "10.0.0.2",
    sport: int = 4000,
    dport: int = 80,
    payload: bytes = b"",
    flags: int = 0x02,
) -> bytes:
    """An Ethernet/IPv4/TCP frame (default: a SYN)."""
    seg = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 8192, 0, 0) + payload
    return ether(ETH_P_IP, ipv4(src, dst, IPPROTO_TCP, seg))


def icmp4(src: str = "10.0.0.1", dst: str = "10.0.0.2", payload: bytes = b"ping") -> bytes:
    """An Ethernet/IPv4/ICMP echo request."""
    body = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + payload
    body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
    return ether(ETH_P_IP, ipv4(src, dst, IPPROTO_ICMP, body))


def arp() -> bytes:
    """An Ethernet ARP request."""
    body = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1) + MAC_SRC + bytes(4) + bytes(6) + bytes(4)
    return ether(ETH_P_ARP, body)


def xdp_md(frame: bytes, ingress_ifindex: int = 1) -> bytes:
    """``ctx_in`` for an XDP test run of ``frame`` arriving on ``ingress_ifindex`` (Linux
    accepts only existing devices: 1, the loopback device, everywhere)."""
    return struct.pack("<6I", 0, len(frame), 0, ingress_ifindex, 0, 0)
