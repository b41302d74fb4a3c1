"""Object: the entry point for eBPF object files; ``Object.open`` reads one into an ObjectSpec.

This is the libbpf-like facade: ``Object.open(path_or_bytes)`` parses an object file into
an editable :class:`~pybpf.spec.ObjectSpec` (programs, maps, globals, BTF). Loading specs
into live programs and maps comes with the loader.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pybpf.elf import read_object
from pybpf.elf.data import KconfigValue
from pybpf.errors import InputError
from pybpf.spec import ObjectSpec

__all__ = ["Object"]


class Object:
    """eBPF object files: ``Object.open`` gives the plain spec of one."""

    @staticmethod
    def open(
        source: str | os.PathLike[str] | bytes | bytearray | memoryview,
        *,
        name: str | None = None,
        platform: str | None = None,
        kconfig: Mapping[str, KconfigValue] | None = None,
    ) -> ObjectSpec:
        """Read an object file (a path, or its bytes) into an :class:`ObjectSpec`.

        ``name`` defaults to the file's stem; ``platform`` forces ``"linux"`` or
        ``"windows"`` (recognised by default); ``kconfig`` gives ``.kconfig`` extern
        values. A file that cannot be read or parsed raises
        :class:`~pybpf.errors.InputError` with ``path`` set.
        """
        path: str | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
        else:
            path = os.fspath(source)
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read object file: {exc.strerror}", path=path) from None
            if name is None:
                name = Path(path).stem
        try:
            return read_object(data, name=name or "", platform=platform, kconfig=kconfig)
        except InputError as exc:
            if path is not None and exc.path is None:
                exc.path = path
            raise
