"""Program commands: ``pybpf prog show|run`` on an object file's programs, bpftool's way.

``pybpf prog show OBJ`` loads the object and lists its programs with bpftool's keys
(``id``, ``type``, ``name``, ``tag``, ``gpl_compatible``, ``bytes_xlated``, ``jited``,
``bytes_jited``, ``map_ids``, ``btf_id``; plus pybpf's ``section`` and ``engine``).
``pybpf prog run OBJ --program P --data-in F`` is ``bpftool prog run``: it prints
``Return value: R, duration: Dns`` or, with ``--json``, ``{"data_out": [...], "retval": R,
"duration": D}`` (``data_out``/``ctx_out`` as arrays of byte values, as bpftool prints
them for ``data_out -``; left out when written to a file with ``--data-out FILE``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pybpf.errors import InputError

__all__ = ["COMMANDS", "program_info"]

_PATH = click.Path(dir_okay=False, path_type=Path)
_ENGINE = click.option(
    "--engine",
    type=click.Choice(["interpreter", "jit"]),
    default="interpreter",
    show_default=True,
    help="The portable backend's engine.",
)


def program_info(prog: Any) -> dict[str, Any]:
    """A loaded program as ``bpftool prog show --json`` describes it."""
    from pybpf.objects.loader import gpl_compatible

    jited = prog.engine == "jit"
    return {
        "id": prog.id,
        "type": prog.type.type_name if prog.type is not None else "unspec",
        "name": prog.name,
        "tag": prog.tag,
        "gpl_compatible": gpl_compatible(prog.license),
        "bytes_xlated": 8 * sum(i.slots for i in prog.instructions),
        "jited": jited,
        "bytes_jited": 0,
        "map_ids": prog.map_ids,
        "btf_id": 0,
        "section": prog.section,
        "engine": prog.engine,
    }


def _info_text(r: dict[str, Any]) -> str:
    gpl = "  gpl" if r["gpl_compatible"] else ""
    maps = f"  map_ids {','.join(str(i) for i in r['map_ids'])}" if r["map_ids"] else ""
    jit = f"jited {r['bytes_jited']}B" if r["jited"] else "not jited"
    return (
        f"{r['id']}: {r['type']}  name {r['name']}  tag {r['tag']}{gpl}\n"
        f"\txlated {r['bytes_xlated']}B  {jit}{maps}\n"
        f"\tsection {r['section']}  engine {r['engine']}"
    )


@click.group("prog")
def prog_group() -> None:
    """Load and run programs (bpftool's `prog` verbs).

    \b
    Example:
      pybpf prog show xdp_counter.o
      pybpf -j prog run pipeline.o --program start --ctx-in args.bin
    """


@prog_group.command("show")
@click.argument("file", type=_PATH)
@_ENGINE
@click.pass_obj
def prog_show(out, file: Path, engine: str) -> None:
    """Load an object file and list its programs."""
    from pybpf.objects import Object

    with Object.open(file).load(engine=engine) as obj:
        records = [program_info(p) for p in obj.programs.values()]
    if out.json:
        out.emit_json(records)
    else:
        for record in records:
            click.echo(_info_text(record))


def _read(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror}", path=path) from None


def _write(path: str, data: bytes, what: str) -> None:
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write {what}: {exc.strerror}", path=path) from None


def _hexdump(data: bytes) -> str:
    lines = []
    for i in range(0, len(data), 16):
        chunk = data[i : i + 16]
        lines.append(f"{i:07x} " + " ".join(f"{b:02x}" for b in chunk))
    return "\n".join(lines)


@prog_group.command("run")
@click.argument("file", type=_PATH)
@click.option("--program", "program", metavar="NAME", help="Default: the only program.")
@click.option("--data-in", metavar="FILE", help="Packet or buffer (- for stdin).")
@click.option("--ctx-in", metavar="FILE", help="Context (- for stdin).")
@click.option("--data-out", metavar="FILE", help="Write data_out there (- to print it).")
@click.option("--ctx-out", metavar="FILE", help="Write ctx_out there (- to print it).")
@click.option("--repeat", type=click.IntRange(min=0), default=1, show_default=True)
@_ENGINE
@click.pass_obj
def prog_run(
    out,
    file: Path,
    program: str | None,
    data_in: str | None,
    ctx_in: str | None,
    data_out: str | None,
    ctx_out: str | None,
    repeat: int,
    engine: str,
) -> None:
    """Run a program once or --repeat times (BPF_PROG_TEST_RUN) and print its result."""
    from pybpf.objects import Object

    data = _read(data_in, "data_in") or b""
    ctx = _read(ctx_in, "ctx_in")
    with Object.open(file).load(engine=engine) as obj:
        if program is None:
            if len(obj.programs) != 1:
                names = ", ".join(obj.programs) or "none"
                raise InputError(f"give --program NAME (the object's programs: {names})")
            program = next(iter(obj.programs))
        result = obj.program(program).test_run(data, ctx, repeat)
    record: dict[str, Any] = {}
    for key, value, target in (
        ("data_out", result.data_out, data_out),
        ("ctx_out", result.ctx_out, ctx_out),
    ):
        if value is None or (not value and target is None):
            continue
        if target is not None and target != "-":
            _write(target, value, key)
        elif out.json:
            record[key] = list(value)
        elif target == "-":
            click.echo(_hexdump(value))
    if out.json:
        record["retval"] = result.retval
        record["duration"] = result.duration
        out.emit_json(record)
    else:
        average = " (average)" if repeat > 1 else ""
        click.echo(f"Return value: {result.retval}, duration{average}: {result.duration}ns")


prog_group.add_command(prog_show, "list")

COMMANDS = (prog_group,)
