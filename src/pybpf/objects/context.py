"""Runtime contexts: a program type's context as the runtime lays it out, and the rewrite to it.

Linux rewrites a program's loads of ``xdp_md``/``__sk_buff`` fields (``convert_ctx_accesses``)
into loads from its own structures; pybpf does the same from the verifier's facts. A
:class:`RuntimeLayout` is a UAPI :class:`~pybpf.progtypes.contexts.ContextLayout` laid out
for the runtime: every pointer field (packet start, end, metadata, other kernel pointers)
becomes a native 64-bit pointer, first, and the scalar fields follow at their natural
alignment. :func:`rewrite_context_accesses` turns each context access the verifier recorded
(``Result.ctx_accesses``: pc -> (offset, width, is_load)) into the same access of the
runtime layout: ``ldxw rX, [r1+0]`` (``xdp_md->data``) becomes ``ldxdw rX, [r1+0]``, a scalar
field keeps its width at its new offset. The instruction count does not change, so no jump
needs fixing.

:class:`XdpContext` builds what ``BPF_PROG_TEST_RUN`` gives an XDP program, following
Linux's ``bpf_prog_test_run_xdp``: the packet after 256 bytes of headroom
(``XDP_PACKET_HEADROOM``), metadata (``ctx_in``'s ``data``: at most 32 bytes, a multiple of
4, the first bytes of ``data_in``) just before it, the part of ``data_in`` past
``data_end`` (or past the 3520 bytes of a page's linear room) kept aside as fragments the
program cannot see and handed back unchanged in ``data_out``; ``ingress_ifindex`` 1 (the
loopback device, Linux's default) unless ``ctx_in`` names a device. Invalid arguments raise
:class:`~pybpf.errors.InputError` with ``errno`` (``EINVAL``, ``E2BIG``, ``ENODEV``) as
Linux's ``bpf()`` fails. :class:`SkbContext` does the same for tc programs
(``sched_cls``/``sched_act``), socket filters and ``cgroup_skb`` programs after Linux's
``bpf_prog_test_run_skb`` (a socket filter's or cgroup_skb program's ``skb->data``, ``len``
and ``LD_ABS`` offsets start after the Ethernet header; ``data_out`` is the frame with that
header zeroed, as Linux returns it; ``family`` and the addresses come from the IP header).
"""

from __future__ import annotations

import dataclasses
import errno
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pybpf.errors import InputError, VerifierError
from pybpf.isa import Class, Instruction, Mode, Size
from pybpf.isa.opcodes import mem_opcode
from pybpf.memory import Region
from pybpf.progtypes import ProgType
from pybpf.progtypes.contexts import ContextLayout, Field, FieldKind, rules_for
from pybpf.runtime.packet import PacketState, bind_packet, unbind_packet

__all__ = [
    "RuntimeLayout",
    "runtime_layout",
    "rewrite_context_accesses",
    "PreparedContext",
    "XdpContext",
    "SkbContext",
    "runtime_context_for",
    "ReusedContext",
    "skb_frame_fields",
    "XDP_PACKET_HEADROOM",
    "XDP_LINEAR_MAX",
    "LOOPBACK_IFINDEX",
]

XDP_PACKET_HEADROOM = 256
XDP_LINEAR_MAX = 3520  # PAGE_SIZE - headroom - SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
XDP_META_MAX = 32
ETH_HLEN = 14
LOOPBACK_IFINDEX = 1
_SIZES = {1: Size.B, 2: Size.H, 4: Size.W, 8: Size.DW}


@dataclass(frozen=True)
class RuntimeLayout:
    """A UAPI context laid out for the runtime (see the module docstring).

    ``offsets`` gives each field's runtime offset by name; ``size`` the runtime struct's size.
    """

    layout: ContextLayout
    offsets: Mapping[str, int]
    size: int

    def field_at(self, offset: int, width: int) -> Field | None:
        """The UAPI field holding all of ``[offset, offset + width)``, or ``None``."""
        for f in self.layout.fields:
            if f.offset <= offset and offset + width <= f.end:
                return f
        return None

    def pack(self, values: Mapping[str, int]) -> bytes:
        """The runtime struct with ``values`` (by field name; the rest zero)."""
        out = bytearray(self.size)
        for f in self.layout.fields:
            value = values.get(f.name, 0)
            size = 8 if _is_pointer(f) else f.size
            at = self.offsets[f.name]
            out[at : at + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        return bytes(out)


def _is_pointer(f: Field) -> bool:
    return f.kind != FieldKind.SCALAR


def runtime_layout(layout: ContextLayout) -> RuntimeLayout:
    """``layout`` with 64-bit pointer fields first, then its scalars naturally aligned."""
    offsets: dict[str, int] = {}
    at = 0
    for f in layout.fields:
        if _is_pointer(f):
            offsets[f.name] = at
            at += 8
    for f in layout.fields:
        if not _is_pointer(f):
            at = (at + f.size - 1) // f.size * f.size
            offsets[f.name] = at
            at += f.size
    return RuntimeLayout(layout, offsets, (at + 7) // 8 * 8)


def rewrite_context_accesses(
    insns: Sequence[Instruction],
    accesses: Mapping[int, tuple[int, int, bool]],
    runtime: RuntimeLayout,
    *,
    program: str | None = None,
) -> tuple[Instruction, ...]:
    """``insns`` with every context access in ``accesses`` (the verifier's, by pc) moved to
    the runtime layout. An access the runtime cannot map (variable offset, a modified
    context pointer, a field it straddles, a narrow or written pointer field, an atomic)
    raises :class:`~pybpf.errors.VerifierError` with ``pc``."""
    index: dict[int, int] = {}
    pc = 0
    for i, insn in enumerate(insns):
        index[pc] = i
        pc += insn.slots
    out = list(insns)
    for pc, (offset, width, is_load) in sorted(accesses.items()):
        i = index.get(pc)
        if i is None:
            raise VerifierError("context access at no instruction", pc=pc, program=program)
        insn = insns[i]

        def refuse(why: str, insn: Instruction = insn, pc: int = pc) -> VerifierError:
            return VerifierError(
                f"invalid bpf_context access ({why}): off={insn.off} size={insn.nbytes}",
                pc=pc,
                program=program,
            )

        if offset < 0:
            raise refuse("variable offset")
        if insn.off != offset:
            raise refuse("dereference of modified ctx ptr")
        if insn.is_atomic or insn.mode not in (Mode.MEM, Mode.MEMSX):
            raise refuse("atomic or unusual mode")
        f = runtime.field_at(offset, width)
        if f is None:
            raise refuse("no single field")
        new_off = runtime.offsets[f.name] + (offset - f.offset)
        if _is_pointer(f):
            if not is_load or width != f.size or offset != f.offset or insn.mode != Mode.MEM:
                raise refuse(f"pointer field {f.name}")
            code = mem_opcode(Class(insn.cls), Mode.MEM, Size.DW)
            out[i] = dataclasses.replace(insn, code=code, off=new_off)
        else:
            if not is_load and not f.write:
                raise refuse(f"read-only field {f.name}")
            out[i] = dataclasses.replace(insn, off=new_off)
    return tuple(out)


# ---- test_run contexts -------------------------------------------------------------------
@dataclass
class PreparedContext:
    """The regions of one test run: ``ctx`` (r1 points to it), ``packet`` and how to read
    ``data_out``/``ctx_out`` back after the run(s)."""

    ctx: Region
    packet: Region | None
    data_span: tuple[int, int]  # [start, end) of the packet region that data_out returns
    tail: bytes  # fragments after the linear part, returned unchanged
    ctx_out: bytes | None
    finish: Callable[[Region], bytes] | None = None  # ctx_out from the runtime context
    legacy: Region | None = None  # what LD_ABS/LD_IND read (default: the data span)
    zeroed_head: int = 0  # leading bytes data_out gives as zeros (a socket filter's L2)
    state: PacketState | None = None  # the packet helpers' view (pointers they may move)

    def bind(self, kind: str, data: int, data_end: int, data_meta: int, hard_end: int,
             pointers: Mapping[str, int] | None = None) -> PacketState:
        """Make the packet helpers (:mod:`pybpf.runtime.packet`) see this run's packet:
        offsets into ``packet``, bound to the context region and the legacy packet."""
        assert self.packet is not None
        self.state = PacketState(
            kind, self.packet, data, data_end, data_meta, hard_end, self.ctx, dict(pointers or {})
        )
        legacy = self.legacy_packet()
        bind_packet(self.state, self.ctx.address, *([legacy.address] if legacy else []))
        return self.state

    @property
    def redirect(self) -> tuple | None:
        """The target the program's last redirect helper recorded, or ``None``."""
        return None if self.state is None else self.state.redirect

    def legacy_packet(self) -> Region | None:
        """The bytes legacy ``LD_ABS``/``LD_IND`` loads index (``skb->data`` on)."""
        if self.legacy is None and self.packet is not None:
            lo, hi = self.data_span
            self.legacy = Region.wrap(
                self.packet.address + lo, hi - lo, kind="packet", writable=False, owner=self
            )
        return self.legacy

    def result_ctx(self) -> bytes | None:
        """``ctx_out`` after the run(s) (``None`` when no ``ctx_in`` was given)."""
        if self.ctx_out is None or self.finish is None:
            return self.ctx_out
        return self.finish(self.ctx)

    @property
    def regions(self) -> list[Region]:
        """Regions to add to the run's address space."""
        return [r for r in (self.ctx, self.packet) if r is not None]

    def data_out(self) -> bytes:
        """The packet (metadata included) as the program left it, then the fragments."""
        if self.packet is None:
            return self.tail
        state = self.state
        if state is not None and state.kind == "xdp":  # adjust_head/meta/tail
            lo, hi = state.span()
        else:
            lo, hi = self.data_span
        head = self.zeroed_head
        out = self.packet.view[lo + head : hi].tobytes()
        if head:
            out = bytes(head) + out
        return out + self.tail if self.tail else out

    def close(self) -> None:
        """Free the regions (remove them from any address space first)."""
        if self.state is not None:
            unbind_packet(self.ctx.address, *([self.legacy.address] if self.legacy else []))
        for region in self.regions:
            region.close()


class XdpContext:
    """``xdp_md`` test runs (see the module docstring)."""

    uapi_size = 24

    def __init__(self, layout: ContextLayout) -> None:
        self.runtime = runtime_layout(layout)

    def prepare(self, data_in: bytes, ctx_in: bytes | None, *, program: str | None = None):
        """Regions for one run of ``data_in`` with ``ctx_in`` (``xdp_md`` bytes or ``None``)."""

        def fail(why: str, code: int = errno.EINVAL, field: str = "ctx_in") -> InputError:
            return InputError(why, errno=code, field=field, program=program)

        md = [0] * 6
        given = bool(ctx_in)
        if given:
            raw = bytes(ctx_in or b"")
            if len(raw) > self.uapi_size and any(raw[self.uapi_size :]):
                raise fail("ctx_in has non-zero bytes past xdp_md", errno.E2BIG)
            raw = raw[: self.uapi_size].ljust(self.uapi_size, b"\0")
            md = list(struct.unpack("<6I", raw))
        data, data_end, data_meta, ingress, rx_queue, egress = md
        size = len(data_in)
        if given:
            if data_meta or data_end > size or data > data_end:
                raise fail("xdp_md data/data_end/data_meta do not fit data_in")
            if data % 4 or data > XDP_META_MAX:
                raise fail("metadata length must be a multiple of 4, at most 32")
            if egress:
                raise fail("egress_ifindex must be 0")
            if rx_queue and not ingress:
                raise fail("rx_queue_index needs ingress_ifindex")
            if ingress not in (0, LOOPBACK_IFINDEX):
                raise fail(f"no device with ifindex {ingress}", errno.ENODEV)
            if rx_queue:
                raise fail("the loopback device has one rx queue")
            linear_end = data_end
        else:
            linear_end = size
        meta = data
        if size - meta < ETH_HLEN:
            raise fail("data_in is shorter than an Ethernet header", field="data_in")
        linear_end = min(linear_end, meta + XDP_LINEAR_MAX)
        head = XDP_PACKET_HEADROOM - meta
        # the whole frame: headroom, the linear room (the tail may grow to its end)
        packet = Region(XDP_PACKET_HEADROOM + XDP_LINEAR_MAX, kind="packet", name="xdp")
        packet.view[head : head + linear_end] = data_in[:linear_end]
        base = packet.address + XDP_PACKET_HEADROOM
        values = {
            "data": base,
            "data_end": base + linear_end - meta,
            "data_meta": base - meta,
            "ingress_ifindex": LOOPBACK_IFINDEX,
            "rx_queue_index": rx_queue,
            "egress_ifindex": 0,
        }
        ctx = Region.from_bytes(self.runtime.pack(values), kind="context", writable=False)
        ctx_out = None
        if given:
            ctx_out = struct.pack("<6I", meta, linear_end, 0, ingress, rx_queue, egress)
        prepared = PreparedContext(
            ctx, packet, (head, head + linear_end), bytes(data_in[linear_end:]), ctx_out
        )
        offsets = self.runtime.offsets
        state = prepared.bind(
            "xdp",
            XDP_PACKET_HEADROOM,
            head + linear_end,
            head,
            XDP_PACKET_HEADROOM + XDP_LINEAR_MAX,
            {k: offsets[k] for k in ("data", "data_end", "data_meta")},
        )

        def finish(region: Region) -> bytes:  # xdp_convert_buff_to_md
            return struct.pack(
                "<6I",
                state.data - state.data_meta,
                state.data_end - state.data_meta,
                0,
                ingress,
                rx_queue,
                egress,
            )

        prepared.finish = finish
        return prepared


class SkbContext:
    """``__sk_buff`` test runs of tc programs (``sched_cls``/``sched_act``), following
    Linux's ``bpf_prog_test_run_skb`` on the loopback device: the frame from its Ethernet
    header (``len`` counts it) after 64 bytes of headroom, ``protocol`` and ``pkt_type``
    as ``eth_type_trans`` sets them, ``ifindex`` 1; ``ctx_in`` may set only ``mark``,
    ``priority``, ``ingress_ifindex``, ``ifindex`` (0 or 1), ``cb``, ``tstamp``,
    ``wire_len``, ``gso_segs``, ``gso_size`` and ``hwtstamp`` (anything else non-zero:
    ``EINVAL``), and ``ctx_out`` returns those Linux copies back."""

    uapi_size = 192
    headroom = 64  # NET_SKB_PAD
    max_size = 4096 - 64 - 320  # PAGE_SIZE - headroom - skb_shared_info
    _ALLOWED = {
        "mark",
        "priority",
        "ingress_ifindex",
        "ifindex",
        "tstamp",
        "wire_len",
        "gso_segs",
        "gso_size",
        "hwtstamp",
    }
    _BACK = ("mark", "priority", "ingress_ifindex", "ifindex", "tstamp", "wire_len", "gso_segs")

    def __init__(self, layout: ContextLayout, *, l2: bool = True) -> None:
        self.runtime = runtime_layout(layout)
        self.layout = layout
        self.l2 = l2

    def _allowed(self, f: Field) -> bool:
        return f.name in self._ALLOWED or f.name.startswith("cb[")

    def prepare(self, data_in: bytes, ctx_in: bytes | None, *, program: str | None = None):
        """Regions for one run of ``data_in`` with ``ctx_in`` (``__sk_buff`` bytes or ``None``)."""

        def fail(why: str, code: int = errno.EINVAL, field: str = "ctx_in") -> InputError:
            return InputError(why, errno=code, field=field, program=program)

        size = len(data_in)
        if size < ETH_HLEN or size > self.max_size:
            raise fail(f"data_in must hold {ETH_HLEN} to {self.max_size} bytes", field="data_in")
        l3 = {0x0800: 20, 0x86DD: 40}.get(int.from_bytes(data_in[12:14], "big"), 0)
        if size - ETH_HLEN < l3:
            raise fail("data_in is too short for its IP header", field="data_in")
        given = bool(ctx_in)
        raw = b""
        values: dict[str, int] = {}
        if given:
            raw = bytes(ctx_in or b"")
            if len(raw) > self.uapi_size and any(raw[self.uapi_size :]):
                raise fail("ctx_in has non-zero bytes past __sk_buff", errno.E2BIG)
            raw = raw[: self.uapi_size].ljust(self.uapi_size, b"\0")
            covered = bytearray(self.uapi_size)
            for f in self.layout.fields:
                value = int.from_bytes(raw[f.offset : f.end], "little")
                if self._allowed(f):
                    values[f.name] = value
                    covered[f.offset : f.end] = b"\1" * f.size
            if any(b and not c for b, c in zip(raw, covered, strict=True)):
                raise fail("ctx_in sets a field test runs do not take")
            if values.get("ifindex", 0) > LOOPBACK_IFINDEX:
                raise fail(f"no device with ifindex {values['ifindex']}", errno.ENODEV)
            wire, skb_len = values.get("wire_len", 0), size if self.l2 else size - ETH_HLEN
            if wire and (wire < skb_len or wire > 65536):
                raise fail("wire_len must be 0 or from len to 65536")
            values["wire_len"] = wire or skb_len
            if values.get("gso_segs", 0) > 65535:
                raise fail("gso_segs is more than GSO_MAX_SEGS")
        packet = Region(self.headroom + size, kind="packet", name="skb")
        packet.view[self.headroom :] = data_in
        skip = 0 if self.l2 else ETH_HLEN  # socket filters see the frame from L3 on
        base = packet.address + self.headroom + skip
        values.update(
            data=base,
            data_end=base + size - skip,
            data_meta=base,
            len=size - skip,
            ifindex=LOOPBACK_IFINDEX,
            **skb_frame_fields(data_in),
        )
        ctx = Region.from_bytes(self.runtime.pack(values), kind="context", writable=True)

        def finish(region: Region) -> bytes:
            out = bytearray(raw)
            for f in self.layout.fields:
                if f.name in self._BACK or f.name.startswith("cb[") or f.name == "hwtstamp":
                    at = self.runtime.offsets[f.name]
                    out[f.offset : f.end] = bytes(region.view[at : at + f.size])
            return bytes(out)

        prepared = PreparedContext(
            ctx, packet, (self.headroom, self.headroom + size), b"", raw if given else None, finish
        )
        prepared.zeroed_head = skip  # Linux pushes a zeroed link-layer header back
        prepared.legacy = Region.wrap(
            base, size - skip, kind="packet", writable=False, owner=prepared
        )
        start = self.headroom + skip
        state = prepared.bind("skb", start, self.headroom + size, start, self.headroom + size)
        # legacy loads at SKF_LL_OFF/SKF_NET_OFF: Linux's mac header is the frame's start,
        # its network header ETH_HLEN after it (eth_type_trans; VLAN tags stay after it)
        state.mac_header, state.network_header = self.headroom, self.headroom + ETH_HLEN
        return prepared


def _eth_protocol(frame: bytes) -> int:
    """``skb->protocol`` as ``eth_type_trans`` sets it, read as the u32 ``__sk_buff`` gives
    (network byte order)."""
    proto = int.from_bytes(frame[12:14], "big")
    if proto < 0x600:  # an 802.3 length: raw IPX or 802.2 LLC
        proto = 0x0001 if frame[14:16] == b"\xff\xff" else 0x0004
    return int.from_bytes(proto.to_bytes(2, "big"), "little")


def _socket_fields(frame: bytes) -> dict[str, int]:
    """The fields of the socket Linux's skb test runs make from the IP header (``family``,
    the local address from the source, the remote one from the destination)."""
    proto, l3 = int.from_bytes(frame[12:14], "big"), frame[ETH_HLEN:]

    def word(at: int) -> int:
        return int.from_bytes(l3[at : at + 4], "little")

    if proto == 0x0800:
        return {"family": 2, "local_ip4": word(12), "remote_ip4": word(16)}
    if proto == 0x86DD:
        out = {"family": 10}
        for i in range(4):
            out[f"local_ip6[{i}]"] = word(8 + 4 * i)
            out[f"remote_ip6[{i}]"] = word(24 + 4 * i)
        return out
    return {}


def _pkt_type(frame: bytes) -> int:
    """``eth_type_trans``'s packet type on the loopback device (address and broadcast 0)."""
    if frame[0] & 1:
        return 2  # PACKET_MULTICAST (the loopback's broadcast address is all zero)
    return 0 if frame[:6] == bytes(6) else 3  # PACKET_HOST / PACKET_OTHERHOST


def skb_frame_fields(frame: bytes) -> dict[str, int]:
    """The ``__sk_buff`` fields Linux's skb test run takes from ``frame`` (an Ethernet frame
    whose IP header fits; :class:`SkbContext` checks that): ``protocol`` and ``pkt_type`` as
    ``eth_type_trans`` sets them on the loopback device, and the socket's ``family`` and
    addresses from the IPv4/IPv6 header (none for other protocols). They depend only on the
    frame's first 54 bytes; names are the runtime layout's."""
    return {"protocol": _eth_protocol(frame), "pkt_type": _pkt_type(frame), **_socket_fields(frame)}


def runtime_context_for(prog_type: ProgType | None) -> XdpContext | SkbContext | None:
    """The runtime context builder of ``prog_type``, or ``None`` when its context is not
    rewritten (yet)."""
    rules = rules_for(prog_type) if prog_type is not None else None
    if rules is None:
        return None
    if prog_type == ProgType.XDP:
        return XdpContext(rules.context)
    if prog_type in (ProgType.SCHED_CLS, ProgType.SCHED_ACT):
        return SkbContext(rules.context)
    if prog_type in (ProgType.SOCKET_FILTER, ProgType.CGROUP_SKB):
        return SkbContext(rules.context, l2=False)
    if prog_type in (ProgType.CGROUP_SOCK_ADDR, ProgType.CGROUP_SOCK, ProgType.BIND):
        from pybpf.objects import sock_context  # socket contexts build on this module

        kind = {
            ProgType.CGROUP_SOCK_ADDR: sock_context.SockAddrContext,
            ProgType.CGROUP_SOCK: sock_context.SockContext,
            ProgType.BIND: sock_context.BindContext,
        }[prog_type]
        return kind(rules.context)
    return None


# ---- reuse across test runs ----------------------------------------------------------------
_SKB_HEADER = ETH_HLEN + 40  # the frame bytes an skb context's fields come from (to IPv6 dst)
_SKB_DERIVED = (
    "protocol",
    "pkt_type",
    "family",
    "local_ip4",
    "remote_ip4",
    *(f"local_ip6[{i}]" for i in range(4)),
    *(f"remote_ip6[{i}]" for i in range(4)),
)


class ReusedContext:
    """A prepared test-run context (:class:`XdpContext`, :class:`SkbContext`) kept for the
    next test runs with data of the same length and the same ``ctx_in``: :meth:`reset` puts
    the regions back as ``prepare`` made them (packet buffer, context bytes, the packet
    helpers' offsets, the redirect target, a new socket cookie) with the new bytes in the
    data span, so a run on it is a fresh run (allocating regions costs far more than the
    run). An skb context's fields taken from the frame (``protocol``, ``pkt_type``,
    ``family``, the addresses) are rewritten when the frame's first 54 bytes change, after
    the same check ``prepare`` makes (an IP header must fit)."""

    def __init__(
        self,
        builder: XdpContext | SkbContext,
        prepared: PreparedContext,
        data_in: bytes,
        ctx_in: bytes | None,
        *,
        program: str | None = None,
    ) -> None:
        assert prepared.packet is not None and prepared.state is not None
        self.builder = builder
        self.prepared = prepared
        self.program = program
        self.key = (len(data_in), None if ctx_in is None else bytes(ctx_in))
        self.packet_image = bytes(prepared.packet.view)
        self.ctx_image = bytearray(prepared.ctx.view)
        self.state = state = prepared.state
        # what the packet helpers move (runtime.packet): offsets, headers, the redirect target
        self.offsets = (state.data, state.data_end, state.data_meta, state.hard_end,
                        state.mac_header, state.network_header)  # fmt: skip
        self.packet_view = prepared.packet.view
        self.ctx_view = prepared.ctx.view
        self.span = prepared.data_span
        self.legacy = prepared.legacy_packet()
        self.skb = isinstance(builder, SkbContext)
        self.zeros = bytes(prepared.zeroed_head)  # data_out's zeroed link-layer header (skb)
        self.out_span = (self.span[0] + prepared.zeroed_head, self.span[1])
        self.header = bytes(data_in[:_SKB_HEADER]) if self.skb else b""
        self.derived: list[tuple[str, int, int]] = []
        if self.skb:
            offsets = builder.runtime.offsets
            sizes = {f.name: f.size for f in builder.layout.fields}
            self.derived = [(n, offsets[n], sizes[n]) for n in _SKB_DERIVED if n in offsets]

    @staticmethod
    def reusable(builder: object) -> bool:
        """Whether test runs of ``builder``'s contexts can be kept and reset."""
        return isinstance(builder, (XdpContext, SkbContext))

    def reset(self, data_in: bytes) -> None:
        """Back to a fresh ``prepare(data_in, ctx_in)``'s state (same length and ``ctx_in``
        as the first); :class:`~pybpf.errors.InputError` as ``prepare`` for a frame whose
        IP header does not fit (nothing changed then)."""
        if self.skb:
            header = data_in[:_SKB_HEADER]
            if header != self.header:
                self._rederive(data_in)
                self.header = bytes(header)
        view = self.packet_view
        view[:] = self.packet_image
        lo, hi = self.span
        if len(data_in) == hi - lo:
            view[lo:hi] = data_in
        else:
            view[lo:hi] = data_in[: hi - lo]
            self.prepared.tail = bytes(data_in[hi - lo :])
        self.ctx_view[:] = self.ctx_image
        state = self.state
        (state.data, state.data_end, state.data_meta, state.hard_end, state.mac_header,
         state.network_header) = self.offsets  # fmt: skip
        state.redirect = None
        if self.skb:
            state.__post_init__()  # a new socket's cookie, as each Linux test run has

    def data_out(self) -> bytes:
        """:meth:`PreparedContext.data_out` of the kept run (without its general cases)."""
        if self.skb:  # skb helpers do not move the data span
            lo, hi = self.out_span
            out = self.packet_view[lo:hi].tobytes()
            if self.zeros:
                out = self.zeros + out
        else:
            state = self.state
            out = self.packet_view[state.data_meta : state.data_end].tobytes()
        tail = self.prepared.tail
        return out + tail if tail else out

    def _rederive(self, data_in: bytes) -> None:
        """Rewrite the context fields an skb takes from the frame (``SkbContext.prepare``)."""
        l3 = {0x0800: 20, 0x86DD: 40}.get(int.from_bytes(data_in[12:14], "big"), 0)
        if len(data_in) - ETH_HLEN < l3:
            raise InputError(
                "data_in is too short for its IP header",
                errno=errno.EINVAL,
                field="data_in",
                program=self.program,
            )
        values = skb_frame_fields(data_in)
        image = self.ctx_image
        for name, at, size in self.derived:
            image[at : at + size] = values.get(name, 0).to_bytes(size, "little")

    def close(self) -> None:
        """Free the regions (the caller removes them from its address space first)."""
        self.prepared.close()
