"""Gen command: ``pybpf gen skeleton OBJ``, a typed Python module for an object file.

Like ``bpftool gen skeleton`` (which writes a C header), it prints or writes
(``-o FILE``) the module :func:`pybpf.objects.skeleton.generate_skeleton` makes: the
object embedded, a class with ``open()``/``load()``, ``progs``, ``maps`` with ctypes key and
value types from BTF, and the globals.
"""

from __future__ import annotations

from pathlib import Path

import click

from pybpf.errors import InputError

__all__ = ["COMMANDS"]

_PATH = click.Path(dir_okay=False, path_type=Path)


@click.group("gen")
def gen_group() -> None:
    """Generate code for object files (bpftool's `gen`).

    \b
    Example:
      pybpf gen skeleton examples/c/lru_flows.o -o lru_flows_skel.py
    """


@gen_group.command("skeleton")
@click.argument("file", type=_PATH)
@click.option("-o", "--output", type=_PATH, help="Write the module there (default: stdout).")
@click.option("--name", help="The object's name (default: the file's stem).")
@click.pass_obj
def gen_skeleton(out, file: Path, output: Path | None, name: str | None) -> None:
    """Write a typed Python module (a skeleton) for an object file.

    \b
    Example:
      pybpf gen skeleton examples/c/lru_flows.o -o lru_flows_skel.py
      python -c "import lru_flows_skel as s; skel = s.load(); print(skel.maps.flows)"
    """
    from pybpf.objects import Object
    from pybpf.objects.skeleton import class_name, generate_skeleton

    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read object file: {exc.strerror}", path=str(file)) from None
    obj_name = name or file.stem
    spec = Object.open(data, name=obj_name).spec
    source = generate_skeleton(spec, data, name=obj_name, source=file.name)
    if output is None:
        if out.json:
            out.emit_json({"name": obj_name, "class": class_name(obj_name), "source": source})
        else:
            click.echo(source, nl=False)
        return
    try:
        output.write_text(source)
    except OSError as exc:
        raise InputError(f"cannot write the skeleton: {exc.strerror}", path=str(output)) from None
    if out.json:
        out.emit_json({"name": obj_name, "class": class_name(obj_name), "path": str(output)})


COMMANDS = (gen_group,)
