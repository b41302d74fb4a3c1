"""maps: kernel maps created from MapSpecs: libbpf's names and fix-ups, BTF ids, inner maps, pins.

:func:`kernel_map_spec` turns a :class:`~pybpf.spec.MapSpec` into what ``BPF_MAP_CREATE``
is given, as libbpf would: global data maps get libbpf's ``obj.bss``-style names, a perf
event array gets 4-byte keys and values (whatever value type it declares) and, without a
size, one slot per possible CPU, fd-valued maps without a value size get 4 bytes, a
ring buffer drops its key and value (cilium/ebpf's objects declare a value type there) and
is rounded up to a power-of-two number of pages, and map types that take no BTF get none.
:func:`create_map` creates (or reuses a pinned) map; a map the kernel refuses with BTF
type ids is created again without them, as libbpf does. :class:`KernelMap` is the live
map: its fd and the map commands.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from pybpf.errors import InputError, SyscallError
from pybpf.maptypes import MapType
from pybpf.spec import MapSpec, Pinning
from pybpf.syscall import (
    Cmd,
    Fd,
    MapInfo,
    bpf,
    map_create,
    map_delete,
    map_info,
    map_keys,
    map_lookup,
    map_update,
    obj_get,
    obj_pin,
)
from pybpf.syscall.attr import MapElemAttr

__all__ = [
    "KernelMap",
    "create_map",
    "kernel_map_spec",
    "internal_map_name",
    "object_name",
    "possible_cpus",
    "freeze_map",
]

_NAME_LEN = 15  # BPF_OBJ_NAME_LEN - 1
_POSSIBLE = Path("/sys/devices/system/cpu/possible")

# Map types whose kernel implementation takes no BTF key/value types (libbpf's list).
_NO_BTF = frozenset(
    {
        MapType.PERF_EVENT_ARRAY,
        MapType.CGROUP_ARRAY,
        MapType.STACK_TRACE,
        MapType.ARRAY_OF_MAPS,
        MapType.HASH_OF_MAPS,
        MapType.DEVMAP,
        MapType.DEVMAP_HASH,
        MapType.CPUMAP,
        MapType.XSKMAP,
        MapType.SOCKMAP,
        MapType.SOCKHASH,
        MapType.QUEUE,
        MapType.STACK,
        MapType.RINGBUF,
        MapType.USER_RINGBUF,
    }
)
_FD_VALUES = frozenset(
    {MapType.PROG_ARRAY, MapType.CGROUP_ARRAY, MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS}
)
_RINGBUFS = frozenset({MapType.RINGBUF, MapType.USER_RINGBUF})
_PERCPU = frozenset({MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH})


def possible_cpus() -> int:
    """The number of possible CPUs (``/sys/devices/system/cpu/possible``), as libbpf counts."""
    try:
        text = _POSSIBLE.read_text().strip()
    except OSError:
        return os.cpu_count() or 1
    total = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        total += (int(hi) if hi else int(lo)) - int(lo) + 1
    return max(total, 1)


def object_name(name: str) -> str:
    """``name`` as the kernel accepts object names: 15 characters of ``[A-Za-z0-9_.]``."""
    clean = "".join(c if c.isascii() and (c.isalnum() or c in "_.") else "_" for c in name)
    return clean[:_NAME_LEN]


def internal_map_name(object_name_: str, section: str) -> str:
    """libbpf's kernel name for a global data map: ``"xdp_coun.rodata"`` for ``.rodata``.

    Up to 8 characters of the object's name (cut at its first ``.``) then the section
    name; custom sections (``.data.tag``, ``.rodata.str1.1``) keep only their own name.
    """
    obj = object_name_.split(".", 1)[0]
    suffix = max(7, len(section))
    prefix = 0 if "." in section[1:] else max(0, min(_NAME_LEN - suffix, len(obj)))
    return object_name(obj[:prefix] + section)


def _ringbuf_size(size: int) -> int:
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    target = max(size, page)
    n = page
    while n < target:
        n *= 2
    return n


def kernel_map_spec(spec: MapSpec, object_name_: str) -> tuple[MapSpec, str]:
    """The spec the kernel is given for ``spec`` (libbpf's fix-ups), and the map's name."""
    out = spec.copy()
    if spec.is_global_data:
        name = internal_map_name(object_name_, spec.name)
    else:
        name = object_name(spec.name)
    if out.type == MapType.PERF_EVENT_ARRAY:
        out.key_size = out.value_size = 4  # cilium/ebpf's objects give a value type here
        if out.max_entries == 0:
            out.max_entries = possible_cpus()
    if out.type in _FD_VALUES and out.value_size == 0:
        out.value_size = 4  # samples/bpf's map-in-map records leave it out
    if out.type in _RINGBUFS:
        out.key_size = out.value_size = 0
        out.max_entries = _ringbuf_size(out.max_entries)
    if out.type in _NO_BTF or not out.value_type_id:
        out.key_type_id = out.value_type_id = 0
    elif not out.key_type_id and not out.is_global_data:
        out.key_type_id = out.value_type_id = 0  # only global data may omit the key type
    if out.inner is not None:
        out.inner, _ = kernel_map_spec(out.inner, object_name_)
    return out, name


def freeze_map(fd: Fd) -> None:
    """``BPF_MAP_FREEZE``: make the map read-only for user space (``.rodata``, ``.kconfig``)."""
    bpf(Cmd.MAP_FREEZE, MapElemAttr(map_fd=fd.fileno()))


def _compatible(info: MapInfo, spec: MapSpec) -> bool:
    return (
        int(info.type) == int(spec.type)
        and info.key_size == spec.key_size
        and info.value_size == spec.value_size
        and info.max_entries == spec.max_entries
        and info.map_flags == spec.flags
    )


def _create(spec: MapSpec, name: str, btf_fd: Fd | None, inner_fd: Fd | None) -> Fd:
    def attempt(with_btf: bool) -> Fd:
        use_btf = with_btf and btf_fd is not None and spec.value_type_id != 0
        return map_create(
            spec.type,
            spec.key_size,
            spec.value_size,
            spec.max_entries,
            spec.flags,
            name,
            inner_map_fd=inner_fd,
            numa_node=spec.numa_node,
            btf_fd=btf_fd if use_btf else None,
            btf_key_type_id=spec.key_type_id if use_btf else 0,
            btf_value_type_id=spec.value_type_id if use_btf else 0,
            map_extra=spec.map_extra,
        )

    try:
        return attempt(True)
    except SyscallError:
        if btf_fd is None or not spec.value_type_id:
            raise
    return attempt(False)  # libbpf: "Retrying without BTF."


@dataclasses.dataclass(eq=False)
class KernelMap:
    """A map in the kernel: ``spec`` as created (after fix-ups), ``fd`` owning it.

    ``pinned`` is its bpffs path when pinned, ``reused`` true when an existing pin was
    opened instead of creating a map. Keys and values are bytes; a per-CPU map's value is
    ``round_up(value_size, 8) * possible_cpus()`` bytes, as in the kernel's ABI.
    """

    name: str
    kernel_name: str
    spec: MapSpec
    fd: Fd
    pinned: str | None = None
    reused: bool = False

    @property
    def value_size(self) -> int:
        """Bytes of a value as the map commands see it (all CPUs' for per-CPU maps)."""
        if self.spec.type in _PERCPU:
            return (self.spec.value_size + 7) // 8 * 8 * possible_cpus()
        return self.spec.value_size

    def lookup(self, key: bytes, flags: int = 0) -> bytes | None:
        """The value under ``key``, or ``None``; ``flags`` go to ``BPF_MAP_LOOKUP_ELEM``
        (``BPF_F_LOCK``: copied under the value's ``bpf_spin_lock``, as
        :meth:`pybpf.maps.Map.lookup`)."""
        return map_lookup(self.fd, key, self.value_size, flags)

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        """Store ``value`` under ``key`` (``flags``: BPF_ANY, BPF_NOEXIST, BPF_EXIST)."""
        map_update(self.fd, key, value, flags)

    def delete(self, key: bytes) -> None:
        """Remove ``key``."""
        map_delete(self.fd, key)

    def keys(self) -> Iterator[bytes]:
        """Every key, in the kernel's order."""
        return map_keys(self.fd, self.spec.key_size)

    def info(self) -> MapInfo:
        """The kernel's description of the map (``bpftool map show``'s data)."""
        return map_info(self.fd)

    @property
    def id(self) -> int:
        """The kernel's id of the map."""
        return self.info().id

    def close(self) -> None:
        """Release the map's fd (a pinned map lives on)."""
        self.fd.close()

    def __enter__(self) -> KernelMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_map(
    spec: MapSpec,
    object_name_: str,
    *,
    btf_fd: Fd | None = None,
    pin_dir: str | os.PathLike[str] | None = None,
) -> KernelMap:
    """Create the map ``spec`` describes (after :func:`kernel_map_spec`'s fix-ups).

    A map-in-map's inner template is created first and closed after. With ``pin_dir``, a
    map whose spec asks for pinning is pinned at ``pin_dir/NAME``, or, when that path
    already holds a compatible map, reuses it (an incompatible one is an
    :class:`InputError`). Initial contents are not written here (see the object loader).
    """
    kspec, kname = kernel_map_spec(spec, object_name_)
    path = None
    if pin_dir is not None and spec.pinning != Pinning.NONE:
        path = os.path.join(os.fspath(pin_dir), spec.name)
        try:
            fd = obj_get(path)
        except SyscallError as err:
            if err.errno != errno.ENOENT:
                raise
        else:
            if not _compatible(map_info(fd), kspec):
                fd.close()
                raise InputError(
                    f"the map pinned at {path} does not match map {spec.name!r}",
                    path=path,
                    section=spec.section,
                )
            return KernelMap(spec.name, kname, kspec, Fd(fd.detach(), "map"), path, True)
    inner_fd = None
    try:
        if kspec.inner is not None:
            inner_fd = _create(kspec.inner, object_name(spec.name + ".inner"), btf_fd, None)
        try:
            fd = _create(kspec, kname, btf_fd, inner_fd)
        except SyscallError as err:
            err.section = spec.section
            err.map_name = spec.name
            raise
    finally:
        if inner_fd is not None:
            inner_fd.close()
    if path is not None:
        try:
            obj_pin(fd, path)
        except SyscallError:
            fd.close()
            raise
    return KernelMap(spec.name, kname, kspec, fd, path)
