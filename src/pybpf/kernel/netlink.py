"""netlink: XDP and tc cls_bpf programs put on an interface through rtnetlink, as before BPF links.

Kernels before 5.9 have no XDP links: libbpf's ``bpf_xdp_attach`` sends ``RTM_SETLINK``
with a nested ``IFLA_XDP`` attribute holding the program fd (``IFLA_XDP_FD``) and the mode
flags (``IFLA_XDP_FLAGS``); fd -1 removes the program. :func:`xdp_set` does that over an
``AF_NETLINK`` socket and checks the kernel's acknowledgement; :func:`xdp_query` reads the
attached program's id back (``RTM_GETLINK``, ``IFLA_XDP_PROG_ID``).

Kernels before 6.6 have no tcx: libbpf's ``bpf_tc_hook_create`` adds a ``clsact`` qdisc
(``RTM_NEWQDISC``, :func:`tc_hook_create`; one that exists already is kept) and
``bpf_tc_attach`` a ``bpf`` filter in direct-action mode on its ingress or egress parent
(``RTM_NEWTFILTER`` with ``TCA_OPTIONS`` holding ``TCA_BPF_FD``, ``TCA_BPF_NAME`` and
``TCA_BPF_FLAG_ACT_DIRECT``, every protocol; :func:`tc_attach`, which returns the handle
and priority the kernel chose, echoed back). :func:`tc_query` reads a filter's program id,
:func:`tc_detach` deletes the filter (``RTM_DELTFILTER``), :func:`tc_hook_destroy` the
qdisc.
"""

from __future__ import annotations

import errno
import socket
import struct

from pybpf.errors import InputError, SyscallError

__all__ = [
    "xdp_set",
    "xdp_query",
    "XDP_FLAGS_UPDATE_IF_NOEXIST",
    "tc_hook_create",
    "tc_hook_destroy",
    "tc_attach",
    "tc_query",
    "tc_detach",
    "tc_parent",
]

_RTM_NEWLINK, _RTM_GETLINK, _RTM_SETLINK = 16, 18, 19
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_ECHO = 0x1, 0x4, 0x8
_NLM_F_EXCL, _NLM_F_CREATE = 0x200, 0x400
_RTM_NEWQDISC, _RTM_DELQDISC = 36, 37
_RTM_NEWTFILTER, _RTM_DELTFILTER, _RTM_GETTFILTER = 44, 45, 46
_TCA_KIND, _TCA_OPTIONS = 1, 2
_TCA_BPF_FD, _TCA_BPF_NAME, _TCA_BPF_FLAGS, _TCA_BPF_ID = 6, 7, 8, 11
_TCA_BPF_FLAG_ACT_DIRECT = 1
_TC_H_CLSACT = 0xFFFFFFF1  # == TC_H_INGRESS
_TC_H_MIN_INGRESS, _TC_H_MIN_EGRESS = 0xFFF2, 0xFFF3
_ETH_P_ALL = 0x0003
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_IFLA_XDP = 43
_NLA_F_NESTED = 1 << 15
_IFLA_XDP_FD, _IFLA_XDP_FLAGS, _IFLA_XDP_PROG_ID = 1, 3, 4
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
_TIMEOUT = 5.0  # seconds: the kernel answers at once; never block a caller forever
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_NLATTR = struct.Struct("=HH")
_TCMSG = struct.Struct("=BxHiIII")


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


# ---- tc (cls_bpf) ---------------------------------------------------------------------------
def tc_parent(direction: str) -> int:
    """The clsact parent handle of ``direction`` (``"ingress"`` or ``"egress"``)."""
    minor = {"ingress": _TC_H_MIN_INGRESS, "egress": _TC_H_MIN_EGRESS}.get(direction)
    if minor is None:
        raise InputError(f"tc direction must be ingress or egress, not {direction!r}")
    return (_TC_H_CLSACT & 0xFFFF0000) | minor


def _tcmsg(ifindex: int, handle: int, parent: int, info: int) -> bytes:
    return _TCMSG.pack(socket.AF_UNSPEC, 0, ifindex, handle, parent, info)


def _kind(name: bytes) -> bytes:
    return _attr(_TCA_KIND, name + b"\0")


def _filter_info(priority: int) -> int:
    return (priority << 16) | socket.htons(_ETH_P_ALL)


def _attrs(payload: bytes, pos: int) -> dict[int, bytes]:
    found = {}
    while pos + _NLATTR.size <= len(payload):
        size, kind = _NLATTR.unpack_from(payload, pos)
        if size < _NLATTR.size:
            break
        found[kind & ~_NLA_F_NESTED] = payload[pos + _NLATTR.size : pos + size]
        pos += (size + 3) & ~3
    return found


def tc_hook_create(ifindex: int) -> bool:
    """Add a ``clsact`` qdisc to interface ``ifindex``; ``False`` when one was there."""
    body = _tcmsg(ifindex, _TC_H_CLSACT & 0xFFFF0000, _TC_H_CLSACT, 0) + _kind(b"clsact")
    flags = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_EXCL | _NLM_F_CREATE
    try:
        _exchange(_request(_RTM_NEWQDISC, flags, body))
    except SyscallError as err:
        if err.errno != errno.EEXIST:
            raise
        return False
    return True


def tc_hook_destroy(ifindex: int) -> None:
    """Remove interface ``ifindex``'s ``clsact`` qdisc and every filter on it."""
    body = _tcmsg(ifindex, _TC_H_CLSACT & 0xFFFF0000, _TC_H_CLSACT, 0) + _kind(b"clsact")
    _exchange(_request(_RTM_DELQDISC, _NLM_F_REQUEST | _NLM_F_ACK, body))


def tc_attach(
    ifindex: int,
    direction: str,
    prog_fd: int,
    name: str = "",
    *,
    handle: int = 0,
    priority: int = 0,
) -> tuple[int, int]:
    """Add a direct-action ``bpf`` filter running ``prog_fd`` on ``direction`` of
    interface ``ifindex`` (its clsact qdisc must exist); ``handle``/``priority`` 0 let the
    kernel choose. Returns ``(handle, priority)`` as the kernel set them; an existing
    filter of that handle and priority is :class:`SyscallError` EEXIST."""
    options = _attr(_TCA_BPF_FD, struct.pack("=I", prog_fd))
    if name:
        options += _attr(_TCA_BPF_NAME, name.encode() + b"\0")
    options += _attr(_TCA_BPF_FLAGS, struct.pack("=I", _TCA_BPF_FLAG_ACT_DIRECT))
    body = _tcmsg(ifindex, handle, tc_parent(direction), _filter_info(priority))
    body += _kind(b"bpf") + _attr(_TCA_OPTIONS | _NLA_F_NESTED, options)
    flags = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_ECHO | _NLM_F_CREATE | _NLM_F_EXCL
    for kind, payload in _exchange(_request(_RTM_NEWTFILTER, flags, body)):
        if kind == _RTM_NEWTFILTER and len(payload) >= _TCMSG.size:
            _family, _pad, _index, got_handle, _parent, info = _TCMSG.unpack_from(payload)
            return got_handle, info >> 16
    return handle, priority


def tc_query(ifindex: int, direction: str, handle: int, priority: int) -> int:
    """The program id of the ``bpf`` filter ``handle``/``priority`` on ``direction`` of
    interface ``ifindex`` (0: no such filter)."""
    body = _tcmsg(ifindex, handle, tc_parent(direction), _filter_info(priority))
    body += _kind(b"bpf")
    try:
        flags = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_ECHO
        replies = _exchange(_request(_RTM_GETTFILTER, flags, body))
    except SyscallError as err:
        if err.errno in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
            return 0
        raise
    for kind, payload in replies:
        if kind != _RTM_NEWTFILTER:
            continue
        options = _attrs(payload, _TCMSG.size).get(_TCA_OPTIONS)
        if options is not None:
            prog_id = _attrs(options, 0).get(_TCA_BPF_ID)
            if prog_id is not None:
                return struct.unpack_from("=I", prog_id)[0]
    return 0


def tc_detach(ifindex: int, direction: str, handle: int, priority: int) -> None:
    """Delete the ``bpf`` filter ``handle``/``priority`` on ``direction`` of ``ifindex``."""
    body = _tcmsg(ifindex, handle, tc_parent(direction), _filter_info(priority))
    body += _kind(b"bpf")
    _exchange(_request(_RTM_DELTFILTER, _NLM_F_REQUEST | _NLM_F_ACK, body))
