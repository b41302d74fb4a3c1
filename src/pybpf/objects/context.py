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
Linux's ``bpf()`` fails.
"""

from __future__ import annotations

import dataclasses
import errno
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pybpf.errors import InputError, VerifierError
from pybpf.isa import Class, Instruction, Mode, Size
from pybpf.isa.opcodes import mem_opcode
from pybpf.memory import Region
from pybpf.progtypes import ProgType
from pybpf.progtypes.contexts import ContextLayout, Field, FieldKind, rules_for

__all__ = [
    "RuntimeLayout",
    "runtime_layout",
    "rewrite_context_accesses",
    "PreparedContext",
    "XdpContext",
    "runtime_context_for",
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

    @property
    def regions(self) -> list[Region]:
        """Regions to add to the run's address space."""
        return [r for r in (self.ctx, self.packet) if r is not None]

    def data_out(self) -> bytes:
        """The packet (metadata included) as the program left it, then the fragments."""
        if self.packet is None:
            return self.tail
        lo, hi = self.data_span
        return bytes(self.packet.view[lo:hi]) + self.tail

    def close(self) -> None:
        """Free the regions (remove them from any address space first)."""
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
        packet = Region(XDP_PACKET_HEADROOM + linear_end - meta, kind="packet", name="xdp")
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
        return PreparedContext(
            ctx, packet, (head, head + linear_end), bytes(data_in[linear_end:]), ctx_out
        )


def runtime_context_for(prog_type: ProgType | None) -> XdpContext | None:
    """The runtime context builder of ``prog_type``, or ``None`` when its context is not
    rewritten (yet)."""
    if prog_type == ProgType.XDP:
        rules = rules_for(prog_type)
        assert rules is not None
        return XdpContext(rules.context)
    return None
