"""Verify command: ``pybpf verify``, the verifier's verdict on each program of an object."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["COMMANDS"]


@click.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--program", "programs", multiple=True, help="Only this program (repeatable).")
@click.option(
    "--type",
    "type_name",
    default=None,
    help="Program type for every program (bpftool's names: xdp, sched_cls, ...).",
)
@click.option("--termination", is_flag=True, help="Also prove that every loop terminates.")
@click.option("-v", "--verbose", is_flag=True, help="Print the invariant before each instruction.")
@click.pass_obj
def verify_cmd(
    out,
    file: Path,
    programs: tuple[str, ...],
    type_name: str | None,
    termination: bool,
    verbose: bool,
) -> None:
    """Verify an object's programs; exit 0 when all pass, 1 when any is rejected.

    Programs without a type from their section get PREVAIL's rule (socket filter unless the
    section or file name says otherwise); --type overrides every program's type.
    Unusable input exits 2.
    """
    from pybpf.objects import Object
    from pybpf.progtypes import ProgType, prevail_program_type
    from pybpf.verifier import Options, verify_object
    from pybpf.verifier.result import describe_state

    spec = Object.open(file).spec
    forced = ProgType.from_name(type_name) if type_name else None
    names = list(programs) or list(spec.entry_programs) or list(spec.programs)
    options = Options(termination=termination)
    results = []
    for name in names:
        prog = spec.program(name)
        prog_type = forced or prog.type or prevail_program_type(prog.section, str(file))
        result = verify_object(spec, name, prog_type, options=options, keep_invariants=verbose)
        results.append(result)
        if out.json:
            continue
        bound = f", loops bounded by {result.loop_bound}" if result.loop_bound else ""
        click.echo(
            f"{name} ({prog.section}, {prog_type.type_name}): "
            f"{'PASS' if result.accepted else 'FAIL'}{bound}"
        )
        if verbose:
            for label, state in result.invariants.items():
                click.echo(f"  {label}: " + ", ".join(describe_state(state)))
        for diag in result.errors:
            click.echo(f"  {diag}")
    if out.json:
        out.emit_json([r.to_json() for r in results])
    if not all(r.accepted for r in results):
        raise click.exceptions.Exit(1)


COMMANDS = (verify_cmd,)
