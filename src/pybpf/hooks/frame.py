"""Frame: one captured packet as readers yield it, and the interfaces and link types it names.

A :class:`Frame` is a plain named tuple ``(timestamp_ns, data, orig_len, interface,
linktype)``: the capture time in nanoseconds since the Unix epoch, the captured bytes
(possibly fewer than were on the wire), the original length on the wire, the capture's
interface number (always 0 in classic pcap) and that interface's link type (``LINKTYPE_*``
numbers from tcpdump.org, e.g. 1 for Ethernet).
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

__all__ = ["Frame", "Interface", "LinkType", "MAX_RECORD", "make_frame"]

# libpcap's MAXIMUM_SNAPLEN: no record of a sane capture is longer; longer means corruption
# (and reading it would let a corrupted length ask for gigabytes).
MAX_RECORD = 262144


class LinkType(IntEnum):
    """The commonest LINKTYPE_* values (any other number is kept as a plain int)."""

    NULL = 0
    ETHERNET = 1
    RAW = 101
    LOOP = 108
    LINUX_SLL = 113
    IEEE802_11_RADIOTAP = 127
    IPV4 = 228
    IPV6 = 229
    LINUX_SLL2 = 276


class Frame(NamedTuple):
    """One captured packet: time (ns), captured bytes, wire length, interface, link type."""

    timestamp_ns: int
    data: bytes
    orig_len: int
    interface: int
    linktype: int


class Interface(NamedTuple):
    """A capture interface: link type, snapshot length, name and timestamp resolution.

    ``ts_units_per_second`` is how many timestamp units make one second in the file
    (10**6 for microseconds, 10**9 for nanoseconds, 2**k for binary resolutions).
    """

    linktype: int
    snaplen: int
    name: str | None = None
    ts_units_per_second: int = 1_000_000
    ts_offset_s: int = 0


# Building a named tuple through tuple.__new__ skips the generated __new__ (the hot path).
_tuple_new = tuple.__new__


def make_frame(timestamp_ns: int, data: bytes, orig_len: int, interface: int, linktype: int):
    """A :class:`Frame` built as fast as Python allows (readers call this per packet)."""
    return _tuple_new(Frame, (timestamp_ns, data, orig_len, interface, linktype))
