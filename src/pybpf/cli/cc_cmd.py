"""Cc command: ``pybpf cc prog.c``, C compiled to an eBPF object with clang's right flags.

``clang -O2 -g -target bpf -c`` with the include directories eBPF C needs: the
multiarch ``asm/`` headers (``/usr/include/<triple>``, which ``-target bpf`` does not
search) and any ``-I`` given. When clang is missing the error says how to install it (and
libbpf's headers, ``bpf/bpf_helpers.h``).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import click

from pybpf.errors import InputError, NotSupportedError

__all__ = ["COMMANDS", "compile_command", "INSTALL_HINT"]

INSTALL_HINT = (
    "install clang and libbpf's headers: Debian/Ubuntu `apt-get install clang libbpf-dev`, "
    "Fedora `dnf install clang libbpf-devel`, macOS `brew install llvm libbpf`; or name a "
    "compiler with --clang or $CLANG"
)
_PATH = click.Path(dir_okay=False, path_type=Path)


def _multiarch_include() -> list[str]:
    machine = platform.machine()
    triples = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu",
               "arm64": "aarch64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu",
               "s390x": "s390x-linux-gnu", "riscv64": "riscv64-linux-gnu"}  # fmt: skip
    triple = triples.get(machine)
    if triple and Path("/usr/include", triple, "asm").is_dir():
        return [f"-I/usr/include/{triple}"]
    return []


def compile_command(
    source: Path,
    output: Path,
    *,
    clang: str = "clang",
    includes: tuple[str, ...] = (),
    defines: tuple[str, ...] = (),
    mcpu: str | None = None,
) -> list[str]:
    """The clang command line that compiles ``source`` to ``output``."""
    cmd = [clang, "-O2", "-g", "-target", "bpf"]
    if mcpu:
        cmd.append(f"-mcpu={mcpu}")
    cmd += [f"-I{d}" for d in includes] + _multiarch_include()
    cmd += [f"-D{d}" for d in defines]
    return [*cmd, "-c", str(source), "-o", str(output)]


@click.command("cc")
@click.argument("source", type=_PATH)
@click.option("-o", "--output", type=_PATH, help="The object file (default: SOURCE with .o).")
@click.option("-I", "includes", multiple=True, metavar="DIR", help="Another include directory.")
@click.option("-D", "defines", multiple=True, metavar="NAME[=VALUE]", help="A macro.")
@click.option("--mcpu", type=click.Choice(["v1", "v2", "v3", "v4"]), help="eBPF ISA version.")
@click.option("--clang", metavar="PATH", help="The compiler (default: $CLANG or clang).")
@click.option("--dry-run", is_flag=True, help="Print the command without running it.")
@click.pass_obj
def cc(out, source, output, includes, defines, mcpu, clang, dry_run) -> None:
    """Compile eBPF C to an object file (clang -O2 -g -target bpf).

    \b
    Example:
      pybpf cc examples/c/xdp_counter.c -o /tmp/xdp_counter.o
      pybpf cc prog.c --mcpu v3 -I include
    """
    compiler = clang or os.environ.get("CLANG") or "clang"
    output = output or source.with_suffix(".o")
    cmd = compile_command(source, output, clang=compiler, includes=includes, defines=defines,
                          mcpu=mcpu)  # fmt: skip
    if dry_run:
        if out.json:
            out.emit_json({"command": cmd})
        else:
            click.echo(" ".join(cmd))
        return
    if shutil.which(compiler) is None:
        raise NotSupportedError(f"{compiler} is not installed: {INSTALL_HINT}", feature="clang")
    if not source.is_file():
        raise InputError("no such source file", path=str(source))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        hint = ""
        if "bpf/bpf_helpers.h" in proc.stderr and "not found" in proc.stderr:
            hint = f" ({INSTALL_HINT})"
        raise InputError(f"clang failed with status {proc.returncode}{hint}", path=str(source))
    if proc.stderr and not out.json:
        sys.stderr.write(proc.stderr)  # warnings
    if out.json:
        out.emit_json({"object": str(output), "command": cmd})


COMMANDS = (cc,)
