"""Ring port: one network interface opened through mmap'd PACKET_MMAP rings (Linux).

A :class:`RingPort` is a :class:`~pybpf.hooks.live_port.Port` whose frames cross the
kernel boundary through shared memory instead of one system call each, as ``tcpdump``'s
and ``netsniff-ng``'s do:

- **receive**: an ``AF_PACKET`` socket with a ``TPACKET_V3`` block ring (``blocks`` blocks
  of ``block_size`` bytes, default 64 of 128 KiB). The kernel packs frames into a block
  and hands the block over when it is full or ``retire_ms`` after its first frame;
  :meth:`RingPort.receive` walks the blocks it owns and gives each back once read. A frame
  fits whole when it is shorter than a block (128 KiB holds the 64 KiB of a GSO frame); a
  longer one arrives cut (``tp_snaplen < tp_len``): it is never returned, only counted
  (:meth:`RingPort.truncated`). The socket ignores what the host sends on the interface
  (``PACKET_IGNORE_OUTGOING``, or the frame's packet type before Linux 4.20), completes
  checksums left to offload and puts back a VLAN tag the driver stripped, as
  :class:`~pybpf.hooks.live_port.PacketPort` does. Frames the kernel could not place because
  every block was still ours count in :meth:`RingPort.overruns` (``tp_drops``).
- **transmit**: a second socket (bound with protocol 0, so it receives nothing) with a
  ``TPACKET_V2`` ring of ``tx_frames`` slots, each sized for the interface's MTU (read
  when the port opens). :meth:`RingPort.queue` (:meth:`RingPort.queue_many` for a list)
  copies a frame into the next free slot; :meth:`RingPort.flush` hands every queued slot
  to the kernel with one ``send(MSG_DONTWAIT)``. A frame the kernel could not take yet
  (``ENOBUFS``, ``EAGAIN``) stays queued and goes at the next flush; a frame longer than a
  slot or than the MTU allows (or shorter than an Ethernet header) skips the ring: the
  queue is flushed and the frame sent with ``send()`` on a plain socket (a ring's socket
  sends only its ring), which refuses it exactly as the per-frame path does. When the
  interface goes away or down, the frames still queued are given back to the caller as
  refused and the ring is rebuilt.

Opening raises :class:`~pybpf.errors.SyscallError` when the kernel refuses the rings
(before Linux 3.2, no ``CAP_NET_RAW``, no memory): callers fall back to
:class:`~pybpf.hooks.live_port.PacketPort`.
"""

from __future__ import annotations

import errno
import mmap
import socket
import struct
from collections.abc import Hashable
from pathlib import Path

from .live_port import (
    ETH_P_ALL,
    PACKET_ADD_MEMBERSHIP,
    PACKET_IGNORE_OUTGOING,
    PACKET_MR_PROMISC,
    PACKET_OUTGOING,
    PACKET_STATISTICS,
    SOL_PACKET,
    TP_STATUS_CSUMNOTREADY,
    TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_VLAN_VALID,
    Port,
    _os_error,
    fix_checksum,
    interface_index,
)

__all__ = ["RingPort", "RX_BLOCK_SIZE", "RX_BLOCKS", "TX_FRAMES"]

PACKET_RX_RING = 5
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_LOSS = 14
TPACKET_V2 = 1
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1
SO_SNDBUFFORCE = 32
ETH_HLEN = 14

RX_BLOCK_SIZE = 128 << 10  # a whole 64 KiB GSO frame fits in one block
RX_BLOCKS = 64  # 8 MiB of receive ring
RX_FRAME_SIZE = 2048  # V3 only checks it (frames are packed in blocks)
RETIRE_MS = 1  # a block that is not full is handed over this long after its first frame
TX_FRAMES = 512
TX_RING_MAX = 8 << 20  # transmit ring bytes at most (fewer slots for jumbo MTUs)
_TX_DATA = 32  # TPACKET2_HDRLEN - sizeof(sockaddr_ll): where a V2 transmit frame's data sits
_TX_SLACK = 22  # slot room past the MTU: hard_header_len + 2 VLAN tags (the kernel's limit)
# the ring takes frames up to MTU + an Ethernet header; longer ones (VLAN-tagged, past the
# MTU) go by send(), which judges them as the per-frame path does
_TX_PLAIN = ETH_HLEN
_SNDBUF = 4 << 20

_REQ3 = struct.Struct("=7I")  # struct tpacket_req3
_REQ = struct.Struct("=4I")  # struct tpacket_req
_BLOCK = struct.Struct("=III")  # tpacket_hdr_v1: block_status, num_pkts, offset_to_first_pkt
_PKT = struct.Struct("=I8xIIIH")  # tpacket3_hdr: next_offset, snaplen, len, status, mac
_VLAN = struct.Struct("=IH")  # hv1.tp_vlan_tci, hv1.tp_vlan_tpid (at +32)
_TX = struct.Struct("=III")  # tpacket2_hdr: tp_status, tp_len, tp_snaplen
_STATS = struct.Struct("=III")  # tpacket_stats_v3
_PKTTYPE_AT = 48 + 10  # sockaddr_ll.sll_pkttype after the 48-byte tpacket3_hdr
_MAX_TPACKET_ALIGN = 16
_NEEDS_FIX = TP_STATUS_CSUMNOTREADY | TP_STATUS_VLAN_VALID


def _mtu(name: str) -> int:
    try:
        return int(Path(f"/sys/class/net/{name}/mtu").read_text())
    except (OSError, ValueError):
        return 1500


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


class RingPort(Port):
    """Interface ``name`` through PACKET_MMAP rings (see the module docstring).

    ``receive=False`` opens the transmit ring only (a redirect target). ``block_size``
    (a power of two, at least a page), ``blocks`` and ``retire_ms`` shape the receive
    ring (defaults: :data:`RX_BLOCK_SIZE`, :data:`RX_BLOCKS`, 1 ms, read when the port
    opens); ``tx_frames`` (:data:`TX_FRAMES`) and ``tx_frame_size`` (default: the MTU's
    frame, rounded up to a power of two) the transmit ring. Attributes: ``tx_room`` (the
    longest frame a slot takes), ``ignored`` (outgoing frames seen and ignored, before
    Linux 4.20).
    """

    def __init__(
        self,
        name: str,
        *,
        promiscuous: bool = False,
        receive: bool = True,
        block_size: int | None = None,
        blocks: int | None = None,
        retire_ms: int | None = None,
        tx_frames: int | None = None,
        tx_frame_size: int | None = None,
    ) -> None:
        self.name = name
        self.ifindex = interface_index(name)
        self.rx: socket.socket | None = None
        self.tx: socket.socket | None = None
        self._rx_map: mmap.mmap | None = None
        self._tx_map: mmap.mmap | None = None
        self.ignored = 0
        self._truncated = 0
        self._block = 0  # the block being read
        self._left = 0  # its frames not read yet
        self._at = 0  # the next frame's offset in the map
        self._check_outgoing = False
        self._tx_size = tx_frame_size
        self._tx_count = max(int(tx_frames or TX_FRAMES), 1)
        self._tags: list[Hashable] = []
        self._slot = 0
        self._dirty = False
        self._stalled = False  # the ring was full at a queue since the last flush
        self._direct: socket.socket | None = None
        try:
            if receive:
                self._open_rx(promiscuous, block_size or RX_BLOCK_SIZE, blocks or RX_BLOCKS,
                              RETIRE_MS if retire_ms is None else retire_ms)  # fmt: skip
            self._open_tx()
        except OSError as exc:
            self.close()
            raise _os_error(f"PACKET_MMAP rings on {name}", exc) from None

    # ---- receive ------------------------------------------------------------------------
    def _open_rx(self, promiscuous: bool, block_size: int, blocks: int, retire_ms: int) -> None:
        if block_size < mmap.PAGESIZE or block_size & (block_size - 1) or blocks < 1:
            raise OSError(errno.EINVAL, "ring blocks: a power of two of at least a page")
        # protocol 0 until the ring is there: nothing queues on the socket before it
        sock = self.rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:  # before Linux 4.20: each frame's packet type says it
            self._check_outgoing = True
        frame = min(RX_FRAME_SIZE, block_size)
        req = _REQ3.pack(block_size, blocks, frame, block_size // frame * blocks, retire_ms, 0, 0)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self._rx_map = mmap.mmap(sock.fileno(), block_size * blocks, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip
        self._block_size, self._blocks = block_size, blocks
        sock.bind((self.name, ETH_P_ALL))
        if promiscuous:
            mreq = struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)

    def fileno(self) -> int:
        """The receive socket's descriptor (the transmit socket's without one)."""
        sock = self.rx if self.rx is not None else self.tx
        return sock.fileno() if sock is not None else -1

    def pending(self) -> bool:
        """Whether a frame is known to be waiting (a block is read part way or is ours)."""
        mm = self._rx_map
        if mm is None:
            return False
        return self._left > 0 or bool(mm[self._block * self._block_size + 8] & TP_STATUS_USER)

    def receive(self, limit: int = 64) -> list[bytes]:
        """Up to ``limit`` whole frames from the ring (never blocks)."""
        mm = self._rx_map
        out: list[bytes] = []
        if mm is None:
            return out
        size = self._block_size
        left, at = self._left, self._at
        unpack_pkt = _PKT.unpack_from
        append = out.append
        while len(out) < limit:
            if not left:
                base = self._block * size
                status, count, first = _BLOCK.unpack_from(mm, base + 8)
                if not status & TP_STATUS_USER:
                    break
                left, at = count, base + first
                if not left:
                    self._release()
                    continue
            nxt, snap, length, status, mac = unpack_pkt(mm, at)
            start = at + mac
            data = mm[start : start + snap]
            keep = snap == length  # else longer than a block: never run a cut frame
            if not keep:
                self._truncated += 1
            elif self._check_outgoing and mm[at + _PKTTYPE_AT] == PACKET_OUTGOING:
                self.ignored += 1
                keep = False
            elif status & _NEEDS_FIX:  # before the block goes back: it reads the header
                data = self._fix(data, status, at)
            left -= 1
            if left:
                at += nxt
            else:
                self._release()
            if keep:
                append(data)
        self._left, self._at = left, at
        return out

    def _fix(self, data: bytes, status: int, at: int) -> bytes:
        if status & TP_STATUS_CSUMNOTREADY:
            data = fix_checksum(data)
        if status & TP_STATUS_VLAN_VALID:
            tci, tpid = _VLAN.unpack_from(self._rx_map, at + 32)
            if not status & TP_STATUS_VLAN_TPID_VALID:
                tpid = 0x8100
            data = data[:12] + struct.pack(">HH", tpid, tci & 0xFFFF) + data[12:]
        return data

    def _release(self) -> None:
        """Give the block being read back to the kernel and move to the next one."""
        base = self._block * self._block_size
        struct.pack_into("=I", self._rx_map, base + 8, TP_STATUS_KERNEL)
        self._block = (self._block + 1) % self._blocks

    def overruns(self) -> int:
        """Frames the kernel dropped since the last call because the ring was full
        (``PACKET_STATISTICS``' ``tp_drops``)."""
        if self.rx is None:
            return 0
        try:
            raw = self.rx.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
        except OSError:
            return 0
        return struct.unpack_from("=II", raw)[1]

    def truncated(self) -> int:
        """Frames longer than a ring block (received cut, so not returned) since the last
        call."""
        found, self._truncated = self._truncated, 0
        return found

    # ---- transmit -----------------------------------------------------------------------
    def _open_tx(self) -> None:
        mtu = _mtu(self.name)
        size = self._tx_size or max(_pow2(mtu + _TX_SLACK + _TX_DATA), 2048)
        if size % _MAX_TPACKET_ALIGN or size < _TX_DATA + ETH_HLEN:
            raise OSError(errno.EINVAL, "transmit ring frames: a multiple of 16 bytes")
        count = max(min(self._tx_count, TX_RING_MAX // size), 16)
        block = max(size, mmap.PAGESIZE)
        per_block = block // size
        count = -(-count // per_block) * per_block
        sock = self.tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        sock.setsockopt(SOL_PACKET, PACKET_LOSS, 1)  # a bad frame never stops the ring
        try:  # frames in flight count against the send buffer until they are gone
            sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, _SNDBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
        sock.setsockopt(SOL_PACKET, PACKET_TX_RING, _REQ.pack(block, count // per_block, size,
                                                               count))  # fmt: skip
        self._tx_map = mmap.mmap(sock.fileno(), block * (count // per_block), mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip
        sock.bind((self.name, 0))
        sock.setblocking(False)
        self._tx_frame, self._tx_slots = size, count
        self.tx_room = min(size - _TX_DATA, mtu + _TX_PLAIN)
        self._tags = [None] * count
        self._slot = 0
        self._dirty = False

    def queue(self, frame: bytes, tag: Hashable = None) -> bool:
        """Put ``frame`` on the transmit ring (sent at the next :meth:`flush`); ``False``
        when the ring is full or the interface refused a frame sent directly. ``tag`` comes
        back from :meth:`flush` if the frame is refused later."""
        mm = self._tx_map
        size = len(frame)
        if mm is None or size > self.tx_room or size < ETH_HLEN:
            return self._send_now(frame)
        at = self._slot * self._tx_frame
        if mm[at]:  # still queued or in flight: try to move the ring on, once per flush
            if self._stalled:
                return False
            self.flush()
            self._stalled = True
            mm = self._tx_map
            if mm is None or mm[at]:
                return False
        mm[at + _TX_DATA : at + _TX_DATA + size] = frame
        _TX.pack_into(mm, at, TP_STATUS_SEND_REQUEST, size, size)
        self._tags[self._slot] = tag
        self._slot = (self._slot + 1) % self._tx_slots
        self._dirty = True
        return True

    def queue_many(self, frames: list[bytes], tag: Hashable = None) -> int:
        """:meth:`queue` each of ``frames`` in order; how many were taken."""
        mm = self._tx_map
        if mm is None:
            return super().queue_many(frames, tag)
        room, frame_size, slots, tags = self.tx_room, self._tx_frame, self._tx_slots, self._tags
        pack = _TX.pack_into
        slot = self._slot
        for i, frame in enumerate(frames):
            size = len(frame)
            at = slot * frame_size
            if size > room or size < ETH_HLEN or mm[at]:  # the careful way from here on
                self._slot = slot
                return i + super().queue_many(frames[i:], tag)
            mm[at + _TX_DATA : at + _TX_DATA + size] = frame
            pack(mm, at, TP_STATUS_SEND_REQUEST, size, size)
            tags[slot] = tag
            slot = slot + 1 if slot + 1 < slots else 0
            self._dirty = True
        self._slot = slot
        return len(frames)

    def flush(self) -> list[Hashable]:
        """Hand the queued frames to the kernel (one ``send``); the tags of queued frames
        the interface refused (it went down or away), usually none."""
        self._stalled = False
        if not self._dirty or self.tx is None:
            return []
        try:
            self.tx.send(b"", socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return []  # no room now: the frames stay queued for the next flush
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                return []  # the kernel keeps the frame it could not send and retries it
            return self._reset_tx()
        self._dirty = False
        return []

    def _send_now(self, frame: bytes) -> bool:
        """Send ``frame`` with ``send()`` after what is queued (order kept) on a socket of
        its own (a ring's socket only ever sends its ring)."""
        if self._dirty:
            self.flush()
        try:
            if self._direct is None:
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                try:
                    sock.bind((self.name, 0))
                except OSError:
                    sock.close()
                    raise
                self._direct = sock
            self._direct.send(frame)
            return True
        except OSError as exc:
            if isinstance(exc, (BlockingIOError, InterruptedError)) or exc.errno in (
                errno.EMSGSIZE, errno.ENETDOWN, errno.ENXIO, errno.ENOBUFS, errno.EINVAL,
                errno.ENODEV,
            ):  # fmt: skip
                return False
            raise

    def _reset_tx(self) -> list[Hashable]:
        """The frames still queued come back refused; a fresh ring replaces the old one
        (the kernel's position in a ring cannot be moved past a frame it did not send)."""
        mm, frame = self._tx_map, self._tx_frame
        refused = []
        if mm is not None:
            for i in range(self._tx_slots):
                j = (self._slot + i) % self._tx_slots  # oldest first
                if mm[j * frame] == TP_STATUS_SEND_REQUEST:
                    refused.append(self._tags[j])
        self._close_tx()
        try:
            self._open_tx()
        except OSError:
            self._close_tx()  # gone for good: later frames are refused one by one
        return refused

    def send(self, frame: bytes) -> bool:
        """Transmit ``frame`` now (queue and flush)."""
        return self.queue(frame, None) and not self.flush()

    # ---- lifetime -----------------------------------------------------------------------
    def _close_tx(self) -> None:
        if self._tx_map is not None:
            self._tx_map.close()
            self._tx_map = None
        if self.tx is not None:
            self.tx.close()
            self.tx = None
        self._dirty = False

    def close(self) -> None:
        """Unmap the rings and close both sockets (idempotent; the promiscuous membership
        goes with the receive socket)."""
        self._close_tx()
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        if self._rx_map is not None:
            self._rx_map.close()
            self._rx_map = None
        if self.rx is not None:
            self.rx.close()
            self.rx = None
