"""Object: an eBPF object file for loader programs: open (an editable spec), load, run, close.

The libbpf/cilium-like facade::

    obj = pybpf.Object.open("xdp_counter.o")   # not loaded: obj.spec is editable
    obj.rodata.drop_proto = 6                   # a .rodata constant, before load
    obj.spec.maps["proto_count"].max_entries = 1024
    with obj.load(engine="interpreter"):        # maps created, programs built
        obj.programs["xdp_count"].test_run(packet).retval
        obj.maps["proto_count"][6]
        obj.bss.seen                            # a global, read from the live map

or in one call ``pybpf.load("x.o", engine=...)``. ``load()`` creates the maps (global
data initialised, ``.rodata`` frozen, maps pinned by name reopened or pinned in the state
directory), binds map and subprogram relocations, builds every program with the engine
and fills prog arrays and map-in-maps (:mod:`pybpf.objects.loader`). ``backend="kernel"``
loads the same spec into Linux instead (:mod:`pybpf.objects.kernel_backend`).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pybpf.elf import read_object
from pybpf.elf.data import KconfigValue
from pybpf.errors import InputError
from pybpf.objects.datasec import DataSection, section_attribute
from pybpf.spec import ObjectSpec
from pybpf.state import StateDirectory

__all__ = ["Object", "load", "owner_of", "BACKENDS"]

BACKENDS = ("portable", "kernel")
DEFAULT_PIN_ROOT = "/sys/fs/bpf"
_OWNERS: weakref.WeakKeyDictionary[Any, Object] = weakref.WeakKeyDictionary()


def owner_of(program: Any) -> Object | None:
    """The :class:`Object` a loaded program belongs to (``None`` when unknown)."""
    return _OWNERS.get(program)


class _ByName(dict):
    """Programs or maps by name; asking before load says so."""

    def __init__(self, owner: Object, what: str) -> None:
        super().__init__()
        self._owner = owner
        self._what = what

    def __missing__(self, key: str) -> Any:
        if not self._owner.loaded:
            raise InputError(
                f"object {self._owner.name!r} is not loaded: call load() first "
                f"(before load, edit obj.spec.{self._what})"
            )
        raise KeyError(key)


class Object:
    """An object file: its spec, then (after :meth:`load`) its live programs and maps.

    - ``spec``: the :class:`~pybpf.spec.ObjectSpec`, editable until load;
    - ``programs`` / ``maps``: by name after load (:class:`~pybpf.objects.program.Program`
      and the maps layer's :class:`~pybpf.maps.Map` on the portable backend);
    - ``rodata``, ``data``, ``bss``, ``kconfig`` and ``data_<name>`` for custom sections:
      globals as attributes (:class:`~pybpf.objects.datasec.DataSection`);
    - ``backend``, ``engine``: how it was loaded (``None`` before);
    - ``file_bytes``: the object file (when opened by :meth:`open`; a pinned program keeps
      it, :mod:`pybpf.objects.pinned`); :func:`owner_of` finds a loaded program's object.

    Close with :meth:`close` or ``with``: programs first, then maps (pinned maps live on).
    """

    def __init__(self, spec: ObjectSpec, *, path: str | None = None) -> None:
        self.spec = spec
        self.path = path
        self.name = spec.name
        self.programs: dict[str, Any] = _ByName(self, "programs")
        self.maps: dict[str, Any] = _ByName(self, "maps")
        self.backend: str | None = None
        self.engine: str | None = None
        self.loaded = False
        self.closed = False
        self._callbacks: list[Any] = []
        self._kernel: Any = None
        self.file_bytes: bytes | None = None  # the object file, when opened by open()

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        source: str | os.PathLike[str] | bytes | bytearray | memoryview,
        *,
        name: str | None = None,
        platform: str | None = None,
        kconfig: Mapping[str, KconfigValue] | None = None,
    ) -> Object:
        """Read an object file (a path, or its bytes) into a not yet loaded :class:`Object`.

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
            spec = read_object(data, name=name or "", platform=platform, kconfig=kconfig)
        except InputError as exc:
            if path is not None and exc.path is None:
                exc.path = path
            raise
        obj = cls(spec, path=path)
        obj.file_bytes = data
        return obj

    # ---- loading -------------------------------------------------------------------------
    def load(
        self,
        *,
        engine: str = "interpreter",
        backend: str = "portable",
        programs: Iterable[str] | None = None,
        pin_maps_dir: str | os.PathLike[str] | None = DEFAULT_PIN_ROOT,
        state: StateDirectory | None = None,
        verify: bool = True,
        **kernel_options: Any,
    ) -> Object:
        """Create the maps and load the programs; returns ``self`` (for ``with``).

        - ``engine``: ``"interpreter"`` or ``"jit"`` (portable backend);
        - ``backend``: ``"portable"`` (pybpf's maps and engines) or ``"kernel"`` (Linux,
          through :mod:`pybpf.kernel`; ``kernel_options`` go to its loader);
        - ``programs``: names to load (default: every entry program with ``autoload``);
        - ``pin_maps_dir``: where maps pinned by name live (``/sys/fs/bpf``, which the
          portable backend maps into its state directory; ``None``: pin nothing);
        - ``state``: the state directory (default: the configured one);
        - ``verify``: on the portable backend, verify the programs whose context is
          rewritten to the runtime's layout (``xdp``: a real ``xdp_md`` in ``test_run``);
          ``False`` loads them unverified with r1 = the packet buffer (the kernel backend
          always verifies).

        Raises :class:`~pybpf.errors.InputError` (bad arguments, spec or program),
        :class:`~pybpf.errors.NotSupportedError` (``feature`` names what the backend or
        engine cannot do: a CO-RE relocation, a helper, tail calls on the JIT, ...),
        :class:`~pybpf.errors.VerifierError`, :class:`~pybpf.errors.MapError`; on failure
        nothing stays created.
        """
        if self.closed:
            raise InputError(f"object {self.name!r} is closed")
        if self.loaded:
            raise InputError(f"object {self.name!r} is already loaded")
        if backend not in BACKENDS:
            raise InputError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        if backend == "kernel":
            from pybpf.objects.kernel_backend import load_kernel

            self._kernel, progs, maps = load_kernel(
                self.spec, programs=programs, pin_root=pin_maps_dir, **kernel_options
            )
            engine = "kernel"
        else:
            if kernel_options:
                raise InputError(f"unknown load options {sorted(kernel_options)}")
            from pybpf.objects.loader import load_portable

            progs, maps, self._callbacks = load_portable(
                self.spec,
                engine=engine,
                programs=programs,
                pin_root=pin_maps_dir,
                state=state,
                verify=verify,
            )
        self.programs.update(progs)
        self.maps.update(maps)
        for prog in progs.values():
            _OWNERS[prog] = self
        self.backend = backend
        self.engine = engine
        self.loaded = True
        return self

    # ---- access --------------------------------------------------------------------------
    def program(self, name: str) -> Any:
        """The loaded program ``name`` (:class:`InputError` if none)."""
        try:
            return self.programs[name]
        except KeyError:
            raise InputError(f"no loaded program named {name!r}", program=name) from None

    def map(self, name: str) -> Any:
        """The live map ``name`` (:class:`InputError` if none)."""
        try:
            return self.maps[name]
        except KeyError:
            raise InputError(f"no map named {name!r}", field="map") from None

    def section(self, name: str) -> DataSection:
        """The globals of data section ``name`` (``".rodata"``, ``".data.tag"``, ...)."""
        spec = self.spec.maps.get(name)
        if spec is None or not spec.is_global_data:
            raise InputError(f"no global data section {name!r}", field="section")
        return DataSection(self, name)

    @property
    def rodata(self) -> DataSection:
        """``.rodata`` globals (constants: set them before load)."""
        return self.section(".rodata")

    @property
    def data(self) -> DataSection:
        """``.data`` globals."""
        return self.section(".data")

    @property
    def bss(self) -> DataSection:
        """``.bss`` globals."""
        return self.section(".bss")

    @property
    def kconfig(self) -> DataSection:
        """``.kconfig`` externs."""
        return self.section(".kconfig")

    def __getattr__(self, name: str) -> DataSection:
        if name.startswith("_") or "spec" not in self.__dict__:
            raise AttributeError(name)
        for section, spec in self.spec.maps.items():
            if spec.is_global_data and section_attribute(section) == name:
                return DataSection(self, section)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ---- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Close programs, callbacks, then maps (pins live on). Idempotent."""
        if self.closed:
            return
        self.closed = True
        for prog in self.programs.values():
            prog.close()
        for cb in self._callbacks:
            cb.close()
        self._callbacks = []
        if self._kernel is not None:
            self._kernel.close()
        else:
            for m in self.maps.values():
                m.close()

    def __enter__(self) -> Object:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = (
            "closed"
            if self.closed
            else f"loaded ({self.backend}, {self.engine})"
            if self.loaded
            else "not loaded"
        )
        return (
            f"<Object {self.name!r} {state}: {len(self.spec.entry_programs)} programs, "
            f"{len(self.spec.maps)} maps>"
        )


def load(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    name: str | None = None,
    platform: str | None = None,
    kconfig: Mapping[str, KconfigValue] | None = None,
    **load_options: Any,
) -> Object:
    """``Object.open(source, ...).load(**load_options)`` in one call."""
    return Object.open(source, name=name, platform=platform, kconfig=kconfig).load(**load_options)
