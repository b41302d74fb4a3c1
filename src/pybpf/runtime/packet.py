"""Packet helpers: XDP head/meta/tail adjustment, skb byte access, redirects and socket cookies.

Each helper follows Linux's ``net/core/filter.c``:

- ``xdp_adjust_head`` (44), ``xdp_adjust_meta`` (54), ``xdp_adjust_tail`` (65) move the
  ``data``/``data_meta``/``data_end`` pointers of the run's ``xdp_md`` inside its packet
  buffer: the head may move down to the end of the ``struct xdp_frame`` (40 bytes) kept at
  the buffer's start, plus the metadata (which moves with ``data``, as Linux's ``memmove``);
  at least ``ETH_HLEN`` (14) bytes must stay; the metadata length must be a multiple of 4,
  at most 252 (``skb_shared_info.meta_len`` is a u8), ``data_meta`` at most ``data``; the
  tail may grow up to the buffer's hard end (``frame_sz`` less ``skb_shared_info``: 3520
  bytes past the 256-byte headroom in a test run) and grown bytes are zeroed. Errors are
  ``-EINVAL`` (``-EACCES`` for a bad metadata length) and nothing moves.
- ``skb_load_bytes`` (26): ``(skb, offset, to, len)``, ``-EFAULT`` (and ``to`` zeroed)
  when ``[offset, offset + len)`` is not inside ``skb->data .. skb->len``;
  ``skb_store_bytes`` (9): ``(skb, offset, from, len, flags)``, flags
  ``BPF_F_RECOMPUTE_CSUM`` (1) and ``BPF_F_INVALIDATE_HASH`` (2), anything else
  ``-EINVAL``, out of range ``-EFAULT``. A test-run skb is ``CHECKSUM_NONE`` and has no
  hash, so both flags are accepted and change nothing (as in Linux).
- ``redirect`` (23): tc: flags other than ``BPF_F_INGRESS`` give ``TC_ACT_SHOT``, else
  ``TC_ACT_REDIRECT`` (7); XDP: any flag gives ``XDP_ABORTED``, else ``XDP_REDIRECT`` (4).
  ``redirect_map`` (51, XDP): flags beyond the low two bits (the verdict returned when the
  key has no entry) and ``BPF_F_BROADCAST``/``BPF_F_EXCLUDE_INGRESS`` give
  ``XDP_ABORTED``; a present key (or ``BPF_F_BROADCAST``) gives ``XDP_REDIRECT``. The
  target is recorded as ``ctx.extra["redirect"]`` and on the packet's :class:`PacketState`
  (``.redirect``): ``(ifindex, None, flags)`` or ``(map, key, flags)``; a failed lookup
  clears it. Hooks read it to route the packet.
- ``get_socket_cookie`` (46, skb): the cookie of the test run's socket: a process-wide
  counter (from 1) taken once per prepared packet, so runs of one ``test_run`` (its
  ``repeat``) see the same cookie and each ``test_run`` a new one, as Linux's runs do (a
  new socket per ``BPF_PROG_TEST_RUN``). 0 without a packet state (no socket).

Helpers find the packet through a :class:`PacketState` that the context builder
(:mod:`pybpf.objects.context`) binds with :func:`bind_packet` to the context region's
address (``r1`` of a helper taking ``ctx``) and to the address of ``ctx.packet``; helpers
without a context argument (``redirect``) use ``ctx.packet``. Packet pointers are not
narrowed at run time: after a helper moves them the program's old pointers still reach the
whole buffer (Linux's verifier rejects their use; pybpf's portable backend checks only
that accesses stay inside the buffer, headroom and tailroom included).

Legacy ``LD_ABS``/``LD_IND`` loads with a negative 32-bit offset ``k`` follow Linux's
``bpf_internal_load_pointer_neg_helper``: ``k >= SKF_NET_OFF`` (-0x100000) reads the network
header plus ``k - SKF_NET_OFF``, ``SKF_LL_OFF <= k < SKF_NET_OFF`` (-0x200000) the link-layer
(mac) header plus ``k - SKF_LL_OFF``, anything lower nothing; the bytes must lie between the
buffer's head and the end of the linear data (``skb_tail_pointer``), or the load fails (the
program exits with r0 = 0). A state's ``mac_header``/``network_header`` (offsets into the
buffer, ``None``: not set, every negative load fails) say where the headers are;
:func:`legacy_headers` gives them relative to the legacy packet (both engines read it).
"""

from __future__ import annotations

import errno
import itertools
from dataclasses import dataclass, field
from typing import Any

from pybpf.maps import registry as map_registry
from pybpf.memory import Region
from pybpf.runtime.context import ExecutionContext
from pybpf.runtime.registry import HelperRegistry

__all__ = [
    "PACKET_HELPERS",
    "PacketState",
    "bind_packet",
    "unbind_packet",
    "packet_state",
    "register_packet",
    "legacy_headers",
    "legacy_negative_offset",
    "SKF_AD_OFF",
    "SKF_NET_OFF",
    "SKF_LL_OFF",
    "XDP_FRAME_SIZE",
    "XDP_META_LIMIT",
]

_M32, _M64 = (1 << 32) - 1, (1 << 64) - 1
ETH_HLEN = 14
SKF_AD_OFF, SKF_NET_OFF, SKF_LL_OFF = -0x1000, -0x100000, -0x200000  # uapi linux/filter.h
XDP_FRAME_SIZE = 40  # sizeof(struct xdp_frame) on 64-bit
XDP_META_LIMIT = 252  # u8 meta_len, 4-aligned
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
TC_ACT_SHOT, TC_ACT_REDIRECT = 2, 7
BPF_F_INGRESS = 1
BPF_F_RECOMPUTE_CSUM, BPF_F_INVALIDATE_HASH = 1, 2
BPF_F_BROADCAST, BPF_F_EXCLUDE_INGRESS = 1 << 3, 1 << 4
_DEVMAP_FLAGS = BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS
_REDIRECT_MAPS = {14: _DEVMAP_FLAGS, 25: _DEVMAP_FLAGS}  # devmap, devmap_hash
_COOKIES = itertools.count(1)


@dataclass
class PacketState:
    """One run's packet as the helpers see it.

    ``buffer`` is the whole packet buffer (headroom, data, tailroom); ``data``,
    ``data_end`` and ``data_meta`` are offsets into it; ``hard_end`` is how far the tail may
    grow. ``kind`` is ``"xdp"`` or ``"skb"``. ``ctx`` and ``pointers`` (field name ->
    offset of its 64-bit pointer in ``ctx``) let the helpers update the program's context;
    ``len_offset`` is where ``__sk_buff.len`` sits in ``ctx`` (skb), or ``None``.
    """

    kind: str
    buffer: Region
    data: int
    data_end: int
    data_meta: int
    hard_end: int
    ctx: Region | None = None
    pointers: dict[str, int] = field(default_factory=dict)
    redirect: tuple[Any, int | None, int] | None = None
    cookie: int = 0
    mac_header: int | None = None  # skb_mac_header, an offset into buffer (None: not set)
    network_header: int | None = None  # skb_network_header, likewise

    def __post_init__(self) -> None:
        if self.kind == "skb":
            self.cookie = next(_COOKIES)

    def sync(self) -> None:
        """Write the pointers back into the context region."""
        if self.ctx is None:
            return
        base = self.buffer.address
        for name, at in self.pointers.items():
            value = base + getattr(self, name)
            self.ctx.view[at : at + 8] = value.to_bytes(8, "little")

    def span(self) -> tuple[int, int]:
        """``[data_meta, data_end)``: what ``data_out`` returns (metadata first)."""
        return self.data_meta, self.data_end


_STATES: dict[int, PacketState] = {}


def bind_packet(state: PacketState, *addresses: int) -> None:
    """Let helpers find ``state`` from any of ``addresses`` (the context region, the packet)."""
    for address in addresses:
        _STATES[address] = state


def unbind_packet(*addresses: int) -> None:
    """Forget the states bound to ``addresses``."""
    for address in addresses:
        _STATES.pop(address, None)


def legacy_headers(address: int) -> tuple[int, int, int] | None:
    """``(head, mac, network)`` of the packet state bound to the legacy packet at
    ``address``, as signed byte offsets from ``address`` (a header ``None`` when the state
    has not set it: loads relative to it fail); ``None`` when no state is bound there
    (negative legacy loads then always fail)."""
    state = _STATES.get(address)
    if state is None:
        return None
    head = state.buffer.address - address
    mac, network = state.mac_header, state.network_header
    return (
        head,
        None if mac is None else head + mac,
        None if network is None else head + network,
    )


def legacy_negative_offset(k: int, size: int, nbytes: int, headers) -> int | None:
    """Where a legacy load of ``nbytes`` at the negative offset ``k`` reads, as an offset
    from the legacy packet (``size`` bytes long, ``headers`` from :func:`legacy_headers`),
    or ``None`` when Linux's load fails (see the module docstring)."""
    if headers is None:
        return None
    head, mac, network = headers
    if k >= SKF_NET_OFF:
        at = None if network is None else network + k - SKF_NET_OFF
    elif k >= SKF_LL_OFF:
        at = None if mac is None else mac + k - SKF_LL_OFF
    else:
        return None
    if at is None:
        return None
    return at if at >= head and at + nbytes <= size else None


def packet_state(ctx: ExecutionContext, address: int | None = None) -> PacketState | None:
    """The packet state bound to ``address`` (a helper's ``ctx`` argument) or ``ctx.packet``."""
    if address is not None and address in _STATES:
        return _STATES[address]
    if ctx.packet is not None:
        return _STATES.get(ctx.packet.address)
    return None


def _s32(value: int) -> int:
    value &= _M32
    return value - (1 << 32) if value & (1 << 31) else value


# ---- XDP -----------------------------------------------------------------------------------
def xdp_adjust_head(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_xdp_adjust_head(struct xdp_md *xdp_md, int delta)``."""
    st = packet_state(ctx, r1)
    if st is None or st.kind != "xdp":
        return -errno.EINVAL
    offset = _s32(r2)
    metalen = st.data - st.data_meta
    data = st.data + offset
    if data < XDP_FRAME_SIZE + metalen or data > st.data_end - ETH_HLEN:
        return -errno.EINVAL
    view = st.buffer.view
    if metalen:
        view[st.data_meta + offset : st.data_meta + offset + metalen] = bytes(
            view[st.data_meta : st.data]
        )
    st.data_meta += offset
    st.data = data
    st.sync()
    return 0


def xdp_adjust_meta(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_xdp_adjust_meta(struct xdp_md *xdp_md, int delta)``."""
    st = packet_state(ctx, r1)
    if st is None or st.kind != "xdp":
        return -errno.EINVAL
    meta = st.data_meta + _s32(r2)
    metalen = st.data - meta
    if meta < XDP_FRAME_SIZE or meta > st.data:
        return -errno.EINVAL
    if metalen % 4 or metalen > XDP_META_LIMIT:
        return -errno.EACCES
    st.data_meta = meta
    st.sync()
    return 0


def xdp_adjust_tail(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_xdp_adjust_tail(struct xdp_md *xdp_md, int delta)``."""
    st = packet_state(ctx, r1)
    if st is None or st.kind != "xdp":
        return -errno.EINVAL
    offset = _s32(r2)
    data_end = st.data_end + offset
    if data_end > st.hard_end or data_end < st.data + ETH_HLEN:
        return -errno.EINVAL
    if offset > 0:
        st.buffer.view[st.data_end : data_end] = bytes(offset)
    st.data_end = data_end
    st.sync()
    return 0


# ---- skb bytes ------------------------------------------------------------------------------
def skb_load_bytes(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_skb_load_bytes(const void *skb, u32 offset, void *to, u32 len)``."""
    st = packet_state(ctx, r1)
    offset, size = r2 & _M32, r4 & _M32
    if st is None or offset > 0x7FFFFFFF or offset + size > st.data_end - st.data:
        ctx.memory.write(r3, bytes(size), ctx.pc)
        return -errno.EFAULT
    at = st.data + offset
    ctx.memory.write(r3, bytes(st.buffer.view[at : at + size]), ctx.pc)
    return 0


def skb_store_bytes(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_skb_store_bytes(skb, u32 offset, const void *from, u32 len, u64 flags)``."""
    if r5 & ~(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH):
        return -errno.EINVAL
    st = packet_state(ctx, r1)
    offset, size = r2 & _M32, r4 & _M32
    if st is None or offset > 0x7FFFFFFF or offset + size > st.data_end - st.data:
        return -errno.EFAULT
    data = ctx.memory.read(r3, size, ctx.pc)
    at = st.data + offset
    st.buffer.view[at : at + size] = data
    return 0


# ---- redirects and cookies ------------------------------------------------------------------
def _record(ctx: ExecutionContext, st: PacketState | None, target: Any) -> None:
    ctx.extra["redirect"] = target
    if st is not None:
        st.redirect = target


def redirect(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_redirect(u32 ifindex, u64 flags)``."""
    st = packet_state(ctx)
    ifindex = r1 & _M32
    if st is not None and st.kind == "xdp":
        if r2:
            return XDP_ABORTED
        _record(ctx, st, (ifindex, None, 0))
        return XDP_REDIRECT
    if r2 & ~BPF_F_INGRESS:
        return TC_ACT_SHOT
    _record(ctx, st, (ifindex, None, r2))
    return TC_ACT_REDIRECT


def redirect_map(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_redirect_map(void *map, u64 key, u64 flags)`` (XDP)."""
    st = packet_state(ctx)
    m = map_registry.by_handle(r1)
    action_mask = XDP_ABORTED | XDP_DROP | XDP_PASS | XDP_TX
    flag_mask = _REDIRECT_MAPS.get(int(m.type), 0) if m is not None else 0
    if m is None or r3 & ~(action_mask | flag_mask):
        return XDP_ABORTED
    key = r2 & _M32
    present = m.elem_lookup(key.to_bytes(m.key_size, "little")) != 0
    if not present and not r3 & BPF_F_BROADCAST:
        _record(ctx, st, None)
        return r3 & action_mask
    _record(ctx, st, (m, key, r3 if r3 & BPF_F_BROADCAST else 0))
    return XDP_REDIRECT


def get_socket_cookie(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``u64 bpf_get_socket_cookie(struct sk_buff *skb)``: see the module docstring."""
    st = packet_state(ctx, r1)
    return st.cookie if st is not None else 0


PACKET_HELPERS = {
    "xdp_adjust_head": xdp_adjust_head,
    "xdp_adjust_meta": xdp_adjust_meta,
    "xdp_adjust_tail": xdp_adjust_tail,
    "skb_load_bytes": skb_load_bytes,
    "skb_store_bytes": skb_store_bytes,
    "redirect": redirect,
    "redirect_map": redirect_map,
    "get_socket_cookie": get_socket_cookie,
}


def register_packet(registry: HelperRegistry) -> HelperRegistry:
    """Bind the packet helpers into ``registry``; returns it."""
    for name, fn in PACKET_HELPERS.items():
        registry.register(name, fn)
    return registry

