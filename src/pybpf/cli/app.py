"""App: the ``pybpf`` root command, its global options and its error and JSON conventions.

Conventions shared by every subcommand (bpftool's): ``-j/--json`` prints JSON on stdout,
``-p/--pretty`` pretty-prints it; a pybpf error prints ``Error: <message>`` on stderr (or
``{"error": "<message>"}`` on stdout under ``--json``) and exits 2 when the input is
unusable (:class:`~pybpf.errors.InputError`: a malformed object, program or argument, as
for a usage error; a bad argument adds the line ``Try 'pybpf CMD -h' for help.``) and 255
for any other error (bpftool's -1). ``--debug`` prints the traceback too; without it an
unexpected exception is one ``Error: internal error ...`` line and exit 255.
``pybpf completion bash|zsh|fish`` prints click's shell completion script.
Nouns follow bpftool (``prog``, ``map``, ``btf``, ``net``, ``link``, ``gen``, ``feature``)
plus pybpf's own verbs (``disasm``, ``asm``, ``exec``, ``conformance``, ``bench``, ...),
each added as its capability lands.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from pybpf import __version__
from pybpf.errors import InputError, PybpfError

__all__ = ["cli", "main", "Output", "EXIT_ERROR", "EXIT_INPUT"]

EXIT_ERROR = 255
EXIT_INPUT = 2
_STATE: dict[str, Output] = {}  # this invocation's Output ("output"; "debug" with --debug)


class Output:
    """How results are printed for this invocation (plain text or JSON)."""

    def __init__(self, json_mode: bool = False, pretty: bool = False) -> None:
        self.json = json_mode or pretty
        self.pretty = pretty

    def emit_json(self, value: Any) -> None:
        """Print one JSON document."""
        if self.pretty:
            click.echo(json.dumps(value, indent=4))
        else:
            click.echo(json.dumps(value, separators=(",", ":")))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-j", "--json", "json_mode", is_flag=True, help="Print JSON output.")
@click.option("-p", "--pretty", is_flag=True, help="Print human-readable JSON (implies --json).")
@click.option("--debug", is_flag=True, help="Print the traceback of an error.")
@click.version_option(__version__, "-V", "--version", prog_name="pybpf")
@click.pass_context
def cli(ctx: click.Context, json_mode: bool, pretty: bool, debug: bool) -> None:
    """pybpf: load, verify, run and attach eBPF programs anywhere Python runs.

    \b
    Example:
      pybpf prog run examples/c/pipeline.o --program start --ctx-in args.bin
      pybpf -p prog show
      pybpf map dump id 4
      eval "$(pybpf completion bash)"
    """
    ctx.obj = Output(json_mode, pretty)
    _STATE["output"] = ctx.obj
    if debug:
        _STATE["debug"] = ctx.obj


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]), default="bash")
def completion(shell: str) -> None:
    """Print the shell completion script (click's) for SHELL.

    \b
    Example:
      eval "$(pybpf completion bash)"
      pybpf completion fish > ~/.config/fish/completions/pybpf.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # the choices are click's built-in shells
    click.echo(cls(cli, {}, "pybpf", "_PYBPF_COMPLETE").source())


def _register() -> None:
    from pybpf.cli import (
        bench_cmd,
        cc_cmd,
        conformance_cmd,
        feature_cmd,
        gen_cmd,
        isa_cmd,
        link_cmd,
        map_cmd,
        net_cmd,
        object_cmd,
        prog_cmd,
        verify_cmd,
    )

    for module in (
        isa_cmd, object_cmd, verify_cmd, conformance_cmd, map_cmd, prog_cmd, net_cmd, link_cmd,
    ):  # fmt: skip
        for command in module.COMMANDS:
            cli.add_command(command)
    for module in (gen_cmd, feature_cmd, cc_cmd, bench_cmd):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def _command_path(args: Sequence[str]) -> list[str]:
    """The subcommand names at the start of ``args`` (options skipped): ``["map", "dump"]``."""
    path: list[str] = []
    group: Any = cli
    for arg in args:
        if arg.startswith("-"):
            continue
        command = group.commands.get(arg) if isinstance(group, click.Group) else None
        if command is None:
            break
        path.append(arg)
        group = command
    return path


def _hint(exc: PybpfError, args: Sequence[str]) -> str | None:
    if not isinstance(exc, InputError) or getattr(exc, "path", None) is not None:
        return None  # not an argument problem (an unreadable or malformed file, ...)
    path = _command_path(args)
    return f"Try 'pybpf {' '.join(path)} -h' for help." if path else None


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; errors become one message and a non-zero exit status, never a
    traceback (unless ``--debug``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    _STATE.clear()
    try:
        # Without standalone mode, click returns a command's Exit code instead of raising it.
        status = cli.main(args=args, prog_name="pybpf", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except PybpfError as exc:
        if "debug" in _STATE:
            traceback.print_exc()
        output = _STATE.get("output")
        if output is not None and output.json:
            click.echo(json.dumps({"error": str(exc)}))
        else:
            click.echo(f"Error: {exc}", err=True)
            hint = _hint(exc, args)
            if hint is not None:
                click.echo(hint, err=True)
        sys.exit(EXIT_INPUT if isinstance(exc, InputError) else EXIT_ERROR)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # a bug: one line, the traceback with --debug
        if "debug" in _STATE:
            traceback.print_exc()
        message = f"internal error: {type(exc).__name__}: {exc}"
        output = _STATE.get("output")
        if output is not None and output.json:
            click.echo(json.dumps({"error": message}))
        else:
            click.echo(f"Error: {message} (run with --debug for the traceback)", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(status if isinstance(status, int) else 0)
