"""ISA commands: ``pybpf disasm``, ``asm`` and ``exec`` (raw programs, or Python under a policy)."""

from __future__ import annotations

from pathlib import Path

import click

from pybpf.errors import InputError
from pybpf.isa import encode
from pybpf.isa.program_file import FORMATS, detect_format, read_program

__all__ = ["COMMANDS"]

_FORMAT = click.Choice(FORMATS)
_format_option = click.option(
    "--format",
    "fmt",
    type=_FORMAT,
    default="auto",
    show_default=True,
    help="Input format: raw bytecode, hex text or assembly.",
)


@click.command("disasm")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_format_option
@click.option("--opcodes", is_flag=True, help="Show each instruction's raw bytes.")
@click.option("--program", default=None, help="Only this program of an object file.")
@click.pass_obj
def disasm_cmd(out, file: Path, fmt: str, opcodes: bool, program: str | None) -> None:
    """Disassemble a program or an object file in llvm-objdump's syntax.

    Object files are listed program by program, with source lines from BTF line_info.

    \b
    Example:
      pybpf disasm examples/c/xdp_counter.o
      pybpf disasm --opcodes prog.bin
    """
    from pybpf.isa.disasm import disassemble, format_instruction
    from pybpf.isa.instruction import slot_pcs

    if fmt == "auto" and _is_elf(file):
        _disasm_object(out, file, program, opcodes)
        return
    if program is not None:
        raise click.UsageError("--program needs an object file")
    insns = read_program(file, fmt=fmt)
    if out.json:
        rows = []
        for pc, insn in slot_pcs(insns):
            row = {"pc": pc, "code": f"{insn.code:#04x}", "disasm": format_instruction(insn)}
            if opcodes:
                row["opcodes"] = encode([insn]).hex(" ")
            rows.append(row)
        out.emit_json(rows)
    else:
        click.echo(disassemble(insns, raw=opcodes), nl=False)


def _is_elf(file: Path) -> bool:
    try:
        with open(file, "rb") as handle:
            return detect_format(handle.read(4)) == "elf"
    except OSError:
        return False  # read_program reports the error


def _disasm_object(out, file: Path, program: str | None, opcodes: bool) -> None:
    from pybpf.isa.disasm import format_instruction
    from pybpf.isa.instruction import slot_pcs
    from pybpf.objects import Object, listing

    spec = Object.open(file).spec
    if not out.json:
        click.echo(listing(spec, program, raw=opcodes), nl=False)
        return
    progs = [spec.program(program)] if program else list(spec.programs.values())
    out.emit_json(
        [
            {
                "name": p.name,
                "section": p.section,
                "insns": [
                    {"pc": pc, "disasm": format_instruction(i)}
                    for pc, i in slot_pcs(p.instructions)
                ],
            }
            for p in progs
        ]
    )


@click.command("asm")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the bytecode ('-' for stdout).",
)
@click.option(
    "--syntax",
    type=click.Choice(["auto", "llvm", "conformance"]),
    default="auto",
    show_default=True,
    help="Assembly dialect.",
)
@click.option("--hex", "as_hex", is_flag=True, help="Write hex bytes instead of raw bytecode.")
@click.pass_obj
def asm_cmd(out, file: Path, output: Path, syntax: str, as_hex: bool) -> None:
    """Assemble a program (llvm-objdump or bpf_conformance syntax) into bytecode.

    \b
    Example:
      pybpf asm examples/asm/ipv4_checksum.s -o checksum.bin
    """
    from pybpf.isa.asm import assemble

    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read assembly: {exc}", path=str(file)) from exc
    insns = assemble(text, syntax=syntax)
    code = encode(insns)
    data = (code.hex(" ") + "\n").encode() if as_hex else code
    if str(output) == "-":
        click.get_binary_stream("stdout").write(data)
    else:
        try:
            output.write_bytes(data)
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror}", path=str(output)) from exc
    if out.json:
        out.emit_json({"instructions": len(insns), "bytes": len(code), "output": str(output)})


@click.command("exec")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@_format_option
@click.option(
    "--mem", "mem_hex", default=None, help="Input memory as hex bytes (r1 = address, r2 = length)."
)
@click.option(
    "--mem-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Input memory from a file.",
)
@click.option(
    "--engine",
    type=click.Choice(["interpreter", "jit", "kernel"]),
    default="interpreter",
    show_default=True,
    help="kernel: with a command, Linux enforces the programs on a cgroup of the command's own.",
)
@click.option(
    "--program",
    "programs",
    multiple=True,
    help="With a command: a socket program of the object file to attach (repeatable; "
    "default: all).",
)
@click.option(
    "--update",
    "updates",
    nargs=3,
    multiple=True,
    metavar="MAP KEY VALUE",
    help="With a command: set MAP[KEY] = VALUE (integers) before the command runs.",
)
@click.option(
    "--show-maps", is_flag=True, help="With a command: print the maps as JSON on stderr at the end."
)
@click.pass_obj
def exec_cmd(
    out,
    file: Path,
    command: tuple[str, ...],
    fmt: str,
    mem_hex: str | None,
    mem_file: Path | None,
    engine: str,
    programs: tuple[str, ...],
    updates: tuple[tuple[str, str, str], ...],
    show_maps: bool,
) -> int | None:
    """Run a raw program with r1 = input memory and r2 = its length; print r0.

    With a command after ``--`` (``pybpf exec OBJ --program P -- python script.py``): run
    that Python program with the object's socket programs attached to it (bind, connect,
    release hooks; eBPF-for-Windows ``bind``); the exit status is the program's. With
    ``--engine kernel`` the object's cgroup socket programs are attached in the kernel to a
    new cgroup the command (any command) runs in.

    \b
    Example:
      pybpf exec examples/asm/ipv4_checksum.s --mem-file examples/asm/ipv4_frame.bin
      pybpf exec examples/c/bind_monitor.o --update limits_map 0 2 -- python app.py
    """
    if command:
        if mem_hex is not None or mem_file is not None or fmt != "auto":
            raise click.UsageError("--mem, --mem-file and --format run raw programs, not commands")
        return _exec_command(file, command, engine, programs, updates, show_maps)
    if programs or updates or show_maps:
        raise click.UsageError("--program, --update and --show-maps need a command after --")
    if engine == "kernel":
        raise click.UsageError("--engine kernel runs an object's programs under a command")
    from pybpf.conformance.plugin import parse_hex_bytes

    if engine == "jit":  # an unverified program: the JIT's memory checks stay on
        from pybpf.jit import execute
    else:
        from pybpf.vm import execute

    if mem_hex is not None and mem_file is not None:
        raise click.UsageError("give --mem or --mem-file, not both")
    mem = b""
    if mem_hex is not None:
        mem = parse_hex_bytes(mem_hex)
    elif mem_file is not None:
        try:
            mem = mem_file.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", path=str(mem_file)) from exc
    insns = read_program(file, fmt=fmt)
    r0 = execute(insns, mem if mem else None)
    if out.json:
        out.emit_json({"retval": r0})
    else:
        click.echo(f"Return value: {r0} ({r0:#x})")
    return None


def _exec_command(
    file: Path,
    command: tuple[str, ...],
    engine: str,
    programs: tuple[str, ...],
    updates: tuple[tuple[str, str, str], ...],
    show_maps: bool,
) -> int:
    """Run ``command`` (a Python program) under the object's socket programs; its status."""
    import subprocess

    from pybpf.hooks.policy import child_command, run_in_cgroup

    if not _is_elf(file):
        raise InputError("a command runs under an object file's programs", path=str(file))
    if engine == "kernel":
        return run_in_cgroup(file, programs, command, updates=updates, show_maps=show_maps)
    argv = child_command(
        file, programs, command, engine=engine, updates=updates, show_maps=show_maps
    )
    try:
        status = subprocess.call(argv)
    except OSError as exc:
        raise InputError(f"cannot run {argv[0]}: {exc.strerror}", field="command") from exc
    return 128 - status if status < 0 else status


COMMANDS = (disasm_cmd, asm_cmd, exec_cmd)
