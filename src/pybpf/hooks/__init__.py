"""Hooks: where attached programs meet packets: capture files, live links, socket calls.

``open_capture(path)`` reads either format (detected from the content) as :class:`Frame`
records; ``open_writer(path, format=...)`` writes one. Running programs over captures
(:mod:`pybpf.hooks.runner`), live links (:mod:`pybpf.hooks.live`: a program on the frames a
network interface receives, Linux) and socket hooks build on these;
``attach_socket(program)`` attaches a socket program to this Python process
(:mod:`pybpf.hooks.socket`); ``attach(program, target)`` picks the hook from the program's
type (:mod:`pybpf.hooks.attach`, also what ``Program.attach`` calls once this package is
imported).
"""

from __future__ import annotations

from .attach import attach
from .capture import Capture, detect_format, open_capture, open_writer
from .frame import MAX_RECORD, Frame, Interface, LinkType
from .pcap import PcapReader, PcapWriter
from .pcapng import PcapngReader, PcapngWriter
from .socket import SocketLink, attach_socket

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
    "SocketLink",
    "attach",
    "attach_socket",
    "detect_format",
    "open_capture",
    "open_writer",
]
