"""Targets: programs and maps addressed on the command line as bpftool does, or by object file.

::

    PROG := id N | pinned PATH | name NAME | tag TAG | OBJECT.o [--program NAME]
    MAP  := id N | pinned PATH | name NAME | OBJECT.o [--map NAME]

``id``, ``pinned``, ``name`` and ``tag`` find what the state directory holds (pinned
programs: :mod:`pybpf.objects.pinned`; maps of any process, live or pinned:
:mod:`pybpf.maps.shared`); an object file is loaded for the command's duration (with
``--backend kernel`` into Linux; with ``--backend kernel``, ``id``, ``pinned`` and ``name``
are the kernel's objects, as bpftool reads them). :func:`program_targets` and
:func:`map_target` are
context managers that close what they opened. Programs come as :class:`ProgramView`
(bpftool's ``prog show`` record, ``xlated()``, ``jited()``), maps as the portable
:class:`~pybpf.maps.Map` or :class:`KernelMapView` (the same attributes over a kernel map).
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator, Sequence
from typing import Any

from pybpf.errors import InputError, MapError

__all__ = [
    "KEYWORDS",
    "ProgramView",
    "KernelMapView",
    "program_targets",
    "map_target",
    "load_object",
    "parse_id",
]

KEYWORDS = ("id", "pinned", "name", "tag")


def parse_id(text: str) -> int:
    """An id argument (bpftool: ``id 42``); :class:`InputError` when not a number."""
    try:
        value = int(text, 0)
    except ValueError:
        raise InputError(f"can't parse {text!r} as ID", field="id") from None
    if value < 0:
        raise InputError(f"can't parse {text!r} as ID", field="id")
    return value


def _take(words: list[str], keyword: str) -> str:
    if not words:
        raise InputError(f"{keyword} needs an argument", field=keyword)
    return words.pop(0)


@contextlib.contextmanager
def load_object(file: str, *, engine: str = "interpreter", backend: str = "portable"):
    """The object file ``file`` loaded for a command (closed afterwards)."""
    from pybpf.objects import Object

    obj = Object.open(file)
    if backend == "kernel":
        obj.load(backend="kernel", pin_maps_dir=None)
    else:
        obj.load(engine=engine)
    with obj:
        yield obj


# ---- programs -------------------------------------------------------------------------------
class ProgramView:
    """A program as the ``prog`` commands see it: a pinned record or a live program."""

    def __init__(self, source: Any, pins: Sequence[str] = ()) -> None:
        self.source = source
        self.pins = list(pins)

    @property
    def name(self) -> str:
        """The program's name."""
        return self.source.name

    @property
    def live(self) -> Any:
        """The live program (portable or kernel), ``None`` for a pinned record."""
        return None if hasattr(self.source, "to_json") else self.source

    def info(self) -> dict[str, Any]:
        """``bpftool prog show --json``'s record (plus pybpf's ``section``, ``engine``)."""
        if self.live is None:
            return self.source.to_json()
        return live_program_info(self.source, self.pins)

    def xlated(self) -> tuple[Any, ...]:
        """The instructions after load (``prog dump xlated``)."""
        src = self.source
        kernel = getattr(src, "kernel", None)
        if kernel is not None:
            from pybpf.syscall.info import prog_xlated

            return tuple(_decode_lenient(prog_xlated(kernel.fd)))
        xlated = getattr(src, "xlated", None)
        return tuple(xlated()) if callable(xlated) else tuple(src.instructions)

    def jited(self, *, json: bool = False) -> Any:
        """The native code (``prog dump jited``); NotSupportedError without a JIT."""
        from pybpf.errors import NotSupportedError

        src = self.source
        if getattr(src, "kernel", None) is not None:
            raise NotSupportedError(
                "dump the kernel's JIT code with bpftool prog dump jited", feature="jited"
            )
        jited = getattr(src, "jited", None)
        if callable(jited):
            return jited(json=json)
        if src.engine != "jit":
            raise NotSupportedError(
                f"program {src.name!r} runs on the {src.engine}: it has no native code",
                feature="jited",
                program=src.name,
            )
        from pybpf.jit.dump import jit_listing

        return jit_listing(self.xlated(), json=json)


def fdinfo(fd: Any) -> dict[str, str]:
    """``/proc/self/fdinfo/<fd>`` of a kernel object as a dict (empty where unreadable)."""
    try:
        text = open(f"/proc/self/fdinfo/{int(fd)}").read()  # noqa: SIM115
    except (OSError, TypeError, ValueError):
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _wall_clock(boot_ns: int) -> int:
    """bpftool's ``loaded_at``: a boot-time stamp as seconds since the epoch."""
    import time

    try:
        since_boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        return 0
    return (time.time_ns() - (since_boot - boot_ns)) // 1_000_000_000


def _decode_lenient(raw: bytes) -> list[Any]:
    """Instructions as the kernel's xlated dump has them: fields the strict codec refuses
    (helper calls rewritten to offsets, internal opcodes) are kept as they are."""
    import struct

    from pybpf.isa import Instruction
    from pybpf.isa.instruction import LDDW_CODE

    out = []
    pc = 0
    while pc + 8 <= len(raw):
        code, regs, off, imm = struct.unpack_from("<BBhi", raw, pc)
        imm_hi = 0
        step = 8
        if code == LDDW_CODE and pc + 16 <= len(raw):
            imm_hi = struct.unpack_from("<i", raw, pc + 12)[0]
            step = 16
        out.append(Instruction(code, regs & 0xF, regs >> 4, off, imm, imm_hi))
        pc += step
    return out


def live_program_info(prog: Any, pins: Sequence[str] = ()) -> dict[str, Any]:
    """A loaded program (portable or kernel) as ``bpftool prog show --json`` describes it."""
    kernel = getattr(prog, "kernel", None)
    if kernel is not None:
        info = kernel.info()
        record: dict[str, Any] = {
            "id": info.id,
            "type": getattr(info.type, "type_name", str(info.type)),
            "name": info.name,
            "tag": info.tag,
            "gpl_compatible": info.gpl_compatible,
            "loaded_at": _wall_clock(info.load_time),
            "uid": info.created_by_uid,
            "bytes_xlated": info.xlated_prog_len,
            "jited": bool(info.jited_prog_len),
            "bytes_jited": info.jited_prog_len,
        }
        memlock = fdinfo(kernel.fd).get("memlock")
        if memlock is not None:
            record["bytes_memlock"] = int(memlock)
        record["map_ids"] = list(info.map_ids)
        record["btf_id"] = info.btf_id
        if info.run_cnt:
            record["run_time_ns"] = info.run_time_ns
            record["run_cnt"] = info.run_cnt
    else:
        from pybpf.objects.loader import gpl_compatible

        record = {
            "id": prog.id,
            "type": prog.type.type_name if prog.type is not None else "unspec",
            "name": prog.name,
            "tag": prog.tag,
            "gpl_compatible": gpl_compatible(prog.license),
            "bytes_xlated": 8 * sum(i.slots for i in prog.instructions),
            "jited": prog.engine == "jit",
            "bytes_jited": 0,
            "map_ids": list(prog.map_ids),
            "btf_id": 0,
        }
        if prog.run_cnt:
            record["run_time_ns"] = prog.run_time_ns
            record["run_cnt"] = prog.run_cnt
    if pins:
        record["pinned"] = list(pins)
    record["section"] = prog.section
    record["engine"] = prog.engine
    return record


def _pinned_programs(words: list[str]) -> list[ProgramView]:
    from pybpf.objects.pinned import list_programs, read_pin

    keyword = words.pop(0)
    value = _take(words, keyword)
    if keyword == "pinned":
        return [ProgramView(read_pin(value))]
    records = list_programs()
    if keyword == "id":
        wanted = parse_id(value)
        found = [r for r in records if r.id == wanted]
        if not found:
            raise MapError(
                f"get by id ({wanted}): No such file or directory",
                errno=errno.ENOENT,
                operation="get_fd_by_id",
            )
    elif keyword == "name":
        found = [r for r in records if r.name == value]
        if not found:
            raise InputError(f"no program named {value!r}", field="name")
    else:
        tag = value.replace(" ", "").lower()
        if len(tag) != 16 or any(c not in "0123456789abcdef" for c in tag):
            raise InputError(f"can't parse tag {value!r} (16 hex digits)", field="tag")
        found = [r for r in records if r.tag == tag]
        if not found:
            raise InputError(f"no program with tag {tag}", field="tag")
    return [ProgramView(r) for r in found]


@contextlib.contextmanager
def program_targets(
    words: Sequence[str],
    program: str | None = None,
    *,
    engine: str = "interpreter",
    backend: str = "portable",
    every: bool = False,
) -> Iterator[tuple[list[ProgramView], list[str]]]:
    """The programs ``words`` address and the words after the address.

    An object file gives its program ``program``, or all of them with ``every`` (else its
    only one: InputError when it has several)."""
    words = list(words)
    if not words:
        raise InputError("expected a program: id N, pinned PATH, name NAME, tag TAG or OBJ")
    if words[0] in KEYWORDS and backend == "kernel":
        with kernel_programs(words) as found:
            yield found
        return
    if words[0] in KEYWORDS:
        yield _pinned_programs(words), words
        return
    with load_object(words.pop(0), engine=engine, backend=backend) as obj:
        if program is not None:
            views = [ProgramView(obj.program(program))]
        elif every:
            views = [ProgramView(p) for p in obj.programs.values()]
        elif len(obj.programs) == 1:
            views = [ProgramView(next(iter(obj.programs.values())))]
        else:
            names = ", ".join(obj.programs) or "none"
            raise InputError(f"give --program NAME (the object's programs: {names})")
        yield views, words


# ---- maps -----------------------------------------------------------------------------------
class KernelMapView:
    """A kernel map (:class:`pybpf.kernel.KernelMap`) with the portable map's attributes
    the ``map`` commands use (``lookup_raw``, ``keys_raw``, codecs from the object's BTF)."""

    def __init__(self, kmap: Any, codecs: tuple[Any, Any] | None = None) -> None:
        from pybpf.maps.codec import BYTES
        from pybpf.maptypes import MapType

        self.kernel = kmap
        info = kmap.info()
        self.id = info.id
        self.type = MapType(int(info.type))
        self.name = info.name
        self.flags = info.map_flags
        self.key_size = info.key_size
        self.value_size = info.value_size
        self.max_entries = info.max_entries
        self.btf_id = info.btf_id
        fields = fdinfo(kmap.fd)
        self.frozen = fields.get("frozen", "0") not in ("0", "")
        self.bytes_memlock = int(fields["memlock"]) if "memlock" in fields else None
        self.percpu = self.type.type_name.startswith("percpu") or "_percpu_" in (
            self.type.type_name
        )
        self.user_value_size = kmap.value_size
        self.key_codec, self.value_codec = codecs or (BYTES, BYTES)
        self.path = None

    def keys_raw(self) -> list[bytes]:
        """Every key."""
        return list(self.kernel.keys())

    def lookup_raw(self, key: bytes) -> bytes | None:
        """The value under ``key`` (all CPUs' for per-CPU maps)."""
        return self.kernel.lookup(key)

    def update_raw(self, key: bytes, value: bytes, flags: int = 0) -> None:
        """Store a value."""
        self.kernel.update(key, value, flags)

    def delete_raw(self, key: bytes) -> None:
        """Remove a key."""
        self.kernel.delete(key)

    def freeze(self) -> None:
        """``BPF_MAP_FREEZE`` in the kernel."""
        from pybpf.kernel.maps import freeze_map

        freeze_map(self.kernel.fd)

    def pin(self, path: str) -> None:
        """Pin in the kernel's bpffs."""
        from pybpf.syscall.objects import obj_pin

        obj_pin(self.kernel.fd, path)


def _kernel_codecs(obj: Any, name: str) -> tuple[Any, Any] | None:
    return spec_codecs(obj.spec, name)


def spec_codecs(object_spec: Any, name: str) -> tuple[Any, Any] | None:
    """Key and value codecs of map ``name`` from its object's BTF (bytes where unknown)."""
    from pybpf.maps.codec import BYTES
    from pybpf.objects.values import BTFCodec

    spec = object_spec.maps.get(name)
    btf = object_spec.btf
    if spec is None or btf is None:
        return None
    key = value = BYTES
    with contextlib.suppress(InputError):
        if spec.key_type_id and btf.size_of(spec.key_type_id) == spec.key_size:
            key = BTFCodec(btf, spec.key_type_id)
        if spec.value_type_id and btf.size_of(spec.value_type_id) == spec.value_size:
            value = BTFCodec(btf, spec.value_type_id)
    return key, value


def object_maps(obj: Any) -> dict[str, Any]:
    """An object's maps by name, kernel maps wrapped in :class:`KernelMapView`."""
    if obj.backend != "kernel":
        return dict(obj.maps)
    return {n: KernelMapView(m, _kernel_codecs(obj, n)) for n, m in obj.maps.items()}


def _shared_map(words: list[str]) -> Any:
    m = _open_shared(words)
    from pybpf.objects.pinned import map_source

    try:
        source = map_source(m.id)
        codecs = spec_codecs(*source) if source is not None else None
    except Exception:  # decoding is a nicety: a broken record leaves bytes
        codecs = None
    if codecs is not None and not m.type.is_map_in_map:
        m.key_codec, m.value_codec = codecs
    return m


def _open_shared(words: list[str]) -> Any:
    from pybpf.maps import open_pinned
    from pybpf.maps.shared import list_maps, open_by_id, open_file

    keyword = words.pop(0)
    value = _take(words, keyword)
    if keyword == "pinned":
        return open_pinned(value)
    if keyword == "id":
        return open_by_id(parse_id(value))
    if keyword == "name":
        found = [m for m in list_maps() if m.definition.name == value]
        if not found:
            raise InputError(f"no map named {value!r}", field="map")
        if len({m.id for m in found}) > 1:
            ids = ", ".join(str(m.id) for m in found)
            raise InputError(f"several maps are named {value!r} (ids {ids}): use id N")
        return open_file(found[0].file)
    raise InputError("maps have no tag: use id N, pinned PATH or name NAME", field="tag")


@contextlib.contextmanager
def map_target(
    words: Sequence[str],
    map_name: str | None = None,
    *,
    backend: str = "portable",
) -> Iterator[tuple[Any, list[str]]]:
    """The map ``words`` address (see the module docstring) and the words after it."""
    words = list(words)
    if not words:
        raise InputError("expected a map: id N, pinned PATH, name NAME or an object file")
    if words[0] in KEYWORDS and backend == "kernel":
        with kernel_map(words) as found:
            yield found
        return
    if words[0] in KEYWORDS:
        with _shared_map(words) as m:
            yield m, words
        return
    with load_object(words.pop(0), backend=backend) as obj:
        maps = object_maps(obj)
        if map_name is None:
            if len(maps) != 1:
                names = ", ".join(maps) or "none"
                raise InputError(f"give --map NAME (the object's maps: {names})", field="map")
            map_name = next(iter(maps))
        if map_name not in maps:
            raise InputError(f"no map named {map_name!r}", field="map")
        yield maps[map_name], words


# ---- kernel objects by id, pin or name (--backend kernel) ------------------------------------
class _KernelFdMap:
    """A kernel map reached by fd, with :class:`pybpf.kernel.KernelMap`'s methods."""

    def __init__(self, fd: Any) -> None:
        from types import SimpleNamespace

        from pybpf.syscall.info import map_info

        self.fd = fd
        self._info = map_info(fd)
        self.spec = SimpleNamespace(type=self._info.type, max_entries=self._info.max_entries)
        kind = getattr(self._info.type, "type_name", "")
        size = self._info.value_size
        if kind.startswith("percpu") or "_percpu_" in kind:
            from pybpf.kernel.maps import possible_cpus

            size = (size + 7) // 8 * 8 * possible_cpus()
        self.value_size = size

    def info(self) -> Any:
        return self._info

    def keys(self) -> Iterator[bytes]:
        from pybpf.syscall.maps import map_keys

        return map_keys(self.fd, self._info.key_size)

    def lookup(self, key: bytes) -> bytes | None:
        from pybpf.syscall.maps import map_lookup

        return map_lookup(self.fd, key, self.value_size)

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        from pybpf.syscall.maps import map_update

        map_update(self.fd, key, value, flags)

    def delete(self, key: bytes) -> None:
        from pybpf.syscall.maps import map_delete

        map_delete(self.fd, key)

    def close(self) -> None:
        self.fd.close()


class _KernelFdProgram:
    """A kernel program reached by fd, as :class:`ProgramView` reads it."""

    section = ""
    engine = "kernel"

    def __init__(self, fd: Any) -> None:
        self.fd = fd
        self.kernel = self
        self.name = self.info().name

    def info(self) -> Any:
        from pybpf.syscall.info import prog_info

        return prog_info(self.fd)

    def close(self) -> None:
        self.fd.close()


def _kernel_fd(kind: str, words: list[str]) -> Any:
    from pybpf.syscall import objects

    keyword = words.pop(0)
    value = _take(words, keyword)
    if keyword == "id":
        get = objects.map_get_fd_by_id if kind == "map" else objects.prog_get_fd_by_id
        return get(parse_id(value))
    if keyword == "pinned":
        return objects.obj_get(value)
    if keyword == "name":
        from pybpf.syscall.info import map_info, prog_info

        ids = objects.map_ids() if kind == "map" else objects.prog_ids()
        get = objects.map_get_fd_by_id if kind == "map" else objects.prog_get_fd_by_id
        info = map_info if kind == "map" else prog_info
        for object_id in ids:
            with contextlib.suppress(OSError):
                fd = get(object_id)
                if info(fd).name == value:
                    return fd
                fd.close()
        raise InputError(f"no kernel {kind} named {value!r}", field="name")
    raise InputError(f"{kind}s are addressed by id, pinned or name with --backend kernel")


def _kernel_btf_codecs(info: Any) -> tuple[Any, Any] | None:
    """Codecs from the BTF the kernel keeps for a map (``bpftool map dump``'s formatting)."""
    if not info.btf_id:
        return None
    from pybpf import btf
    from pybpf.maps.codec import BYTES
    from pybpf.objects.values import BTFCodec
    from pybpf.syscall import objects
    from pybpf.syscall.attr import BtfInfoStruct, address, out_buffer
    from pybpf.syscall.info import _get_info, btf_info

    try:
        with objects.btf_get_fd_by_id(info.btf_id) as fd:
            size = btf_info(fd).size
            data = out_buffer(size)
            _get_info(fd, BtfInfoStruct(btf=address(data), btf_size=size))  # the raw BTF
            spec = btf.parse(bytes(data))
        key = value = BYTES
        if info.btf_key_type_id and spec.size_of(info.btf_key_type_id) == info.key_size:
            key = BTFCodec(spec, info.btf_key_type_id)
        if info.btf_value_type_id and spec.size_of(info.btf_value_type_id) == info.value_size:
            value = BTFCodec(spec, info.btf_value_type_id)
        return key, value
    except Exception:  # formatting is a nicety: raw bytes when the BTF cannot be read
        return None


@contextlib.contextmanager
def kernel_map(words: Sequence[str]) -> Iterator[tuple[Any, list[str]]]:
    """A kernel map addressed as bpftool does (``id N``, ``pinned PATH`` in the real
    bpffs, ``name NAME``) and the words after it."""
    words = list(words)
    fd = _kernel_fd("map", words)
    m = _KernelFdMap(fd)
    try:
        yield KernelMapView(m, _kernel_btf_codecs(m.info())), words
    finally:
        m.close()


@contextlib.contextmanager
def kernel_programs(words: Sequence[str]) -> Iterator[tuple[list[ProgramView], list[str]]]:
    """A kernel program addressed as bpftool does and the words after it."""
    words = list(words)
    prog = _KernelFdProgram(_kernel_fd("prog", words))
    try:
        yield [ProgramView(prog)], words
    finally:
        prog.close()


def kernel_records(kind: str) -> list[dict[str, Any]]:
    """Every kernel program or map as ``bpftool prog|map show --json`` lists them (objects
    that vanish while listed are skipped)."""
    from pybpf.syscall import objects

    ids = objects.prog_ids() if kind == "prog" else objects.map_ids()
    get = objects.prog_get_fd_by_id if kind == "prog" else objects.map_get_fd_by_id
    records = []
    for object_id in ids:
        try:
            fd = get(object_id)
        except OSError:
            continue
        if kind == "prog":
            prog = _KernelFdProgram(fd)
            try:
                records.append(ProgramView(prog).info())
            finally:
                prog.close()
        else:
            m = _KernelFdMap(fd)
            try:
                records.append(KernelMapView(m))
            finally:
                m.close()
    return records


# ---- shell completion -------------------------------------------------------------------------
def complete_words(kind: str):
    """A click ``shell_complete`` callback for PROG or MAP words: the keywords, then the
    state directory's ids, pins and names after ``id``, ``pinned`` and ``name``."""

    def complete(ctx: Any, param: Any, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        words = list(ctx.params.get(param.name) or ())
        keywords = KEYWORDS if kind == "prog" else KEYWORDS[:3]
        try:
            if not words:
                return [CompletionItem(k) for k in keywords if k.startswith(incomplete)] + [
                    CompletionItem(incomplete, type="file")
                ]
            if len(words) == 1 and words[0] in keywords:
                return [CompletionItem(c) for c in _candidates(kind, words[0]) if
                        c.startswith(incomplete)]  # fmt: skip
        except Exception:  # completion must never fail loudly
            return []
        return []

    return complete


def _candidates(kind: str, keyword: str) -> list[str]:
    if kind == "prog":
        from pybpf.objects.pinned import list_programs

        records = list_programs()
        values = {
            "id": [str(r.id) for r in records],
            "pinned": [p for r in records for p in r.pins],
            "name": [r.name for r in records],
            "tag": [r.tag for r in records],
        }
        return sorted(set(values.get(keyword, [])))
    from pybpf.maps.shared import list_maps

    found = list_maps()
    values = {
        "id": [str(m.id) for m in found],
        "pinned": [p for m in found for p in m.pins],
        "name": [m.definition.name for m in found],
    }
    return sorted(set(values.get(keyword, [])))
