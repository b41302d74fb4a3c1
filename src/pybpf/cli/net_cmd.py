"""Net commands: ``pybpf net run`` runs an XDP, tc or socket-filter program over a capture file.

``pybpf net run OBJ --program P --pcap IN [--out VERDICT=FILE ...] [--engine E]
[--ingress-ifindex N] [--rx-queue N] [--json]`` runs the program on each frame of a pcap or
pcapng file (:func:`pybpf.hooks.runner.run_capture`) and writes frames to one capture per
verdict (``--out pass=p.pcap --out tx=t.pcap --out drop=d.pcapng --out redirect:3=r3.pcap``;
the format from the file name). It prints a summary (packets, bytes, verdict counts,
packets/s), as JSON with ``--json``. A truncated capture has every complete frame run and
written, the summary printed, then one ``Error: ...`` line naming the packet number and exit
status 2. A progress bar goes to stderr for long files when stderr is a terminal.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pybpf.errors import CaptureError, InputError

__all__ = ["COMMANDS", "parse_outputs"]

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
    """Run packet programs over captures (and, later, attach them to links).

    \b
    Example:
      pybpf net run xdp_counter.o --program xdp_count --pcap in.pcap \\
          --out pass=pass.pcap --out drop=drop.pcapng
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
    """Run a packet program on every frame of a capture; write frames per verdict."""
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
        if program is None:
            if len(obj.programs) != 1:
                names = ", ".join(obj.programs) or "none"
                raise InputError(f"give --program NAME (the object's programs: {names})")
            program = next(iter(obj.programs))
        prog = obj.program(program)
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


COMMANDS = (net_group,)
