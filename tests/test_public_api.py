"""The public API snapshot: names and signatures exported by ``pybpf`` and its subpackages.

Every name in the ``__all__`` of ``pybpf``, ``pybpf.errors`` and each public subpackage
(:data:`PUBLIC`) is listed with its kind
and signature (classes: their public methods and properties too) and compared with the
committed snapshot ``tests/fixtures/public_api.txt``. A change to the public API fails
here until the snapshot is updated deliberately:

    PYBPF_UPDATE_API_SNAPSHOT=1 python -m pytest -q tests/test_public_api.py

Every public function, class, method and property also has a docstring.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import os
import pkgutil
import re
from pathlib import Path

import pybpf

SNAPSHOT = Path(__file__).parent / "fixtures" / "public_api.txt"


# The packages a loader script or tool uses; the others (runtime, memory, jit, syscall,
# kernel, elf, helpers, progtypes, conformance, cli) are layers under them.
PUBLIC = ("objects", "maps", "hooks", "verifier", "vm", "isa", "btf", "spec", "state")


def _modules() -> list[str]:
    subs = {m.name for m in pkgutil.iter_modules(pybpf.__path__) if m.ispkg}
    assert set(PUBLIC) <= subs
    return ["pybpf", "pybpf.errors", *(f"pybpf.{name}" for name in PUBLIC)]


def _signature(obj: object) -> str:
    try:
        text = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    return re.sub(r" at 0x[0-9a-f]+", "", text)


def _members(cls: type) -> list[tuple[str, object]]:
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_") or name in fields:
            continue
        if isinstance(value, staticmethod | classmethod):
            value = value.__func__
        if inspect.isfunction(value) or isinstance(value, property):
            out.append((name, value))
    return sorted(out)


def api() -> list[str]:
    """One line per public name (and per public member of a public class)."""
    lines = []
    for module_name in _modules():
        module = importlib.import_module(module_name)
        for name in sorted(getattr(module, "__all__", ())):
            obj = getattr(module, name)
            where = f"{module_name}.{name}"
            if inspect.isclass(obj):
                lines.append(f"{where}: class{_signature(obj)}")
                for member, value in _members(obj):
                    if isinstance(value, property):
                        lines.append(f"{where}.{member}: property")
                    else:
                        lines.append(f"{where}.{member}: method{_signature(value)}")
            elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
                lines.append(f"{where}: function{_signature(obj)}")
            elif inspect.ismodule(obj):
                lines.append(f"{where}: module")
            else:
                lines.append(f"{where}: {type(obj).__name__}")
    return lines


def test_the_public_api_matches_the_snapshot():
    current = api()
    if os.environ.get("PYBPF_UPDATE_API_SNAPSHOT"):
        SNAPSHOT.write_text("\n".join(current) + "\n")
    committed = SNAPSHOT.read_text().splitlines()
    diff = list(difflib.unified_diff(committed, current, "snapshot", "now", lineterm="", n=0))
    assert not diff, (
        "the public API changed; if on purpose, run PYBPF_UPDATE_API_SNAPSHOT=1 "
        "python -m pytest -q tests/test_public_api.py and commit the snapshot:\n"
        + "\n".join(diff[:60])
    )


def test_the_snapshot_covers_the_facade():
    text = SNAPSHOT.read_text()
    expected = (
        "pybpf.Object: class",
        "pybpf.load: function",
        "pybpf.RingBuffer: class",
        "pybpf.objects.Program.test_run: method",
        "pybpf.maps.Map.pin: method",
    )
    for name in expected:
        assert name in text


def test_every_public_thing_has_a_docstring():
    missing = []
    for module_name in _modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not inspect.getdoc(obj):
                missing.append(f"{module_name}.{name}")
            if inspect.isclass(obj):
                for member, _value in _members(obj):
                    if not inspect.getdoc(getattr(obj, member)):
                        missing.append(f"{module_name}.{name}.{member}")
    assert not missing, f"public names without a docstring: {missing}"
