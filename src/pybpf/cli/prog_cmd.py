"""Program commands: `pybpf prog` show, list, load, loadall, pin, run, dump xlated/jited, tracelog.

Programs are addressed as bpftool does (``id N``, ``pinned PATH``, ``name NAME``, ``tag
TAG``: pinned programs of the state directory) or by object file (loaded for the command,
``--program`` picks one; :mod:`pybpf.cli.target`). ``prog show`` prints bpftool's keys
(``id``, ``type``, ``name``, ``tag``, ``gpl_compatible``, ``bytes_xlated``, ``jited``,
``bytes_jited``, ``map_ids``, ``btf_id``, ``pinned``; plus pybpf's ``section`` and
``engine``). ``prog load OBJ PATH`` / ``prog loadall OBJ DIR`` load and pin (the maps are
held by the pinned program, or pinned with ``pinmaps DIR``). ``prog run`` is ``bpftool
prog run``: ``Return value: R, duration: Dns`` or, with ``--json``, ``{"data_out": [...],
"retval": R, "duration": D}``. ``prog dump xlated|jited`` print the instructions and the
native code. ``prog tracelog`` prints ``bpf_printk`` output that runs left in the state
directory (:class:`pybpf.objects.events.TraceLog`; ``--backend kernel``: the kernel's
``trace_pipe``). With ``--backend kernel`` the same verbs
work on Linux's objects as bpftool does: ``id``/``pinned``/``name`` are the kernel's
(``prog show`` without PROG lists every kernel program) and ``prog load`` pins into the real
bpffs.
"""

from __future__ import annotations

import os
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
_BACKEND = click.option(
    "--backend",
    type=click.Choice(["portable", "kernel"]),
    default="portable",
    show_default=True,
    help="Load object files with pybpf's engines or into Linux (bpf()).",
)
_PROGRAM = click.option("--program", "program", metavar="NAME", help="A program of an object file.")
def _complete(ctx: Any, param: Any, incomplete: str) -> list[Any]:
    from pybpf.cli.target import complete_words

    return complete_words("prog")(ctx, param, incomplete)


_WORDS = click.argument("words", nargs=-1, required=False, shell_complete=_complete)


def program_info(prog: Any) -> dict[str, Any]:
    """A loaded program as ``bpftool prog show --json`` describes it."""
    from pybpf.cli.target import live_program_info

    return live_program_info(prog)


def _loaded_at(seconds: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


def _info_text(r: dict[str, Any]) -> str:
    """bpftool's plain ``prog show`` lines, then pybpf's section and engine."""
    gpl = "  gpl" if r["gpl_compatible"] else ""
    maps = f"  map_ids {','.join(str(i) for i in r['map_ids'])}" if r["map_ids"] else ""
    jit = f"jited {r['bytes_jited']}B" if r["jited"] else "not jited"
    memlock = f"  memlock {r['bytes_memlock']}B" if "bytes_memlock" in r else ""
    runs = f"  run_time_ns {r['run_time_ns']} run_cnt {r['run_cnt']}" if "run_cnt" in r else ""
    lines = [f"{r['id']}: {r['type']}  name {r['name']}  tag {r['tag']}{gpl}{runs}"]
    if r.get("loaded_at"):
        uid = f"  uid {r['uid']}" if "uid" in r else ""
        lines.append(f"\tloaded_at {_loaded_at(r['loaded_at'])}{uid}")
    lines.append(f"\txlated {r['bytes_xlated']}B  {jit}{memlock}{maps}")
    if r.get("btf_id"):
        lines.append(f"\tbtf_id {r['btf_id']}")
    lines.append(f"\tsection {r['section']}  engine {r['engine']}")
    text = "\n".join(lines)
    for pin in r.get("pinned", ()):
        text += f"\n\tpinned {pin}"
    return text


def _emit_infos(out, records: list[dict[str, Any]], single: bool = False) -> None:
    if out.json:
        out.emit_json(records[0] if single and len(records) == 1 else records)
    else:
        for record in records:
            click.echo(_info_text(record))


def _no_more(words: list[str]) -> None:
    if words:
        raise InputError(f"unexpected arguments: {' '.join(words)}")


@click.group("prog")
def prog_group() -> None:
    """Load, pin, inspect and run programs (bpftool's `prog` verbs).

    \b
    PROG := id N | pinned PATH | name NAME | tag TAG | OBJECT.o [--program NAME]
    Example:
      pybpf prog load examples/c/xdp_counter.o /sys/fs/bpf/xc
      pybpf prog show pinned /sys/fs/bpf/xc
      pybpf -j prog run examples/c/pipeline.o --program start --ctx-in args.bin
    """


@prog_group.command("show")
@_WORDS
@_PROGRAM
@_ENGINE
@_BACKEND
@click.pass_obj
def prog_show(out, words: tuple[str, ...], program: str | None, engine: str, backend: str):
    """Show pinned programs (no PROG), one program, or an object file's programs.

    \b
    Example:
      pybpf prog show
      pybpf -j prog show id 3
      pybpf prog show examples/c/xdp_counter.o --backend kernel
    """
    if not words and backend == "kernel":
        from pybpf.cli.target import kernel_records

        _emit_infos(out, kernel_records("prog"))
        return
    if not words:
        from pybpf.objects.pinned import list_programs

        _emit_infos(out, [r.to_json() for r in list_programs()])
        return
    every = words[0] not in ("id", "pinned") and program is None
    with _targets(words, program, engine, backend, every=every) as (views, rest):
        _no_more(rest)
        records = [v.info() for v in views]
    _emit_infos(out, records, single=words[0] in ("id", "pinned"))


def _targets(words, program, engine="interpreter", backend="portable", every=False):
    from pybpf.cli.target import program_targets

    return program_targets(words, program, engine=engine, backend=backend, every=every)


def _pin_maps(obj: Any, directory: str) -> None:
    """Pin every map as ``DIR/<name>``, dots made underscores (libbpf's sanitize_pin_path:
    bpffs refuses dots, ``xdp_coun.rodata`` is pinned as ``xdp_coun_rodata``)."""
    root = directory.rstrip("/")
    if obj.backend == "kernel":  # the real bpffs, as bpftool
        from pybpf.syscall.objects import obj_pin

        os.makedirs(directory, exist_ok=True)
        for m in obj.maps.values():
            obj_pin(m.fd, f"{root}/{m.kernel_name.replace('.', '_')}")
        return
    for m in obj.maps.values():
        if m.path is not None:
            m.pin(f"{root}/{m.name.replace('.', '_')}")


def _pin_program(prog: Any, path: str) -> dict[str, Any]:
    kernel = getattr(prog, "kernel", None)
    if kernel is None:
        return prog.pin(path).to_json()
    parent = os.path.dirname(path.rstrip("/"))
    if parent:
        os.makedirs(parent, exist_ok=True)
    kernel.pin(path)  # the real bpffs: the program outlives this process
    from pybpf.cli.target import live_program_info

    return live_program_info(prog, [path])


def _load_words(words: tuple[str, ...]) -> tuple[str, str, str | None]:
    rest = list(words)
    if len(rest) < 2:
        raise InputError("expected OBJ PATH [pinmaps DIR]")
    file, path = rest.pop(0), rest.pop(0)
    pinmaps = None
    if rest and rest[0] == "pinmaps":
        rest.pop(0)
        if not rest:
            raise InputError("pinmaps needs a DIR", field="pinmaps")
        pinmaps = rest.pop(0)
    _no_more(rest)
    return file, path, pinmaps


@prog_group.command("load")
@click.argument("words", nargs=-1, required=True)
@_PROGRAM
@_ENGINE
@_BACKEND
@click.pass_obj
def prog_load(out, words, program: str | None, engine: str, backend: str) -> None:
    """Load OBJ and pin its program at PATH: OBJ PATH [pinmaps DIR].

    The program's maps stay alive while it is pinned (or are pinned in DIR). With
    --backend kernel, PATH and DIR are in the real bpffs, as with bpftool.

    \b
    Example:
      pybpf prog load examples/c/xdp_counter.o /sys/fs/bpf/xc pinmaps /sys/fs/bpf/xc_maps
    """
    from pybpf.cli.target import load_object

    file, path, pinmaps = _load_words(words)
    with load_object(file, engine=engine, backend=backend) as obj:
        if program is None:
            if not obj.programs:
                raise InputError("the object has no program to load")
            program = next(iter(obj.programs))
        record = _pin_program(obj.program(program), path)
        if pinmaps is not None:
            _pin_maps(obj, pinmaps)
    if out.json:
        out.emit_json(record)


@prog_group.command("loadall")
@click.argument("words", nargs=-1, required=True)
@_ENGINE
@_BACKEND
@click.pass_obj
def prog_loadall(out, words: tuple[str, ...], engine: str, backend: str) -> None:
    """Load OBJ and pin every program under DIR: OBJ DIR [pinmaps MAPDIR].

    \b
    Example:
      pybpf prog loadall examples/c/tail_calls.o /sys/fs/bpf/tc
    """
    from pybpf.cli.target import load_object

    file, directory, pinmaps = _load_words(words)
    records = []
    with load_object(file, engine=engine, backend=backend) as obj:
        for name, prog in obj.programs.items():
            records.append(_pin_program(prog, f"{directory.rstrip('/')}/{name}"))
        if pinmaps is not None:
            _pin_maps(obj, pinmaps)
    if out.json:
        out.emit_json(records)


@prog_group.command("pin")
@click.argument("words", nargs=-1, required=True)
@_PROGRAM
@_ENGINE
@click.pass_obj
def prog_pin(out, words: tuple[str, ...], program: str | None, engine: str) -> None:
    """Pin a program at FILE: PROG FILE.

    \b
    Example:
      pybpf prog pin id 3 /sys/fs/bpf/again
      pybpf prog pin examples/c/pipeline.o /sys/fs/bpf/start --program start
    """
    from pybpf.state import StateDirectory

    with _targets(words, program, engine) as (views, rest):
        if len(rest) != 1:
            raise InputError("expected PROG FILE")
        if len(views) != 1:
            raise InputError(f"{len(views)} programs match: pin one (use id N)")
        view = views[0]
        if view.live is not None:
            record = view.live.pin(rest[0]).to_json()
        else:
            state = StateDirectory()
            source = state.pin_path(view.source.pins[0])
            target = state.prepare_pin(rest[0])
            try:
                os.link(source, target)
            except FileExistsError:
                from pybpf.errors import MapError

                raise MapError(
                    f"{rest[0]} is already pinned", errno=17, operation="pin", path=rest[0]
                ) from None
            record = view.info()
    if out.json:
        out.emit_json(record)


@prog_group.command("unpin")
@click.argument("path")
@click.pass_obj
def prog_unpin(out, path: str) -> None:
    """Remove a program's pin (bpftool users `rm` it from bpffs): PATH.

    The program and the maps it holds go when its last pin goes.

    \b
    Example:
      pybpf prog unpin /sys/fs/bpf/xdp_counter
    """
    from pybpf.objects.pinned import list_programs, read_pin
    from pybpf.state import StateDirectory

    read_pin(path)  # MapError ENOENT when nothing is pinned, InputError for a map
    StateDirectory().unpin(path)
    list_programs()  # releases the maps of a program with no pin left
    if out.json:
        out.emit_json(None)


@prog_group.group("dump")
def prog_dump() -> None:
    """Dump a program's instructions (xlated) or native code (jited).

    \b
    Example:
      pybpf prog dump xlated id 3
      pybpf prog dump jited examples/c/pipeline.o --program start
    """


@prog_dump.command("xlated")
@_WORDS
@_PROGRAM
@_ENGINE
@_BACKEND
@click.pass_obj
def prog_dump_xlated(out, words, program, engine, backend) -> None:
    """Print the instructions a program runs: PROG [opcodes].

    \b
    Example:
      pybpf prog dump xlated pinned /sys/fs/bpf/xc opcodes
      pybpf -j prog dump xlated examples/c/pipeline.o --program start
    """
    from pybpf.isa.disasm import format_instruction

    with _targets(words, program, engine, backend) as (views, rest):
        opcodes = bool(rest) and rest[0] == "opcodes"
        _no_more(rest[1:] if opcodes else rest)
        listings = [(v.name, v.xlated()) for v in views]
    records: list[Any] = []
    for name, insns in listings:
        rows = []
        pc = 0
        for insn in insns:
            try:
                text = format_instruction(insn)
            except Exception:  # a kernel-internal encoding the disassembler does not know
                text = (
                    f".insn 0x{insn.code:02x} dst=r{insn.dst} src=r{insn.src} "
                    f"off={insn.off} imm={insn.imm}"
                )
            row: dict[str, Any] = {"pc": pc, "disasm": text, "_code": insn.code}
            if opcodes:
                from pybpf.isa import encode

                row["opcodes"] = {"code": f"0x{insn.code:02x}", "bytes": encode([insn]).hex()}
            rows.append(row)
            pc += insn.slots
        records.append((name, rows))
    for _name, rows in records:
        for row in rows:
            row["code"] = f"{row.pop('_code'):02x}"
    if out.json:
        for _name, rows in records:
            for row in rows:
                del row["code"]
        if len(records) == 1:
            out.emit_json(records[0][1])
        else:
            out.emit_json([{"name": n, "insns": rows} for n, rows in records])
        return
    for name, rows in records:
        if len(records) > 1:
            click.echo(f"{name}:")
        for row in rows:
            click.echo(f"{row['pc']:4}: ({row['code']}) {row['disasm']}")
            if opcodes:
                raw = row["opcodes"]["bytes"]
                click.echo("       " + " ".join(raw[i : i + 2] for i in range(0, len(raw), 2)))


@prog_dump.command("jited")
@_WORDS
@_PROGRAM
@click.option("--engine", type=click.Choice(["jit"]), default="jit", hidden=True)
@click.pass_obj
def prog_dump_jited(out, words, program, engine) -> None:
    """Print a program's native code (programs loaded on the JIT): PROG.

    \b
    Example:
      pybpf prog dump jited examples/c/pipeline.o --program start
    """
    with _targets(words, program, engine) as (views, rest):
        _no_more(rest)
        dumps = [(v.name, v.jited(json=out.json)) for v in views]
    if out.json:
        out.emit_json(dumps[0][1] if len(dumps) == 1 else [d for _n, d in dumps])
    else:
        for _name, text in dumps:
            click.echo(text, nl=not str(text).endswith("\n"))


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
@click.argument("words", nargs=-1, required=True)
@click.option("--program", "program", metavar="NAME", help="Default: the only program.")
@click.option("--data-in", metavar="FILE", help="Packet or buffer (- for stdin).")
@click.option("--ctx-in", metavar="FILE", help="Context (- for stdin).")
@click.option("--data-out", metavar="FILE", help="Write data_out there (- to print it).")
@click.option("--ctx-out", metavar="FILE", help="Write ctx_out there (- to print it).")
@click.option("--repeat", type=click.IntRange(min=0), default=1, show_default=True)
@_ENGINE
@_BACKEND
@click.pass_obj
def prog_run(
    out,
    words: tuple[str, ...],
    program: str | None,
    data_in: str | None,
    ctx_in: str | None,
    data_out: str | None,
    ctx_out: str | None,
    repeat: int,
    engine: str,
    backend: str,
) -> None:
    """Run a program (PROG) once or --repeat times (BPF_PROG_TEST_RUN); print its result.

    A pinned program (id, pinned, name, tag) runs on the maps it holds, so its maps keep
    what the run writes; an object file is loaded for the run. bpf_printk output goes to
    the state directory's trace log (`pybpf prog tracelog`).

    \b
    Example:
      pybpf prog run examples/c/pipeline.o --program start --ctx-in args.bin --repeat 100
      pybpf prog run pinned /sys/fs/bpf/xdp_counter --data-in frame.bin
      pybpf -j prog run examples/c/xdp_counter.o --data-in frame.bin --backend kernel
    """
    from pybpf.cli.target import KEYWORDS, load_object
    from pybpf.objects.events import TraceLog

    data = _read(data_in, "data_in") or b""
    ctx = _read(ctx_in, "ctx_in")
    if words[0] in KEYWORDS and backend == "kernel":
        _run_kernel(out, words, data, ctx, repeat, data_out, ctx_out)
        return
    if words[0] in KEYWORDS:
        from pybpf.cli.target import program_targets
        from pybpf.objects.pinned import load_pinned

        with program_targets(words) as (views, rest):
            _no_more(rest)
            if len(views) != 1:
                raise InputError(f"{len(views)} programs match: run one (use id N)")
            record = views[0].source
        opened = load_pinned(record, engine=engine if engine != "interpreter" else None)
        program = record.name
    else:
        _no_more(list(words[1:]))
        opened = load_object(words[0], engine=engine, backend=backend)
    with opened as obj:
        if program is None:
            if len(obj.programs) != 1:
                names = ", ".join(obj.programs) or "none"
                raise InputError(f"give --program NAME (the object's programs: {names})")
            program = next(iter(obj.programs))
        try:
            result = obj.program(program).test_run(data, ctx, repeat)
        finally:
            TraceLog().save()
    _print_result(out, result, repeat, data_out, ctx_out)


def _run_kernel(out, words, data, ctx, repeat, data_out, ctx_out) -> None:
    from pybpf.cli.target import kernel_programs
    from pybpf.syscall import prog_test_run

    with kernel_programs(words) as (views, rest):
        _no_more(rest)
        fd = views[0].source.fd
        result = prog_test_run(fd, data, ctx_in=ctx, repeat=repeat if repeat > 1 else 0)
    _print_result(out, result, repeat, data_out, ctx_out)


def _print_result(out, result, repeat: int, data_out, ctx_out) -> None:
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


@prog_group.command("tracelog")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new messages.")
@click.option("--timeout", type=float, default=None, help="With --follow: stop after SECONDS.")
@click.option("--clear", is_flag=True, help="Remove the messages after printing them.")
@_BACKEND
@click.pass_obj
def prog_tracelog(out, follow: bool, timeout: float | None, clear: bool, backend: str) -> None:
    """Print bpf_printk output left in the state directory by program runs.

    With --backend kernel: the kernel's trace_pipe (a mounted tracefs), what is waiting
    now, or as it comes with --follow (reading consumes it, as bpftool's does).

    \b
    Example:
      pybpf prog run examples/c/xdp_counter.o --data-in frame.bin && pybpf prog tracelog
      pybpf prog tracelog --follow --timeout 10
      pybpf prog tracelog --backend kernel --follow --timeout 5
    """
    from pybpf.objects.events import TraceLog

    log = TraceLog()

    def show(line: str) -> None:
        if out.json:
            out.emit_json({"message": line})
        else:
            click.echo(line)

    if backend == "kernel":
        with TraceLog.kernel() as pipe:
            for line in pipe.read():
                show(line)
            if follow:
                while pipe.poll(show, timeout) or timeout is None:
                    pass
        return
    for line in log.saved(clear=clear):
        show(line)
    if follow:
        log.follow(show, timeout=timeout)


prog_group.add_command(prog_show, "list")

COMMANDS = (prog_group,)
