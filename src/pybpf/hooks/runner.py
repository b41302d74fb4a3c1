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
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pybpf.errors import CaptureError, InputError, NotSupportedError

from .capture import open_capture, open_writer
from .frame import Frame, LinkType
from .packetrun import ETH_HLEN, PacketRunner, program_kind
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
CHUNK = 256  # frames run together (one batch on the JIT)
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


class PacketVerdict(NamedTuple):
    """One frame's result: the raw return value, the verdict name, the redirect ifindex
    (or ``None``) and the frame as the program left it (a dropped frame too, so a ``drop``
    output shows what was dropped; a socket filter's passed frame cut to its length)."""

    retval: int
    verdict: str
    target: int | None
    data: bytes | None


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

    def write_many(self, name: str, items: list[tuple[Frame, bytes]], linktype: int) -> None:
        """Write ``(frame, data)`` pairs to output ``name`` (frames of one link type)."""
        writer = self.writers.get(name)
        if writer is None:
            writer = self.writers[name] = open_writer(self.targets[name], linktype=linktype)
        write = writer.write
        for frame, data in items:
            cut = frame[2] - len(frame[1])  # bytes the capture never had
            write(data, frame[0], len(data) + cut if cut > 0 else len(data))
        self.summary.written[name] += len(items)

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
    kind = program_kind(getattr(program, "type", None))
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
    summary = RunSummary(getattr(program, "name", "?"), kind)
    runner = PacketRunner(program, ingress_ifindex=ingress_ifindex, rx_queue=rx_queue)
    sink = _Outputs(outputs, summary)
    linktype = int(LinkType.ETHERNET)
    verdicts, counts = summary.verdicts, {}
    state = {"number": 0, "bytes": 0}
    fast = XDP_ACTIONS if kind == "xdp" else TC_ACTIONS if kind == "tc" else None
    names_seen: list[str] = []  # verdicts of the chunk's common-case frames, counted at its end

    def process(chunk: list[Frame]) -> None:
        """Run a chunk of frames, count and write them (what ran before a failure too)."""
        try:
            results = runner.run_many([f.data for f in chunk])
            failure = None
        except Exception as exc:
            results, failure = getattr(exc, "partial", []), exc
        first = state["number"]
        pending: dict[str, list[tuple[Frame, bytes]]] = {}
        nbytes = 0
        number = first
        for frame, (retval, out, target) in zip(chunk, results, strict=False):
            number += 1
            data = frame[1]
            nbytes += len(data)
            if fast is not None and target is None and on_packet is None and retval < len(fast):
                chosen = fast[retval]  # the common case, without a PacketVerdict
                names_seen.append(chosen)
            else:
                verdict = classify(kind, retval, data, out, target)
                chosen = verdict.verdict
                counts[chosen] = counts.get(chosen, 0) + 1
                if verdict.target is not None:
                    named = f"{chosen}:{verdict.target}"
                    counts[named] = counts.get(named, 0) + 1
                    if named in outputs:
                        chosen = named
                out = verdict.data
                if on_packet is not None:
                    on_packet(number, verdict)
            if out is not None and chosen in outputs:
                found = pending.get(chosen)
                if found is None:
                    found = pending[chosen] = []
                found.append((frame, out))
        state["number"] = number
        state["bytes"] += nbytes
        for name, n in Counter(names_seen).items():
            counts[name] = counts.get(name, 0) + n
        names_seen.clear()
        for name, items in pending.items():
            sink.write_many(name, items, items[0][0][4])
        chunk.clear()
        if failure is not None:
            index = getattr(failure, "packet_index", None)
            failure.packet_index = first + (index or 0)
            raise failure
        if progress is not None:
            progress(state["number"], state["bytes"])

    start = time.perf_counter()
    try:
        with open_capture(capture) as cap:
            if cap.linktype is not None:
                linktype = cap.linktype
            chunk: list[Frame] = []
            try:
                for frame in cap:
                    if frame.linktype != LinkType.ETHERNET:
                        process(chunk)
                        raise NotSupportedError(
                            f"packet {state['number'] + 1}: link type {frame.linktype} (only "
                            "Ethernet frames run through packet programs)",
                            feature="linktype",
                        )
                    linktype = frame.linktype
                    chunk.append(frame)
                    if len(chunk) >= CHUNK:
                        process(chunk)
            except CaptureError as err:
                summary.error = err
            process(chunk)
    finally:
        summary.seconds = time.perf_counter() - start
        summary.packets, summary.bytes = state["number"], state["bytes"]
        verdicts.update(counts)
        runner.close()
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
