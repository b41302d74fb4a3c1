"""Port: one network interface opened for raw frames (an AF_PACKET socket, or a TAP device).

A :class:`Port` receives the frames arriving on an interface and sends frames out of it,
as an ``xdpgeneric`` hook sees and transmits them, from user space (Linux only, root or
``CAP_NET_RAW``):

- :class:`PacketPort` is an ``AF_PACKET``/``SOCK_RAW`` socket bound to the interface for
  every protocol. Frames the host itself sends on the interface (``PACKET_OUTGOING``, our
  own transmissions among them) are ignored; ``promiscuous=True`` adds a promiscuous
  membership (dropped by the kernel when the socket closes). The kernel hands over frames
  whose checksum the sender left to offload (``TP_STATUS_CSUMNOTREADY``, common on veth):
  their TCP/UDP checksum is completed before the program sees them, so forwarded frames are
  valid on the wire; a VLAN tag the driver stripped is put back in the frame.
- :class:`TapPort` is a TAP device (``/dev/net/tun``, no packet information header),
  created by name or reopened: frames written to it arrive in the host's stack as if
  received on that device, frames the stack sends to it are read back.

Both are non-blocking: :meth:`Port.receive` returns up to ``limit`` waiting frames,
:meth:`Port.send` sends one, :meth:`Port.fileno` is for ``select``/``poll``;
:meth:`Port.queue` and :meth:`Port.flush` are the batch form of ``send`` (here one
``send`` per frame; :class:`~pybpf.hooks.live_ring.RingPort` queues on a transmit ring and
flushes with one system call). A frame longer than the 64 KiB receive buffer arrives cut:
it is never returned, only counted (:meth:`Port.truncated`).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from array import array
from collections.abc import Hashable

from pybpf.errors import InputError, SyscallError

__all__ = ["Port", "PacketPort", "TapPort", "interface_index", "interface_name", "fix_checksum"]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
TP_STATUS_CSUMNOTREADY = 1 << 3
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
_AUX = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_BUFSIZE = 65536 + 64
_RCVBUF = 16 << 20
SO_RCVBUFFORCE = 33


def interface_index(name: str) -> int:
    """The ifindex of interface ``name``; :class:`InputError` when there is none."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise InputError(f"no network interface {name!r}", field="dev") from None


def interface_name(ifindex: int) -> str:
    """The name of interface ``ifindex``; :class:`InputError` when there is none."""
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        raise InputError(f"no network interface with index {ifindex}", field="dev") from None


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _sum16(data: bytes | memoryview) -> int:
    if len(data) % 2:
        data = bytes(data) + b"\0"
    words = array("H", bytes(data))  # host order; folded and swapped back below
    total = _fold(sum(words))
    return socket.ntohs(total) if socket.htons(1) != 1 else total


def fix_checksum(frame: bytes) -> bytes:
    """``frame`` with its TCP/UDP checksum completed, for a frame whose sender left the
    checksum to offload (the field holds the pseudo-header sum). IPv4 and IPv6 (no
    extension headers) over Ethernet; any other frame comes back unchanged."""
    proto = frame[12:14]
    if proto == b"\x08\x00" and len(frame) >= 34:
        l4_at = 14 + (frame[14] & 0x0F) * 4
        ip_proto = frame[23]
        end = 14 + int.from_bytes(frame[16:18], "big")
    elif proto == b"\x86\xdd" and len(frame) >= 54:
        l4_at = 54
        ip_proto = frame[20]
        end = 54 + int.from_bytes(frame[18:20], "big")
    else:
        return frame
    field = {6: 16, 17: 6}.get(ip_proto)
    if field is None or end > len(frame) or l4_at + field + 2 > end:
        return frame
    total = ~_sum16(memoryview(frame)[l4_at:end]) & 0xFFFF
    if ip_proto == 17 and total == 0:
        total = 0xFFFF
    at = l4_at + field
    return frame[:at] + total.to_bytes(2, "big") + frame[at + 2 :]


class Port:
    """An interface frames are received from and sent to (see the module docstring)."""

    name: str
    ifindex: int

    def fileno(self) -> int:
        """The descriptor to wait on."""
        raise NotImplementedError

    def receive(self, limit: int = 64) -> list[bytes]:
        """Up to ``limit`` frames waiting now (never blocks)."""
        raise NotImplementedError

    def overruns(self) -> int:
        """Frames lost because they were not read in time, since the last call."""
        return 0

    def truncated(self) -> int:
        """Frames received cut (longer than the receive buffer: never returned), since the
        last call."""
        return 0

    def pending(self) -> bool:
        """Whether frames are known to be waiting without asking the kernel (a ring)."""
        return False

    def send(self, frame: bytes) -> bool:
        """Send one frame; ``False`` when the interface refused it (too long, down, full)."""
        raise NotImplementedError

    def queue(self, frame: bytes, tag: Hashable = None) -> bool:
        """Send ``frame`` by the next :meth:`flush` (here: now); ``False`` when refused.
        ``tag`` comes back from :meth:`flush` for a queued frame refused later."""
        return self.send(frame)

    def queue_many(self, frames: list[bytes], tag: Hashable = None) -> int:
        """:meth:`queue` each of ``frames`` in order; how many were taken."""
        queue = self.queue
        return sum(1 for frame in frames if queue(frame, tag))

    def flush(self) -> list[Hashable]:
        """Send what :meth:`queue` queued; the tags of frames refused (none here)."""
        return []

    def close(self) -> None:
        """Close the socket or device (idempotent)."""
        raise NotImplementedError

    def __enter__(self) -> Port:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _os_error(what: str, exc: OSError) -> SyscallError:
    return SyscallError(what, exc.errno or errno.EIO)


class PacketPort(Port):
    """An ``AF_PACKET`` socket on interface ``name`` (see the module docstring)."""

    def __init__(self, name: str, *, promiscuous: bool = False) -> None:
        self.name = name
        self.ifindex = interface_index(name)
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except OSError as exc:
            raise _os_error("socket(AF_PACKET)", exc) from None
        self.sock = sock
        try:
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError:  # before Linux 4.20: the packet type check below does it
                pass
            try:  # past net.core.rmem_max (root may)
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, _RCVBUF)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            sock.bind((name, ETH_P_ALL))
            if promiscuous:
                mreq = struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise _os_error(f"AF_PACKET socket on {name}", exc) from None
        self._aux_size = socket.CMSG_SPACE(_AUX.size)
        self.ignored = 0  # PACKET_OUTGOING frames seen and ignored
        self._truncated = 0

    def fileno(self) -> int:
        """The socket's descriptor."""
        return self.sock.fileno()

    def receive(self, limit: int = 64) -> list[bytes]:
        """Up to ``limit`` frames received on the interface (see the module docstring)."""
        out: list[bytes] = []
        recvmsg = self.sock.recvmsg
        aux_size = self._aux_size
        while len(out) < limit:
            try:
                data, ancdata, _flags, addr = recvmsg(_BUFSIZE, aux_size)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if addr[2] == PACKET_OUTGOING:
                self.ignored += 1
                continue
            if _flags & socket.MSG_TRUNC:  # longer than the buffer: never run a cut frame
                self._truncated += 1
                continue
            for level, kind, raw in ancdata:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(raw) >= _AUX.size:
                    status, _len, _snap, _mac, _net, tci, tpid = _AUX.unpack_from(raw)
                    if status & TP_STATUS_CSUMNOTREADY:
                        data = fix_checksum(data)
                    if status & TP_STATUS_VLAN_VALID:
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = 0x8100
                        data = data[:12] + struct.pack(">HH", tpid, tci) + data[12:]
            out.append(data)
        return out

    def overruns(self) -> int:
        """Frames the kernel dropped for this socket (its queue was full) since the last call
        (``PACKET_STATISTICS``' ``tp_drops``)."""
        try:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        except OSError:
            return 0
        return struct.unpack("II", raw)[1]

    def truncated(self) -> int:
        """Frames longer than the receive buffer (cut, so not returned) since the last call."""
        found, self._truncated = self._truncated, 0
        return found

    def send(self, frame: bytes) -> bool:
        """Transmit ``frame`` on the interface."""
        try:
            self.sock.send(frame)
            return True
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if exc.errno in (errno.EMSGSIZE, errno.ENETDOWN, errno.ENXIO, errno.ENOBUFS,
                             errno.EINVAL):  # fmt: skip
                return False
            raise

    def close(self) -> None:
        """Close the socket (the promiscuous membership goes with it)."""
        self.sock.close()


class TapPort(Port):
    """A TAP device ``name``, created if it does not exist (see the module docstring)."""

    def __init__(self, name: str) -> None:
        import fcntl  # Linux only: imported when a TAP device is opened

        if not name or len(name) > 15:
            raise InputError(f"bad TAP device name {name!r}", field="to")
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        except OSError as exc:
            raise _os_error("open(/dev/net/tun)", exc) from None
        try:
            ifreq = struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI)
            fcntl.ioctl(fd, TUNSETIFF, ifreq)
        except OSError as exc:
            os.close(fd)
            raise _os_error(f"TUNSETIFF {name}", exc) from None
        self.fd = fd
        self.name = name
        self.ifindex = interface_index(name)

    def fileno(self) -> int:
        """The device's descriptor."""
        return self.fd

    def receive(self, limit: int = 64) -> list[bytes]:
        """Up to ``limit`` frames the host sent to the device."""
        out: list[bytes] = []
        while len(out) < limit:
            try:
                out.append(os.read(self.fd, _BUFSIZE))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.EIO:  # the device is down
                    break
                raise
        return out

    def send(self, frame: bytes) -> bool:
        """Inject ``frame`` into the host's stack as received on the device."""
        try:
            os.write(self.fd, frame)
            return True
        except OSError:
            return False

    def close(self) -> None:
        """Close the device (a device this created goes away)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
