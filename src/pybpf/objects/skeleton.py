"""Skeleton: a typed Python module generated for an object file, like ``bpftool gen skeleton``.

:func:`generate_skeleton` writes Python source that embeds the object (compressed) and
gives, like a libbpf skeleton:

- a class named after the object (``XdpCounter`` for ``xdp_counter.o``) with ``open()``
  (the spec stays editable: ``skel.rodata.drop_proto = 6``), ``load(**options)``,
  ``close()`` and ``with``; ``skel.progs.<name>`` and ``skel.maps.<name>`` after load;
  the global data sections as attributes (``skel.bss.seen``);
- ``ctypes`` types generated from BTF for every map's key and value (structures, unions,
  arrays, integers, enums as integers, pointers as ``c_uint64``; bitfields as opaque
  bytes of their storage), bound to the maps through :class:`CtypesCodec`: a map with a
  structure value returns instances of that structure and takes them, integers stay ints;
- module functions ``open()`` and ``load(**options)``.

The generated module imports only :mod:`pybpf` (``Object``) and this module's
:class:`CtypesCodec`.
"""

from __future__ import annotations

import base64
import ctypes
import keyword
import re
import zlib
from typing import Any

from pybpf import btf as _btf
from pybpf.errors import InputError
from pybpf.maps.codec import to_bytes
from pybpf.spec import ObjectSpec

__all__ = ["generate_skeleton", "CtypesCodec", "class_name"]


class CtypesCodec:
    """A map codec over a ``ctypes`` type: ctypes instances (or ints, or bytes) in;
    instances of the type out (a plain ``int``/``float`` for scalar types)."""

    def __init__(self, ctype: Any) -> None:
        self.ctype = ctype

    def encode(self, obj: Any, size: int) -> bytes:
        """``obj`` as the map's ``size`` bytes."""
        if isinstance(obj, ctypes._SimpleCData | ctypes.Structure | ctypes.Union | ctypes.Array):
            data = bytes(obj)
            if len(data) != size:
                raise InputError(f"{type(obj).__name__} has {len(data)} bytes, not {size}")
            return data
        if isinstance(obj, float) and issubclass(self.ctype, ctypes._SimpleCData):
            return bytes(self.ctype(obj))
        return to_bytes(obj, size)

    def decode(self, data: bytes) -> Any:
        """The bytes as an instance of the type (scalars as Python numbers)."""
        value = self.ctype.from_buffer_copy(bytes(data))
        if isinstance(value, ctypes._SimpleCData):
            return value.value
        return value

    def __repr__(self) -> str:
        return f"CtypesCodec({self.ctype.__name__})"


def class_name(object_name: str) -> str:
    """``xdp_counter`` -> ``XdpCounter`` (a valid identifier)."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", object_name) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "Skeleton"
    return name if not name[0].isdigit() else f"Obj{name}"


def _ident(name: str, fallback: str) -> str:
    name = re.sub(r"[^0-9A-Za-z_]", "_", name or "")
    if not name or name[0].isdigit() or keyword.iskeyword(name):
        return fallback
    return name


_INTS = (1, 2, 4, 8)


class _TypeWriter:
    """BTF types as ctypes declarations (classes in dependency order)."""

    def __init__(self, spec: _btf.Spec) -> None:
        self.spec = spec
        self.exprs: dict[int, str] = {}
        self.classes: list[str] = []
        self.names: set[str] = set()

    def expr(self, type_id: int) -> str:
        if type_id in self.exprs:
            return self.exprs[type_id]
        t = self.spec.type(type_id)
        out: str
        if isinstance(t, _btf.Int):
            if t.is_bool and t.size == 1:
                out = "ctypes.c_bool"
            elif t.is_char and t.size == 1:
                out = "ctypes.c_char"
            elif t.size in _INTS:
                out = f"ctypes.c_{'' if t.is_signed else 'u'}int{8 * t.size}"
            else:
                out = f"(ctypes.c_uint8 * {t.size})"
        elif isinstance(t, _btf.Enum | _btf.Enum64):
            signed = getattr(t, "signed", False)
            out = f"ctypes.c_{'' if signed else 'u'}int{8 * t.size}"
        elif isinstance(t, _btf.Float):
            floats = {4: "ctypes.c_float", 8: "ctypes.c_double"}
            out = floats.get(t.size, f"(ctypes.c_uint8 * {t.size})")
        elif isinstance(t, _btf.Pointer):
            out = "ctypes.c_uint64"
        elif isinstance(t, _btf.Array):
            out = f"({self.expr(t.type_id)} * {t.nelems})"
        elif isinstance(t, _btf.Reference):
            out = self.expr(t.type_id)
        elif isinstance(t, _btf.Composite):
            out = self._composite(type_id, t)
        else:
            size = self.spec.size_of(type_id)
            out = f"(ctypes.c_uint8 * {size})"
        self.exprs[type_id] = out
        return out

    def _composite(self, type_id: int, t: _btf.Composite) -> str:
        base = _ident(t.name, f"anon_{type_id}")
        name = base if base not in self.names else f"{base}_{type_id}"
        self.names.add(name)
        self.exprs[type_id] = name  # self-references through pointers are c_uint64 anyway
        is_union = isinstance(t, _btf.Union)
        fields: list[str] = []
        offset = 0
        pad = 0
        for i, m in enumerate(t.members):
            member = _ident(m.name, f"_anon{i}")
            if m.bitfield_size or m.bit_offset % 8:
                continue  # bitfields: their bytes become padding below
            start = m.bit_offset // 8
            if not is_union and start > offset:
                fields.append(f'("_pad{pad}", ctypes.c_uint8 * {start - offset})')
                pad += 1
            elif not is_union and start < offset:
                continue  # overlapping (should not happen in C): skip
            fields.append(f'("{member}", {self.expr(m.type_id)})')
            if not is_union:
                offset = start + self.spec.size_of(m.type_id)
        if not is_union and offset < t.size:
            fields.append(f'("_pad{pad}", ctypes.c_uint8 * {t.size - offset})')
        kind = "ctypes.Union" if is_union else "ctypes.Structure"
        body = ",\n        ".join(fields)
        doc = f"{'union' if is_union else 'struct'} {t.name or '(anonymous)'} ({t.size} bytes)"
        self.classes.append(
            f"class {name}({kind}):\n"
            f'    """BTF {doc}."""\n\n'
            f"    _pack_ = 1\n"
            f"    _fields_ = [\n        {body},\n    ]\n"
        )
        return name


def _map_types(spec: ObjectSpec, writer: _TypeWriter | None, name: str) -> tuple[str, str]:
    m = spec.maps[name]
    key = value = "None"
    if writer is None:
        return key, value
    for attr, size in (("key_type_id", m.key_size), ("value_type_id", m.value_size)):
        type_id = getattr(m, attr)
        if not type_id or m.type.is_map_in_map or m.type.type_name == "prog_array":
            continue
        try:
            if writer.spec.size_of(type_id) != size:
                continue
            expr = writer.expr(type_id)
        except Exception:  # a type without a size or a broken one: leave bytes
            continue
        if attr == "key_type_id":
            key = expr
        else:
            value = expr
    return key, value


def generate_skeleton(
    spec: ObjectSpec, data: bytes, *, name: str | None = None, source: str = ""
) -> str:
    """Python source of the skeleton module for the object ``data`` (its parsed ``spec``).

    ``name`` is the object's name (default ``spec.name``); ``source`` the file it came from
    (for the module docstring)."""
    from pybpf import __version__
    from pybpf.objects.datasec import section_attribute

    obj_name = name or spec.name or "object"
    cls = class_name(obj_name)
    writer = _TypeWriter(spec.btf) if spec.btf is not None else None
    programs = [p for p, ps in spec.entry_programs.items() if ps.autoload]
    maps = [m for m, ms in spec.maps.items() if not ms.is_global_data]
    sections = [(section_attribute(s), s) for s, ms in spec.maps.items() if ms.is_global_data]
    map_types = {m: _map_types(spec, writer, m) for m in maps}
    blob = base64.b64encode(zlib.compress(data, 9)).decode()
    lines = [
        f'"""Skeleton of {obj_name} ({source or "an object"}), generated by '
        f"`pybpf gen skeleton` (pybpf {__version__}). Do not edit."
    ]
    lines += [
        "",
        f"    skel = {cls}.open()      # the spec: editable before load",
        "    skel.load()",
        "    skel.progs.<program>.test_run(...)",
        "    skel.maps.<map>[key]",
        '"""',
        "",
    ]
    lines += [
        "from __future__ import annotations",
        "",
        "import base64",
        "import ctypes",
        "import zlib",
        "from typing import Any",
        "",
        "from pybpf import Object",
        "from pybpf.objects.skeleton import CtypesCodec",
        "",
    ]
    lines += [f'__all__ = ["{cls}", "open", "load"]', ""]
    lines += [
        f"OBJECT_NAME = {obj_name!r}",
        f"PROGRAMS = {tuple(programs)!r}",
        f"MAPS = {tuple(maps)!r}",
        f"SECTIONS = {tuple(s for _a, s in sections)!r}",
    ]
    lines += ["", "", "# ---- types from BTF " + "-" * 70, ""]
    if writer is not None:
        for text in writer.classes:
            lines += [text, ""]
    lines += ["# ---- map key and value types " + "-" * 61]
    lines.append("MAP_TYPES: dict[str, tuple[Any, Any]] = {")
    for m, (k, v) in map_types.items():
        lines.append(f"    {m!r}: ({k}, {v}),")
    lines += ["}", "", ""]
    prog_fields = (
        "\n".join(f"    {_ident(p, 'p_' + str(i))}: Any" for i, p in enumerate(programs))
        or "    pass"
    )
    map_fields = (
        "\n".join(f"    {_ident(m, 'm_' + str(i))}: Any" for i, m in enumerate(maps)) or "    pass"
    )
    lines += [
        "class Programs:",
        f'    """The programs of {obj_name}, by name (after load)."""',
        "",
        prog_fields,
        "",
        "    def __init__(self, obj: Object) -> None:",
        "        for name in PROGRAMS:",
        "            setattr(self, name, obj.programs[name])",
        "",
        "",
        "class Maps:",
        f'    """The maps of {obj_name}, by name (after load), with typed keys and values."""',
        "",
        map_fields,
        "",
        "    def __init__(self, obj: Object) -> None:",
        "        for name in MAPS:",
        "            m = obj.maps[name]",
        "            key, value = MAP_TYPES[name]",
        '            if hasattr(m, "set_codecs"):',
        "                m.set_codecs(",
        "                    CtypesCodec(key) if key is not None else m.key_codec,",
        "                    CtypesCodec(value) if value is not None else m.value_codec,",
        "                )",
        "            setattr(self, name, m)",
        "",
        "",
        f"class {cls}:",
        f'    """{obj_name} as a skeleton: ``open()``, ``load()``, ``progs``, ``maps``, '
        'globals."""',
        "",
        "    def __init__(self, obj: Object) -> None:",
        "        self.obj = obj",
        "        self.progs: Programs | None = None",
        "        self.maps: Maps | None = None",
        "",
        "    @classmethod",
        f"    def open(cls) -> {cls}:",
        '        """The object, not loaded yet (set ``.rodata`` constants now)."""',
        "        data = zlib.decompress(base64.b64decode(_OBJECT))",
        "        return cls(Object.open(data, name=OBJECT_NAME))",
        "",
        f"    def load(self, **options: Any) -> {cls}:",
        '        """Load it (``Object.load`` options: engine, backend, ...); returns self."""',
        "        self.obj.load(**options)",
        "        self.progs = Programs(self.obj)",
        "        self.maps = Maps(self.obj)",
        "        return self",
        "",
    ]
    for attr, section in sections:
        ident = _ident(attr, "")
        if not ident or ident in ("open", "load", "close", "obj", "progs", "maps"):
            continue
        lines += [
            "    @property",
            f"    def {ident}(self) -> Any:",
            f'        """The {section} globals."""',
            f"        return self.obj.section({section!r})",
            "",
        ]
    lines += [
        "    def close(self) -> None:",
        '        """Close programs and maps (pins live on)."""',
        "        self.obj.close()",
        "",
        f"    def __enter__(self) -> {cls}:",
        "        return self",
        "",
        "    def __exit__(self, *exc: object) -> None:",
        "        self.close()",
        "",
        "",
        f"def open() -> {cls}:  # noqa: A001 (libbpf's name)",
        f'    """``{cls}.open()``."""',
        f"    return {cls}.open()",
        "",
        "",
        f"def load(**options: Any) -> {cls}:",
        f'    """``{cls}.open().load(**options)``."""',
        f"    return {cls}.open().load(**options)",
        "",
        "",
        "_OBJECT = (",
    ]
    for i in range(0, len(blob), 88):
        lines.append(f'    "{blob[i : i + 88]}"')
    lines += [")", ""]
    return "\n".join(lines)
