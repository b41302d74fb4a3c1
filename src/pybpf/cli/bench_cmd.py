"""Bench command: ``pybpf bench``, one program's cost per run in each engine, side by side.

``pybpf bench OBJ [--program P] [--data-in F | --size N] [--ctx-in F] [--engine E ...]``
loads the object once per engine (the interpreter, the JIT and, where ``bpf()`` works, the
kernel through ``BPF_PROG_TEST_RUN``), runs the program on the same input with a repeat
count sized to take about ``--seconds`` per engine (at most ``--repeat``), and prints the
mean ns per run, the ratio to the kernel's JIT (or to pybpf's JIT where the kernel is not
available), the load time and the return value. Engines that give different results
(return value or output packet) are reported and the command exits 1: a benchmark of
programs that disagree measures nothing. An engine that cannot load the program is listed
with the reason. The suite of ``benchmarks/`` (in the repository) compares many programs
and native C; this command measures the user's own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from pybpf.errors import InputError, PybpfError

__all__ = ["bench", "measure"]

ENGINES = ("interpreter", "jit", "kernel")


def _pick(obj: Any, name: str | None) -> Any:
    if name is not None:
        if name not in obj.programs:
            raise InputError(
                f"no program {name!r} (programs: {', '.join(sorted(obj.programs))})",
                field="program",
            )
        return obj.programs[name]
    if len(obj.programs) != 1:
        raise InputError(
            f"the object has {len(obj.programs)} programs; choose one with --program "
            f"({', '.join(sorted(obj.programs))})",
            field="program",
        )
    return next(iter(obj.programs.values()))


def measure(
    path: Path,
    engine: str,
    program: str | None,
    data_in: bytes,
    ctx_in: bytes | None,
    *,
    seconds: float = 0.2,
    max_repeat: int = 1_000_000,
) -> dict[str, Any]:
    """One engine's row: ``engine``, ``program``, ``ns_per_run``, ``repeat``, ``load_ms``,
    ``retval``, ``data_out`` (hex); or ``engine`` and ``error`` when it cannot run it."""
    from pybpf.objects import Object

    started = time.perf_counter()
    try:
        obj = Object.open(path)
    except PybpfError:
        raise
    try:
        try:
            if engine == "kernel":
                obj.load(backend="kernel", pin_maps_dir=None)
            else:
                obj.load(engine=engine)
        except PybpfError as err:
            if isinstance(err, InputError) and engine != "kernel":
                raise
            return {"engine": engine, "error": str(err)}
        load_ms = (time.perf_counter() - started) * 1000
        prog = _pick(obj, program)
        first = prog.test_run(data_in, ctx_in)
        probe = prog.test_run(data_in, ctx_in, repeat=10)
        per_run = max(int(probe.duration), 1)
        repeat = max(1, min(max_repeat, int(seconds * 1e9 / per_run)))
        result = prog.test_run(data_in, ctx_in, repeat=repeat)
        return {
            "engine": engine,
            "program": prog.name,
            "ns_per_run": int(result.duration),
            "repeat": repeat,
            "load_ms": round(load_ms, 2),
            "retval": first.retval,
            "data_out": first.data_out.hex(),
        }
    finally:
        obj.close()


def _kernel_available() -> str | None:
    try:
        from pybpf import syscall

        with syscall.map_create(syscall.MapType.ARRAY, 4, 4, 1):
            return None
    except (PybpfError, OSError, AttributeError) as err:
        return f"bpf() is not available: {err}"


@click.command("bench")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--program", metavar="NAME", help="The program to measure (default: the only one).")
@click.option(
    "--data-in",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The packet (default: --size zero bytes).",
)
@click.option("--size", type=click.IntRange(0, 65535), default=64, show_default=True)
@click.option("--ctx-in", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "-e",
    "--engine",
    "engines",
    type=click.Choice(ENGINES),
    multiple=True,
    help="Engines to measure (repeatable; default: all, the kernel where bpf() works).",
)
@click.option(
    "--seconds",
    type=click.FloatRange(0.001, 60),
    default=0.2,
    show_default=True,
    help="About how long each engine runs.",
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 100_000_000),
    default=1_000_000,
    show_default=True,
    help="At most this many runs per engine.",
)
@click.pass_obj
def bench(
    out: Any,
    file: Path,
    program: str | None,
    data_in: Path | None,
    size: int,
    ctx_in: Path | None,
    engines: tuple[str, ...],
    seconds: float,
    repeat: int,
) -> None:
    """Measure one program's cost per run in each engine (ns/run and ratios).

    \b
    Example:
      pybpf bench examples/c/drop_empty_udp.o
      pybpf -j bench examples/c/xdp_counter.o --engine jit --engine kernel --size 128
    """
    packet = data_in.read_bytes() if data_in is not None else bytes(size)
    ctx = ctx_in.read_bytes() if ctx_in is not None else None
    chosen = engines or ENGINES
    rows = []
    for engine in chosen:
        if engine == "kernel":
            reason = _kernel_available()
            if reason is not None:
                rows.append({"engine": engine, "error": reason})
                continue
        rows.append(measure(file, engine, program, packet, ctx, seconds=seconds, max_repeat=repeat))
    ran = [r for r in rows if "error" not in r]
    base = next((r for r in ran if r["engine"] == "kernel"), None) or next(
        (r for r in ran if r["engine"] == "jit"), None
    )
    for r in ran:
        if base is not None:
            r["ratio"] = round(r["ns_per_run"] / max(base["ns_per_run"], 1), 2)
    outcomes = {(r["retval"], r["data_out"]) for r in ran}
    agree = len(outcomes) <= 1
    if out.json:
        out.emit_json(
            {
                "program": next((r["program"] for r in ran), program),
                "baseline": base["engine"] if base else None,
                "agree": agree,
                "results": rows,
            }
        )
    else:
        basename = base["engine"] if base else "-"
        click.echo(
            f"{'engine':<12} {'ns/run':>12} {'x ' + basename:>12} {'repeat':>10} "
            f"{'load ms':>9} {'retval':>8}"
        )
        for r in rows:
            if "error" in r:
                click.echo(f"{r['engine']:<12} unavailable: {r['error']}")
                continue
            ratio = f"{r['ratio']:.2f}" if "ratio" in r else "-"
            click.echo(
                f"{r['engine']:<12} {r['ns_per_run']:>12} {ratio:>12} {r['repeat']:>10} "
                f"{r['load_ms']:>9.1f} {r['retval']:>8}"
            )
        if not agree:
            click.echo("Error: the engines disagree (retval or data_out): see --json", err=True)
    if not agree:
        raise click.exceptions.Exit(1)


COMMANDS = [bench]
