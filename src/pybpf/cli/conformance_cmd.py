"""Conformance command: ``pybpf conformance``, the bpf_conformance suite run on a pybpf engine."""

from __future__ import annotations

import click

__all__ = ["COMMANDS"]


@click.command("conformance")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--engine", type=click.Choice(["interpreter", "jit"]), default="interpreter", show_default=True
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Print a line for every case, not only failures."
)
@click.pass_obj
def conformance_cmd(out, paths: tuple[str, ...], engine: str, verbose: bool) -> None:
    """Run bpf_conformance .data files (files or directories; negative/ files must be refused).

    Prints one line per failure and last `N passed, N failed`; exits 1 when any case fails.

    \b
    Example:
      pybpf conformance ../shared/conformance --engine jit
    """
    from pybpf.conformance import run_paths

    outcomes = run_paths(paths, engine=engine)
    passed = sum(o.passed for o in outcomes)
    failed = len(outcomes) - passed
    if out.json:
        out.emit_json(
            {
                "passed": passed,
                "failed": failed,
                "failures": [
                    {"path": o.case.path, "detail": o.detail} for o in outcomes if not o.passed
                ],
            }
        )
    else:
        for o in outcomes:
            if not o.passed or verbose:
                click.echo(f"{'PASS' if o.passed else 'FAIL'} {o.case.path}: {o.detail}")
        click.echo(f"{passed} passed, {failed} failed")
    if failed:
        raise click.exceptions.Exit(1)


COMMANDS = (conformance_cmd,)
