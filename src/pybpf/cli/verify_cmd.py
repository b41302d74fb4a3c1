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
@click.option(
    "--compare-kernel",
    is_flag=True,
    help="Also load each program into the running kernel; print both verdicts "
    "(exit 1 when they disagree).",
)
@click.pass_obj
def verify_cmd(
    out,
    file: Path,
    programs: tuple[str, ...],
    type_name: str | None,
    termination: bool,
    verbose: bool,
    compare_kernel: bool,
) -> None:
    """Verify an object's programs; exit 0 when all pass, 1 when any is rejected.

    Programs without a type from their section get PREVAIL's rule (socket filter unless the
    section or file name says otherwise); --type overrides every program's type.
    Unusable input exits 2.

    With --compare-kernel each program is verified by pybpf and loaded into the running
    kernel with the same type: both verdicts are printed, both messages when they disagree
    (the kernel's is the last meaningful line of its verifier log, with its class: safety
    or other); exit 0 when every verdict agrees, 1 otherwise.

    \b
    Example:
      pybpf verify examples/c/drop_empty_udp.o
      pybpf -j verify examples/c/xdp_counter.o --program xdp_count -v
      pybpf verify --compare-kernel examples/c/programs.o
    """
    from pybpf.objects import Object
    from pybpf.progtypes import ProgType, prevail_program_type
    from pybpf.verifier import Options, verify_object
    from pybpf.verifier.result import describe_state

    spec = Object.open(file).spec
    forced = ProgType.from_name(type_name) if type_name else None
    names = list(programs) or list(spec.entry_programs) or list(spec.programs)
    options = Options(termination=termination)
    if compare_kernel:
        _compare(out, spec, names, forced, str(file))
        return
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


def _compare(out, spec, names: list[str], forced, path: str) -> None:
    """``--compare-kernel``: both verdicts per program; exit 1 on any disagreement."""
    from pybpf.kernel.compare import compare_program

    results = [compare_program(spec, name, forced, path=path) for name in names]
    if out.json:
        out.emit_json([c.to_json() for c in results])
    else:
        for c in results:
            k = c.kernel
            kernel = "PASS" if k.accepted else f"FAIL ({k.category}: {k.reason})"
            click.echo(
                f"{c.program} ({c.section}, {c.prog_type}): "
                f"pybpf {'PASS' if c.pybpf_accepted else 'FAIL'}, kernel {kernel}"
                + ("" if c.agree else "  <-- disagree")
            )
            if not c.agree:
                click.echo(f"  pybpf: {c.pybpf_message or 'accepted'}")
                click.echo(f"  kernel: {k.message or 'accepted'}")
    if not all(c.agree for c in results):
        raise click.exceptions.Exit(1)


COMMANDS = (verify_cmd,)
