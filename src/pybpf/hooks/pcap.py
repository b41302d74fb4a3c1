"""Pcap: classic libpcap capture files, read fast as Frames and written back.

The format (tcpdump.org's ``pcap-savefile``): a 24-byte file header (magic, version 2.4,
reserved, snapshot length, link type with optional FCS bits) then 16-byte record headers
(seconds, micro- or nanoseconds, captured length, original length) each followed by the
captured bytes. Both byte orders are read, as are the microsecond (``0xa1b2c3d4``),
nanosecond (``0xa1b23c4d``) and Alexey Kuznetzov's modified (``0xa1b2cd34``, 24-byte record
headers) magics. A record longer than ``max_record`` (libpcap's 262144 by default) is
refused as corruption; a truncated tail yields every complete record, then one
:class:`~pybpf.errors.CaptureError` naming the broken record's number and offset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from ..errors import CaptureError
from .frame import MAX_RECORD, Frame, Interface
from .sink import Sink
from .source import CHUNK, ByteSource, open_source, read_at_least

__all__ = ["PcapReader", "PcapWriter", "MAGIC_MICRO", "MAGIC_NANO", "MAGIC_MODIFIED", "pcap_magic"]

MAGIC_MICRO = 0xA1B2C3D4
MAGIC_NANO = 0xA1B23C4D
MAGIC_MODIFIED = 0xA1B2CD34
_MAGICS = {MAGIC_MICRO: (1000, 16), MAGIC_NANO: (1, 16), MAGIC_MODIFIED: (1000, 24)}
_HEADER_SIZE = 24
_LINKTYPE_MASK = 0x0FFFFFFF  # bits 28-31 are the FCS length (when bit 26 is set)
_tuple_new = tuple.__new__


def pcap_magic(head: bytes) -> str | None:
    """The byte order (``"<"`` or ``">"``) of a pcap file starting with ``head``, else None."""
    if len(head) < 4:
        return None
    for order in "<>":
        if struct.unpack(order + "I", head[:4])[0] in _MAGICS:
            return order
    return None


class PcapReader:
    """A classic pcap file read once, front to back, as :class:`Frame` records.

    ``PcapReader(path_or_file)`` reads the file header at once (a bad one raises
    :class:`CaptureError` with ``packet=None``); iterating yields the frames. Attributes:
    ``byteorder`` (``"<"``/``">"``), ``nanosecond``, ``version``, ``snaplen``, ``linktype``,
    ``fcs_len`` (bytes of FCS each frame carries, or None), ``interfaces`` (one) and
    ``count`` (frames yielded so far).
    """

    format = "pcap"

    def __init__(
        self, source: ByteSource, *, max_record: int = MAX_RECORD, _head: bytes = b""
    ) -> None:
        self._file, self.path, self._owned = open_source(source)
        self.max_record = max_record
        self.count = 0
        try:
            buf = read_at_least(self._file.read, _head, _HEADER_SIZE)
            self._parse_header(buf)
        except BaseException:
            self.close()
            raise
        self._buf = buf
        self._frames: Iterator[Frame] | None = None

    def _parse_header(self, buf: bytes) -> None:
        order = pcap_magic(buf)
        if order is None:
            raise CaptureError("not a pcap file (bad magic)", path=self.path, offset=0)
        if len(buf) < _HEADER_SIZE:
            raise CaptureError("truncated pcap file header", path=self.path, offset=0)
        magic, major, minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(
            order + "IHHiIII", buf, 0
        )
        if major != 2:
            raise CaptureError(
                f"unsupported pcap version {major}.{minor}", path=self.path, offset=4
            )
        self.byteorder = order
        self.magic = magic
        self.version = (major, minor)
        self.nanosecond = magic == MAGIC_NANO
        self.snaplen = snaplen
        self.linktype = network & _LINKTYPE_MASK & 0xFFFF
        self.fcs_len = (network >> 28) * 2 if network & 0x04000000 else None
        self.interfaces = [
            Interface(self.linktype, snaplen, None, 10**9 if self.nanosecond else 10**6)
        ]

    def __iter__(self) -> Iterator[Frame]:
        if self._frames is None:
            self._frames = self._generate()
        return self._frames

    def _broken(self, message: str, offset: int) -> CaptureError:
        return CaptureError(message, path=self.path, packet=self.count + 1, offset=offset)

    def _generate(self) -> Iterator[Frame]:
        # The hot path: one unpack_from, one slice and one tuple per record; the buffer is
        # refilled in CHUNK-sized reads and only the unread tail is ever copied.
        buf = self._buf
        self._buf = b""
        read = self._file.read
        mul, hsize = _MAGICS[self.magic]
        unpack = struct.Struct(self.byteorder + "IIII").unpack_from
        limit = self.max_record
        linktype = self.linktype
        new = _tuple_new
        frame = Frame
        base = 0  # file offset of buf[0]
        pos = _HEADER_SIZE
        n = len(buf)
        count = 0
        try:
            while True:
                while pos + hsize <= n:
                    sec, frac, caplen, orig = unpack(buf, pos)
                    if caplen > limit:
                        self.count = count
                        raise self._broken(
                            f"record length {caplen} exceeds the maximum {limit} "
                            "(corrupted capture)",
                            base + pos,
                        )
                    start = pos + hsize
                    end = start + caplen
                    if end > n:
                        break
                    count += 1
                    yield new(
                        frame, (sec * 1_000_000_000 + frac * mul, buf[start:end], orig, 0, linktype)
                    )
                    pos = end
                need = hsize if n - pos < hsize else hsize + unpack(buf, pos)[2]
                more = read(max(CHUNK, need - (n - pos)))
                if not more:
                    self.count = count
                    if pos == n:
                        return
                    what = "record header" if n - pos < hsize else "record data"
                    raise self._broken(f"truncated {what} ({n - pos} of {need} bytes)", base + pos)
                buf = buf[pos:] + more
                base += pos
                pos = 0
                n = len(buf)
        finally:
            self.count = count

    def close(self) -> None:
        """Close the file if this reader opened it (a file handed in stays open)."""
        if self._owned and self._file is not None:
            self._file.close()
        self._owned = False

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PcapWriter(Sink):
    """Writes a classic pcap file: the header at once, then one record per :meth:`write`.

    ``nanosecond`` picks the ``0xa1b23c4d`` magic (else microseconds, rounding down);
    ``byteorder`` is ``"<"`` or ``">"``. Data longer than ``snaplen`` is cut to it (the
    record keeps the original length), as libpcap does. Records are buffered and flushed
    in big writes; :meth:`close` (or leaving a ``with`` block, even on an error) flushes
    everything written so far.
    """

    format = "pcap"

    def __init__(
        self,
        target: ByteSource,
        *,
        linktype: int = 1,
        snaplen: int = MAX_RECORD,
        nanosecond: bool = True,
        byteorder: str = "<",
    ) -> None:
        super().__init__(target, byteorder)
        self.linktype = linktype
        self.snaplen = snaplen
        self.nanosecond = nanosecond
        self._div = 1 if nanosecond else 1000
        self._record = struct.Struct(byteorder + "IIII").pack
        magic = MAGIC_NANO if nanosecond else MAGIC_MICRO
        self._parts.append(struct.pack(byteorder + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
        self.interfaces = [Interface(linktype, snaplen, None, 10**9 if nanosecond else 10**6)]

    def write(
        self, data: bytes, timestamp_ns: int = 0, orig_len: int | None = None, interface: int = 0
    ) -> None:
        """Append one record (``interface`` is accepted for symmetry and must be 0)."""
        if interface != 0:
            raise CaptureError(
                f"pcap files have one interface, not {interface}",
                path=self.path,
                packet=self.count + 1,
            )
        size = len(data)
        if orig_len is None:
            orig_len = size
        if size > self.snaplen:
            data = data[: self.snaplen]
            size = self.snaplen
        sec, frac = divmod(timestamp_ns, 1_000_000_000)
        self._parts.append(self._record(sec, frac // self._div, size, orig_len))
        self._parts.append(bytes(data))
        self._record_written(size + 16)

    def write_frame(self, frame: Frame) -> None:
        """Append a frame read elsewhere (its time, bytes and original length)."""
        self.write(frame.data, frame.timestamp_ns, frame.orig_len)

    def write_frames(self, frames: Iterable[Frame]) -> int:
        """Append many frames; returns how many."""
        n = 0
        for frame in frames:
            self.write(frame[1], frame[0], frame[2])
            n += 1
        return n
