"""Feature command: ``pybpf feature``, what this install supports, like ``bpftool feature probe``.

JSON keys follow bpftool's: ``program_types`` (``have_<type>_prog_type``), ``map_types``
(``have_<type>_map_type``) and ``helpers`` (``<type>_available_helpers``: here one list
for every program type, ``available_helpers``), plus pybpf's own: ``contexts`` (program
types whose Linux context ``test_run`` builds), ``engines`` (``interpreter``, ``jit``:
llvmlite present, ``kernel``: ``bpf()`` usable) and ``platform``.
"""

from __future__ import annotations

import platform
import sys
from typing import Any

import click

__all__ = ["COMMANDS", "features"]


def _kernel_usable() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        from pybpf import syscall

        with syscall.map_create(syscall.MapType.ARRAY, 4, 4, 1):
            return True
    except Exception:  # any refusal (EPERM, ENOSYS, no ctypes libc): not usable
        return False


def features(*, probe_kernel: bool = True) -> dict[str, Any]:
    """What this install supports (see the module docstring)."""
    from pybpf.helpers.table import lookup
    from pybpf.jit import available
    from pybpf.maps import FAMILIES
    from pybpf.maptypes import MapType
    from pybpf.objects.context import runtime_context_for
    from pybpf.progtypes import ProgType
    from pybpf.runtime import default_helpers

    prog_types: dict[str, bool] = {}
    contexts = []
    for t in ProgType:
        if t.value == 0 or t.value >= 1000:
            continue  # UNSPEC; eBPF-for-Windows types are listed by their own tools
        prog_types[f"have_{t.name.lower()}_prog_type"] = True
        try:
            if runtime_context_for(t) is not None:
                contexts.append(t.name.lower())
        except Exception:  # a context builder that needs more than the type
            pass
    map_types = {
        f"have_{t.type_name}_map_type": t in FAMILIES for t in MapType if t.value != 0
    }
    helpers = []
    for helper_id in sorted(default_helpers().ids()):
        proto = lookup(helper_id)
        helpers.append(proto.c_name if proto is not None else f"helper_{helper_id}")
    return {
        "platform": {"system": platform.system(), "machine": platform.machine()},
        "program_types": prog_types,
        "map_types": map_types,
        "helpers": {"available_helpers": helpers},
        "contexts": contexts,
        "engines": {
            "interpreter": True,
            "jit": bool(available()),
            "kernel": _kernel_usable() if probe_kernel else False,
        },
    }


@click.command("feature")
@click.option("--no-kernel", is_flag=True, help="Do not probe the kernel's bpf().")
@click.pass_obj
def feature(out, no_kernel: bool) -> None:
    """Show what this install supports: program and map types, helpers, engines.

    \b
    Example:
      pybpf feature
      pybpf -p feature | jq .engines
    """
    info = features(probe_kernel=not no_kernel)
    if out.json:
        out.emit_json(info)
        return
    click.echo(f"Platform: {info['platform']['system']} {info['platform']['machine']}")
    click.echo("Engines:")
    for name, ok in info["engines"].items():
        click.echo(f"\t{name} is {'available' if ok else 'NOT available'}")
    click.echo("Program types:")
    for key, ok in info["program_types"].items():
        name = key.removeprefix("have_").removesuffix("_prog_type")
        context = "  (Linux context in test_run)" if name in info["contexts"] else ""
        click.echo(f"\t{name} program type is {'available' if ok else 'NOT available'}{context}")
    click.echo("Map types:")
    for key, ok in info["map_types"].items():
        name = key.removeprefix("have_").removesuffix("_map_type")
        click.echo(f"\t{name} map type is {'available' if ok else 'NOT available'}")
    click.echo("Helpers:")
    for name in info["helpers"]["available_helpers"]:
        click.echo(f"\t{name}")


COMMANDS = (feature,)
