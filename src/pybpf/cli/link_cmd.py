"""Link commands: ``pybpf link show`` lists attached programs, ``pybpf link detach`` ends one.

``pybpf link show [id N]`` prints the links of every process recorded in the state directory
(:mod:`pybpf.hooks.link`) as ``bpftool link show`` does: id, type, prog_name, prog_tag, the
owning pid and the target's fields (devname, ifindex, attach_type, cgroup, ...); ``-j`` gives
one JSON record per link (a list, or the one record with ``id N``). ``pybpf link detach id N``
ends link N: its owner detaches it (a signal to the attaching process) and the command waits
until the link is gone.
"""

from __future__ import annotations

from typing import Any

import click

from pybpf.errors import InputError, PybpfError

__all__ = ["COMMANDS", "parse_link_id"]


def parse_link_id(words: tuple[str, ...]) -> int | None:
    """``()`` -> ``None``; ``("id", "N")`` -> ``N``; anything else is an :class:`InputError`."""
    if not words:
        return None
    if len(words) == 2 and words[0] == "id" and words[1].isdigit():
        return int(words[1])
    raise InputError(f"expected 'id N', not {' '.join(words)!r}", field="link")


def _text(record: dict[str, Any]) -> str:
    head = f"{record['id']}: {record['type']}  prog {record['prog_name']}"
    if record.get("prog_tag"):
        head += f"  tag {record['prog_tag']}"
    rest = {k: v for k, v in record.items() if k not in ("id", "type", "prog_name", "prog_tag")}
    return head + "\n\t" + "  ".join(f"{k} {v}" for k, v in rest.items())


@click.group("link")
def link_group() -> None:
    """Inspect and end attached programs (links) of any process.

    \b
    Examples:
      pybpf link show
      pybpf link detach id 3
    """


@link_group.command("show")
@click.argument("link", nargs=-1, metavar="[id N]")
@click.pass_obj
def link_show(out, link: tuple[str, ...]) -> None:
    """List links (bpftool link show).

    \b
    Example:
      pybpf link show
      pybpf -j link show id 1
    """
    from pybpf.hooks.link import find_link, list_links

    wanted = parse_link_id(link)
    if wanted is not None:
        record = find_link(wanted).to_json()
        if out.json:
            out.emit_json(record)
        else:
            click.echo(_text(record))
        return
    records = [r.to_json() for r in list_links()]
    if out.json:
        out.emit_json(records)
    elif records:
        click.echo("\n".join(_text(r) for r in records))


@link_group.command("detach")
@click.argument("link", nargs=-1, required=True, metavar="id N")
@click.pass_obj
def link_detach(out, link: tuple[str, ...]) -> None:
    """End link N (its owner detaches it; waits until it is gone).

    \b
    Example:
      pybpf link detach id 1
    """
    from pybpf.cli.net_cmd import wait_gone
    from pybpf.hooks.link import detach_remote

    link_id = parse_link_id(link)
    if link_id is None:
        raise InputError("give the link as 'id N'", field="link")
    record = detach_remote(link_id)
    if wait_gone([link_id]):
        raise PybpfError(f"link {link_id} did not detach within 5 s")
    if out.json:
        out.emit_json({"detached": link_id, "type": record.type})
    else:
        click.echo(f"detached link {link_id} ({record.type} {record.prog_name})")


COMMANDS = (link_group,)
