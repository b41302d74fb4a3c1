"""Capture: one API over pcap and pcapng files, the format told from the content.

``with open_capture("in.pcapng") as cap: for frame in cap: ...`` reads either format;
``open_writer("out.pcap", format="pcap")`` writes one. Both are context managers with
``close()``. A broken capture yields every complete frame, then raises one
:class:`~pybpf.errors.CaptureError` (``path``, ``packet``, ``offset``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

from ..errors import CaptureError
from .frame import MAX_RECORD, Frame, Interface
from .pcap import PcapReader, PcapWriter, pcap_magic
from .pcapng import PcapngReader, PcapngWriter, pcapng_magic
from .source import ByteSource, open_source, read_at_least

__all__ = ["Capture", "detect_format", "open_capture", "open_writer", "FORMATS"]

FORMATS = ("pcap", "pcapng")


def detect_format(head: bytes) -> str | None:
    """``"pcap"`` or ``"pcapng"`` for a file starting with ``head`` (4 bytes suffice), else None."""
    if pcapng_magic(head):
        return "pcapng"
    if pcap_magic(head) is not None:
        return "pcap"
    return None


class Capture:
    """An open capture file, pcap or pcapng, read front to back as :class:`Frame` records.

    ``Capture(path_or_file)`` (or :func:`open_capture`) reads the first bytes to pick the
    format and checks the file header; a file that is neither raises :class:`CaptureError`
    with ``packet=None`` and ``offset=0``. Iterating yields frames once (a capture is a
    stream). ``format``, ``interfaces`` (grows as pcapng files describe them), ``linktype``
    (the first interface's, or None), ``count`` (frames so far) and ``path`` describe it.
    """

    def __init__(self, source: ByteSource, *, max_record: int = MAX_RECORD) -> None:
        file, path, owned = open_source(source)
        try:
            head = read_at_least(file.read, b"", 4)
            fmt = detect_format(head)
            if fmt is None:
                what = "an empty file" if not head else "not a pcap or pcapng capture"
                raise CaptureError(what, path=path, offset=0)
            reader_type = PcapngReader if fmt == "pcapng" else PcapReader
            self._reader: PcapReader | PcapngReader = reader_type(
                file, max_record=max_record, _head=head
            )
        except BaseException:
            if owned:
                file.close()
            raise
        # The reader got the file object, so it does not own it; this capture does.
        self._reader.path = path
        self._file = file
        self._owned = owned
        self.path = path
        self.format = fmt

    @classmethod
    def from_bytes(cls, data: bytes, *, max_record: int = MAX_RECORD) -> Capture:
        """A capture read from bytes in memory."""
        return cls(io.BytesIO(bytes(data)), max_record=max_record)

    @property
    def reader(self) -> PcapReader | PcapngReader:
        """The format's own reader (byte order, version, snaplen and such)."""
        return self._reader

    @property
    def interfaces(self) -> list[Interface]:
        """The interfaces described so far."""
        return self._reader.interfaces

    @property
    def linktype(self) -> int | None:
        """The first interface's link type, or None before any is described."""
        ifaces = self._reader.interfaces
        return ifaces[0].linktype if ifaces else None

    @property
    def count(self) -> int:
        """How many frames have been read so far."""
        return self._reader.count

    def __iter__(self) -> Iterator[Frame]:
        return iter(self._reader)

    def read_all(self) -> list[Frame]:
        """Every (remaining) frame as a list."""
        return list(self._reader)

    def close(self) -> None:
        """Close the file if this capture opened it."""
        if self._owned:
            self._file.close()
            self._owned = False

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_capture(source: ByteSource, *, max_record: int = MAX_RECORD) -> Capture:
    """Open a pcap or pcapng capture (format from its content) for reading."""
    return Capture(source, max_record=max_record)


def open_writer(
    target: ByteSource,
    format: str | None = None,
    *,
    linktype: int = 1,
    snaplen: int | None = None,
    interfaces: list[Interface] | None = None,
    nanosecond: bool = True,
    byteorder: str = "<",
) -> PcapWriter | PcapngWriter:
    """A writer for ``target``: ``format`` is ``"pcap"`` or ``"pcapng"`` (default: from a
    ``.pcapng`` file name, else pcap). ``interfaces`` (pcapng) describes several; for pcap
    the first one's link type and snaplen are used.
    """
    if format is None:
        name = os.fspath(target) if isinstance(target, str | os.PathLike) else ""
        format = "pcapng" if str(name).endswith((".pcapng", ".ntar")) else "pcap"
    if format == "pcapng":
        return PcapngWriter(
            target,
            linktype=linktype,
            snaplen=snaplen or 0,
            interfaces=interfaces,
            byteorder=byteorder,
        )
    if format == "pcap":
        if interfaces:
            linktype = interfaces[0].linktype
            snaplen = snaplen or interfaces[0].snaplen
        return PcapWriter(
            target,
            linktype=linktype,
            snaplen=snaplen or MAX_RECORD,
            nanosecond=nanosecond,
            byteorder=byteorder,
        )
    raise CaptureError(f"unknown capture format {format!r} (pcap or pcapng)")
