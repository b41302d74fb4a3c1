"""Live links: an XDP or tc program attached to a network interface from user space (AF_PACKET).

``LiveLink(program, "veth1", to="veth2")`` is an ``xdpgeneric``-like attachment run by this
process (Linux, root): every frame received on ``dev`` (:class:`~pybpf.hooks.live_port.PacketPort`;
frames the host sends on it, ours included, are ignored; the device is made promiscuous) runs
through the program with ``ingress_ifindex`` set to the device's index, and its verdict says
where it goes:

- XDP ``pass`` (tc ``ok``, ``unspec``, ``pipe``, ``reclassify``, ``repeat``): out of the
  ``to`` interface (or into a TAP device, ``to="tap:NAME"``: the host's stack receives it
  there); without ``to`` it is only counted (the host's own stack saw the frame anyway:
  an AF_PACKET socket taps, it does not intercept);
- XDP ``tx``: back out of ``dev``, as the program left it;
- XDP ``redirect`` to a known ifindex (``bpf_redirect``, a devmap; tc ``redirect``): out
  of that interface; an unknown target is dropped;
- XDP ``drop``/``aborted`` (tc ``shot``, ``stolen``, ``queued``, ``trap``): gone. A run that
  fails counts as ``aborted`` (and under ``errors``).

Frames arriving on ``to`` go back out of ``dev`` unchanged (``return_path``; a bump in the
wire, so ARP and replies work); the program sees one direction only. The frames the program
modified are sent as modified. :attr:`LiveLink.counters` counts ``rx`` frames and bytes, each
verdict, and what was ``forwarded``, ``transmitted``, ``redirected``, ``returned`` or could
not be sent (``send_errors``), and ``rx_overruns``: frames the kernel dropped before the
program saw them because this process did not read them in time. The link is recorded in
the state directory (:class:`~pybpf.hooks.link.Link`: ``net show``, ``link show``; another
process ends it with :func:`~pybpf.hooks.link.detach_remote`, which signals this one).
:meth:`LiveLink.serve` runs the receive loop until the link is detached or ``stop()`` says
so; :meth:`LiveLink.poll` handles what is waiting once.
"""

from __future__ import annotations

import select
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from pybpf.errors import InputError

from .link import Link
from .live_port import PacketPort, Port, TapPort, interface_name
from .packetrun import PacketRunner, program_kind
from .runner import classify

__all__ = ["LiveLink", "open_port", "PASS_VERDICTS", "DROP_VERDICTS"]

PASS_VERDICTS = frozenset({"pass", "ok", "unspec", "pipe", "reclassify", "repeat"})
DROP_VERDICTS = frozenset({"drop", "aborted", "shot", "stolen", "queued", "trap"})
_BATCH = 256


def open_port(spec: str) -> Port:
    """A port for ``spec``: ``tap:NAME`` (a TAP device, created if missing) or an interface
    name (an AF_PACKET socket)."""
    if spec.startswith("tap:"):
        return TapPort(spec[4:])
    return PacketPort(spec)


class LiveLink(Link):
    """``program`` attached to interface ``dev`` (see the module docstring).

    ``to``: where passed frames go (an interface name or ``tap:NAME``); ``promiscuous``:
    receive frames addressed to any MAC; ``return_path``: send what arrives on ``to`` back
    out of ``dev``; ``batch``: frames run together at most (the JIT's batch loop where the
    program allows it). ``state``: the state directory for the link record.
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
        self.port: Port = PacketPort(dev, promiscuous=promiscuous)
        self.out: Port | None = None
        self.runner: PacketRunner | None = None
        self._ports: dict[int, Port] = {}
        try:
            if to is not None:
                self.out = open_port(to)
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
        }
        if self.out is not None:
            target.update(to=to, to_ifindex=self.out.ifindex)
        self._ports[self.port.ifindex] = self.port
        if self.out is not None:
            self._ports[self.out.ifindex] = self.out
        try:
            super().__init__(program, kind, target, state=state)
        except BaseException:
            self._close_ports()
            raise

    # ---- the loop -------------------------------------------------------------------------
    def poll(self, timeout: float = 0.1) -> int:
        """Handle the frames waiting (wait up to ``timeout`` seconds for the first); returns
        how many frames arrived on ``dev``."""
        if not self.attached:
            return 0
        waits = [self.port] + ([self.out] if self.return_path and self.out else [])
        try:
            ready, _, _ = select.select(waits, [], [], timeout)
        except InterruptedError:
            return 0
        except (OSError, ValueError):  # closed under us (a signal detached the link)
            return 0
        handled = 0
        if self.out is not None and self.out in ready:
            for frame in self.out.receive(self.batch):
                self._send(self.port, frame, "returned")
        if self.port in ready:
            frames = self.port.receive(self.batch)
            if frames:
                self.handle(frames)
                handled = len(frames)
            lost = self.port.overruns()
            if lost:
                self.counters["rx_overruns"] += lost
        return handled

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
            for frame, (retval, out, target) in zip(pending, results, strict=False):
                self._route(classify(self.kind, retval, frame, out, target), counters)
            pending = rest

    def _route(self, verdict, counters: Counter) -> None:
        name = verdict.verdict
        counters[name] += 1
        if name in PASS_VERDICTS:
            if self.out is not None:
                self._send(self.out, verdict.data, "forwarded")
        elif name == "tx":
            self._send(self.port, verdict.data, "transmitted")
        elif name == "redirect":
            if verdict.target is None:
                counters["redirect_unknown"] += 1
                return
            counters[f"redirect:{verdict.target}"] += 1
            port = self._port_for(verdict.target)
            if port is None:
                counters["redirect_unknown"] += 1
            else:
                self._send(port, verdict.data, "redirected")

    def _send(self, port: Port, frame: bytes | None, what: str) -> None:
        if frame is not None and port.send(frame):
            self.counters[what] += 1
        else:
            self.counters["send_errors"] += 1

    def _port_for(self, ifindex: int) -> Port | None:
        port = self._ports.get(ifindex)
        if port is None:
            try:
                port = PacketPort(interface_name(ifindex))
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
        self._close_ports()
