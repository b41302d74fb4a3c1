"""Map commands: `pybpf map` verbs (show, dump, update, create, pin, freeze, event_pipe, ...).

bpftool's syntax and JSON keys. A map is addressed as bpftool does, or by object file::

    MAP  := id N | pinned PATH | name NAME | OBJECT.o [--map NAME]
    DATA := [hex] BYTES               (bytes as numbers: 1 0x10 010; with hex: 01 ff)
    pybpf map update MAP key DATA value DATA [any|exist|noexist]
    pybpf map create PATH type TYPE key KEY_SIZE value VALUE_SIZE entries N name NAME
                     [flags FLAGS]

``id N`` is any map of the state directory (a live map of any process, a pin, or a map a
pinned program holds: :mod:`pybpf.maps.shared`); ``pinned PATH`` a pin
(``/sys/fs/bpf/...`` paths are mapped into the state directory); ``name NAME`` the map of
that name; an object file is loaded (``--backend kernel``: into Linux; maps pinned by name
are reopened, so they show live data) and ``--map`` picks its map (optional when it has
one). ``map show`` without MAP lists every map. JSON output uses bpftool's keys: ``key``
and ``value`` as arrays of ``"0x.."`` strings (per-CPU maps: ``values`` of ``{"cpu",
"value"}``) and ``formatted`` with the BTF-decoded key and value when the map has BTF
types. ``map event_pipe`` prints ring buffer records or perf event array samples as they
arrive. With ``--backend kernel``, ``id``/``pinned``/``name`` are Linux's maps (formatted
from the BTF the kernel keeps) and ``map show`` without MAP lists every kernel map.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Sequence
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
def open_map(
    words: Sequence[str], map_name: str | None, backend: str = "portable"
) -> contextlib.AbstractContextManager[tuple[Any, list[str]]]:
    """The map ``words`` address (see the module docstring) and the words after it."""
    from pybpf.cli.target import map_target

    return map_target(words, map_name, backend=backend)


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
    }
    if getattr(m, "bytes_memlock", None) is not None:  # kernel maps
        record["bytes_memlock"] = m.bytes_memlock
    record["frozen"] = int(m.frozen)
    if getattr(m, "btf_id", 0):
        record["btf_id"] = m.btf_id
    if pins:
        record["pinned"] = list(pins)
    return record


def _info_text(record: dict[str, Any]) -> str:
    text = (
        f"{record['id']}: {record['type']}  name {record['name']}  flags {record['flags']:#x}\n"
        f"\tkey {record['bytes_key']}B  value {record['bytes_value']}B  "
        f"max_entries {record['max_entries']}"
    )
    if "bytes_memlock" in record:
        text += f"  memlock {record['bytes_memlock']}B"
    if record["frozen"]:
        text += "  frozen"
    if record.get("btf_id"):
        text += f"\n\tbtf_id {record['btf_id']}"
    for pin in record.get("pinned", ()):
        text += f"\n\tpinned {pin}"
    return text


def _file_info(found: Any) -> dict[str, Any]:
    d = found.definition
    record = {
        "id": found.id,
        "type": d.type.type_name,
        "name": d.name,
        "flags": int(d.flags),
        "bytes_key": d.key_size,
        "bytes_value": d.value_size,
        "max_entries": d.max_entries,
        "frozen": int(found.frozen),
    }
    if found.pins:
        record["pinned"] = list(found.pins)
    return record


# ---- commands -------------------------------------------------------------------------------
_MAP_OPTION = click.option("--map", "map_name", metavar="NAME", help="The map of an object file.")
_BACKEND = click.option(
    "--backend",
    type=click.Choice(["portable", "kernel"]),
    default="portable",
    show_default=True,
    help="Load object files with pybpf's maps or into Linux (bpf()).",
)
def _complete(ctx: Any, param: Any, incomplete: str) -> list[Any]:
    from pybpf.cli.target import complete_words

    return complete_words("map")(ctx, param, incomplete)


_WORDS = click.argument("words", nargs=-1, required=False, shell_complete=_complete)


@click.group("map")
def map_group() -> None:
    """Inspect, create and edit maps (bpftool's `map` verbs).

    \b
    MAP := id N | pinned PATH | name NAME | OBJECT.o [--map NAME]
    Example:
      pybpf map create /sys/fs/bpf/counts type hash key 4 value 8 entries 64 name counts
      pybpf map update name counts key 1 0 0 0 value 5 0 0 0 0 0 0 0 noexist
      pybpf map dump pinned /sys/fs/bpf/counts
      pybpf -j map dump examples/c/xdp_counter.o --map proto_count
    """


def _pins_of(m: Any) -> list[str]:
    from pybpf.maps.shared import list_maps

    if getattr(m, "path", None) is None:
        return []
    for found in list_maps():
        if found.id == m.id:
            return list(found.pins)
    return []


@map_group.command("show")
@_WORDS
@_MAP_OPTION
@_BACKEND
@click.pass_obj
def map_show(out, words: tuple[str, ...], map_name: str | None, backend: str) -> None:
    """Show every map (no MAP), one map, or every map of an object file.

    \b
    Example:
      pybpf map show
      pybpf -j map show id 4
      pybpf map show examples/c/xdp_counter.o
    """
    from pybpf.cli.target import KEYWORDS, load_object, object_maps

    if words and words[0] not in KEYWORDS and map_name is None:
        _no_more(list(words[1:]))
        with load_object(words[0], backend=backend) as obj:
            records = [info(m) for m in object_maps(obj).values()]
        _emit_infos(out, records)
        return
    if words:
        with open_map(words, map_name, backend) as (m, rest):
            _no_more(rest)
            record = info(m, _pins_of(m))
        if out.json:
            out.emit_json(record)
        else:
            click.echo(_info_text(record))
        return
    if backend == "kernel":
        from pybpf.cli.target import kernel_records

        _emit_infos(out, [info(m) for m in kernel_records("map")])
        return
    from pybpf.maps.shared import list_maps

    _emit_infos(out, [_file_info(found) for found in list_maps()])


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
@_BACKEND
@click.pass_obj
def map_dump(out, words: tuple[str, ...], map_name: str | None, backend: str) -> None:
    """Print every element of a map.

    \b
    Example:
      pybpf map dump id 4
      pybpf -j map dump examples/c/pipeline.o --map totals --backend kernel
    """
    with open_map(words, map_name, backend) as (m, rest):
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
@_BACKEND
@click.pass_obj
def map_lookup(out, words: tuple[str, ...], map_name: str | None, backend: str) -> None:
    """Print the value of one key: MAP key DATA.

    \b
    Example:
      pybpf map lookup name counts key 1 0 0 0
    """
    from pybpf.maps.definition import fail

    with open_map(words, map_name, backend) as (m, rest):
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
@_BACKEND
@click.pass_obj
def map_update(out, words: tuple[str, ...], map_name: str | None, backend: str) -> None:
    """Store a value: MAP key DATA value DATA [any|exist|noexist].

    \b
    Example:
      pybpf map update pinned /sys/fs/bpf/counts key hex 01 00 00 00 value 5 0 0 0 0 0 0 0
    """
    with open_map(words, map_name, backend) as (m, rest):
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
@_BACKEND
@click.pass_obj
def map_delete(out, words: tuple[str, ...], map_name: str | None, backend: str) -> None:
    """Remove one key: MAP key DATA.

    \b
    Example:
      pybpf map delete id 4 key 1 0 0 0
    """
    with open_map(words, map_name, backend) as (m, rest):
        key, rest = _key(m, rest)
        _no_more(rest)
        m.delete_raw(key)
    if out.json:
        out.emit_json(None)


def _create_words(words: Sequence[str]) -> tuple[str, dict[str, Any]]:
    from pybpf.maptypes import MapType

    words = list(words)
    if not words:
        raise InputError("expected PATH type TYPE key N value N entries N name NAME")
    path = words.pop(0)
    fields: dict[str, Any] = {"flags": 0}
    names = {"type": "type", "key": "key_size", "value": "value_size", "entries": "max_entries"}
    while words:
        word = words.pop(0)
        if not words:
            raise InputError(f"{word} needs an argument", field=word)
        arg = words.pop(0)
        if word == "type":
            fields["type"] = MapType.from_name(arg)
        elif word in ("key", "value", "entries", "flags"):
            try:
                number = int(arg, 0)
            except ValueError:
                raise InputError(f"can't parse {word} {arg!r}", field=word) from None
            fields[names.get(word, word)] = number
        elif word == "name":
            fields["name"] = arg
        else:
            raise InputError(f"unknown argument {word!r}", field=word)
    need = {"type": "type", "key_size": "key", "value_size": "value", "max_entries": "entries"}
    missing = [word for field, word in need.items() if field not in fields]
    if "name" not in fields:
        missing.append("name")
    if missing:
        raise InputError(f"map create needs {', '.join(missing)}", field="create")
    return path, fields


@map_group.command("create")
@click.argument("words", nargs=-1, required=True)
@click.pass_obj
def map_create(out, words: tuple[str, ...]) -> None:
    """Create a map pinned at PATH:
    PATH type TYPE key KEY_SIZE value VALUE_SIZE entries N name NAME [flags F].

    \b
    Example:
      pybpf map create /sys/fs/bpf/counts type hash key 4 value 8 entries 64 name counts
    """
    from pybpf.maps import create_map

    path, fields = _create_words(words)
    with create_map(pin=path, **fields) as m:
        record = info(m, _pins_of(m))
    if out.json:
        out.emit_json(record)


@map_group.command("pin")
@_WORDS
@_MAP_OPTION
@_BACKEND
@click.pass_obj
def map_pin(out, words: tuple[str, ...], map_name: str | None, backend: str) -> None:
    """Pin a map at FILE: MAP FILE.

    \b
    Example:
      pybpf map pin id 4 /sys/fs/bpf/counts_again
    """
    with open_map(words, map_name, backend) as (m, rest):
        if len(rest) != 1:
            raise InputError("expected MAP FILE")
        m.pin(rest[0])
        record = info(m, _pins_of(m))
    if out.json:
        out.emit_json(record)


@map_group.command("unpin")
@click.argument("path")
@click.pass_obj
def map_unpin(out, path: str) -> None:
    """Remove a map's pin (bpftool users `rm` it from bpffs): PATH.

    The map lives on while a process, another pin or a pinned program holds it.

    \b
    Example:
      pybpf map unpin /sys/fs/bpf/counts
    """
    from pybpf.maps import open_pinned

    with open_pinned(path) as m:  # MapError ENOENT when nothing is pinned there
        m.unpin(path)
    if out.json:
        out.emit_json(None)


@map_group.command("freeze")
@_WORDS
@_MAP_OPTION
@_BACKEND
@click.pass_obj
def map_freeze(out, words: tuple[str, ...], map_name: str | None, backend: str) -> None:
    """Freeze a map: user-space writes fail from now on (programs still write).

    \b
    Example:
      pybpf map freeze pinned /sys/fs/bpf/config
    """
    with open_map(words, map_name, backend) as (m, rest):
        _no_more(rest)
        m.freeze()
    if out.json:
        out.emit_json(None)


@map_group.command("event_pipe")
@_WORDS
@_MAP_OPTION
@click.option("--count", type=click.IntRange(min=1), help="Stop after N events.")
@click.option("--timeout", type=float, help="Stop after SECONDS without an event.")
@_BACKEND
@click.pass_obj
def map_event_pipe(out, words, map_name, count: int | None, timeout: float | None, backend):
    """Print ring buffer records or perf event array samples as they arrive: MAP.

    \b
    Example:
      pybpf map event_pipe pinned /sys/fs/bpf/events --count 10
    """
    import time

    from pybpf.maps import PerfEventArray, RingBuf
    from pybpf.maptypes import MapType
    from pybpf.objects.events import PerfBuffer, RingBuffer

    seen = 0

    def show(cpu: int | None, data: bytes) -> None:
        nonlocal seen
        seen += 1
        if out.json:
            record: dict[str, Any] = {"type": 9} if cpu is not None else {}
            if cpu is not None:
                record.update({"cpu": cpu, "index": cpu})
            record["data"] = _hex_list(data)
            out.emit_json(record)
        else:
            where = f"CPU: {cpu} index: {cpu} " if cpu is not None else ""
            click.echo(f"== @{time.time_ns()} {where}=====")
            for i in range(0, len(data), 16):
                click.echo(_hex_text(data[i : i + 16]))
            click.echo()

    with open_map(words, map_name, backend) as (m, rest):
        _no_more(rest)
        kernel = getattr(m, "kernel", None)
        if isinstance(m, RingBuf) or (kernel is not None and m.type == MapType.RINGBUF):
            consumer: Any = RingBuffer(kernel or m, lambda data: show(None, data))
        elif isinstance(m, PerfEventArray):
            consumer = PerfBuffer(m, show)
        elif kernel is not None and m.type == MapType.PERF_EVENT_ARRAY:
            consumer = PerfBuffer(kernel, show)
        else:
            raise InputError(
                f"map {m.name!r} is a {m.type.type_name}: not a ring buffer or a perf event array",
                field="map",
            )
        with consumer:
            while count is None or seen < count:
                if not consumer.poll(timeout) and timeout is not None:
                    break


map_group.add_command(map_show, "list")

COMMANDS = (map_group,)
