"""Map commands: ``pybpf map show|dump|lookup|update|delete`` with bpftool's syntax and JSON keys.

A map is addressed as bpftool does, plus object files::

    MAP  := pinned PATH | name NAME | OBJECT.o [--map NAME]
    DATA := [hex] BYTES               (bytes as numbers: 1 0x10 010; with hex: 01 ff)
    pybpf map update MAP key DATA value DATA [any|exist|noexist]

``pinned PATH`` opens a map pinned in the state directory (``/sys/fs/bpf/...`` paths are
mapped into it); ``name NAME`` finds the pinned map of that name; an object file is loaded
(maps pinned by name are reopened, so they show live data) and ``--map`` picks its map
(optional when it has one). JSON output uses bpftool's keys: ``key`` and ``value`` as
arrays of ``"0x.."`` strings (per-CPU maps: ``values`` of ``{"cpu", "value"}``) and
``formatted`` with the BTF-decoded key and value when the map has BTF types.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator, Sequence
from typing import Any

import click

from pybpf.errors import InputError

__all__ = ["COMMANDS", "parse_data"]

_FLAGS = {"any": 0, "noexist": 1, "exist": 2}
_KEYWORDS = {"key", "value", *_FLAGS}


# ---- DATA -----------------------------------------------------------------------------------
def _byte(token: str, base: int) -> int:
    try:
        if base == 16:
            value = int(token, 16)
        elif len(token) > 1 and token.startswith("0") and token.isdigit():
            value = int(token, 8)  # strtoul(..., 0): a leading 0 is octal
        else:
            value = int(token, 0)
    except ValueError:
        raise InputError(f"error parsing byte: {token}", field="data") from None
    if not 0 <= value <= 0xFF:
        raise InputError(f"error parsing byte: {token} (not 0-255)", field="data")
    return value


def parse_data(words: Sequence[str], size: int, what: str) -> tuple[bytes, list[str]]:
    """bpftool's ``[hex] BYTES`` for a ``size``-byte ``what``; returns it and the words left."""
    words = list(words)
    base = 0
    if words and words[0] == "hex":
        base = 16
        words.pop(0)
    out = []
    while words and words[0] not in _KEYWORDS and len(out) < size:
        out.append(_byte(words.pop(0), base))
    if len(out) != size:
        raise InputError(f"{what} expected {size} bytes got {len(out)}", field=what)
    return bytes(out), words


def _hex_list(raw: bytes) -> list[str]:
    return [f"0x{b:02x}" for b in raw]


def _hex_text(raw: bytes) -> str:
    return " ".join(f"{b:02x}" for b in raw)


# ---- addressing -----------------------------------------------------------------------------
@contextlib.contextmanager
def open_map(words: Sequence[str], map_name: str | None) -> Iterator[tuple[Any, list[str]]]:
    """The map ``words`` address (see the module docstring) and the words after it."""
    from pybpf.maps import open_pinned
    from pybpf.state import StateDirectory

    words = list(words)
    if not words:
        raise InputError("expected a map: pinned PATH, name NAME or an object file")
    head = words.pop(0)
    if head == "pinned":
        if not words:
            raise InputError("pinned needs a PATH")
        with open_pinned(words.pop(0)) as m:
            yield m, words
        return
    if head == "name":
        if not words:
            raise InputError("name needs a NAME")
        name = words.pop(0)
        state = StateDirectory()
        found = None
        for path in state.pinned():
            with contextlib.suppress(InputError, OSError), open_pinned(path, state=state) as m:
                if m.name == name:
                    found = path
                    break
        if found is None:
            raise InputError(f"no pinned map named {name!r}", field="map")
        with open_pinned(found, state=state) as m:
            yield m, words
        return
    if head == "id":
        raise InputError("map ids belong to one process here: use pinned PATH or name NAME")
    from pybpf.objects import Object

    with Object.open(head).load() as obj:
        if map_name is None:
            if len(obj.maps) != 1:
                names = ", ".join(obj.maps) or "none"
                raise InputError(f"give --map NAME (the object's maps: {names})", field="map")
            map_name = next(iter(obj.maps))
        yield obj.map(map_name), words


# ---- records --------------------------------------------------------------------------------
def _btf_codec(codec: Any) -> bool:
    return type(codec).__name__ == "BTFCodec"


def entry(m: Any, key: bytes, value: bytes) -> dict[str, Any]:
    """One element as bpftool's JSON prints it."""
    record: dict[str, Any] = {"key": _hex_list(key)}
    stride = (m.value_size + 7) // 8 * 8
    chunks = [value[i : i + m.value_size] for i in range(0, len(value), stride)] if m.percpu else []
    if m.percpu:
        record["values"] = [{"cpu": i, "value": _hex_list(c)} for i, c in enumerate(chunks)]
    else:
        record["value"] = _hex_list(value)
    kc, vc = m.key_codec, m.value_codec
    if _btf_codec(kc) or _btf_codec(vc):
        fmt: dict[str, Any] = {}
        if _btf_codec(kc):
            fmt["key"] = kc.decode(key)
        if m.percpu:
            fmt["values"] = [{"cpu": i, "value": _formatted(vc, c)} for i, c in enumerate(chunks)]
        else:
            fmt["value"] = _formatted(vc, value)
        record["formatted"] = fmt
    return record


def _formatted(codec: Any, raw: bytes) -> Any:
    """A value as bpftool's BTF dumper shows it (a DATASEC: ``{name: [{var: value}]}``)."""
    if not _btf_codec(codec):
        return _hex_list(raw)
    from pybpf import btf

    decoded = codec.decode(raw)
    t = codec.spec.resolve(codec.type_id)
    if isinstance(t, btf.Datasec):
        return {t.name: [{k: v} for k, v in decoded.items()]}
    return decoded


def _entry_text(m: Any, key: bytes, value: bytes) -> str:
    if not m.percpu:
        return f"key: {_hex_text(key)}  value: {_hex_text(value)}"
    stride = (m.value_size + 7) // 8 * 8
    lines = ["key:", _hex_text(key)]
    for i in range(0, len(value), stride):
        lines.append(f"value (CPU {i // stride:02d}): {_hex_text(value[i : i + m.value_size])}")
    return "\n".join(lines)


def info(m: Any, pins: Sequence[str] = ()) -> dict[str, Any]:
    """A map as ``bpftool map show --json`` describes it."""
    record = {
        "id": m.id,
        "type": m.type.type_name,
        "name": m.name,
        "flags": int(m.flags),
        "bytes_key": m.key_size,
        "bytes_value": m.value_size,
        "max_entries": m.max_entries,
        "frozen": int(m.frozen),
    }
    if pins:
        record["pinned"] = list(pins)
    return record


def _info_text(record: dict[str, Any]) -> str:
    text = (
        f"{record['id']}: {record['type']}  name {record['name']}  flags {record['flags']:#x}\n"
        f"\tkey {record['bytes_key']}B  value {record['bytes_value']}B  "
        f"max_entries {record['max_entries']}"
    )
    if record["frozen"]:
        text += "  frozen"
    for pin in record.get("pinned", ()):
        text += f"\n\tpinned {pin}"
    return text


# ---- commands -------------------------------------------------------------------------------
_MAP_OPTION = click.option("--map", "map_name", metavar="NAME", help="The map of an object file.")
_WORDS = click.argument("words", nargs=-1, required=False)


@click.group("map")
def map_group() -> None:
    """Inspect and edit maps (bpftool's `map` verbs).

    \b
    Example:
      pybpf map dump pinned /sys/fs/bpf/counts
      pybpf map update name counts key 1 0 0 0 value 5 0 0 0 0 0 0 0 noexist
      pybpf -j map dump xdp_counter.o --map proto_count
    """


def _pins_of(m: Any) -> list[str]:
    from pybpf.state import StateDirectory

    if m.path is None:
        return []
    state = StateDirectory()
    try:
        inode = m.path.stat().st_ino
    except OSError:
        return []
    out = []
    for pin in state.pinned():
        with contextlib.suppress(OSError, InputError):
            if state.pin_path(pin).stat().st_ino == inode:
                out.append(pin)
    return out


@map_group.command("show")
@_WORDS
@_MAP_OPTION
@click.pass_obj
def map_show(out, words: tuple[str, ...], map_name: str | None) -> None:
    """Show one map, every map of an object file, or every pinned map (no MAP)."""
    if words and words[0] not in ("pinned", "name", "id") and map_name is None:
        from pybpf.objects import Object

        with Object.open(words[0]).load() as obj:
            records = [info(m) for m in obj.maps.values()]
        _emit_infos(out, records)
        return
    if words:
        with open_map(words, map_name) as (m, rest):
            _no_more(rest)
            record = info(m, _pins_of(m))
        if out.json:
            out.emit_json(record)
        else:
            click.echo(_info_text(record))
        return
    from pybpf.maps import open_pinned
    from pybpf.state import StateDirectory

    state = StateDirectory()
    records = []
    for pin in state.pinned():
        with contextlib.suppress(InputError, OSError):
            with open_pinned(pin, state=state) as m:
                records.append(info(m, [pin]))
    _emit_infos(out, records)


def _emit_infos(out, records: list[dict[str, Any]]) -> None:
    if out.json:
        out.emit_json(records)
    else:
        for record in records:
            click.echo(_info_text(record))


def _no_more(words: Sequence[str]) -> None:
    if words:
        raise InputError(f"unexpected arguments: {' '.join(words)}")


@map_group.command("dump")
@_WORDS
@_MAP_OPTION
@click.pass_obj
def map_dump(out, words: tuple[str, ...], map_name: str | None) -> None:
    """Print every element of a map."""
    with open_map(words, map_name) as (m, rest):
        _no_more(rest)
        records = []
        texts = []
        for key in m.keys_raw():
            value = m.lookup_raw(key)
            if value is None:
                continue
            records.append(entry(m, key, value))
            texts.append(_entry_text(m, key, value))
    if out.json:
        out.emit_json(records)
        return
    for text in texts:
        click.echo(text)
    click.echo(f"Found {len(texts)} element{'s' if len(texts) != 1 else ''}")


def _key(m: Any, words: list[str]) -> tuple[bytes, list[str]]:
    if not words or words[0] != "key":
        raise InputError("expected key DATA", field="key")
    return parse_data(words[1:], m.key_size, "key")


@map_group.command("lookup")
@_WORDS
@_MAP_OPTION
@click.pass_obj
def map_lookup(out, words: tuple[str, ...], map_name: str | None) -> None:
    """Print the value of one key: MAP key DATA."""
    from pybpf.maps.definition import fail

    with open_map(words, map_name) as (m, rest):
        key, rest = _key(m, rest)
        _no_more(rest)
        value = m.lookup_raw(key)
        if value is None:
            raise fail(errno.ENOENT, "lookup failed: no such key", "lookup", m.name)
        record, text = entry(m, key, value), _entry_text(m, key, value)
    if out.json:
        out.emit_json(record)
    else:
        click.echo(text)


@map_group.command("update")
@_WORDS
@_MAP_OPTION
@click.pass_obj
def map_update(out, words: tuple[str, ...], map_name: str | None) -> None:
    """Store a value: MAP key DATA value DATA [any|exist|noexist]."""
    with open_map(words, map_name) as (m, rest):
        key, rest = _key(m, rest)
        if not rest or rest[0] != "value":
            raise InputError("expected value DATA", field="value")
        value, rest = parse_data(rest[1:], m.user_value_size, "value")
        flags = 0
        if rest and rest[0] in _FLAGS:
            flags = _FLAGS[rest.pop(0)]
        _no_more(rest)
        m.update_raw(key, value, flags)
    if out.json:
        out.emit_json(None)


@map_group.command("delete")
@_WORDS
@_MAP_OPTION
@click.pass_obj
def map_delete(out, words: tuple[str, ...], map_name: str | None) -> None:
    """Remove one key: MAP key DATA."""
    with open_map(words, map_name) as (m, rest):
        key, rest = _key(m, rest)
        _no_more(rest)
        m.delete_raw(key)
    if out.json:
        out.emit_json(None)


map_group.add_command(map_show, "list")

COMMANDS = (map_group,)
