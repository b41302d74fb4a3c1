"""Socket contexts: `bpf_sock_addr`, `bpf_sock` and eBPF-for-Windows' `bind_md` built for runs.

The socket hooks (:mod:`pybpf.hooks.socket`) and ``Program.test_run`` build the context of
socket programs here, in the runtime layout of :mod:`pybpf.objects.context` (pointer fields
first as native 64-bit pointers, scalars after them), from the UAPI struct given as
``ctx_in``; ``ctx_out`` is the UAPI struct after the run, so a hook reads a program's
rewrites (``user_ip4``/``user_port``, ``socket_address``) from it.

- :class:`SockAddrContext`: ``bpf_sock_addr`` of ``CGROUP_SOCK_ADDR`` programs
  (``cgroup/bind4``, ``bind6``, ``connect4``, ``connect6``, ...). ``ctx_in`` gives
  ``user_family``, ``user_ip4``/``user_ip6``, ``user_port`` (network byte order in the low
  two bytes, as Linux stores ``sin_port``), ``family``, ``type``, ``protocol`` and
  ``msg_src_ip4``/``msg_src_ip6``; ``sk`` must be 0. ``ctx->sk`` points to a read-only
  ``bpf_sock``: ``data_in`` when given (its UAPI bytes), else one made from ``family``,
  ``type`` and ``protocol`` (an unbound socket). Linux's ``BPF_PROG_TEST_RUN`` refuses
  these types; pybpf runs them so hooks can.
- :class:`SockContext`: ``bpf_sock`` of ``CGROUP_SOCK`` programs (``cgroup/sock_create``,
  ``sock_release``, ``post_bind4/6``); ``ctx_in`` is the ``bpf_sock`` (``data_in``
  unused); ``bound_dev_if``, ``mark`` and ``priority`` are writable.
- :class:`BindContext`: eBPF-for-Windows' ``bind_md`` of ``bind`` programs: ``data_in``
  is the app id (the process image path, as eBPF for Windows passes it), which
  ``app_id_start``/``app_id_end`` bound (both 0 when ``data_in`` is empty); ``ctx_in``
  gives ``process_id``, ``socket_address`` (a Windows ``SOCKADDR``: family as a
  little-endian u16, port and address in network byte order), ``socket_address_length``,
  ``operation`` (:class:`BindOperation`) and ``protocol``; its pointers must be 0.
  ``socket_address`` is writable (a ``BIND_REDIRECT`` verdict binds to what the program
  wrote there). ``data_out`` is the app id.

``bpf_get_socket_cookie`` on a ``bpf_sock_addr`` or ``bpf_sock`` context returns the
socket's cookie: the one a hook names with :func:`socket_cookie` around its run (the
socket hooks give Linux's ``SO_COOKIE``), else a new one per ``test_run``.

``Program.test_run`` keeps a socket program's regions between calls
(:class:`ReusedSockContext`) and resets them to exactly what ``prepare`` would make for the
new ``data_in`` and ``ctx_in``, binding the cookie anew, so the hooks' run per bind,
connect and close allocates nothing.

Which fields a program may write is the verifier's table
(:mod:`pybpf.progtypes.contexts`): the load-time rewrite refuses stores to the others.
Bad arguments raise :class:`~pybpf.errors.InputError` with ``errno`` (``EINVAL``,
``E2BIG``) as ``bpf()`` does for other types.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum

from pybpf.errors import InputError
from pybpf.memory import Region
from pybpf.objects.context import PreparedContext, RuntimeLayout, runtime_layout
from pybpf.progtypes.contexts import SOCK_LAYOUT, ContextLayout, FieldKind
from pybpf.runtime.packet import PacketState, bind_packet

__all__ = [
    "BindOperation",
    "BindAction",
    "SockPrepared",
    "SockAddrContext",
    "SockContext",
    "BindContext",
    "ReusedSockContext",
    "uapi_pack",
    "uapi_unpack",
    "socket_cookie",
    "windows_sockaddr",
    "windows_sockaddr_parse",
    "WINDOWS_AF_INET",
    "WINDOWS_AF_INET6",
]


class BindOperation(IntEnum):
    """eBPF for Windows' ``bind_operation_t``."""

    BIND = 0  # entry to bind
    POST_BIND = 1  # after port allocation
    UNBIND = 2  # release port


class BindAction(IntEnum):
    """eBPF for Windows' ``bind_action_t`` (``BIND_PERMIT`` is ``BIND_PERMIT_SOFT``)."""

    PERMIT = 0
    DENY = 1
    REDIRECT = 2
    PERMIT_HARD = 3


_BIND_OPERATIONS = frozenset(BindOperation)
_RUN = threading.local()
_COOKIES = itertools.count(1 << 40)  # test runs' own sockets: apart from skb runs' cookies


@contextlib.contextmanager
def socket_cookie(cookie: int) -> Iterator[None]:
    """Runs in this thread inside the block see ``cookie`` as their socket's cookie."""
    before = getattr(_RUN, "cookie", None)
    _RUN.cookie = cookie
    try:
        yield
    finally:
        _RUN.cookie = before


def _bind_cookie(prepared: PreparedContext) -> None:
    cookie = getattr(_RUN, "cookie", None) or next(_COOKIES)
    ctx = prepared.ctx
    prepared.state = PacketState("sock", ctx, 0, 0, 0, 0, cookie=cookie)
    bind_packet(prepared.state, ctx.address)


_CODECS: dict[int, tuple[ContextLayout, struct.Struct, tuple[tuple[str, int], ...]]] = {}


def _codec(layout: ContextLayout) -> tuple[struct.Struct, tuple[tuple[str, int], ...]]:
    """One ``struct.Struct`` for the layout's fields in offset order, and (name, size)
    (kept by the layout's identity: hashing a layout hashes every field)."""
    found = _CODECS.get(id(layout))
    if found is not None and found[0] is layout:
        return found[1], found[2]
    fmt, at, fields = "<", 0, []
    for f in sorted(layout.fields, key=lambda f: f.offset):
        if f.offset > at:
            fmt += f"{f.offset - at}x"
        fmt += {1: "B", 2: "H", 4: "I", 8: "Q"}.get(f.size, f"{f.size}s")
        fields.append((f.name, f.size))
        at = f.end
    if layout.size > at:
        fmt += f"{layout.size - at}x"
    _CODECS[id(layout)] = (layout, struct.Struct(fmt), tuple(fields))
    return _CODECS[id(layout)][1], tuple(fields)


_PACKERS: dict[int, tuple[ContextLayout, struct.Struct, list, dict[str, tuple]]] = {}


def uapi_pack(layout: ContextLayout, values: dict[str, int]) -> bytes:
    """The UAPI struct ``layout`` with ``values`` by field name (the rest zero; names
    that are not fields are ignored)."""
    found = _PACKERS.get(id(layout))
    if found is None or found[0] is not layout:
        codec, fields = _codec(layout)
        zeros = [0 if size <= 8 else bytes(size) for _, size in fields]
        index = {name: (i, (1 << (8 * size)) - 1, size) for i, (name, size) in enumerate(fields)}
        _PACKERS[id(layout)] = found = (layout, codec, zeros, index)
    _, codec, zeros, index = found
    out = zeros.copy()
    for name, value in values.items():
        at = index.get(name)
        if at is not None:
            i, mask, size = at
            out[i] = value & mask if size <= 8 else (value & mask).to_bytes(size, "little")
    return codec.pack(*out)


def uapi_unpack(layout: ContextLayout, raw: bytes) -> dict[str, int]:
    """Every field of the UAPI struct ``raw`` by name."""
    codec, fields = _codec(layout)
    raw = bytes(raw[: layout.size]).ljust(layout.size, b"\0")
    return {
        name: value if size <= 8 else int.from_bytes(value, "little")
        for (name, size), value in zip(fields, codec.unpack(raw), strict=True)
    }


@dataclass
class SockPrepared(PreparedContext):
    """A :class:`~pybpf.objects.context.PreparedContext` with more regions the context
    points to (``bpf_sock_addr``'s ``sk``)."""

    extras: list[Region] = field(default_factory=list)

    @property
    def regions(self) -> list[Region]:
        """Regions to add to the run's address space."""
        return [r for r in (self.ctx, self.packet, *self.extras) if r is not None]


class _UapiContext:
    """Shared steps: ``ctx_in`` checked against the UAPI struct, the runtime struct packed,
    ``ctx_out`` read back."""

    def __init__(self, layout: ContextLayout) -> None:
        self.layout = layout
        self.runtime: RuntimeLayout = runtime_layout(layout)
        self.uapi_size = layout.size
        self._fields = {f.name: f for f in layout.fields}
        self._pointers = tuple(
            (f.name, f.offset, f.end, self.runtime.offsets[f.name])
            for f in layout.fields
            if f.kind != FieldKind.SCALAR
        )
        self._to_runtime = self._copies(True)

    def _copies(self, pointers_zero: bool) -> tuple[tuple[int, int, int, int], ...]:
        """``(uapi lo, uapi hi, runtime lo, runtime hi)`` of every field (the pointers'
        unless ``pointers_zero``), fields next to each other in both layouts in one."""
        runs: list[list[int]] = []  # [uapi offset, runtime offset, length]
        for f in sorted(self.layout.fields, key=lambda f: f.offset):
            if f.kind != FieldKind.SCALAR and pointers_zero:
                continue
            at = self.runtime.offsets[f.name]
            last = runs[-1] if runs else None
            if last and last[0] + last[2] == f.offset and last[1] + last[2] == at:
                last[2] += f.size
            else:
                runs.append([f.offset, at, f.size])
        return tuple((u, u + n, r, r + n) for u, r, n in runs)

    def _fail(self, why: str, program: str | None, code: int = errno.EINVAL,
              field: str = "ctx_in") -> InputError:
        return InputError(why, errno=code, field=field, program=program)

    def _raw(self, ctx_in: bytes | None, program: str | None) -> tuple[bytes, bool]:
        """``ctx_in`` checked, as the UAPI struct's bytes, and whether it was given."""
        given = ctx_in is not None and len(ctx_in) > 0
        raw = bytes(ctx_in or b"")
        size = self.uapi_size
        if len(raw) > size:
            if any(raw[size:]):
                raise self._fail(f"ctx_in has non-zero bytes past {self.layout.name}", program,
                                 errno.E2BIG)
            raw = raw[:size]
        elif len(raw) < size:
            raw = raw.ljust(size, b"\0")
        for name, lo, hi, _ in self._pointers:
            if any(raw[lo:hi]):
                raise self._fail(f"ctx_in must leave the pointer {name} 0", program)
        return raw, given

    def _field(self, raw: bytes, name: str) -> int:
        """The value of field ``name`` in the UAPI bytes ``raw``."""
        f = self._fields[name]
        return int.from_bytes(raw[f.offset : f.end], "little")

    def _pack(self, raw: bytes, pointers: dict[str, int]) -> bytearray:
        """The runtime struct of the UAPI bytes ``raw`` (``RuntimeLayout.pack`` of its
        fields) with ``pointers`` by name (the rest 0)."""
        out = bytearray(self.runtime.size)
        for lo, hi, at, end in self._to_runtime:
            out[at:end] = raw[lo:hi]
        for name, _, _, at in self._pointers:
            value = pointers.get(name, 0)
            if value:
                out[at : at + 8] = value.to_bytes(8, "little")
        return out

    def _finish(self, pointers_zero: bool = True):
        """``ctx_out`` from the runtime context: each field's bytes copied to its UAPI
        offset, the pointers 0."""
        copies = self._copies(pointers_zero)
        size = self.uapi_size

        def finish(region: Region) -> bytes:
            out = bytearray(size)
            view = region.view
            for lo, hi, at, end in copies:
                out[lo:hi] = view[at:end]
            return bytes(out)

        return finish


class SockAddrContext(_UapiContext):
    """``bpf_sock_addr`` runs (see the module docstring)."""

    def prepare(self, data_in: bytes, ctx_in: bytes | None, *, program: str | None = None):
        """Regions for one run with ``ctx_in`` (``bpf_sock_addr`` bytes) and ``data_in``
        (the ``bpf_sock`` ``ctx->sk`` points to, or empty)."""
        inputs = self.inputs(data_in, ctx_in, program)
        sk = Region(SOCK_LAYOUT.size, kind="context", name="bpf_sock", writable=False)
        ctx = Region(self.runtime.size, kind="context", writable=True)
        prepared = SockPrepared(ctx, None, (0, 0), b"", None, self._finish(), extras=[sk])
        self.fill(prepared, inputs)
        _bind_cookie(prepared)
        return prepared

    def inputs(self, data_in: bytes, ctx_in: bytes | None, program: str | None) -> tuple:
        """``ctx_in`` and ``data_in`` checked: what :meth:`fill` writes (nothing allocated)."""
        raw, given = self._raw(ctx_in, program)
        if data_in and len(data_in) > SOCK_LAYOUT.size and any(data_in[SOCK_LAYOUT.size :]):
            raise self._fail("data_in is larger than bpf_sock", program, errno.E2BIG, "data_in")
        if data_in:
            sock = bytes(data_in[: SOCK_LAYOUT.size]).ljust(SOCK_LAYOUT.size, b"\0")
        else:
            sock = uapi_pack(
                SOCK_LAYOUT,
                {k: self._field(raw, k) for k in ("family", "type", "protocol")} | {"state": 7},
            )  # TCP_CLOSE: not yet bound or connected
        return raw, given, sock

    def fill(self, prepared: SockPrepared, inputs: tuple) -> None:
        """Write checked :meth:`inputs` into ``prepared``'s regions, as ``prepare`` does."""
        raw, given, sock = inputs
        sk = prepared.extras[0]
        sk.view[:] = sock
        prepared.ctx.view[:] = self._pack(raw, {"sk": sk.address})
        prepared.ctx_out = raw if given else None  # finish() makes it from the region


class SockContext(_UapiContext):
    """``bpf_sock`` runs of ``CGROUP_SOCK`` programs (see the module docstring)."""

    def __init__(self, layout: ContextLayout = SOCK_LAYOUT) -> None:
        super().__init__(layout)

    def prepare(self, data_in: bytes, ctx_in: bytes | None, *, program: str | None = None):
        """Regions for one run with ``ctx_in`` (``bpf_sock`` bytes or ``None``)."""
        inputs = self.inputs(data_in, ctx_in, program)
        ctx = Region(self.runtime.size, kind="context", writable=True)
        prepared = SockPrepared(ctx, None, (0, 0), b"", None, self._finish())
        self.fill(prepared, inputs)
        _bind_cookie(prepared)
        return prepared

    def inputs(self, data_in: bytes, ctx_in: bytes | None, program: str | None) -> tuple:
        """``ctx_in`` checked: what :meth:`fill` writes (``data_in`` is unused)."""
        return self._raw(ctx_in, program)

    def fill(self, prepared: SockPrepared, inputs: tuple) -> None:
        """Write checked :meth:`inputs` into ``prepared``'s regions, as ``prepare`` does."""
        raw, given = inputs
        prepared.ctx.view[:] = self._pack(raw, {})
        prepared.ctx_out = raw if given else None  # finish() makes it from the region


class BindContext(_UapiContext):
    """eBPF-for-Windows ``bind_md`` runs (see the module docstring)."""

    def prepare(self, data_in: bytes, ctx_in: bytes | None, *, program: str | None = None):
        """Regions for one run: ``data_in`` the app id, ``ctx_in`` the ``bind_md``."""
        inputs = self.inputs(data_in, ctx_in, program)
        packet = None
        span = (0, 0)
        if data_in:
            packet = Region(len(data_in), kind="packet", name="app_id", writable=False)
            span = (0, len(data_in))
        ctx = Region(self.runtime.size, kind="context", writable=True)
        prepared = SockPrepared(ctx, packet, span, b"", None, self._finish())
        if packet is not None:
            prepared.legacy = Region.wrap(
                packet.address, len(data_in), kind="packet", writable=False, owner=prepared
            )
        self.fill(prepared, inputs)
        return prepared

    def inputs(self, data_in: bytes, ctx_in: bytes | None, program: str | None) -> tuple:
        """``ctx_in`` checked (``data_in``, the app id, is any bytes): what :meth:`fill`
        writes."""
        raw, given = self._raw(ctx_in, program)
        operation = self._field(raw, "operation")
        if operation not in _BIND_OPERATIONS:
            raise self._fail(f"operation {operation} is not a bind_operation_t", program)
        if self._field(raw, "socket_address_length") > 16:
            raise self._fail("socket_address_length is more than 16", program)
        return raw, given, bytes(data_in)

    def fill(self, prepared: SockPrepared, inputs: tuple) -> None:
        """Write checked :meth:`inputs` into ``prepared``'s regions (the packet holds as
        many bytes as the app id), as ``prepare`` does."""
        raw, given, app_id = inputs
        packet = prepared.packet
        pointers = {}
        if packet is not None:
            packet.view[:] = app_id
            pointers = {"app_id_start": packet.address, "app_id_end": packet.address + len(app_id)}
        prepared.ctx.view[:] = self._pack(raw, pointers)
        prepared.ctx_out = raw if given else None  # finish() makes it from the region


_SOCK_BUILDERS = (SockAddrContext, SockContext, BindContext)


class ReusedSockContext:
    """A prepared socket-program test run (:class:`SockAddrContext`, :class:`SockContext`,
    :class:`BindContext`) kept for the next runs, as
    :class:`~pybpf.objects.context.ReusedContext` keeps xdp and skb runs: :meth:`reset`
    puts every region back as ``prepare(data_in, ctx_in)`` would make it (the context
    bytes, whatever the program wrote there included, the ``bpf_sock`` ``ctx->sk`` points
    to, the app id, ``ctx_out``'s base) and binds the socket cookie anew (the one a hook
    names with :func:`socket_cookie`, else a new one), so a run on it is a fresh run.
    ``ctx_in`` and ``data_in`` may change from run to run (the hooks pass each socket's
    own); only a ``bind_md`` app id of another length needs new regions (:meth:`fits`)."""

    def __init__(
        self,
        builder: SockAddrContext | SockContext | BindContext,
        prepared: SockPrepared,
        data_in: bytes,
        ctx_in: bytes | None,
        *,
        program: str | None = None,
    ) -> None:
        self.builder = builder
        self.prepared = prepared
        self.program = program
        # only a bind_md's app id sizes a region (the packet)
        self.size = len(data_in) if isinstance(builder, BindContext) else None
        self.legacy = prepared.legacy_packet()
        self.data_out = prepared.data_out
        self.result_ctx = prepared.result_ctx
        self.cookie = prepared.state is not None
        self._snapshot(data_in, ctx_in)

    @staticmethod
    def reusable(builder: object) -> bool:
        """Whether test runs of ``builder``'s contexts can be kept and reset."""
        return isinstance(builder, _SOCK_BUILDERS)

    def fits(self, data_in: bytes) -> bool:
        """Whether the kept regions can take a run with ``data_in``."""
        return self.size is None or self.size == len(data_in)

    def _snapshot(self, data_in: bytes, ctx_in: bytes | None) -> None:
        prepared = self.prepared
        self.inputs = (bytes(data_in), None if ctx_in is None else bytes(ctx_in))
        self.images = [(r.view, bytes(r.view)) for r in prepared.regions]

    def reset(self, data_in: bytes, ctx_in: bytes | None) -> None:
        """Back to a fresh ``prepare(data_in, ctx_in)``'s state (``data_in`` must
        :meth:`fits`); :class:`~pybpf.errors.InputError` as ``prepare`` for bad arguments
        (nothing changed then)."""
        prepared = self.prepared
        if data_in == self.inputs[0] and ctx_in == self.inputs[1]:
            for view, image in self.images:  # the read-only ones too: exactly as fresh
                view[:] = image
        else:
            builder = self.builder
            builder.fill(prepared, builder.inputs(data_in, ctx_in, self.program))
            self._snapshot(data_in, ctx_in)
        if self.cookie:
            _bind_cookie(prepared)

    def close(self) -> None:
        """Free the regions (the caller removes them from its address space first)."""
        self.prepared.close()


WINDOWS_AF_INET = 2
WINDOWS_AF_INET6 = 23


def windows_sockaddr(port: int, address: bytes) -> bytes:
    """``bind_md.socket_address``: the first 16 bytes of the Windows ``SOCKADDR_IN``
    (4-byte ``address``) or ``SOCKADDR_IN6`` (16 bytes: family 23, port, flow info 0, the
    address's first 8 bytes) eBPF for Windows passes."""
    if len(address) == 4:
        return struct.pack("<H", WINDOWS_AF_INET) + struct.pack(">H", port) + address + bytes(8)
    return struct.pack("<H", WINDOWS_AF_INET6) + struct.pack(">H", port) + bytes(4) + address[:8]


def windows_sockaddr_parse(raw: bytes) -> tuple[int, bytes | None]:
    """``(port, IPv4 address or None)`` of a ``socket_address`` (the reverse of
    :func:`windows_sockaddr`; an IPv6 address is not whole there, so ``None``)."""
    family = struct.unpack_from("<H", raw)[0]
    port = struct.unpack_from(">H", raw, 2)[0]
    return port, bytes(raw[4:8]) if family == WINDOWS_AF_INET else None
