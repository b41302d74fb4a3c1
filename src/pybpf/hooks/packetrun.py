"""Packet runner: one packet program run frame after frame on reused memory, batched on the JIT.

:class:`PacketRunner` is what capture runs (:mod:`pybpf.hooks.runner`) and live links
(:mod:`pybpf.hooks.live`) hand frames to. It builds the context ``BPF_PROG_TEST_RUN`` gives
each frame (:mod:`pybpf.objects.context`: ``xdp_md`` after 256 bytes of headroom,
``__sk_buff`` after 64, socket filters and ``cgroup_skb`` from L3 on) once, in one packet
region and one context region that every frame reuses (the address space, the maps exposed
in it and the packet helpers' binding stay put), instead of building regions per frame.

:meth:`PacketRunner.run_many` runs a list of frames. On the JIT engine, when the program
calls no helper that needs the per-frame packet state in Python (``xdp_adjust_*``,
``skb_load/store_bytes``, ``redirect``, ``redirect_map``, ``get_socket_cookie``, tail calls)
it goes through the JIT's batch entry point (:meth:`pybpf.jit.JitProgram.run_batch`): all
frames in one native loop, each with its own copy of the context template and its packet
pointers patched in (``skb`` contexts depend on the frame's protocol and addresses: frames
are batched in runs sharing one template, short runs go frame by frame). Otherwise, and on
the interpreter, frames run one by one on the reused regions. Programs of the kernel
backend run through ``test_run``.

A runner keeps what its batches share: one :class:`~pybpf.jit.batch.BatchPlan` per context
template (all sharing one native context copy, which the batch loop refreshes per frame),
and one frame buffer, grown when a batch needs more room (frames laid back to back:
:meth:`~pybpf.jit.batch.PacketBatch.back_to_back`); a batch joins its frames into it once,
and hands back the frames themselves as the output when the programs changed no byte. On
every path an error carries ``packet_index`` and ``partial`` (the results of the frames
that ran before it: a batch runs the frames before a refused one, and keeps those before a
failing run), and leaves the runner usable.

This module is the one place in ``hooks`` that runs a loaded :class:`~pybpf.objects.Program`
without ``test_run``, through its hook accessors (``runtime_context``, ``runner``,
``reachable_maps``).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from itertools import groupby, repeat
from operator import itemgetter, ne
from typing import Any

from pybpf.errors import InputError, NotSupportedError
from pybpf.isa import CallKind
from pybpf.memory import AddressSpace, Region
from pybpf.objects.context import (
    LOOPBACK_IFINDEX,
    XDP_LINEAR_MAX,
    XDP_PACKET_HEADROOM,
    SkbContext,
    XdpContext,
    skb_frame_fields,
)
from pybpf.progtypes import ProgType
from pybpf.runtime import expose_maps
from pybpf.runtime.packet import XDP_FRAME_SIZE, PacketState, bind_packet, unbind_packet

__all__ = ["PacketRunner", "program_kind", "batch_blockers", "ETH_HLEN"]

ETH_HLEN = 14
_M32 = (1 << 32) - 1
# helpers that read or move the per-frame packet state in Python, and tail calls
_PER_FRAME_HELPERS = {9: "skb_store_bytes", 12: "tail_call", 23: "redirect", 26: "skb_load_bytes",
                      44: "xdp_adjust_head", 46: "get_socket_cookie", 51: "redirect_map",
                      54: "xdp_adjust_meta", 65: "xdp_adjust_tail"}  # fmt: skip
_MIN_SKB_RUN = 8  # skb frames sharing a context template: fewer than this run one by one
_MAX_PLANS = 64  # batch plans (one per context template) a runner keeps
_ZERO_MAC = bytes(6)
_IPV4, _IPV6 = b"\x08\x00", b"\x86\xdd"
_V4_HEADER, _V6_HEADER = ETH_HLEN + 20, ETH_HLEN + 40  # the IP headers skb contexts read
# what an skb context depends on (_SkbSlot.template): destination MAC, protocol, addresses
_KEY_V4 = itemgetter(slice(0, 6), slice(12, 16), slice(26, 34))
_KEY_V6 = itemgetter(slice(0, 6), slice(12, 16), slice(22, 54))
_KEY_L2 = itemgetter(slice(0, 6), slice(12, 16))

Result = tuple[int, bytes, Any]  # (retval u32, the frame as left, redirect target or None)


def program_kind(prog_type: ProgType | None) -> str:
    """``xdp``, ``tc``, ``socket`` or ``cgroup_skb`` for a packet program type; else
    :class:`~pybpf.errors.NotSupportedError`."""
    if prog_type == ProgType.XDP:
        return "xdp"
    if prog_type in (ProgType.SCHED_CLS, ProgType.SCHED_ACT):
        return "tc"
    if prog_type == ProgType.SOCKET_FILTER:
        return "socket"
    if prog_type == ProgType.CGROUP_SKB:
        return "cgroup_skb"
    name = prog_type.type_name if prog_type is not None else "untyped"
    raise NotSupportedError(
        f"{name} programs do not run on packets (xdp, tc, socket or cgroup_skb)",
        feature="program type",
    )


def batch_blockers(program: Any) -> list[str]:
    """Names of the helpers ``program`` calls that keep it off the JIT's batch loop."""
    found: list[str] = []
    for insn in getattr(program, "instructions", ()):
        if insn.is_call and insn.call_kind == CallKind.HELPER:
            name = _PER_FRAME_HELPERS.get(insn.imm)
            if name is not None and name not in found:
                found.append(name)
    return found


def _short(why: str, index: int) -> InputError:
    return InputError(why, field="data_in", packet_index=index)


# ---- reused regions -----------------------------------------------------------------------
class _XdpSlot:
    """One ``xdp_md`` and one packet buffer (headroom, 3520 linear bytes) reused per frame."""

    def __init__(self, builder: XdpContext, ingress: int, rx_queue: int) -> None:
        layout = builder.runtime
        offsets = layout.offsets
        self.template = layout.pack({"ingress_ifindex": ingress, "rx_queue_index": rx_queue})
        self.pointers = {k: offsets[k] for k in ("data", "data_end", "data_meta")}
        self.packet = Region(XDP_PACKET_HEADROOM + XDP_LINEAR_MAX, kind="packet", name="xdp")
        self.ctx = Region.from_bytes(self.template, kind="context", writable=False)
        self.state = PacketState(
            "xdp", self.packet, XDP_PACKET_HEADROOM, XDP_PACKET_HEADROOM, XDP_PACKET_HEADROOM,
            XDP_PACKET_HEADROOM + XDP_LINEAR_MAX, self.ctx, self.pointers,
        )  # fmt: skip
        # helpers without a context argument (redirect) find the state through the packet
        self.legacy = Region.wrap(self.packet.address + XDP_PACKET_HEADROOM, XDP_LINEAR_MAX,
                                  kind="packet", writable=False, owner=self.packet)  # fmt: skip
        bind_packet(self.state, self.ctx.address, self.legacy.address)
        self.view = self.packet.view
        self.tail = b""
        self.args = (self.ctx.address,)

    @property
    def regions(self) -> list[Region]:
        return [self.ctx, self.packet]

    def load(self, frame: bytes, index: int) -> None:
        size = len(frame)
        if size < ETH_HLEN:
            raise _short("a frame shorter than an Ethernet header", index)
        st = self.state
        if st.data_meta != XDP_PACKET_HEADROOM:  # the last program moved the head: clean up
            self.view[XDP_FRAME_SIZE:XDP_PACKET_HEADROOM] = bytes(
                XDP_PACKET_HEADROOM - XDP_FRAME_SIZE
            )
        linear = size if size <= XDP_LINEAR_MAX else XDP_LINEAR_MAX
        head = XDP_PACKET_HEADROOM
        self.view[head : head + linear] = frame if linear == size else frame[:linear]
        self.tail = b"" if linear == size else bytes(frame[linear:])
        st.data = st.data_meta = head
        st.data_end = head + linear
        st.redirect = None
        st.sync()

    def output(self, frame: bytes) -> bytes:
        st = self.state
        return bytes(self.view[st.data : st.data_end]) + self.tail  # metadata left out

    def close(self) -> None:
        unbind_packet(self.ctx.address, self.legacy.address)
        self.legacy.close()
        self.ctx.close()
        self.packet.close()


class _SkbSlot:
    """One ``__sk_buff`` and one packet buffer reused per frame (tc: from L2; socket filters
    and ``cgroup_skb``: ``data`` and ``len`` from L3)."""

    def __init__(self, builder: SkbContext, ingress: int | None) -> None:
        self.builder = builder
        layout = builder.runtime
        self.layout = layout
        self.offsets = layout.offsets
        self.skip = 0 if builder.l2 else ETH_HLEN
        self.base_values = {"ifindex": LOOPBACK_IFINDEX}
        if ingress is not None:
            self.base_values["ingress_ifindex"] = ingress
        self.templates: dict[tuple, bytes] = {}
        self._fast: dict[tuple, bytes] = {}  # classify's keys -> the same templates
        self.headroom = builder.headroom
        self.packet = Region(builder.headroom + builder.max_size, kind="packet", name="skb")
        self.ctx = Region(layout.size, kind="context", name="skb_ctx", writable=True)
        self.view = self.packet.view
        self.start = self.packet.address + self.headroom + self.skip
        self.legacies: dict[int, Region] = {}
        self.legacy: Region | None = None
        self.state: PacketState | None = None
        self.args = (self.ctx.address,)
        at = self.offsets
        self._ptrs = struct.Struct("<QQQ")
        assert at["data_end"] == at["data"] + 8 and at["data_meta"] == at["data"] + 16
        self._len_at = at["len"]

    @property
    def regions(self) -> list[Region]:
        return [self.ctx, self.packet]

    def check(self, frame: bytes, index: int) -> None:
        """The frame checks ``SkbContext.prepare`` makes."""
        size = len(frame)
        if size < ETH_HLEN or size > self.builder.max_size:
            raise _short(f"frames must hold {ETH_HLEN} to {self.builder.max_size} bytes", index)
        proto = frame[12:14]
        need = 20 if proto == b"\x08\x00" else 40 if proto == b"\x86\xdd" else 0
        if size - ETH_HLEN < need:
            raise _short("a frame too short for its IP header", index)

    def template(self, frame: bytes) -> bytes:
        """The context of ``frame`` without its packet pointers and length (cached by what
        it depends on: protocol, packet type, addresses)."""
        proto = frame[12:16]
        addrs = frame[26:34] if proto[:2] == b"\x08\x00" else (
            frame[22:54] if proto[:2] == b"\x86\xdd" else b""
        )  # fmt: skip
        key = (frame[0] & 1, frame[:6] == _ZERO_MAC, proto, addrs)
        found = self.templates.get(key)
        if found is None:
            values = dict(self.base_values)
            values.update(skb_frame_fields(frame))
            found = self.layout.pack(values)
            if len(self.templates) > 4096:
                self.templates.clear()
            self.templates[key] = found
        return found

    def classify(self, frames: Sequence[bytes]) -> list[bytes]:
        """Each frame's :meth:`template`, after :meth:`check`: one loop, each frame keyed
        by one C-level call on the bytes its template depends on (a superset: the whole
        destination MAC)."""
        high = self.builder.max_size
        fast = self._fast
        found: list[bytes] = []
        append = found.append
        for index, frame in enumerate(frames):
            size = len(frame)
            if size < ETH_HLEN or size > high:
                self.check(frame, index)  # raises
            ip = frame[12:14]
            if ip == _IPV4:
                if size < _V4_HEADER:
                    self.check(frame, index)
                key = _KEY_V4(frame)
            elif ip == _IPV6:
                if size < _V6_HEADER:
                    self.check(frame, index)
                key = _KEY_V6(frame)
            else:
                key = _KEY_L2(frame)
            known = fast.get(key)
            if known is None:
                known = self.template(frame)
                if len(fast) > 4096:
                    fast.clear()
                fast[key] = known
            append(known)
        return found

    def load(self, frame: bytes, index: int) -> None:
        self.check(frame, index)
        size = len(frame)
        head = self.headroom
        self.view[head : head + size] = frame
        ctx = self.ctx.view
        ctx[:] = self.template(frame)
        start = self.start
        end = start + size - self.skip
        self._ptrs.pack_into(ctx, self.offsets["data"], start, end, start)
        struct.pack_into("<I", ctx, self._len_at, size - self.skip)
        legacy = self.legacies.get(size)
        if legacy is None:
            legacy = Region.wrap(start, size - self.skip, kind="packet", writable=False,
                                 owner=self.packet)  # fmt: skip
            if len(self.legacies) < 2048:
                self.legacies[size] = legacy
        self.legacy = legacy
        pos = head + self.skip
        self.state = PacketState("skb", self.packet, pos, head + size, pos, head + size)
        # legacy loads at SKF_LL_OFF/SKF_NET_OFF: Linux's test run sets both headers so
        self.state.mac_header, self.state.network_header = head, head + ETH_HLEN
        bind_packet(self.state, self.ctx.address, start)  # a new state: a new socket cookie

    def output(self, frame: bytes) -> bytes:
        head = self.headroom
        return bytes(self.view[head : head + len(frame)])

    def close(self) -> None:
        unbind_packet(self.ctx.address, self.start)
        for legacy in self.legacies.values():
            legacy.close()
        self.ctx.close()
        self.packet.close()


class _BatchBuffer:
    """A native buffer that frames are copied into, back to back, for the batch loop: kept
    across batches and grown (never shrunk) when a batch needs more room."""

    def __init__(self) -> None:
        self.region: Region | None = None

    def fill(self, frames: Sequence[bytes], sizes: list[int], skip: int, limit: int):
        """Copy ``frames`` (of ``sizes`` bytes) in; returns ``(blob, batch)``: the frames
        joined, and the :class:`~pybpf.jit.batch.PacketBatch` the programs see (``skip``
        bytes in, at most ``limit`` bytes of each)."""
        from pybpf.jit.batch import PacketBatch

        blob = b"".join(frames)
        region = self.region
        if region is None or region.size < len(blob):
            if region is not None:
                region.close()
            self.region = region = Region(
                max(len(blob) * 2, 1 << 16), kind="packet", name="frames"
            )
        region.view[: len(blob)] = blob
        return blob, PacketBatch.back_to_back(region, sizes, skip=skip, limit=limit)

    def close(self) -> None:
        if self.region is not None:
            self.region.close()
            self.region = None


def _outputs(view, frames, n: int, blob: bytes, offsets, lengths, sizes) -> Sequence[bytes]:
    """The first ``n`` of ``frames`` as the batch loop left them in ``view`` (where they
    were copied as ``blob``; each seen at ``offsets``/``lengths``, ``sizes`` long when that
    is more than the program saw): the frames themselves when no byte changed (one compare,
    no copy per frame)."""
    if n < len(frames):  # the frames that ran before a failing one
        frames, offsets, lengths = frames[:n], offsets[:n], lengths[:n]
        sizes = sizes[:n] if sizes is not None else None
        blob = blob[: offsets[-1] + len(frames[-1])] if n else b""
    end = len(blob)
    after = bytes(view[:end])
    if after == blob:
        return frames if set(map(type, frames)) == {bytes} else [bytes(f) for f in frames]
    if sizes is None:  # the programs saw whole frames
        return [after[o : o + len(f)] for o, f in zip(offsets, frames, strict=False)]
    datas = [after[o : o + k] for o, k in zip(offsets, lengths, strict=False)]
    if any(map(ne, lengths, sizes)):  # the bytes past the linear room come back unchanged
        datas = [d + bytes(f[len(d) :]) for d, f in zip(datas, frames, strict=False)]
    return datas


# ---- the runner ---------------------------------------------------------------------------
class PacketRunner:
    """Runs ``program`` (a loaded :class:`~pybpf.objects.Program` or a kernel one) on frames.

    ``kind`` is the program's (:func:`program_kind`); ``ingress_ifindex`` and ``rx_queue``
    set the context fields of that name (default: the loopback device, queue 0, as
    ``BPF_PROG_TEST_RUN``). ``batch=False`` keeps the JIT off its batch loop. Attributes:
    ``batched`` (whether :meth:`run_many` uses the batch loop), ``blockers`` (the helpers that
    keep it off), ``engine``. :meth:`run` and :meth:`run_many` return ``(retval, frame as
    the program left it, redirect target or None)`` per frame (``retval`` the low 32 bits of
    r0). Errors carry ``packet_index`` (the frame's index in the list). Close with
    :meth:`close` (or ``with``).
    """

    def __init__(
        self,
        program: Any,
        *,
        ingress_ifindex: int | None = None,
        rx_queue: int = 0,
        batch: bool = True,
    ) -> None:
        self.program = program
        self.kind = program_kind(getattr(program, "type", None))
        if rx_queue < 0 or (ingress_ifindex is not None and ingress_ifindex < 0):
            raise InputError("ingress ifindex and rx queue must be non-negative", field="ctx")
        # a Program of the portable backend (objects.Program's hook accessors); kernel
        # programs have neither and run through test_run
        builder = getattr(program, "runtime_context", None)
        engine = getattr(program, "runner", None)
        self.engine = getattr(program, "engine", "kernel")
        self.blockers = batch_blockers(program)
        self.slot: _XdpSlot | _SkbSlot | None = None
        self.batched = False
        self._closed = False
        self._buffer = _BatchBuffer()
        self._plans: dict[bytes, Any] = {}  # context template -> its BatchPlan
        self._ctx: Region | None = None  # the context copy every plan shares
        self._fields: dict[int, Any] = {}
        if builder is None or engine is None:
            if ingress_ifindex is not None or rx_queue:
                raise NotSupportedError(
                    "ingress ifindex and rx queue need a program loaded with its runtime "
                    "context (the portable backend, verify=True)",
                    feature="ingress_ifindex",
                )
            self.engine = "kernel" if engine is None else self.engine
            return
        self._engine = engine
        if isinstance(builder, XdpContext):
            ingress = LOOPBACK_IFINDEX if ingress_ifindex is None else ingress_ifindex
            self.slot = _XdpSlot(builder, ingress, rx_queue)
        else:
            self.slot = _SkbSlot(builder, ingress_ifindex)
        self.space = AddressSpace()
        expose_maps(self.space, program.reachable_maps)
        for region in self.slot.regions:
            self.space.add(region)
        self.batched = (
            batch and self.engine == "jit" and not self.blockers and hasattr(engine, "run_batch")
        )
        if self.batched:  # the context fields the batch loop sets from each frame
            from pybpf.jit.batch import PacketArg

            at = self.slot.pointers if isinstance(self.slot, _XdpSlot) else self.slot.offsets
            self._fields = {at["data"]: PacketArg.DATA, at["data_end"]: PacketArg.DATA_END,
                            at["data_meta"]: PacketArg.DATA}  # fmt: skip
            if isinstance(self.slot, _SkbSlot):
                self._fields[at["len"]] = (PacketArg.LENGTH, 4)

    # ---- one frame ----------------------------------------------------------------------
    def run(self, frame: bytes, index: int = 0) -> Result:
        """Run the program on one frame (see the class docstring)."""
        if self._closed:
            raise InputError("the packet runner is closed")
        slot = self.slot
        if slot is None:
            result = self.program.test_run(data_in=frame)
            return result.retval, result.data_out, None
        try:
            slot.load(frame, index)
            start = time.perf_counter_ns()
            r0 = self._engine.run(slot.args, memory=self.space, packet=slot.legacy, cpu=0)
            self.program.run_time_ns += time.perf_counter_ns() - start
        except Exception as exc:
            if getattr(exc, "packet_index", None) is None:
                exc.packet_index = index
            raise
        self.program.run_cnt += 1
        return r0 & _M32, slot.output(frame), slot.state.redirect if slot.state else None

    # ---- many frames --------------------------------------------------------------------
    def run_many(self, frames: Sequence[bytes]) -> list[Result]:
        """Run the program on each of ``frames`` in order (batched where it can be).

        On an error, ``exc.partial`` holds the results of the frames that ran before the
        failing one (``exc.packet_index``), on every path."""
        if self._closed:
            raise InputError("the packet runner is closed")
        out: list[Result] = []
        try:
            if not self.batched or not frames:
                run = self.run
                for i, frame in enumerate(frames):
                    out.append(run(frame, i))
            elif self.kind == "xdp":
                self._batch_xdp(frames, out)
            else:
                self._batch_skb(frames, out)
        except Exception as exc:
            exc.partial = out  # the frames that ran before the failing one
            raise
        return out

    def _plan(self, template: bytes):
        """The batch plan of frames sharing ``template``, built once per runner (every
        plan shares the runner's one native context copy)."""
        plan = self._plans.get(template)
        if plan is None:
            from pybpf.jit.batch import BatchPlan, PacketArg

            if len(self._plans) >= _MAX_PLANS:
                for old in self._plans.values():
                    old.close()
                self._plans.clear()
            region = self._ctx
            if region is None:
                self._ctx = region = Region(len(template), kind="ctx", name="ctx")
            plan = BatchPlan(
                (PacketArg.CONTEXT,), template, self._fields, context_region=region
            )
            self._plans[template] = plan
        return plan

    def _batch(self, frames, sizes, skip: int, limit: int, template: bytes, first: int, emit):
        """Run ``frames`` (one context template) through the batch loop and hand ``emit``
        ``(retvals, blob, offsets, lengths)``; on an error, ``emit`` gets the frames that
        ran before the failing one first."""
        blob, packets = self._buffer.fill(frames, sizes, skip, limit)
        offsets, lengths = packets.offsets, packets.lengths
        program = self.program
        try:
            result = self._engine.run_batch(packets, plan=self._plan(template), memory=self.space)
        except Exception as exc:
            done = getattr(exc, "packet_index", None) or 0
            retvals = getattr(exc, "retvals", None)
            exc.packet_index = first + done
            if retvals is not None and len(retvals) == done and done:
                program.run_cnt += done
                emit(retvals, blob, offsets, lengths)
            raise
        count = len(frames)
        program.run_cnt += count
        program.run_time_ns += int(result.ns_per_packet * count)
        emit(result.retvals, blob, offsets, lengths)

    def _batch_xdp(self, frames: Sequence[bytes], out: list[Result]) -> None:
        sizes = list(map(len, frames))
        if min(sizes) < ETH_HLEN:  # the frames before it run, as frame by frame
            index = next(i for i, n in enumerate(sizes) if n < ETH_HLEN)
            if index:
                self._batch_xdp(frames[:index], out)
            raise _short("a frame shorter than an Ethernet header", index)

        def emit(retvals: list[int], blob: bytes, offsets, lengths) -> None:
            n = len(retvals)
            if max(retvals) > _M32:
                retvals = [r & _M32 for r in retvals]
            datas = _outputs(self._buffer.region.view, frames, n, blob, offsets, lengths, sizes)
            out.extend(zip(retvals, datas, repeat(None)))

        self._batch(frames, sizes, 0, XDP_LINEAR_MAX, self.slot.template, 0, emit)

    def _batch_skb(self, frames: Sequence[bytes], out: list[Result]) -> None:
        slot = self.slot
        try:
            templates = slot.classify(frames)
        except InputError as exc:  # the frames before it run, as frame by frame
            if exc.packet_index:
                self._batch_skb(frames[: exc.packet_index], out)
            raise
        skip, limit = slot.skip, slot.builder.max_size
        start = 0
        for template, run in groupby(templates):  # runs of one context (C-level compares)
            end = start + len(list(run))
            group = frames[start:end]
            if len(group) < _MIN_SKB_RUN:
                out.extend(self.run(frame, start + i) for i, frame in enumerate(group))
            else:

                def emit(retvals, blob, offsets, lengths, group=group) -> None:
                    n = len(retvals)
                    if max(retvals) > _M32:
                        retvals = [r & _M32 for r in retvals]
                    if skip:  # the programs see from L3 on and cannot change the frame
                        datas = group[:n] if n < len(group) else group
                    else:
                        view = self._buffer.region.view
                        datas = _outputs(view, group, n, blob, offsets, lengths, None)
                    out.extend(zip(retvals, datas, repeat(None)))

                sizes = list(map(len, group))
                self._batch(group, sizes, skip, limit, template, start, emit)
            start = end

    def close(self) -> None:
        """Free the reused regions (idempotent); the runner runs nothing after."""
        self._closed = True
        if self.slot is not None:
            for region in self.slot.regions:
                if self.space.find(region.address) is region:
                    self.space.remove(region)
            self.slot.close()
            self.slot = None
        for plan in self._plans.values():
            plan.close()
        self._plans.clear()
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        self._buffer.close()

    def __enter__(self) -> PacketRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
