"""Socket hooks: socket programs attached to the running Python process (bind, connect, release).

:func:`attach_socket` attaches a portable-backend program (loaded with its context rewritten,
``program.context == "runtime"``) to this process's sockets, as a cgroup attachment
would on Linux for the sockets of a cgroup, and returns a :class:`SocketLink`
(:class:`~pybpf.hooks.link.Link`: ``detach()`` restores everything; ``pybpf link show``
lists it). The programs run synchronously in the calling thread, so
``bpf_get_current_pid_tgid`` and friends report the calling process and thread, and
``bpf_get_socket_cookie`` gives the socket's Linux cookie (``SO_COOKIE``).

Hooks (attach type: when, context, verdict):

- ``cgroup/bind4``/``bind6`` (``CGROUP_SOCK_ADDR``): before ``socket.bind`` of an
  ``AF_INET``/``AF_INET6`` socket, ``bpf_sock_addr`` with the address being bound;
  ``cgroup/connect4``/``connect6``: before ``connect``/``connect_ex``. Return 1 allows,
  0 denies (``PermissionError``, errno ``EPERM``, in the caller; ``connect_ex`` returns
  ``EPERM``). Writes to ``user_ip4``/``user_ip6``/``user_port`` redirect: the call uses
  the address the program left. Several programs run in attach order, each seeing the
  previous one's rewrites; any deny denies.
- ``cgroup/post_bind4``/``post_bind6`` (``CGROUP_SOCK``): after a successful bind,
  ``bpf_sock`` of the bound socket; a deny undoes the bind (the socket is replaced by a
  fresh unbound one with the same descriptor, options and blocking mode, as Linux
  releases the port of the same socket) and raises ``PermissionError``.
- ``cgroup/sock_create``: after ``socket.socket(...)`` creates an inet socket (not for
  sockets made from a descriptor, as accepted ones are); a deny closes it and raises
  ``PermissionError``; writes to ``mark``, ``priority`` and ``bound_dev_if`` are applied
  with ``SO_MARK``, ``SO_PRIORITY`` and ``SO_BINDTOIFINDEX``.
- ``cgroup/sock_release``: when an inet socket is released: ``close()`` (its last
  reference) or garbage collection of a socket the hooks saw (not ``detach()``: the
  descriptor lives on); ``bpf_sock`` with its addresses as they were. The verdict is
  ignored, as on Linux.
- ``bind`` (eBPF for Windows): ``bind_md`` with the app id (this process's image path,
  UTF-8), the process id, the address (a Windows ``SOCKADDR``), the protocol and the
  operation: ``BIND`` before the bind (``BIND_PERMIT``/``BIND_PERMIT_HARD`` allow,
  ``BIND_DENY`` denies, ``BIND_REDIRECT`` binds to the ``socket_address`` the program
  wrote), ``POST_BIND`` after it with the port allocated (deny undoes it), ``UNBIND``
  when a socket with a local port is released. Other return values deny.

How: Python's audit hooks (``socket.bind``, ``socket.connect``) can veto but cannot change
arguments and see no close, so this module wraps ``socket.socket``'s ``__init__``,
``bind``, ``connect``, ``connect_ex``, ``_real_close`` and ``detach`` while any socket
link is attached (restored when the last one detaches), and one audit hook, installed
once, vetoes the binds and connects that reach ``_socket.socket`` without passing through
the wrappers (a redirect cannot be honoured there; deny still works). Runs of one
program are serialised; attaching and detaching are thread-safe; a link whose program
was closed detaches itself at the next socket call. A socket garbage-collected while its
thread runs a socket program is released after that run.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket as _socket_module
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pybpf.errors import InputError, NotSupportedError
from pybpf.hooks.link import Link
from pybpf.objects.sock_context import (
    BindAction,
    BindOperation,
    socket_cookie,
    uapi_pack,
    uapi_unpack,
    windows_sockaddr,
    windows_sockaddr_parse,
)
from pybpf.progtypes import AttachType, ProgType
from pybpf.progtypes.contexts import LAYOUTS, SOCK_LAYOUT

__all__ = ["SocketLink", "attach_socket", "SOCKET_ATTACH_TYPES", "attached_links", "app_id"]

_A = AttachType
SOCKET_ATTACH_TYPES: dict[AttachType, ProgType] = {
    _A.CGROUP_INET4_BIND: ProgType.CGROUP_SOCK_ADDR,
    _A.CGROUP_INET6_BIND: ProgType.CGROUP_SOCK_ADDR,
    _A.CGROUP_INET4_CONNECT: ProgType.CGROUP_SOCK_ADDR,
    _A.CGROUP_INET6_CONNECT: ProgType.CGROUP_SOCK_ADDR,
    _A.CGROUP_INET4_POST_BIND: ProgType.CGROUP_SOCK,
    _A.CGROUP_INET6_POST_BIND: ProgType.CGROUP_SOCK,
    _A.CGROUP_INET_SOCK_CREATE: ProgType.CGROUP_SOCK,
    _A.CGROUP_INET_SOCK_RELEASE: ProgType.CGROUP_SOCK,
    _A.WINDOWS_BIND: ProgType.BIND,
}
"""The attach types this module hooks, and the program type each needs."""

_SOCK_ADDR = LAYOUTS["bpf_sock_addr"]
_BIND_MD = LAYOUTS["bind_md"]
_INET = (_socket_module.AF_INET, _socket_module.AF_INET6)
_SO_BINDTOIFINDEX = 62
_SO_COOKIE = 57
_COOKIES = itertools.count(1 << 48)  # where SO_COOKIE is missing
_TCP_ESTABLISHED, _TCP_CLOSE, _TCP_LISTEN = 1, 7, 10
_M32 = (1 << 32) - 1


_APP_ID: list[bytes] = []


def app_id() -> bytes:
    """This process's image path (``bind_md``'s app id), UTF-8."""
    if not _APP_ID:
        try:
            path = os.readlink("/proc/self/exe")
        except OSError:
            path = sys.executable or sys.argv[0]
        _APP_ID.append(os.fsencode(path))
    return _APP_ID[0]


def _denied() -> PermissionError:
    return PermissionError(errno.EPERM, os.strerror(errno.EPERM))


# ---- addresses ----------------------------------------------------------------------------
@dataclass
class _Endpoint:
    """An inet address as the hooks see it: raw address bytes, port, the tuple's rest."""

    family: int
    ip: bytes
    port: int
    rest: tuple = ()

    def as_tuple(self) -> tuple:
        host = _socket_module.inet_ntop(self.family, self.ip)
        return (host, self.port, *self.rest)


def _resolve(family: int, address: Any) -> _Endpoint | None:
    """``address`` (a ``bind``/``connect`` tuple) as an endpoint, or ``None`` when it is not
    one the hooks understand (the call itself reports the error)."""
    try:
        host, port = address[0], int(address[1])
        rest = tuple(address[2:]) if family == _socket_module.AF_INET6 else ()
        if isinstance(host, bytes):
            host = host.decode("idna")
        if host == "":
            ip = bytes(4 if family == _socket_module.AF_INET else 16)
        elif host == "<broadcast>" and family == _socket_module.AF_INET:
            ip = b"\xff" * 4
        else:
            try:
                ip = _socket_module.inet_pton(family, host)
            except OSError:
                found = _socket_module.getaddrinfo(host, port, family)[0][4][0]
                ip = _socket_module.inet_pton(family, found.split("%")[0])
        return _Endpoint(family, ip, port & 0xFFFF, rest)
    except (TypeError, ValueError, IndexError, OSError, UnicodeError):
        return None


def _name(sock: Any, peer: bool) -> _Endpoint | None:
    try:
        got = sock.getpeername() if peer else _orig("getsockname")(sock)
    except OSError:
        return None
    return _resolve(sock.family, got)


def _protocol(sock: Any) -> int:
    try:
        return sock.getsockopt(_socket_module.SOL_SOCKET, _socket_module.SO_PROTOCOL)
    except (OSError, AttributeError):
        return sock.proto


def _cookie(sock: Any) -> int:
    """The socket's cookie: Linux's ``SO_COOKIE``, else one of this module's own."""
    try:
        raw = sock.getsockopt(_socket_module.SOL_SOCKET, _SO_COOKIE, 8)
        return int.from_bytes(raw, "little")
    except (OSError, AttributeError, TypeError):
        return next(_COOKIES)


def _words(ip: bytes) -> list[int]:
    return [int.from_bytes(ip[i : i + 4], "little") for i in range(0, len(ip), 4)]


def _bpf_sock(family: int, type_: int, protocol: int, local: _Endpoint | None,
              remote: _Endpoint | None, state: int) -> dict[str, int]:
    """``bpf_sock`` fields (addresses in network order, ``src_port`` in host order)."""
    values = {"family": family, "type": type_, "protocol": protocol, "state": state}
    if local is not None:
        values["src_port"] = local.port
        if family == _socket_module.AF_INET:
            values["src_ip4"] = _words(local.ip)[0]
        else:
            values.update({f"src_ip6[{i}]": w for i, w in enumerate(_words(local.ip))})
    if remote is not None:
        values["dst_port"] = int.from_bytes(remote.port.to_bytes(2, "big"), "little")
        if family == _socket_module.AF_INET:
            values["dst_ip4"] = _words(remote.ip)[0]
        else:
            values.update({f"dst_ip6[{i}]": w for i, w in enumerate(_words(remote.ip))})
    return values


@dataclass
class _SockInfo:
    """What the release hooks need of a socket, kept past its collection."""

    family: int
    type: int
    protocol: int
    local: _Endpoint | None = None
    remote: _Endpoint | None = None
    listening: bool = False
    released: bool = False
    cookie: int = 0
    finalizer: Any = field(default=None, repr=False)

    def sock_values(self) -> dict[str, int]:
        state = _TCP_LISTEN if self.listening else (
            _TCP_ESTABLISHED if self.remote is not None else _TCP_CLOSE
        )
        return _bpf_sock(self.family, self.type, self.protocol, self.local, self.remote, state)


# ---- the dispatcher -----------------------------------------------------------------------
_LOCK = threading.RLock()
_LINKS: dict[AttachType, list[SocketLink]] = {t: [] for t in SOCKET_ATTACH_TYPES}
_RUN_LOCKS: dict[int, threading.Lock] = {}
_ORIGINALS: dict[str, Any] = {}
_INSTALLED: dict[str, bool] = {}  # wrapped name -> defined by socket.socket itself
_INFO: weakref.WeakKeyDictionary[Any, _SockInfo] = weakref.WeakKeyDictionary()
_LOCAL = threading.local()
_AUDIT_ADDED = False
_WRAPPED = ("__init__", "bind", "connect", "connect_ex", "_real_close", "detach")


def _orig(name: str) -> Callable[..., Any]:
    return _ORIGINALS.get(name) or getattr(_socket_module.socket, name)


def attached_links() -> list[SocketLink]:
    """Every socket link attached in this process, in attach order per hook."""
    with _LOCK:
        return [link for links in _LINKS.values() for link in links]


def _links(attach_type: AttachType) -> list[SocketLink]:
    """The links of ``attach_type``; a link whose program was closed is detached."""
    with _LOCK:
        links = list(_LINKS[attach_type])
    live = [link for link in links if not getattr(link.program, "closed", False)]
    if len(live) != len(links):
        for link in links:
            if link not in live:
                link.detach()
    return live


class _Passthrough:
    """Marks this thread as inside a wrapper (the audit hook and nested wrappers skip)."""

    def __enter__(self) -> None:
        _LOCAL.depth = getattr(_LOCAL, "depth", 0) + 1

    def __exit__(self, *exc: object) -> None:
        _LOCAL.depth -= 1
        pending = getattr(_LOCAL, "pending", None)
        if _LOCAL.depth == 0 and pending:
            _LOCAL.pending = []
            for info in pending:  # releases collected while a program ran here
                _release(info)


def _inside() -> bool:
    return getattr(_LOCAL, "depth", 0) > 0


def _run(link: SocketLink, data_in: bytes, ctx_in: bytes, cookie: int = 0):
    program = link.program
    with _LOCK:
        lock = _RUN_LOCKS.setdefault(program.id, threading.Lock())
    with lock, _Passthrough(), socket_cookie(cookie):
        result = program.test_run(data_in, ctx_in=ctx_in)
    link.runs += 1
    return result


def _sock_addr_hook(sock: Any, attach_type: AttachType, ep: _Endpoint,
                    redirect: bool = True) -> _Endpoint:
    """Run the ``bpf_sock_addr`` programs of ``attach_type``; the endpoint to use."""
    links = _links(attach_type)
    if not links:
        return ep
    values = {"user_family": ep.family, "family": sock.family, "type": int(sock.type),
              "protocol": _protocol(sock)}
    values["user_port"] = int.from_bytes(ep.port.to_bytes(2, "big"), "little")
    if ep.family == _socket_module.AF_INET:
        values["user_ip4"] = _words(ep.ip)[0]
    else:
        values.update({f"user_ip6[{i}]": w for i, w in enumerate(_words(ep.ip))})
    info = _info(sock)
    sk = uapi_pack(SOCK_LAYOUT, info.sock_values() if info else {})
    cookie = info.cookie if info else _cookie(sock)
    ctx = uapi_pack(_SOCK_ADDR, values)
    denied = False
    for link in links:
        result = _run(link, sk, ctx, cookie)
        ctx = result.ctx_out or ctx
        if not result.retval & 1:
            link.denied += 1
            denied = True
    if denied:
        raise _denied()
    out = uapi_unpack(_SOCK_ADDR, ctx)
    port = int.from_bytes((out["user_port"] & 0xFFFF).to_bytes(2, "little"), "big")
    if ep.family == _socket_module.AF_INET:
        ip = (out["user_ip4"] & _M32).to_bytes(4, "little")
    else:
        ip = b"".join((out[f"user_ip6[{i}]"] & _M32).to_bytes(4, "little") for i in range(4))
    new = _Endpoint(ep.family, ip, port, ep.rest)
    if (new.ip, new.port) != (ep.ip, ep.port):
        if not redirect:
            return ep
        for link in links:
            link.redirected += 1
        return new
    return ep


def _sock_hook(attach_type: AttachType, info: _SockInfo) -> tuple[bool, dict[str, int]]:
    """Run the ``bpf_sock`` programs of ``attach_type``: (allowed, fields after the runs)."""
    ctx = uapi_pack(SOCK_LAYOUT, info.sock_values())
    allowed = True
    for link in _links(attach_type):
        result = _run(link, b"", ctx, info.cookie)
        ctx = result.ctx_out or ctx
        if not result.retval & 1:
            link.denied += 1
            allowed = False
    return allowed, uapi_unpack(SOCK_LAYOUT, ctx)


def _bind_md_hook(sock: Any, operation: BindOperation, ep: _Endpoint,
                  redirect: bool = True) -> _Endpoint:
    """Run the eBPF-for-Windows ``bind`` programs; the endpoint to use (raises on deny)."""
    links = _links(AttachType.WINDOWS_BIND)
    if not links:
        return ep
    address = windows_sockaddr(ep.port, ep.ip)
    values: dict[str, int] = {
        "process_id": os.getpid(),
        "socket_address_length": 16,
        "operation": int(operation),
        "protocol": _protocol(sock) if sock is not None else 0,
    }
    values["socket_address"] = int.from_bytes(address, "little")
    ctx = uapi_pack(_BIND_MD, values)
    denied = False
    redirected = None
    for link in links:
        result = _run(link, app_id(), ctx)
        ctx = result.ctx_out or ctx
        verdict = result.retval
        if verdict in (BindAction.PERMIT, BindAction.PERMIT_HARD):
            continue
        if verdict == BindAction.REDIRECT:
            out = uapi_unpack(_BIND_MD, ctx)
            raw = (out["socket_address"]).to_bytes(16, "little")
            port, ip = windows_sockaddr_parse(raw)
            redirected = _Endpoint(ep.family, ip if ip is not None else ep.ip, port, ep.rest)
            link.redirected += 1
            continue
        link.denied += 1
        denied = True
    if denied and operation != BindOperation.UNBIND:
        raise _denied()
    return redirected if redirected is not None and redirect else ep


def _info(sock: Any, create: bool = True) -> _SockInfo | None:
    """The release record of an inet ``socket.socket`` (made and tracked on first sight)."""
    try:
        info = _INFO.get(sock)
    except TypeError:
        return None
    if info is not None or not create:
        return info
    try:
        family, type_ = sock.family, int(sock.type)
        if family not in _INET or sock.fileno() < 0:
            return None
    except (OSError, ValueError):
        return None
    info = _SockInfo(family, type_, _protocol(sock), cookie=_cookie(sock))
    info.local = _name(sock, False)
    info.remote = _name(sock, True)
    try:
        info.finalizer = weakref.finalize(sock, _release, info)
        info.finalizer.atexit = False
        _INFO[sock] = info
    except TypeError:
        return None
    return info


def _release(info: _SockInfo) -> None:
    """The release hooks of one socket (once). A socket collected while this thread runs a
    program (garbage collection can strike anywhere) is released after that run."""
    if info.released:
        return
    if _inside():
        if not hasattr(_LOCAL, "pending"):
            _LOCAL.pending = []
        _LOCAL.pending.append(info)
        return
    info.released = True
    if info.finalizer is not None:
        info.finalizer.detach()
    if _links(AttachType.CGROUP_INET_SOCK_RELEASE):
        _sock_hook(AttachType.CGROUP_INET_SOCK_RELEASE, info)
    if info.local is not None and info.local.port and _links(AttachType.WINDOWS_BIND):
        _bind_md_hook(None, BindOperation.UNBIND, info.local)


_KEPT_OPTIONS = tuple(
    (level, option)
    for level, name in (
        (_socket_module.SOL_SOCKET, "SO_PRIORITY"),
        (_socket_module.SOL_SOCKET, "SO_MARK"),
        (_socket_module.SOL_SOCKET, "SO_REUSEADDR"),
        (_socket_module.SOL_SOCKET, "SO_REUSEPORT"),
        (_socket_module.SOL_SOCKET, "SO_BROADCAST"),
        (_socket_module.SOL_SOCKET, "SO_KEEPALIVE"),
        (_socket_module.IPPROTO_IPV6, "IPV6_V6ONLY"),
        (_socket_module.IPPROTO_TCP, "TCP_NODELAY"),
    )
    if (option := getattr(_socket_module, name, None)) is not None
)


def _undo_bind(sock: Any) -> None:
    """Replace ``sock``'s descriptor by a fresh, unbound socket of the same kind, with its
    options (priority, mark, reuse, keepalive, v6only, nodelay, blocking mode): Linux releases the
    port of the same socket."""
    with _Passthrough():
        fresh = _socket_module.socket(sock.family, sock.type, sock.proto)
        try:
            for level, option in _KEPT_OPTIONS:
                try:
                    value = sock.getsockopt(level, option)
                    if fresh.getsockopt(level, option) != value:
                        fresh.setsockopt(level, option, value)
                except OSError:
                    continue
            fresh.settimeout(sock.gettimeout())  # the descriptor's O_NONBLOCK
            bound_dev = sock.getsockopt(_socket_module.SOL_SOCKET, _SO_BINDTOIFINDEX)
            if bound_dev:
                fresh.setsockopt(_socket_module.SOL_SOCKET, _SO_BINDTOIFINDEX, bound_dev)
            os.dup2(fresh.fileno(), sock.fileno())
        finally:
            fresh.close()
    info = _info(sock, create=False)
    if info is not None:
        info.local = None


# ---- the wrappers -------------------------------------------------------------------------
def _init(self, family: int = -1, type: int = -1, proto: int = -1, fileno: Any = None) -> None:
    _orig("__init__")(self, family, type, proto, fileno)
    if _inside() or fileno is not None or self.family not in _INET:
        return
    info = _info(self)
    if info is None or not _links(AttachType.CGROUP_INET_SOCK_CREATE):
        return
    values = info.sock_values()
    allowed, out = _sock_hook(AttachType.CGROUP_INET_SOCK_CREATE, info)
    if not allowed:
        info.released = True
        info.finalizer.detach()
        _orig("_real_close")(self)
        raise _denied()
    options = (
        ("mark", _socket_module.SO_MARK),
        ("priority", _socket_module.SO_PRIORITY),
        ("bound_dev_if", _SO_BINDTOIFINDEX),
    )
    for name, option in options:
        if out[name] != values.get(name, 0):
            self.setsockopt(_socket_module.SOL_SOCKET, option, out[name] & _M32)


def _bind(self, address: Any) -> None:
    family = self.family
    if _inside() or family not in _INET:
        return _orig("bind")(self, address)
    ep = _resolve(family, address)
    if ep is None:
        return _orig("bind")(self, address)
    info = _info(self)
    v4 = family == _socket_module.AF_INET
    new = _sock_addr_hook(self, _A.CGROUP_INET4_BIND if v4 else _A.CGROUP_INET6_BIND, ep)
    new = _bind_md_hook(self, BindOperation.BIND, new)
    with _Passthrough():
        _orig("bind")(self, address if new is ep else new.as_tuple())
    local = _name(self, False)
    if info is not None:
        info.local = local
    post = _A.CGROUP_INET4_POST_BIND if v4 else _A.CGROUP_INET6_POST_BIND
    allowed = True
    if _links(post) and info is not None:
        allowed, _ = _sock_hook(post, info)
    if allowed and _links(_A.WINDOWS_BIND) and local is not None:
        try:
            _bind_md_hook(self, BindOperation.POST_BIND, local, redirect=False)
        except PermissionError:
            allowed = False
    if not allowed:
        _undo_bind(self)
        raise _denied()
    return None


def _connect_endpoint(sock: Any, address: Any) -> Any:
    family = sock.family
    if _inside() or family not in _INET:
        return address
    ep = _resolve(family, address)
    if ep is None:
        return address
    _info(sock)
    v4 = family == _socket_module.AF_INET
    new = _sock_addr_hook(sock, _A.CGROUP_INET4_CONNECT if v4 else _A.CGROUP_INET6_CONNECT, ep)
    return address if new is ep else new.as_tuple()


def _after_connect(sock: Any) -> None:
    info = _info(sock, create=False)
    if info is not None:
        info.local = _name(sock, False)
        info.remote = _name(sock, True)


def _connect(self, address: Any) -> None:
    target = _connect_endpoint(self, address)
    try:
        with _Passthrough():
            _orig("connect")(self, target)
    finally:
        _after_connect(self)


def _connect_ex(self, address: Any) -> int:
    try:
        target = _connect_endpoint(self, address)
    except PermissionError:
        return errno.EPERM
    with _Passthrough():
        code = _orig("connect_ex")(self, target)
    _after_connect(self)
    return code


def _real_close(self, *args: Any) -> None:
    info = None
    if not _inside():
        try:
            if self.fileno() >= 0:
                info = _info(self)
                if info is not None:
                    info.local = _name(self, False) or info.local
                    info.remote = _name(self, True)
                    info.listening = bool(self.getsockopt(
                        _socket_module.SOL_SOCKET, _socket_module.SO_ACCEPTCONN))
        except OSError:
            pass
    try:
        if info is not None and not info.released:
            _release(info)
    finally:
        _orig("_real_close")(self, *args)


def _detach_fd(self) -> int:
    info = _info(self, create=False)
    if info is not None:
        info.released = True
        if info.finalizer is not None:
            info.finalizer.detach()
    return _orig("detach")(self)


_WRAPPERS = {
    "__init__": _init,
    "bind": _bind,
    "connect": _connect,
    "connect_ex": _connect_ex,
    "_real_close": _real_close,
    "detach": _detach_fd,
}


def _audit(event: str, args: tuple) -> None:
    """Veto binds and connects that bypass the wrappers (``_socket.socket`` objects)."""
    if event not in ("socket.bind", "socket.connect") or _inside():
        return
    if not any(_LINKS.values()):
        return
    sock, address = args[0], args[1]
    family = getattr(sock, "family", None)
    if family not in _INET:
        return
    ep = _resolve(family, address)
    if ep is None:
        return
    v4 = family == _socket_module.AF_INET
    if event == "socket.bind":
        _sock_addr_hook(sock, _A.CGROUP_INET4_BIND if v4 else _A.CGROUP_INET6_BIND, ep, False)
        _bind_md_hook(sock, BindOperation.BIND, ep, redirect=False)
    else:
        _sock_addr_hook(sock, _A.CGROUP_INET4_CONNECT if v4 else _A.CGROUP_INET6_CONNECT, ep,
                        False)


def _install() -> None:
    global _AUDIT_ADDED
    if not _AUDIT_ADDED:
        sys.addaudithook(_audit)  # audit hooks cannot be removed: a no-op once detached
        _AUDIT_ADDED = True
    if _INSTALLED:
        return
    cls = _socket_module.socket
    for name in _WRAPPED:
        _ORIGINALS[name] = getattr(cls, name)
        _INSTALLED[name] = name in cls.__dict__  # else inherited from _socket.socket
        setattr(cls, name, _WRAPPERS[name])


def _uninstall() -> None:
    cls = _socket_module.socket
    for name, own in list(_INSTALLED.items()):
        if cls.__dict__.get(name) is _WRAPPERS[name]:
            if own:
                setattr(cls, name, _ORIGINALS[name])
            else:
                delattr(cls, name)
    _INSTALLED.clear()
    _ORIGINALS.clear()


# ---- links --------------------------------------------------------------------------------
class SocketLink(Link):
    """A socket program attached to this process (see the module docstring).

    ``runs``, ``denied`` and ``redirected`` count the program's runs and verdicts.
    """

    def __init__(self, program: Any, attach_type: AttachType) -> None:
        self.attach_type = attach_type
        self.runs = 0
        self.denied = 0
        self.redirected = 0
        link_type = "bind" if attach_type == AttachType.WINDOWS_BIND else "cgroup"
        target = {"attach_type": attach_type.name.lower(), "process": os.getpid()}
        super().__init__(program, link_type, target)
        with _LOCK:
            _install()
            _LINKS[attach_type].append(self)

    def _detach(self) -> None:
        with _LOCK:
            links = _LINKS[self.attach_type]
            if self in links:
                links.remove(self)
            if not any(_LINKS.values()):
                _uninstall()


def attach_socket(program: Any, attach_type: AttachType | str | None = None) -> SocketLink:
    """Attach ``program`` to this process's sockets at ``attach_type`` (default: the
    program's own, from its section); returns the :class:`SocketLink`.

    Raises :class:`~pybpf.errors.InputError` (``field="attach_type"``) for a hook this
    module does not provide or a program of another type, and
    :class:`~pybpf.errors.NotSupportedError` for a program whose context was not built
    (loaded with ``verify=False``, or on the kernel backend: attach kernel programs to a
    cgroup with :mod:`pybpf.syscall`).
    """
    if isinstance(attach_type, str):
        try:
            attach_type = AttachType[attach_type.upper()]
        except KeyError:
            raise InputError(f"unknown attach type {attach_type!r}", field="attach_type") from None
    if attach_type is None:
        attach_type = getattr(program, "attach_type", None)
    if attach_type not in SOCKET_ATTACH_TYPES:
        raise InputError(
            f"no socket hook for attach type {attach_type!r}",
            field="attach_type",
            program=getattr(program, "name", None),
        )
    want = SOCKET_ATTACH_TYPES[attach_type]
    if getattr(program, "type", None) != want:
        raise InputError(
            f"{attach_type.name.lower()} needs a {want.type_name} program",
            field="attach_type",
            program=getattr(program, "name", None),
        )
    if getattr(program, "context", None) != "runtime" or getattr(program, "closed", False):
        raise NotSupportedError(
            "socket hooks run portable-backend programs loaded with their context built "
            "(verify=True)",
            feature="socket hook",
            program=getattr(program, "name", None),
        )
    return SocketLink(program, attach_type)
