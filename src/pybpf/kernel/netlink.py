"""netlink: XDP programs set on a network interface through rtnetlink, as before BPF links.

Kernels before 5.9 have no XDP links: libbpf's ``bpf_xdp_attach`` sends ``RTM_SETLINK``
with a nested ``IFLA_XDP`` attribute holding the program fd (``IFLA_XDP_FD``) and the mode
flags (``IFLA_XDP_FLAGS``); fd -1 removes the program. :func:`xdp_set` does that over an
``AF_NETLINK`` socket and checks the kernel's acknowledgement; :func:`xdp_query` reads the
attached program's id back (``RTM_GETLINK``, ``IFLA_XDP_PROG_ID``).
"""

from __future__ import annotations

import errno
import socket
import struct

from pybpf.errors import SyscallError

__all__ = ["xdp_set", "xdp_query", "XDP_FLAGS_UPDATE_IF_NOEXIST"]

_RTM_NEWLINK, _RTM_GETLINK, _RTM_SETLINK = 16, 18, 19
_NLM_F_REQUEST, _NLM_F_ACK = 0x1, 0x4
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_IFLA_XDP = 43
_NLA_F_NESTED = 1 << 15
_IFLA_XDP_FD, _IFLA_XDP_FLAGS, _IFLA_XDP_PROG_ID = 1, 3, 4
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
_TIMEOUT = 5.0  # seconds: the kernel answers at once; never block a caller forever
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_NLATTR = struct.Struct("=HH")


def _attr(kind: int, payload: bytes) -> bytes:
    size = _NLATTR.size + len(payload)
    return _NLATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def _request(kind: int, flags: int, body: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, 1, 0) + body


def _exchange(message: bytes) -> list[tuple[int, bytes]]:
    """Send one request; the replies as (type, payload) until the ack or DONE."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(_TIMEOUT)
        sock.bind((0, 0))
        sock.send(message)
        replies = []
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise SyscallError("netlink", errno.ETIMEDOUT) from None
            pos = 0
            while pos + _NLMSGHDR.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, pos)
                payload = data[pos + _NLMSGHDR.size : pos + length]
                pos += (length + 3) & ~3
                if kind == _NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", payload)
                    if code:
                        raise SyscallError("rtnetlink", -code)
                    return replies
                if kind == _NLMSG_DONE:
                    return replies
                replies.append((kind, payload))
                if not length:
                    return replies


def xdp_set(ifindex: int, prog_fd: int, flags: int = 0) -> None:
    """Set (``prog_fd`` >= 0) or remove (-1) the XDP program of interface ``ifindex``."""
    xdp = _attr(_IFLA_XDP_FD, struct.pack("=i", prog_fd))
    if flags:
        xdp += _attr(_IFLA_XDP_FLAGS, struct.pack("=I", flags))
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0)
    body += _attr(_IFLA_XDP | _NLA_F_NESTED, xdp)
    _exchange(_request(_RTM_SETLINK, _NLM_F_REQUEST | _NLM_F_ACK, body))


def xdp_query(ifindex: int) -> int:
    """The id of the XDP program on interface ``ifindex`` (0: none)."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0)
    replies = _exchange(_request(_RTM_GETLINK, _NLM_F_REQUEST | _NLM_F_ACK, body))
    for kind, payload in replies:
        if kind != _RTM_NEWLINK:
            continue
        pos = _IFINFOMSG.size
        while pos + _NLATTR.size <= len(payload):
            size, atype = _NLATTR.unpack_from(payload, pos)
            if size < _NLATTR.size:
                break
            if atype & ~_NLA_F_NESTED == _IFLA_XDP:
                inner = payload[pos + _NLATTR.size : pos + size]
                ipos = 0
                while ipos + _NLATTR.size <= len(inner):
                    isize, itype = _NLATTR.unpack_from(inner, ipos)
                    if itype == _IFLA_XDP_PROG_ID:
                        return struct.unpack_from("=I", inner, ipos + _NLATTR.size)[0]
                    if isize < _NLATTR.size:
                        break
                    ipos += (isize + 3) & ~3
            pos += (size + 3) & ~3
    return 0
