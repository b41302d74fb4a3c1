"""Pcapng: pcap-next-generation capture files, read fast as Frames and written back.

The format (IETF draft-ietf-opsawg-pcapng): a sequence of blocks ``(type, total length,
body, total length)``. A Section Header Block (SHB) starts each section and fixes its byte
order; Interface Description Blocks (IDB) give each interface's link type, snapshot length
and timestamp resolution (``if_tsresol``, ``if_tsoffset``); packets come in Enhanced (EPB),
Simple (SPB) and obsolete Packet (PB) blocks. Every other block is skipped. A block longer
than ``max_record`` plus room for options is refused as corruption, as is a trailer length
that differs from the header's; a truncated tail yields every complete packet, then one
:class:`~pybpf.errors.CaptureError` naming the broken packet number and block offset.

The writer produces one little- or big-endian section: SHB, one IDB per interface (with
nanosecond ``if_tsresol``), then EPBs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from ..errors import CaptureError
from .frame import MAX_RECORD, Frame, Interface
from .sink import Sink
from .source import CHUNK, ByteSource, open_source, read_at_least

__all__ = ["PcapngReader", "PcapngWriter", "SHB", "IDB", "EPB", "SPB", "PB", "pcapng_magic"]

SHB = 0x0A0D0D0A
IDB = 0x00000001
PB = 0x00000002
SPB = 0x00000003
EPB = 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_OPTIONS_ROOM = 65536  # what a packet block may carry besides its packet (options, padding)
_OPT_END, _IF_NAME, _IF_TSRESOL, _IF_TSOFFSET = 0, 2, 9, 14
_tuple_new = tuple.__new__


def pcapng_magic(head: bytes) -> bool:
    """Whether ``head`` starts like a pcapng file (a Section Header Block)."""
    return len(head) >= 4 and struct.unpack_from("<I", head)[0] == SHB


def _timestamp_scale(units_per_second: int, offset_s: int) -> tuple[int, int, int]:
    """``(mul, div, add)`` such that ``units * mul // div + add`` is nanoseconds."""
    if 1_000_000_000 % units_per_second == 0:
        return 1_000_000_000 // units_per_second, 1, offset_s * 1_000_000_000
    return 1_000_000_000, units_per_second, offset_s * 1_000_000_000


class PcapngReader:
    """A pcapng file read once, front to back, as :class:`Frame` records.

    ``PcapngReader(path_or_file)`` checks the first Section Header Block at once (a bad one
    raises :class:`CaptureError` with ``packet=None``); iterating yields the frames.
    ``interfaces`` grows as IDBs are read, across sections; a frame's ``interface`` is its
    index there (the file's own interface id in a single-section file). ``count`` is the
    number of frames yielded so far, ``sections`` the number of sections seen.
    """

    format = "pcapng"

    def __init__(
        self, source: ByteSource, *, max_record: int = MAX_RECORD, _head: bytes = b""
    ) -> None:
        self._file, self.path, self._owned = open_source(source)
        self.max_record = max_record
        self.count = 0
        self.sections = 0
        self.interfaces: list[Interface] = []
        try:
            buf = read_at_least(self._file.read, _head, 16)
            if not pcapng_magic(buf):
                raise CaptureError(
                    "not a pcapng file (no section header)", path=self.path, offset=0
                )
            if len(buf) < 12:
                raise CaptureError("truncated section header block", path=self.path, offset=0)
            self.byteorder = self._byte_order(buf, 0, None)
            self.version = (
                struct.unpack_from(self.byteorder + "HH", buf, 12) if len(buf) >= 16 else None
            )
        except BaseException:
            self.close()
            raise
        self._buf = buf
        self._frames: Iterator[Frame] | None = None

    def _error(self, message: str, offset: int) -> CaptureError:
        packet = self.count + 1 if offset else None
        return CaptureError(message, path=self.path, packet=packet, offset=offset)

    def _byte_order(self, buf: bytes, pos: int, base: int | None) -> str:
        """The byte order of the SHB at ``buf[pos:]`` (at least 12 bytes are there)."""
        offset = pos + (base or 0)
        magic = struct.unpack_from("<I", buf, pos + 8)[0]
        if magic == _BYTE_ORDER_MAGIC:
            order = "<"
        elif magic == 0x4D3C2B1A:
            order = ">"
        else:
            raise self._error("section header with a bad byte-order magic", offset)
        if len(buf) - pos >= 16:
            major, minor = struct.unpack_from(order + "HH", buf, pos + 12)
            if major != 1:
                raise self._error(f"unsupported pcapng version {major}.{minor}", offset)
        return order

    def __iter__(self) -> Iterator[Frame]:
        if self._frames is None:
            self._frames = self._generate()
        return self._frames

    def _interface(self, body: bytes, order: str, offset: int) -> Interface:
        """An Interface from an IDB body (without the 8-byte block header and trailer)."""
        if len(body) < 8:
            raise self._error("interface description block too short", offset)
        linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", body, 0)
        name = None
        units, offset_s = 1_000_000, 0
        pos = 8
        while pos + 4 <= len(body):
            code, length = struct.unpack_from(order + "HH", body, pos)
            if code == _OPT_END:
                break
            value = body[pos + 4 : pos + 4 + length]
            if len(value) != length:
                raise self._error("interface option runs past its block", offset)
            if code == _IF_NAME:
                name = value.rstrip(b"\0").decode("utf-8", "replace")
            elif code == _IF_TSRESOL and length >= 1:
                res = value[0]
                exponent = res & 0x7F
                if exponent > (63 if res & 0x80 else 18):
                    raise self._error(f"unusable if_tsresol {res:#x}", offset)
                units = 2**exponent if res & 0x80 else 10**exponent
            elif code == _IF_TSOFFSET and length >= 8:
                offset_s = struct.unpack_from(order + "q", value)[0]
            pos += 4 + length + (-length % 4)
        return Interface(linktype, snaplen, name, units, offset_s)

    def _generate(self) -> Iterator[Frame]:
        # The hot path is the EPB branch: one header unpack, one trailer unpack, one EPB
        # unpack, one slice and one tuple per packet. Other blocks are rarer and checked
        # at leisure. The buffer grows by CHUNK reads; only the unread tail is copied.
        buf = self._buf
        self._buf = b""
        read = self._file.read
        limit = self.max_record
        block_limit = limit + _OPTIONS_ROOM
        new = _tuple_new
        frame = Frame
        interfaces = self.interfaces
        section: list[tuple[int, int, int, int, int, int]] = []  # this section's interfaces
        order = self.byteorder
        head = struct.Struct(order + "II").unpack_from
        word = struct.Struct(order + "I").unpack_from
        epb = struct.Struct(order + "IIIII").unpack_from
        epb7 = struct.Struct(order + "IIIIIII").unpack_from
        base = 0
        pos = 0
        n = len(buf)
        count = 0
        try:
            while True:
                need = 12  # bytes the block at pos needs before it can be read
                while pos + 12 <= n:
                    if pos + 28 <= n:
                        # Fast path: a well-formed EPB, every check in one expression; any
                        # other block (or a broken one) takes the checked path below.
                        btype, blen, ifid, hi, lo, caplen, orig = epb7(buf, pos)
                        end = pos + blen
                        if (
                            btype == EPB
                            and end <= n
                            and 32 + caplen <= blen <= block_limit
                            and not blen & 3
                            and caplen <= limit
                            and ifid < len(section)
                            and word(buf, end - 4)[0] == blen
                        ):
                            index, linktype, _snap, mul, div, add = section[ifid]
                            count += 1
                            yield new(
                                frame,
                                (
                                    ((hi << 32) | lo) * mul // div + add,
                                    buf[pos + 28 : pos + 28 + caplen],
                                    orig,
                                    index,
                                    linktype,
                                ),
                            )
                            pos = end
                            continue
                    btype, blen = head(buf, pos)
                    if btype == SHB:
                        if pos + 16 > n:
                            need = 16
                            break
                        self.count = count
                        order = self._byte_order(buf, pos, base)
                        head = struct.Struct(order + "II").unpack_from
                        word = struct.Struct(order + "I").unpack_from
                        epb = struct.Struct(order + "IIIII").unpack_from
                        epb7 = struct.Struct(order + "IIIIIII").unpack_from
                        blen = head(buf, pos)[1]
                        if blen < 28:
                            raise self._error(f"section header length {blen} too short", base + pos)
                    if blen < 12 or blen & 3 or blen > block_limit:
                        self.count = count
                        raise self._error(
                            f"block length {blen} is not a valid block length (corrupted capture)",
                            base + pos,
                        )
                    end = pos + blen
                    if end > n:
                        need = blen
                        break
                    if word(buf, end - 4)[0] != blen:
                        self.count = count
                        raise self._error(
                            "block trailer length differs from its header (corrupted capture)",
                            base + pos,
                        )
                    if btype == EPB or btype == PB:  # PB: the obsolete Packet Block
                        self.count = count
                        if blen < 32:
                            what = "enhanced packet block" if btype == EPB else "packet block"
                            raise self._error(f"{what} too short", base + pos)
                        if btype == EPB:
                            ifid, hi, lo, caplen, orig = epb(buf, pos + 8)
                        else:  # a 16-bit interface id and a drops count where EPB's id is
                            ifid, _drops, hi, lo, caplen, orig = struct.unpack_from(
                                order + "HHIIII", buf, pos + 8
                            )
                        if caplen > blen - 32 or caplen > limit:
                            raise self._error(
                                f"packet length {caplen} exceeds its block", base + pos
                            )
                        if ifid >= len(section):
                            raise self._error(f"packet names unknown interface {ifid}", base + pos)
                        index, linktype, _snap, mul, div, add = section[ifid]
                        count += 1
                        yield new(
                            frame,
                            (
                                ((hi << 32) | lo) * mul // div + add,
                                buf[pos + 28 : pos + 28 + caplen],
                                orig,
                                index,
                                linktype,
                            ),
                        )
                    elif btype == SPB:
                        self.count = count
                        if blen < 16:
                            raise self._error("simple packet block too short", base + pos)
                        if not section:
                            raise self._error("simple packet before any interface", base + pos)
                        # No timestamp: 0 units plus the interface's offset, as libpcap.
                        index, linktype, snap, _mul, _div, add = section[0]
                        orig = word(buf, pos + 8)[0]
                        caplen = min(orig, blen - 16)
                        if snap:
                            caplen = min(caplen, snap)
                        count += 1
                        yield new(
                            frame, (add, buf[pos + 12 : pos + 12 + caplen], orig, index, linktype)
                        )
                    elif btype == IDB:
                        self.count = count
                        iface = self._interface(buf[pos + 8 : end - 4], order, base + pos)
                        mul, div, add = _timestamp_scale(
                            iface.ts_units_per_second, iface.ts_offset_s
                        )
                        section.append(
                            (len(interfaces), iface.linktype, iface.snaplen, mul, div, add)
                        )
                        interfaces.append(iface)
                    elif btype == SHB:
                        section = []
                        self.sections += 1
                        self.byteorder = order
                    pos = end
                more = read(max(CHUNK, need - (n - pos)))
                if not more:
                    self.count = count
                    if pos == n:
                        return
                    raise self._error(
                        f"truncated block ({n - pos} bytes at the end of the file)", base + pos
                    )
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

    def __enter__(self) -> PcapngReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


class PcapngWriter(Sink):
    """Writes a pcapng file: one section (SHB), IDBs, then one EPB per :meth:`write`.

    The first interface (``linktype``, ``snaplen``, ``name``) is described at once unless
    ``interfaces`` lists them all; :meth:`add_interface` adds more. Timestamps are written
    in nanoseconds (``if_tsresol`` = 9). Data longer than an interface's nonzero snaplen is
    cut to it. Blocks are buffered; :meth:`close` (or leaving a ``with`` block, even on an
    error) flushes everything written so far.
    """

    format = "pcapng"

    def __init__(
        self,
        target: ByteSource,
        *,
        linktype: int = 1,
        snaplen: int = 0,
        name: str | None = None,
        interfaces: Iterable[Interface] | None = None,
        byteorder: str = "<",
    ) -> None:
        super().__init__(target, byteorder)
        self.interfaces: list[Interface] = []
        self._snaplens: list[int] = []
        self._epb = struct.Struct(byteorder + "IIIIIII").pack
        self._trailer = struct.Struct(byteorder + "I").pack
        shb_body = struct.pack(byteorder + "IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1)
        self._parts.append(self._block(SHB, shb_body))
        for iface in interfaces if interfaces is not None else [Interface(linktype, snaplen, name)]:
            self.add_interface(iface.linktype, iface.snaplen, iface.name)

    def _block(self, btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        blen = len(body) + 12
        return struct.pack(self.byteorder + "II", btype, blen) + body + self._trailer(blen)

    def add_interface(self, linktype: int, snaplen: int = 0, name: str | None = None) -> int:
        """Describe one more interface (an IDB); returns its interface number."""
        order = self.byteorder
        body = struct.pack(order + "HHI", linktype, 0, snaplen)
        if name:
            body += _option(order, _IF_NAME, name.encode())
        body += _option(order, _IF_TSRESOL, b"\x09") + _option(order, _OPT_END, b"")
        self._parts.append(self._block(IDB, body))
        self.interfaces.append(Interface(linktype, snaplen, name, 10**9))
        self._snaplens.append(snaplen)
        return len(self.interfaces) - 1

    def write(
        self, data: bytes, timestamp_ns: int = 0, orig_len: int | None = None, interface: int = 0
    ) -> None:
        """Append one packet (an EPB) captured on ``interface`` at ``timestamp_ns``."""
        size = len(data)
        if orig_len is None:
            orig_len = size
        if not 0 <= interface < len(self._snaplens):
            raise CaptureError(
                f"no interface {interface} in this capture",
                path=self.path,
                packet=self.count + 1,
            )
        snap = self._snaplens[interface]
        if snap and size > snap:
            data = data[:snap]
            size = snap
        pad = -size % 4
        blen = 32 + size + pad
        parts = self._parts
        parts.append(
            self._epb(
                EPB,
                blen,
                interface,
                (timestamp_ns >> 32) & 0xFFFFFFFF,
                timestamp_ns & 0xFFFFFFFF,
                size,
                orig_len,
            )
        )
        parts.append(bytes(data))
        parts.append(b"\0" * pad + self._trailer(blen))
        self._record_written(blen)

    def write_frame(self, frame: Frame) -> None:
        """Append a frame read elsewhere (its time, bytes, original length and interface)."""
        self.write(frame.data, frame.timestamp_ns, frame.orig_len, frame.interface)

    def write_frames(self, frames: Iterable[Frame]) -> int:
        """Append many frames; returns how many."""
        n = 0
        for frame in frames:
            self.write(frame[1], frame[0], frame[2], frame[3])
            n += 1
        return n
