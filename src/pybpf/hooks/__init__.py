"""Hooks: where attached programs meet packets; for now, capture files (pcap and pcapng).

``open_capture(path)`` reads either format (detected from the content) as :class:`Frame`
records; ``open_writer(path, format=...)`` writes one. Running programs over captures, live
links and socket hooks build on these.
"""

from __future__ import annotations

from .capture import Capture, detect_format, open_capture, open_writer
from .frame import MAX_RECORD, Frame, Interface, LinkType
from .pcap import PcapReader, PcapWriter
from .pcapng import PcapngReader, PcapngWriter

__all__ = [
    "Capture",
    "Frame",
    "Interface",
    "LinkType",
    "MAX_RECORD",
    "PcapReader",
    "PcapWriter",
    "PcapngReader",
    "PcapngWriter",
    "detect_format",
    "open_capture",
    "open_writer",
]
