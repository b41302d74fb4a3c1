"""Net commands: packet programs run over capture files (``net run``) and attached to links.

``pybpf net run OBJ --program P --pcap IN [--out VERDICT=FILE ...] [--engine E]
[--ingress-ifindex N] [--rx-queue N] [--json]`` runs the program on each frame of a pcap or
pcapng file (:func:`pybpf.hooks.runner.run_capture`) and writes frames to one capture per
verdict (``--out pass=p.pcap --out tx=t.pcap --out drop=d.pcapng --out redirect:3=r3.pcap``;
the format from the file name). It prints a summary (packets, bytes, verdict counts,
packets/s), as JSON with ``--json``. A truncated capture has every complete frame run and
written, the summary printed, then one ``Error: ...`` line naming the packet number and exit
status 2. A progress bar goes to stderr for long files when stderr is a terminal.

``pybpf net attach xdp|tc OBJ --program P --dev IF [--to IF2|tap:NAME] [--engine E]
[--duration S] [--json]`` attaches the program to interface ``IF`` from user space
(:class:`pybpf.hooks.live.LiveLink`: AF_PACKET, an ``xdpgeneric``-like mode; Linux, root)
and runs until SIGINT/SIGTERM (or ``--duration`` seconds), showing live counters on a
terminal's stderr; at the end it prints the counters (one JSON record with ``--json``).
The link is recorded in the state directory: ``pybpf net show`` lists attached links as
``bpftool net show`` does (``[{"xdp": [...], "tc": [...]}]``: devname, ifindex, mode, id
(the program's), name, link_id, pid), ``pybpf net detach xdp --dev IF`` ends them (it signals
the attaching process and waits for the link to go), as ``pybpf link detach id N`` does.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from pybpf.errors import CaptureError, InputError

__all__ = ["COMMANDS", "parse_outputs", "net_records", "wait_gone"]

_PATH = click.Path(dir_okay=False, path_type=Path)
_PROGRESS_MIN_BYTES = 1 << 20  # a bar only for files this long


def parse_outputs(specs: tuple[str, ...]) -> dict[str, str]:
    """``("pass=p.pcap", "redirect:3=r.pcap")`` -> ``{"pass": "p.pcap", ...}``."""
    outputs: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        name = name.strip().lower()
        if not sep or not name or not path:
            raise InputError(f"--out takes VERDICT=FILE, not {spec!r}", field="out")
        if name in outputs:
            raise InputError(f"--out {name} given twice", field="out")
        outputs[name] = path
    return outputs


def _summary_text(s: dict[str, Any]) -> str:
    verdicts = ", ".join(f"{k} {v}" for k, v in s["verdicts"].items()) or "none"
    lines = [
        f"{s['program']} ({s['type']}): {s['packets']} packets, {s['bytes']} bytes, "
        f"{s['seconds']:.3f}s, {s['packets_per_second']:.0f} packets/s",
        f"verdicts: {verdicts}",
    ]
    if s["written"]:
        lines.append("written: " + ", ".join(f"{k} {v}" for k, v in s["written"].items()))
    return "\n".join(lines)


@click.group("net")
def net_group() -> None:
    """Run packet programs over captures, attach them to network interfaces.

    \b
    Examples:
      pybpf net run xdp_counter.o --program xdp_count --pcap in.pcap \\
          --out pass=pass.pcap --out drop=drop.pcapng
      pybpf net attach xdp drop_empty_udp.o --dev veth1 --to veth2
      pybpf net show
      pybpf net detach xdp --dev veth1
    """


@net_group.command("run")
@click.argument("file", type=_PATH)
@click.option("--program", "program", metavar="NAME", help="Default: the only program.")
@click.option("--pcap", "pcap", required=True, type=_PATH, help="Input capture (pcap/pcapng).")
@click.option(
    "--out",
    "outs",
    multiple=True,
    metavar="VERDICT=FILE",
    help="Write frames with this verdict (pass, drop, tx, redirect:N, shot, ...) to FILE.",
)
@click.option(
    "--engine",
    type=click.Choice(["interpreter", "jit", "kernel"]),
    default="interpreter",
    show_default=True,
    help="The portable backend's engine, or kernel (Linux's BPF_PROG_TEST_RUN).",
)
@click.option("--ingress-ifindex", type=click.IntRange(min=0), default=None, metavar="N")
@click.option("--rx-queue", type=click.IntRange(min=0), default=0, metavar="N")
@click.option("--json", "json_flag", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def net_run(
    out,
    file: Path,
    program: str | None,
    pcap: Path,
    outs: tuple[str, ...],
    engine: str,
    ingress_ifindex: int | None,
    rx_queue: int,
    json_flag: bool,
) -> None:
    """Run a packet program on every frame of a capture; write frames per verdict.

    \b
    Example:
      pybpf net run examples/c/drop_empty_udp.o --pcap examples/captures/mixed.pcap
      pybpf -j net run examples/c/xdp_counter.o --pcap in.pcap --out pass=p.pcap
    """
    from pybpf.hooks.runner import capture_size, run_capture
    from pybpf.objects import Object

    if json_flag:
        out.json = True
    outputs = parse_outputs(outs)
    size = capture_size(pcap) or 0
    bar = None
    if size >= _PROGRESS_MIN_BYTES and sys.stderr.isatty():
        bar = click.progressbar(length=size, label="packets", file=sys.stderr)
    state = {"seen": 0}

    def progress(packets: int, nbytes: int) -> None:
        if bar is None:
            return
        done = min(nbytes + 16 * packets, size)  # record headers: 16 bytes each (pcap)
        bar.update(max(done - state["seen"], 0))
        state["seen"] = max(done, state["seen"])

    error: CaptureError | None = None
    options = {"backend": "kernel"} if engine == "kernel" else {"engine": engine}
    with Object.open(file).load(**options) as obj:
        prog = obj.program(_pick_program(obj, program))
        try:
            if bar is not None:
                with bar:
                    summary = run_capture(
                        prog, pcap, outputs, ingress_ifindex=ingress_ifindex,
                        rx_queue=rx_queue, progress=progress,
                    )
            else:
                summary = run_capture(
                    prog, pcap, outputs, ingress_ifindex=ingress_ifindex, rx_queue=rx_queue
                )
        except CaptureError as err:
            found = getattr(err, "summary", None)
            if found is None:  # not even the file header: nothing ran
                raise
            summary, error = found, err
    record = summary.as_dict()
    record["engine"] = engine
    if out.json:
        out.emit_json(record)
    else:
        click.echo(_summary_text(record))
    if error is not None:
        click.echo(f"Error: {error}", err=True)
        raise click.exceptions.Exit(2)


def _pick_program(obj: Any, program: str | None) -> str:
    if program is None:
        if len(obj.programs) != 1:
            names = ", ".join(obj.programs) or "none"
            raise InputError(f"give --program NAME (the object's programs: {names})")
        program = next(iter(obj.programs))
    return program


def _counters_text(counters: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counters.items())) or "no frames"


@net_group.command("attach")
@click.argument("attach_type", type=click.Choice(["xdp", "xdpgeneric", "tc"]), metavar="xdp|tc")
@click.argument("file", type=_PATH)
@click.option("--program", "program", metavar="NAME", help="Default: the only program.")
@click.option("--dev", required=True, metavar="IF", help="The interface whose frames it sees.")
@click.option(
    "--to", "to", metavar="IF2|tap:NAME", help="Where passed frames go (and replies come from)."
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "interpreter", "jit"]),
    default="auto",
    show_default=True,
    help="auto: the JIT where llvmlite is installed.",
)
@click.option("--no-promisc", is_flag=True, help="Leave the interface's promiscuity alone.")
@click.option("--duration", type=click.FloatRange(min=0), default=None, metavar="S",
              help="Detach after S seconds.")  # fmt: skip
@click.option("--json", "json_flag", is_flag=True, help="Print the final counters as JSON.")
@click.pass_obj
def net_attach(
    out,
    attach_type: str,
    file: Path,
    program: str | None,
    dev: str,
    to: str | None,
    engine: str,
    no_promisc: bool,
    duration: float | None,
    json_flag: bool,
) -> None:
    """Attach a program to a network interface until stopped (SIGINT, SIGTERM).

    \b
    Example:
      pybpf net attach xdp examples/c/drop_empty_udp.o --dev veth1 --to veth2 --engine jit
    """
    from pybpf.hooks.live import LiveLink
    from pybpf.objects import Object

    if json_flag:
        out.json = True
    if engine == "auto":
        from pybpf.jit import available

        engine = "jit" if available() else "interpreter"
    stopping = {"signal": None}

    def stop(signum, _frame) -> None:
        stopping["signal"] = signum

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Object.open(file).load(engine=engine) as obj:
            prog = obj.program(_pick_program(obj, program))
            from pybpf.hooks.packetrun import program_kind

            kind = "tc" if attach_type == "tc" else "xdp"
            found = program_kind(prog.type)
            if found != kind:
                raise InputError(f"{prog.name} is a {found} program, not {kind}", field="program")
            link = LiveLink(prog, dev, to=to, promiscuous=not no_promisc)
            tty = sys.stderr.isatty() and not out.json

            def tick(live: LiveLink) -> None:
                if tty:
                    click.echo(f"\r{_counters_text(live.counters)}\033[K", err=True, nl=False)

            started = time.monotonic()
            try:
                link.serve(lambda: stopping["signal"] is not None, tick=tick, duration=duration)
            finally:
                link.detach()
            record = link.stats()
            record["seconds"] = round(time.monotonic() - started, 3)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if tty:
        click.echo("", err=True)
    if out.json:
        out.emit_json(record)
    else:
        click.echo(
            f"{record['prog_name']} on {record['devname']}({record['ifindex']}), link "
            f"{record['id']}, {record['seconds']}s: {_counters_text(record['counters'])}"
        )


def _net_links(dev: str | None = None) -> list[Any]:
    from pybpf.hooks.link import list_links

    return [
        r for r in list_links()
        if r.type in ("xdp", "tc") and (dev is None or r.target.get("devname") == dev)
    ]  # fmt: skip


def net_records(dev: str | None = None) -> list[dict[str, Any]]:
    """``bpftool net show -j``'s shape for the live links: ``[{"xdp": [...], "tc": [...]}]``."""
    xdp, tc = [], []
    for rec in _net_links(dev):
        t = rec.target
        row = {"devname": t.get("devname"), "ifindex": t.get("ifindex")}
        if rec.type == "xdp":
            row.update(mode=t.get("mode", "user"), id=t.get("prog_id"), name=rec.prog_name)
            xdp.append(row)
        else:
            row.update(kind="user/ingress", name=rec.prog_name, prog_id=t.get("prog_id"))
            tc.append(row)
        row.update(tag=rec.prog_tag, link_id=rec.id, pid=rec.pid)
        if t.get("to"):
            row["to"] = t["to"]
        if t.get("io"):  # "ring" (PACKET_MMAP) or "socket", and why rings were refused
            row["io"] = t["io"]
            if t.get("io_fallback"):
                row["io_fallback"] = t["io_fallback"]
    return [{"xdp": xdp, "tc": tc}]


@net_group.command("show")
@click.option("--dev", default=None, metavar="IF", help="Only links on this interface.")
@click.pass_obj
def net_show(out, dev: str | None) -> None:
    """List programs attached to network interfaces (bpftool net show).

    \b
    Example:
      pybpf -j net show --dev veth1
    """
    records = net_records(dev)
    if out.json:
        out.emit_json(records)
        return
    lines = ["xdp:"]
    for r in records[0]["xdp"]:
        lines.append(
            f"{r['devname']}({r['ifindex']}) {r['mode']} id {r['id']} name {r['name']} "
            f"link {r['link_id']} pid {r['pid']}" + (f" to {r['to']}" if "to" in r else "")
        )
    lines += ["", "tc:"]
    for r in records[0]["tc"]:
        lines.append(
            f"{r['devname']}({r['ifindex']}) {r['kind']} {r['name']} id {r['prog_id']} "
            f"link {r['link_id']} pid {r['pid']}" + (f" to {r['to']}" if "to" in r else "")
        )
    click.echo("\n".join(lines))


def wait_gone(ids: list[int], timeout: float = 5.0) -> list[int]:
    """Wait until links ``ids`` are gone (their owners detached them); returns those left."""
    from pybpf.hooks.link import list_links

    deadline = time.monotonic() + timeout
    while True:
        left = [r.id for r in list_links() if r.id in ids]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


@net_group.command("detach")
@click.argument("attach_type", type=click.Choice(["xdp", "xdpgeneric", "tc"]), metavar="xdp|tc")
@click.option("--dev", required=True, metavar="IF")
@click.pass_obj
def net_detach(out, attach_type: str, dev: str) -> None:
    """Detach the programs attached to an interface (signals the attaching process).

    \b
    Example:
      pybpf net detach xdp --dev veth1
    """
    from pybpf.errors import PybpfError
    from pybpf.hooks.link import detach_remote

    kind = "tc" if attach_type == "tc" else "xdp"
    found = [r for r in _net_links(dev) if r.type == kind]
    if not found:
        raise InputError(f"no {kind} program attached to {dev}", field="dev")
    ids = []
    for rec in found:
        detach_remote(rec.id)
        ids.append(rec.id)
    left = wait_gone(ids)
    if left:
        raise PybpfError(f"links {left} did not detach within 5 s")
    if out.json:
        out.emit_json({"detached": ids})
    else:
        click.echo(f"detached {kind} link(s) {', '.join(map(str, ids))} from {dev}")


COMMANDS = (net_group,)
