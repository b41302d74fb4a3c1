"""Object commands: ``pybpf object show`` and ``pybpf btf dump`` on object files."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["COMMANDS"]

_PATH = click.Path(dir_okay=False, path_type=Path)


@click.group("object")
def object_group() -> None:
    """Inspect eBPF object files (programs, maps, sections).

    \b
    Example:
      pybpf object show examples/c/pipeline.o
    """


@object_group.command("show")
@click.argument("file", type=_PATH)
@click.pass_obj
def object_show(out, file: Path) -> None:
    """List an object's programs and maps (like `netsh ebpf show sections`).

    \b
    Example:
      pybpf -j object show examples/c/xdp_counter.o
    """
    from pybpf.objects import Object, describe

    info = describe(Object.open(file).spec)
    if out.json:
        out.emit_json(info)
        return
    click.echo(f"{'program':<24} {'section':<24} {'type':<16} {'insns':>6}  maps")
    for p in info["programs"]:
        kind = "(subprogram)" if p["subprogram"] else p["type"] or "-"
        maps = ",".join(p["maps"]) or "-"
        click.echo(f"{p['name']:<24} {p['section']:<24} {kind:<16} {p['insns']:>6}  {maps}")
    if info["maps"]:
        click.echo()
        click.echo(f"{'map':<24} {'type':<16} {'key':>5} {'value':>6} {'max_entries':>11}  flags")
        for m in info["maps"]:
            click.echo(
                f"{m['name']:<24} {m['type']:<16} {m['bytes_key']:>5} {m['bytes_value']:>6} "
                f"{m['max_entries']:>11}  {m['flags']:#x}"
            )


@click.group("btf")
def btf_group() -> None:
    """Inspect BTF type information.

    \b
    Example:
      pybpf btf dump examples/c/xdp_counter.o --format c
    """


@btf_group.command("dump")
@click.argument("file", type=_PATH)
@click.option("--format", "fmt", type=click.Choice(["raw", "c"]), default="raw", show_default=True,
              help="bpftool's raw listing or a C header.")
@click.pass_obj
def btf_dump(out, file: Path, fmt: str) -> None:
    """Dump the BTF of an object file or a raw BTF file (`bpftool btf dump file F`).

    \b
    Example:
      pybpf btf dump examples/c/xdp_counter.o
      pybpf btf dump /sys/kernel/btf/vmlinux --format c
    """
    from pybpf.btf import format_c, format_raw
    from pybpf.objects import read_btf

    spec = read_btf(file)
    text = format_c(spec) if fmt == "c" else format_raw(spec)
    if out.json:
        out.emit_json({"format": fmt, "text": text})
    else:
        click.echo(text, nl=not text.endswith("\n"))


COMMANDS = (object_group, btf_group)
