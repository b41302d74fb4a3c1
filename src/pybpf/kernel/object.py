"""object: an ObjectSpec loaded into the Linux kernel: BTF, maps, programs and initial values.

:meth:`KernelObject.load` takes libbpf's ``bpf_object__load`` steps on a spec: fill the
``.kconfig`` externs from the running kernel, load the object's BTF, create every map
(global data written and ``.rodata``/``.kconfig`` frozen, map-in-map slots filled), link,
relocate and load each program, then fill prog arrays with the programs loaded. It loads
more than libbpf 1.x would: legacy ``maps`` sections, the older section-name prefixes the
spec's table knows, and any function named in ``programs=`` (``.text`` ones included),
with ``prog_type=`` for the programs whose section gives no type. Everything it created
is released by :meth:`KernelObject.close`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from pybpf.btf import Spec as BTFSpec
from pybpf.errors import InputError, NotSupportedError, PybpfError
from pybpf.kernel.btf import ObjectBTF
from pybpf.kernel.externs import fill_kconfig
from pybpf.kernel.maps import KernelMap, create_map, freeze_map
from pybpf.kernel.programs import KernelProgram, load_program
from pybpf.kernel.vmlinux import kernel_btf
from pybpf.maptypes import MapType
from pybpf.progtypes import ProgType
from pybpf.spec import ObjectSpec, link

__all__ = ["KernelObject"]

_KEY0 = (0).to_bytes(4, "little")


class KernelObject:
    """Maps and programs of one object file, live in the kernel.

    - ``maps`` and ``programs``: by name, what was created and loaded;
    - ``skipped``: entry programs not attempted, with the reason (no program type);
    - ``failures``: with ``keep_going=True``, the programs the kernel (or pybpf) refused;
    - ``btf``: the object's BTF as loaded (``btf.error`` when the kernel refused it).
    """

    def __init__(self, spec: ObjectSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.btf: ObjectBTF | None = None
        self.maps: dict[str, KernelMap] = {}
        self.programs: dict[str, KernelProgram] = {}
        self.skipped: dict[str, str] = {}
        self.failures: dict[str, PybpfError] = {}
        self._vmlinux: BTFSpec | None = None

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        spec: ObjectSpec,
        *,
        programs: Iterable[str] | None = None,
        pin_maps_dir: str | os.PathLike[str] | None = None,
        log_level: int = 0,
        keep_going: bool = False,
        prog_type: ProgType | str | None = None,
        vmlinux: BTFSpec | None = None,
    ) -> KernelObject:
        """Load ``spec`` into the kernel.

        ``programs`` names the programs to load (default: every entry program with
        ``autoload`` set, and, as libbpf does, the function of an object whose only function
        is in ``.text``; those whose section gives no program type are listed in
        ``skipped``). ``prog_type`` is the type of programs whose section gives none, as
        bpftool's ``prog loadall OBJ DIR type TYPE`` (the spec is not changed).
        ``pin_maps_dir`` is where maps that ask for pinning are pinned (or reused from);
        without it nothing is pinned. ``log_level`` is the verifier's (a log
        is fetched on failure anyway). With ``keep_going`` a program that fails is recorded
        in ``failures`` and the others still load; otherwise the first failure closes
        everything and is raised. ``vmlinux`` replaces the kernel's BTF for CO-RE, ksyms
        and attach targets (read from ``/sys/kernel/btf/vmlinux`` when first needed).
        """
        if spec.platform != "linux":
            raise NotSupportedError(
                f"{spec.platform} objects cannot be loaded into the Linux kernel",
                feature="platform",
            )
        obj = cls(spec)
        obj._vmlinux = vmlinux
        try:
            default = ProgType.from_name(prog_type) if isinstance(prog_type, str) else prog_type
            obj._load(programs, pin_maps_dir, log_level, keep_going, default)
        except BaseException:
            obj.close()
            raise
        return obj

    def _kernel_btf(self) -> BTFSpec:
        if self._vmlinux is None:
            self._vmlinux = kernel_btf()
        return self._vmlinux

    def _select(self, programs: Iterable[str] | None, typed: bool) -> list[str]:
        spec = self.spec
        if programs is not None:
            names = list(programs)
            for name in names:
                spec.program(name)  # InputError if missing
            return names
        entries = {n: p for n, p in spec.entry_programs.items() if p.autoload}
        if not spec.entry_programs and len(spec.programs) == 1:
            entries = dict(spec.programs)  # libbpf: a lone .text function is a program
        names = []
        for name, prog in entries.items():
            if prog.type is None and typed:
                names.append(name)
            elif prog.type is None:
                self.skipped[name] = f"section {prog.section!r} gives no program type"
            elif not prog.type.is_linux:
                self.skipped[name] = f"{prog.type.name} is not a Linux program type"
            else:
                names.append(name)
        return names

    def _load(
        self,
        programs: Iterable[str] | None,
        pin_maps_dir: str | os.PathLike[str] | None,
        log_level: int,
        keep_going: bool,
        prog_type: ProgType | None,
    ) -> None:
        names = self._select(programs, prog_type is not None)
        spec = self.spec
        if prog_type is not None and any(spec.programs[n].type is None for n in names):
            spec = spec.copy()
            for name in names:
                if spec.programs[name].type is None:
                    spec.set_program_type(name, prog_type)
        spec = fill_kconfig(spec)
        self.btf = ObjectBTF(spec)
        self._create_maps(spec, pin_maps_dir)
        for name in names:
            try:
                self.programs[name] = self._load_program(spec, name, log_level)
            except PybpfError as err:
                if not keep_going:
                    raise
                if err.program is None:
                    err.program = name
                self.failures[name] = err
        self._fill_prog_arrays(spec)

    def _create_maps(self, spec: ObjectSpec, pin_dir: str | os.PathLike[str] | None) -> None:
        """Every map, global data written (then frozen where libbpf freezes), and the
        map-in-map slots the object initialises."""
        assert self.btf is not None
        btf_fd = self.btf.fd if self.btf.loaded else None
        for name, mspec in spec.maps.items():
            kmap = create_map(mspec, spec.name, btf_fd=btf_fd, pin_dir=pin_dir)
            self.maps[name] = kmap
            if kmap.reused:
                continue
            if mspec.is_global_data and mspec.contents is not None:
                kmap.update(_KEY0, mspec.initial_value())
            if mspec.frozen:
                freeze_map(kmap.fd)
        for name, mspec in spec.maps.items():
            if not mspec.type.is_map_in_map or self.maps[name].reused:
                continue
            for index, inner in mspec.values:
                if inner not in self.maps:
                    raise InputError(
                        f"map {name!r} slot {index} names missing map {inner!r}",
                        section=mspec.section,
                    )
                self.maps[name].update(_key(index), _key(self.maps[inner].fd.fileno()))

    def _load_program(self, spec: ObjectSpec, name: str, log_level: int) -> KernelProgram:
        entry = spec.program(name)
        return load_program(
            link(spec, name),
            spec,
            self.maps,
            self.btf,
            self._kernel_btf,
            section=entry.section,
            attach_to=entry.attach_to,
            log_level=log_level,
        )

    def _fill_prog_arrays(self, spec: ObjectSpec) -> None:
        """Prog array slots the object initialises, with the programs that loaded."""
        for name, mspec in spec.maps.items():
            if mspec.type != MapType.PROG_ARRAY or self.maps[name].reused:
                continue
            for index, prog_name in mspec.values:
                prog = self.programs.get(prog_name)
                if prog is not None:
                    self.maps[name].update(_key(index), _key(prog.fd.fileno()))

    # ---- access --------------------------------------------------------------------------
    def map(self, name: str) -> KernelMap:
        """The map called ``name``; :class:`InputError` if none."""
        try:
            return self.maps[name]
        except KeyError:
            raise InputError(f"no map named {name!r}", field="map") from None

    def program(self, name: str) -> KernelProgram:
        """The loaded program called ``name``; :class:`InputError` if none."""
        try:
            return self.programs[name]
        except KeyError:
            raise InputError(f"no loaded program named {name!r}", program=name) from None

    # ---- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Release every fd this object holds (programs, maps, BTF); pins live on."""
        for prog in self.programs.values():
            prog.close()
        for kmap in self.maps.values():
            kmap.close()
        if self.btf is not None:
            self.btf.close()

    def __enter__(self) -> KernelObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KernelObject({self.name!r}, {len(self.programs)} programs, {len(self.maps)} maps)"


def _key(value: int) -> bytes:
    return value.to_bytes(4, "little")
