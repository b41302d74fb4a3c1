"""Runner: one loaded packet program run over a capture file, frame by frame, with verdicts.

``run_capture(program, "in.pcap", outputs={"pass": "p.pcap", "redirect:3": "r3.pcapng"})``
runs an XDP, tc (``sched_cls``/``sched_act``), socket filter or ``cgroup_skb`` program on
each frame of a pcap or pcapng capture, as ``BPF_PROG_TEST_RUN`` builds its context, and
names each result with Linux's meaning:

- XDP: ``aborted`` (0, and any unknown action, as Linux drops them), ``drop`` (1),
  ``pass`` (2), ``tx`` (3), ``redirect`` (4); a redirect whose target the helpers recorded
  as an ifindex (``bpf_redirect``, or a devmap entry through ``bpf_redirect_map``) is also
  counted as ``redirect:<ifindex>``;
- tc: ``unspec`` (-1), ``ok``, ``reclassify``, ``shot``, ``pipe``, ``stolen``, ``queued``,
  ``repeat``, ``redirect`` (``redirect:<ifindex>`` too when known), ``trap``; other values
  are ``unspec`` (tc treats them so);
- socket filters: 0 is ``drop``; any other value ``pass`` with the packet cut to that many
  bytes from the network header on (the Ethernet header is kept);
- ``cgroup_skb``: bit 0 set is ``pass``, clear ``drop``.

Frames go to the output named by their verdict (``redirect:<n>`` before ``redirect``) as the
program left them (``data_out``; XDP metadata is not part of the frame; dropped frames as
well, so ``drop=FILE`` keeps what was dropped). Outputs are pcap
or pcapng by file name. A broken capture still has every complete frame run and written;
:func:`run_capture` then raises the reader's :class:`~pybpf.errors.CaptureError` (its
``packet`` names the broken record) after closing the outputs. The :class:`RunSummary`
counts packets, bytes and verdicts and gives the rate.
"""

from __future__ import annotations

import os
import struct
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pybpf.errors import CaptureError, InputError, NotSupportedError
from pybpf.progtypes import ProgType

from .capture import open_capture, open_writer
from .frame import Frame, LinkType
from .source import ByteSource

__all__ = [
    "RunSummary",
    "PacketVerdict",
    "run_capture",
    "verdict_names",
    "XDP_ACTIONS",
    "TC_ACTIONS",
]

XDP_ACTIONS = ("aborted", "drop", "pass", "tx", "redirect")
TC_ACTIONS = ("ok", "reclassify", "shot", "pipe", "stolen", "queued", "repeat", "redirect", "trap")
ETH_HLEN = 14
_M32 = (1 << 32) - 1
_DEVMAPS = ("devmap", "devmap_hash")


@dataclass
class RunSummary:
    """What a run did: ``packets`` and ``bytes`` read, ``verdicts`` (name -> packets; a
    redirect to a known ifindex counts under ``redirect`` and ``redirect:<n>``), ``written``
    (output name -> frames written), ``seconds`` and ``error`` (the capture's error, or
    ``None``)."""

    program: str
    kind: str
    packets: int = 0
    bytes: int = 0
    verdicts: Counter = field(default_factory=Counter)
    written: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    error: CaptureError | None = None

    @property
    def packets_per_second(self) -> float:
        """Packets run per second of wall time (0 when nothing ran)."""
        return self.packets / self.seconds if self.seconds > 0 and self.packets else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        out: dict[str, Any] = {
            "program": self.program,
            "type": self.kind,
            "packets": self.packets,
            "bytes": self.bytes,
            "verdicts": dict(sorted(self.verdicts.items())),
            "written": dict(sorted(self.written.items())),
            "seconds": round(self.seconds, 6),
            "packets_per_second": round(self.packets_per_second, 1),
        }
        if self.error is not None:
            out["error"] = {"message": str(self.error), "packet": self.error.packet}
        return out


@dataclass(frozen=True)
class PacketVerdict:
    """One frame's result: the raw return value, the verdict name, the redirect ifindex
    (or ``None``) and the frame as the program left it (a dropped frame too, so a ``drop``
    output shows what was dropped; a socket filter's passed frame cut to its length)."""

    retval: int
    verdict: str
    target: int | None
    data: bytes | None


def _kind(prog_type: ProgType | None) -> str:
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


def verdict_names(kind: str) -> tuple[str, ...]:
    """The verdict names of a program kind (``xdp``, ``tc``, ``socket``, ``cgroup_skb``)."""
    if kind == "xdp":
        return XDP_ACTIONS
    if kind == "tc":
        return ("unspec", *TC_ACTIONS)
    return ("pass", "drop")


def _redirect_ifindex(target: Any) -> int | None:
    """The ifindex a recorded redirect ``(ifindex|map, key, flags)`` goes to, if known."""
    if target is None:
        return None
    where, key, _flags = target
    if key is None:
        return int(where)
    mtype = getattr(getattr(where, "type", None), "name", "")
    if str(mtype).lower() in _DEVMAPS:
        raw = where.lookup_raw(key.to_bytes(where.key_size, "little"))
        if raw is not None and len(raw) >= 4:
            return int.from_bytes(bytes(raw[:4]), "little")
    return None


def classify(kind: str, retval: int, frame: bytes, data_out: bytes, target: Any) -> PacketVerdict:
    """The verdict of one run (see the module docstring)."""
    if kind == "xdp":
        name = XDP_ACTIONS[retval] if retval < len(XDP_ACTIONS) else "aborted"
        ifindex = _redirect_ifindex(target) if name == "redirect" else None
        return PacketVerdict(retval, name, ifindex, data_out)
    if kind == "tc":
        name = TC_ACTIONS[retval] if retval < len(TC_ACTIONS) else "unspec"
        ifindex = _redirect_ifindex(target) if name == "redirect" else None
        return PacketVerdict(retval, name, ifindex, data_out)
    if kind == "socket":
        if retval == 0:
            return PacketVerdict(retval, "drop", None, frame)
        return PacketVerdict(retval, "pass", None, frame[: ETH_HLEN + retval])
    ok = retval & 1
    return PacketVerdict(retval, "pass" if ok else "drop", None, frame)


class _PortableRun:
    """Runs a portable-backend program with a runtime context once per frame, reusing one
    address space and setting ``ingress_ifindex``/``rx_queue_index`` (XDP) or
    ``ingress_ifindex`` (skb) in the context the program reads."""

    def __init__(self, program: Any, kind: str, ingress_ifindex: int | None, rx_queue: int) -> None:
        from pybpf.memory import AddressSpace
        from pybpf.runtime import expose_maps

        self.program = program
        self.kind = kind
        self.context = program._runtime_context
        self.space = AddressSpace()
        expose_maps(self.space, program._reachable)
        offsets = self.context.runtime.offsets
        self.patch: list[tuple[int, int]] = []
        if ingress_ifindex is not None and "ingress_ifindex" in offsets:
            self.patch.append((offsets["ingress_ifindex"], ingress_ifindex))
        if rx_queue and "rx_queue_index" in offsets:
            self.patch.append((offsets["rx_queue_index"], rx_queue))

    def __call__(self, data: bytes) -> tuple[int, bytes, Any]:
        prepared = self.context.prepare(data, None, program=self.program.name)
        space = self.space
        try:
            for at, value in self.patch:
                prepared.ctx.view[at : at + 4] = struct.pack("<I", value & _M32)
            for region in prepared.regions:
                space.add(region)
            r0, elapsed = self.program._run(
                (prepared.ctx.address,), space, prepared.legacy_packet(), 0, 1
            )
            state = prepared.state
            if self.kind == "xdp" and state is not None:  # the frame, without metadata
                out = bytes(prepared.packet.view[state.data : state.data_end]) + prepared.tail
            else:
                out = prepared.data_out()
            target = prepared.redirect
        finally:
            for region in prepared.regions:
                if space.find(region.address) is region:
                    space.remove(region)
            prepared.close()
        self.program.run_cnt += 1
        self.program.run_time_ns += int(elapsed)
        return r0 & _M32, out, target

    def close(self) -> None:
        """Nothing to free beyond the address space's references."""


def _runner_for(program: Any, kind: str, ingress_ifindex: int | None, rx_queue: int):
    if getattr(program, "_runtime_context", None) is not None and hasattr(program, "_run"):
        return _PortableRun(program, kind, ingress_ifindex, rx_queue)
    if ingress_ifindex is not None or rx_queue:
        raise NotSupportedError(
            "ingress ifindex and rx queue need a program loaded with its runtime context "
            "(the portable backend, verify=True)",
            feature="ingress_ifindex",
        )

    def run(data: bytes) -> tuple[int, bytes, Any]:
        result = program.test_run(data_in=data)
        return result.retval, result.data_out, None

    return run


class _Outputs:
    """Output captures opened on first use (every one exists at the end, maybe empty)."""

    def __init__(self, outputs: Mapping[str, ByteSource], summary: RunSummary) -> None:
        self.targets = dict(outputs)
        self.writers: dict[str, Any] = {}
        self.summary = summary

    def write(self, name: str, frame: Frame, data: bytes, linktype: int) -> None:
        writer = self.writers.get(name)
        if writer is None:
            target = self.targets[name]
            writer = open_writer(target, linktype=linktype)
            self.writers[name] = writer
        cut = max(frame.orig_len - len(frame.data), 0)  # bytes the capture never had
        writer.write(data, frame.timestamp_ns, len(data) + cut)
        self.summary.written[name] += 1

    def close(self, linktype: int) -> None:
        for name, target in self.targets.items():
            if name not in self.writers:
                self.writers[name] = open_writer(target, linktype=linktype)
        for writer in self.writers.values():
            writer.close()


def run_capture(
    program: Any,
    capture: ByteSource,
    outputs: Mapping[str, ByteSource] | None = None,
    *,
    ingress_ifindex: int | None = None,
    rx_queue: int = 0,
    progress: Callable[[int, int], None] | None = None,
    on_packet: Callable[[int, PacketVerdict], None] | None = None,
) -> RunSummary:
    """Run ``program`` (a loaded :class:`~pybpf.objects.Program`, or a kernel one) on every
    frame of ``capture``; write frames to ``outputs`` (verdict name, or ``redirect:<n>``,
    -> path or binary file) and return a :class:`RunSummary`.

    ``ingress_ifindex``/``rx_queue`` set ``xdp_md``'s (``__sk_buff``'s ingress_ifindex) fields
    the program sees (portable backend). ``progress(packets, bytes_read)`` is called every
    few hundred packets and at the end; ``on_packet(number, verdict)`` after each frame
    (1-based). Raises :class:`~pybpf.errors.InputError` for an output name that is not a
    verdict of the program's kind, :class:`~pybpf.errors.NotSupportedError` for a program
    type that does not run on packets or a non-Ethernet capture, and the capture's
    :class:`~pybpf.errors.CaptureError` after the complete frames were run and written.
    """
    kind = _kind(getattr(program, "type", None))
    outputs = dict(outputs or {})
    names = set(verdict_names(kind))
    for name in outputs:
        base, _, num = name.partition(":")
        if base not in names or (num and (base != "redirect" or not num.isdigit())):
            raise InputError(
                f"no verdict {name!r} for {kind} programs ({', '.join(sorted(names))}"
                + (", redirect:<ifindex>" if "redirect" in names else "")
                + ")",
                field="out",
            )
    if rx_queue < 0 or (ingress_ifindex is not None and ingress_ifindex < 0):
        raise InputError("ingress ifindex and rx queue must be non-negative", field="ctx")
    summary = RunSummary(getattr(program, "name", "?"), kind)
    run = _runner_for(program, kind, ingress_ifindex, rx_queue)
    sink = _Outputs(outputs, summary)
    linktype = int(LinkType.ETHERNET)
    start = time.perf_counter()
    try:
        with open_capture(capture) as cap:
            if cap.linktype is not None:
                linktype = cap.linktype
            number = 0
            try:
                for frame in cap:
                    number += 1
                    if frame.linktype != LinkType.ETHERNET:
                        raise NotSupportedError(
                            f"packet {number}: link type {frame.linktype} (only Ethernet "
                            "frames run through packet programs)",
                            feature="linktype",
                        )
                    linktype = frame.linktype
                    data = frame.data
                    retval, out, target = run(data)
                    verdict = classify(kind, retval, data, out, target)
                    summary.packets += 1
                    summary.bytes += len(data)
                    summary.verdicts[verdict.verdict] += 1
                    chosen = verdict.verdict
                    if verdict.target is not None:
                        named = f"{verdict.verdict}:{verdict.target}"
                        summary.verdicts[named] += 1
                        if named in outputs:
                            chosen = named
                    if verdict.data is not None and chosen in outputs:
                        sink.write(chosen, frame, verdict.data, frame.linktype)
                    if on_packet is not None:
                        on_packet(number, verdict)
                    if progress is not None and number % 256 == 0:
                        progress(number, summary.bytes)
            except CaptureError as err:
                summary.error = err
    finally:
        summary.seconds = time.perf_counter() - start
        sink.close(linktype)
    if progress is not None:
        progress(summary.packets, summary.bytes)
    if summary.error is not None:
        summary.error.summary = summary  # what ran before the broken record
        raise summary.error
    return summary


def capture_size(path: ByteSource) -> int | None:
    """The size in bytes of a capture path (for progress bars), or ``None``."""
    try:
        return os.path.getsize(path) if isinstance(path, str | os.PathLike) else None
    except OSError:
        return None
