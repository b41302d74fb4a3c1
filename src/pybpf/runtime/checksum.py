"""Checksum helpers: ``bpf_csum_diff`` and ``bpf_l3/l4_csum_replace``, with Linux's arithmetic.

The ones'-complement primitives follow ``include/net/checksum.h`` and x86-64's
``csum_partial`` (data summed as little-endian words, as loaded from memory, folded to 32
bits with end-around carry; 0 only when everything summed is 0):

- ``csum_diff`` (28): ``csum_diff(from, from_size, to, to_size, seed)``. As Linux since
  6.13 ("optimize and homogenize for all archs"; checked against a 6.18 kernel), any sizes
  are accepted (odd tails are zero-padded, older kernels wanted multiples of 4) and the
  result is ``csum_from32to16`` of ``csum_sub(csum_partial(to, seed),
  csum_partial(from, 0))`` (``csum_partial(to, seed)`` alone when ``from_size`` is 0,
  ``~csum_partial(from, ~seed)`` when ``to_size`` is 0, the seed when both are): a 16-bit
  value with the ones'-complement meaning of the older 32-bit one (``csum_fold`` of either
  gives the same checksum), and no 512-byte size limit.
- ``l3_csum_replace`` (10) and ``l4_csum_replace`` (11): ``(skb, offset, from, to, flags)``
  update the 16-bit checksum at ``offset`` of the run's packet (offset 0 = ``skb->data``:
  the skb's packet state, :func:`pybpf.runtime.packet.packet_state`, else ``ctx.packet``,
  which in a test run is the read-only view legacy loads read) incrementally:
  ``flags & 0xf`` is the field size (2 or 4; 0 means ``to`` is a ready ``csum_diff``
  result and ``from`` must be 0). ``l4`` also takes
  ``BPF_F_PSEUDO_HDR`` (0x10), ``BPF_F_MARK_MANGLED_0`` (0x20: a zero checksum stays zero,
  a result of zero becomes 0xffff), ``BPF_F_MARK_ENFORCE`` (0x40) and ``BPF_F_IPV6`` (0x80).
  pybpf's packets have ``ip_summed == CHECKSUM_NONE`` (as a ``BPF_PROG_TEST_RUN`` skb), so
  the pseudo-header flag changes nothing. Errors: ``-EINVAL`` for unknown flags or sizes,
  or when the run has no packet (pybpf's choice: there is no skb to edit); ``-EFAULT`` for
  an odd offset, one past 0xffff, outside the packet, or a read-only packet.
"""

from __future__ import annotations

import errno
import struct

from pybpf.runtime.context import ExecutionContext
from pybpf.runtime.packet import packet_state
from pybpf.runtime.registry import HelperRegistry

__all__ = [
    "CHECKSUM_HELPERS",
    "register_checksum",
    "csum_partial",
    "csum_add",
    "csum_sub",
    "csum_fold",
    "csum_from32to16",
    "csum_diff",
    "l3_csum_replace",
    "l4_csum_replace",
]

_M16, _M32 = 0xFFFF, (1 << 32) - 1
_EINVAL, _EFAULT = -errno.EINVAL, -errno.EFAULT

BPF_F_HDR_FIELD_MASK = 0xF
BPF_F_PSEUDO_HDR = 1 << 4
BPF_F_MARK_MANGLED_0 = 1 << 5
BPF_F_MARK_ENFORCE = 1 << 6
BPF_F_IPV6 = 1 << 7
CSUM_MANGLED_0 = 0xFFFF


# ---- ones'-complement arithmetic -------------------------------------------------------
def csum_partial(data: bytes, seed: int = 0) -> int:
    """x86-64 ``csum_partial``: the 32-bit ones'-complement sum of ``data`` plus ``seed``."""
    if len(data) % 4:
        data = bytes(data) + bytes(4 - len(data) % 4)
    total = (seed & _M32) + sum(struct.unpack(f"<{len(data) // 4}I", data))
    if total == 0:
        return 0
    return (total - 1) % _M32 + 1


def csum_add(csum: int, addend: int) -> int:
    """``csum_add``: 32-bit addition with end-around carry."""
    res = (csum & _M32) + (addend & _M32)
    return (res & _M32) + (res >> 32)


def csum_sub(csum: int, addend: int) -> int:
    """``csum_sub``: ``csum_add(csum, ~addend)``."""
    return csum_add(csum, ~addend & _M32)


def csum_fold(csum: int) -> int:
    """``csum_fold``: fold a 32-bit sum to 16 bits and complement it."""
    csum &= _M32
    csum = (csum & _M16) + (csum >> 16)
    csum = (csum & _M16) + (csum >> 16)
    return ~csum & _M16


def csum_from32to16(csum: int) -> int:
    """``csum_from32to16``: fold a 32-bit sum to 16 bits (not complemented)."""
    csum &= _M32
    csum = (csum + (((csum >> 16) | (csum << 16)) & _M32)) & _M32
    return csum >> 16


def _csum16_add(csum: int, addend: int) -> int:
    res = ((csum & _M16) + (addend & _M16)) & _M16
    return (res + (res < (addend & _M16))) & _M16


# ---- csum_diff ----------------------------------------------------------------------------
def csum_diff(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``s64 bpf_csum_diff(__be32 *from, u32 from_size, __be32 *to, u32 to_size, __wsum seed)``."""
    from_size, to_size, seed = r2 & _M32, r4 & _M32, r5 & _M32
    src = ctx.memory.read(r1, from_size, ctx.pc) if from_size else b""
    dst = ctx.memory.read(r3, to_size, ctx.pc) if to_size else b""
    ret = seed
    if from_size and to_size:
        ret = csum_sub(csum_partial(dst, ret), csum_partial(src, 0))
    elif to_size:
        ret = csum_partial(dst, ret)
    elif from_size:
        ret = ~csum_partial(src, ~ret & _M32) & _M32
    return csum_from32to16(ret)


# ---- l3/l4_csum_replace -------------------------------------------------------------------
def _replace(
    ctx: ExecutionContext, skb: int, offset: int, old: int, new: int, flags: int, l4: bool
) -> int:
    allowed = BPF_F_HDR_FIELD_MASK
    if l4:
        allowed |= BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | BPF_F_MARK_ENFORCE | BPF_F_IPV6
    if flags & ~allowed:
        return _EINVAL
    offset &= _M32
    if offset > 0xFFFF or offset & 1:
        return _EFAULT
    st = packet_state(ctx, skb)
    if st is not None:  # the skb's own buffer (ctx.packet is the read-only legacy view)
        view, size = st.buffer.view, st.data_end - st.data
        at = st.data + offset
    else:
        packet = ctx.packet
        if packet is None or packet.closed:
            return _EINVAL
        if not packet.writable:
            return _EFAULT
        view, size, at = packet.view, packet.size, offset
    if offset + 2 > size:
        return _EFAULT
    (csum,) = struct.unpack_from("<H", view, at)
    mangled = l4 and bool(flags & BPF_F_MARK_MANGLED_0)
    if mangled and not flags & BPF_F_MARK_ENFORCE and not csum:
        return 0
    size = flags & BPF_F_HDR_FIELD_MASK
    if size == 0:
        if old:
            return _EINVAL
        csum = csum_fold(csum_add(new, ~csum & _M16))
    elif size == 2 and not l4:  # csum_replace2
        csum = ~_csum16_add(_csum16_add(~csum & _M16, ~old & _M16), new) & _M16
    elif size in (2, 4):  # csum_replace4 (l4's 2-byte case widens the values)
        mask = _M16 if size == 2 else _M32
        csum = csum_fold(csum_add(csum_sub(~csum & _M32, old & mask), new & mask))
    else:
        return _EINVAL
    if mangled and not csum:
        csum = CSUM_MANGLED_0
    struct.pack_into("<H", view, at, csum)
    return 0


def l3_csum_replace(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_l3_csum_replace(skb, u32 offset, u64 from, u64 to, u64 flags)``."""
    return _replace(ctx, r1, r2, r3, r4, r5, l4=False)


def l4_csum_replace(ctx: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """``long bpf_l4_csum_replace(skb, u32 offset, u64 from, u64 to, u64 flags)``."""
    return _replace(ctx, r1, r2, r3, r4, r5, l4=True)


CHECKSUM_HELPERS = {
    "l3_csum_replace": l3_csum_replace,
    "l4_csum_replace": l4_csum_replace,
    "csum_diff": csum_diff,
}


def register_checksum(registry: HelperRegistry) -> HelperRegistry:
    """Bind the checksum helpers into ``registry``; returns it."""
    for name, fn in CHECKSUM_HELPERS.items():
        registry.register(name, fn)
    return registry
