"""Live links: an XDP or tc program attached to a network interface from user space (AF_PACKET).

``LiveLink(program, "veth1", to="veth2")`` is an ``xdpgeneric``-like attachment run by this
process (Linux, root): every frame received on ``dev`` (frames the host sends on it, ours
included, are ignored; the device is made promiscuous) runs through the program with
``ingress_ifindex`` set to the device's index, and its verdict says where it goes:

- XDP ``pass`` (tc ``ok``, ``unspec``, ``pipe``, ``reclassify``, ``repeat``): out of the
  ``to`` interface (or into a TAP device, ``to="tap:NAME"``: the host's stack receives it
  there); without ``to`` it is only counted (the host's own stack saw the frame anyway:
  an AF_PACKET socket taps, it does not intercept);
- XDP ``tx``: back out of ``dev``, as the program left it;
- XDP ``redirect`` to a known ifindex (``bpf_redirect``, a devmap; tc ``redirect``): out
  of that interface; an unknown target is dropped;
- XDP ``drop``/``aborted`` (tc ``shot``, ``stolen``, ``queued``, ``trap``): gone. A run that
  fails counts as ``aborted`` (and under ``errors``).

Frames cross the kernel boundary through PACKET_MMAP rings where the kernel allows them
(:class:`~pybpf.hooks.live_ring.RingPort`: a receive ring the link reads a batch of frames
from, transmit rings the forwarded frames are queued on and sent with one system call per
batch and interface); otherwise (old kernel, no memory, ``ring=False``) through one
``recvmsg`` and one ``send`` per frame (:class:`~pybpf.hooks.live_port.PacketPort`). The
link's record says which (``io``: ``ring`` or ``socket``, and ``io_fallback``: why the
rings could not be used). A batch of frames goes through the program in one call into the
runner (:class:`~pybpf.hooks.packetrun.PacketRunner`: the JIT's batch loop where the
program's helpers allow it, frame by frame otherwise).

Frames arriving on ``to`` go back out of ``dev`` unchanged (``return_path``; a bump in the
wire, so ARP and replies work); the program sees one direction only. The frames the program
modified are sent as modified. :attr:`LiveLink.counters` counts ``rx`` frames and bytes, each
verdict, and what was ``forwarded``, ``transmitted``, ``redirected``, ``returned`` or could
not be sent (``send_errors``; a frame counts as sent once the interface took it, on a ring
when it is queued), ``rx_overruns``: frames the kernel dropped before the program saw them
because this process did not read them in time, and ``rx_truncated``: frames longer than
what the receive ring or buffer holds (a ring block, 128 KiB; 64 KiB), which arrive cut
and are never run. The link is recorded in the state directory
(:class:`~pybpf.hooks.link.Link`: ``net show``, ``link show``; another process ends it
with :func:`~pybpf.hooks.link.detach_remote`, which signals this one).
:meth:`LiveLink.serve` runs the receive loop until the link is detached or ``stop()`` says
so; :meth:`LiveLink.poll` handles what is waiting once.
"""

from __future__ import annotations

import errno
import select
import time
from collections import Counter
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from pybpf.errors import InputError, SyscallError

from .link import Link
from .live_port import PacketPort, Port, TapPort, interface_name
from .packetrun import PacketRunner, program_kind
from .runner import TC_ACTIONS, XDP_ACTIONS, classify

__all__ = ["LiveLink", "open_port", "PASS_VERDICTS", "DROP_VERDICTS"]

PASS_VERDICTS = frozenset({"pass", "ok", "unspec", "pipe", "reclassify", "repeat"})
DROP_VERDICTS = frozenset({"drop", "aborted", "shot", "stolen", "queued", "trap"})
_BATCH = 256
_STATS_EVERY = 0.05  # seconds between reads of the kernel's drop counter


def open_port(spec: str, *, ring: bool = False, receive: bool = True) -> Port:
    """A port for ``spec``: ``tap:NAME`` (a TAP device, created if missing) or an interface
    name (an AF_PACKET socket; with ``ring``, PACKET_MMAP rings, receiving only if
    ``receive``)."""
    if spec.startswith("tap:"):
        return TapPort(spec[4:])
    if ring:
        from .live_ring import RingPort

        return RingPort(spec, receive=receive)
    return PacketPort(spec)


def _why(exc: SyscallError) -> str:
    code = getattr(exc, "errno", None)
    name = errno.errorcode.get(code, str(code)) if isinstance(code, int) else str(code)
    return f"{getattr(exc, 'command', 'rings')}: {name}"


class LiveLink(Link):
    """``program`` attached to interface ``dev`` (see the module docstring).

    ``to``: where passed frames go (an interface name or ``tap:NAME``); ``promiscuous``:
    receive frames addressed to any MAC; ``return_path``: send what arrives on ``to`` back
    out of ``dev``; ``batch``: frames run together at most (the JIT's batch loop where the
    program allows it). ``ring``: ``None`` (default) uses PACKET_MMAP rings where the
    kernel sets them up and the per-frame socket path otherwise, ``True`` requires the
    rings (:class:`~pybpf.errors.SyscallError` when refused), ``False`` keeps to the
    socket path. ``state``: the state directory for the link record. ``io`` says which
    path is used (``ring`` or ``socket``).
    """

    def __init__(
        self,
        program: Any,
        dev: str,
        *,
        to: str | None = None,
        promiscuous: bool = True,
        return_path: bool = True,
        batch: int = _BATCH,
        ring: bool | None = None,
        state: Any = None,
    ) -> None:
        kind = program_kind(getattr(program, "type", None))
        if kind not in ("xdp", "tc"):
            raise InputError(f"{kind} programs do not attach to links (xdp or tc)", field="program")
        if to is not None and to == dev:
            raise InputError("--to must name another interface than --dev", field="to")
        self.kind = kind
        self.batch = max(int(batch), 1)
        self.counters: Counter = Counter()
        self.io = "socket"
        fallback = None
        self.port: Port
        if ring is False:
            self.port = PacketPort(dev, promiscuous=promiscuous)
        else:
            from .live_ring import RingPort

            try:
                self.port = RingPort(dev, promiscuous=promiscuous)
                self.io = "ring"
            except SyscallError as exc:
                if ring:
                    raise
                fallback = _why(exc)
                self.port = PacketPort(dev, promiscuous=promiscuous)
        self.out: Port | None = None
        self.runner: PacketRunner | None = None
        self._ports: dict[int, Port] = {}
        try:
            if to is not None:
                self.out = self._open(to, receive=return_path)
            self.runner = PacketRunner(program, ingress_ifindex=self.port.ifindex)
        except BaseException:
            self._close_ports()
            raise
        self.return_path = return_path and self.out is not None
        target = {
            "devname": dev,
            "ifindex": self.port.ifindex,
            "attach_type": "xdp" if kind == "xdp" else "tc_ingress",
            "mode": "user",
            "prog_id": getattr(program, "id", 0),
            "engine": self.runner.engine,
            "batched": self.runner.batched,
            "io": self.io,
        }
        if fallback is not None:
            target["io_fallback"] = fallback
        if self.out is not None:
            target.update(to=to, to_ifindex=self.out.ifindex)
        self._ports[self.port.ifindex] = self.port
        if self.out is not None:
            self._ports[self.out.ifindex] = self.out
        self._names = XDP_ACTIONS if kind == "xdp" else TC_ACTIONS
        self._busy = False
        self._stats_at = 0.0
        try:
            super().__init__(program, kind, target, state=state)
        except BaseException:
            self._close_ports()
            raise

    def _open(self, spec: str, *, receive: bool = True) -> Port:
        """A port on the link's path (rings when ``dev`` has them, else a socket)."""
        if self.io == "ring" and not spec.startswith("tap:"):
            try:
                return open_port(spec, ring=True, receive=receive)
            except SyscallError:
                pass
        return open_port(spec)

    # ---- the loop -------------------------------------------------------------------------
    def poll(self, timeout: float = 0.1) -> int:
        """Handle the frames waiting (wait up to ``timeout`` seconds for the first); returns
        how many frames arrived on ``dev``."""
        if not self.attached:
            return 0
        try:
            return self._poll(timeout)
        except (OSError, ValueError):  # closed under us (a signal detached the link)
            if not self.attached:
                return 0
            raise

    def _poll(self, timeout: float) -> int:
        port = self.port
        back = self.out if self.return_path else None
        if self._busy or port.pending() or (back is not None and back.pending()):
            from_dev = from_back = True  # frames are waiting: no need to ask the kernel
        else:
            waits = [port] if back is None else [port, back]
            try:
                ready, _, _ = select.select(waits, [], [], timeout)
            except InterruptedError:
                ready = []
            from_dev, from_back = port in ready, back is not None and back in ready
        handled = returned = 0
        if from_back:
            frames = back.receive(self.batch)
            returned = len(frames)
            if frames:
                self._queue_many(port, frames, "returned")
        if from_dev:
            frames = port.receive(self.batch)
            if frames:
                self.handle(frames)
                handled = len(frames)
            cut = port.truncated()
            if cut:
                self.counters["rx_truncated"] += cut
        self._busy = handled >= self.batch or returned >= self.batch
        self._flush()
        now = time.monotonic()
        if now >= self._stats_at:
            self._stats_at = now + _STATS_EVERY
            self._count_overruns()
        return handled

    def _count_overruns(self) -> None:
        lost = self.port.overruns()
        if lost:
            self.counters["rx_overruns"] += lost

    def handle(self, frames: list[bytes]) -> None:
        """Run ``frames`` (received on ``dev``) through the program and route them."""
        counters = self.counters
        counters["rx"] += len(frames)
        counters["rx_bytes"] += sum(map(len, frames))
        runner = self.runner
        assert runner is not None
        pending = frames
        while pending:
            try:
                results = runner.run_many(pending)
                rest: list[bytes] = []
            except Exception as exc:  # the failing frame counts as aborted; go on after it
                results = getattr(exc, "partial", [])
                done = len(results)
                counters["errors"] += 1
                counters["aborted"] += 1
                self.last_error = exc
                rest = pending[done + 1 :]
            self._route_all(pending, results)
            pending = rest
        self._flush()

    def _route_all(self, frames: list[bytes], results: list) -> None:
        """Count each result's verdict and queue its frame where the verdict sends it
        (in their order within each verdict: passed, transmitted, redirected)."""
        names, known = self._names, len(self._names)
        default = "aborted" if self.kind == "xdp" else "unspec"
        counters = self.counters
        codes = Counter(map(itemgetter(0), results))  # a batch has a few distinct verdicts
        verdicts = {code: names[code] if code < known else default for code in codes}
        for code, count in codes.items():
            counters[verdicts[code]] += count
        passing = {c for c, name in verdicts.items() if name in PASS_VERDICTS}
        if passing and self.out is not None:
            if len(passing) == len(codes):
                forward = list(map(itemgetter(1), results))
            else:
                forward = [data for code, data, _ in results if code in passing]
            self._queue_many(self.out, forward, "forwarded")
        back = {c for c, name in verdicts.items() if name == "tx"}
        if back:
            frames_back = [data for code, data, _ in results if code in back]
            self._queue_many(self.port, frames_back, "transmitted")
        if "redirect" in verdicts.values():
            for frame, (code, data, target) in zip(frames, results, strict=False):
                if verdicts[code] == "redirect":
                    self._redirect(classify(self.kind, code, frame, data, target))

    def _redirect(self, verdict) -> None:
        counters = self.counters
        if verdict.target is None:
            counters["redirect_unknown"] += 1
            return
        counters[f"redirect:{verdict.target}"] += 1
        port = self._port_for(verdict.target)
        if port is None:
            counters["redirect_unknown"] += 1
        else:
            self._queue(port, verdict.data, "redirected")

    def _queue(self, port: Port, frame: bytes | None, what: str) -> None:
        if frame is not None and port.queue(frame, what):
            self.counters[what] += 1
        else:
            self.counters["send_errors"] += 1

    def _queue_many(self, port: Port, frames: list[bytes], what: str) -> None:
        taken = port.queue_many(frames, what)
        self.counters[what] += taken
        if taken < len(frames):
            self.counters["send_errors"] += len(frames) - taken

    def _flush(self) -> None:
        """Send what the ports queued; frames refused now no longer count as sent."""
        counters = self.counters
        for port in self._ports.values():
            for what in port.flush():
                counters[what] -= 1
                counters["send_errors"] += 1

    def _port_for(self, ifindex: int) -> Port | None:
        port = self._ports.get(ifindex)
        if port is None:
            try:
                port = self._open(interface_name(ifindex), receive=False)
            except Exception:  # no such interface (or not ours to open): the frame is dropped
                return None
            self._ports[ifindex] = port
        return port

    def serve(
        self,
        stop: Callable[[], bool] | None = None,
        *,
        tick: Callable[[LiveLink], None] | None = None,
        interval: float = 1.0,
        duration: float | None = None,
    ) -> Counter:
        """Run the loop until the link is detached, ``stop()`` is true or ``duration``
        seconds passed; ``tick(link)`` every ``interval`` seconds. Returns the counters."""
        started = last = time.monotonic()
        while self.attached and not (stop is not None and stop()):
            self.poll(0.1)
            now = time.monotonic()
            if tick is not None and now - last >= interval:
                last = now
                tick(self)
            if duration is not None and now - started >= duration:
                break
        return self.counters

    def stats(self) -> dict[str, Any]:
        """The link and its counters, JSON-ready."""
        out = self.record.to_json()
        out["counters"] = dict(sorted(self.counters.items()))
        return out

    # ---- lifetime -------------------------------------------------------------------------
    def _close_ports(self) -> None:
        ports = {id(p): p for p in (self.port, self.out, *self._ports.values()) if p is not None}
        for port in ports.values():
            port.close()
        self._ports.clear()
        if self.runner is not None:
            self.runner.close()

    def _detach(self) -> None:
        try:
            self._flush()
            self._count_overruns()
        except (OSError, ValueError):
            pass
        self._close_ports()
