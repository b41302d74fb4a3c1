"""syscall: the raw Linux ``bpf()`` call through ctypes; errno becomes ``SyscallError``.

One function per ``bpf(2)`` command, taking and returning plain Python values: bytes for
keys, values, bytecode and packets, :class:`Fd` for the descriptors the kernel hands out.
Importing this package works on every OS (libc is bound on the first call); on a system
without ``bpf()`` every call raises :class:`~pybpf.errors.NotSupportedError`.

>>> from pybpf.syscall import map_create, map_update, map_lookup, MapType
>>> with map_create(MapType.ARRAY, 4, 8, 1) as fd:              # doctest: +SKIP
...     map_update(fd, b"\\0" * 4, b"\\1" * 8)
...     map_lookup(fd, b"\\0" * 4, 8)
b'\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01'
"""

from __future__ import annotations

from pybpf.syscall.attach import link_create, link_detach, prog_attach, prog_detach, prog_query
from pybpf.syscall.call import available, bpf, syscall_number
from pybpf.syscall.fd import Fd, fd_number
from pybpf.syscall.info import (
    BtfInfo,
    LinkInfo,
    MapInfo,
    ProgInfo,
    btf_info,
    link_info,
    map_info,
    prog_info,
    prog_jited,
    prog_xlated,
)
from pybpf.syscall.maps import (
    map_create,
    map_delete,
    map_get_next_key,
    map_keys,
    map_lookup,
    map_update,
)
from pybpf.syscall.objects import (
    btf_get_fd_by_id,
    btf_get_next_id,
    btf_ids,
    btf_load,
    link_get_fd_by_id,
    link_get_next_id,
    link_ids,
    map_get_fd_by_id,
    map_get_next_id,
    map_ids,
    obj_get,
    obj_pin,
    prog_get_fd_by_id,
    prog_get_next_id,
    prog_ids,
)
from pybpf.syscall.programs import TestRunResult, prog_load, prog_test_run
from pybpf.syscall.uapi import (
    AttachFlag,
    AttachType,
    Cmd,
    LinkType,
    LogLevel,
    MapFlag,
    MapType,
    ProgFlag,
    ProgType,
    TestRunFlag,
    UpdateFlag,
)

__all__ = [
    "AttachFlag",
    "AttachType",
    "BtfInfo",
    "Cmd",
    "Fd",
    "LinkInfo",
    "LinkType",
    "LogLevel",
    "MapFlag",
    "MapInfo",
    "MapType",
    "ProgFlag",
    "ProgInfo",
    "ProgType",
    "TestRunFlag",
    "TestRunResult",
    "UpdateFlag",
    "available",
    "bpf",
    "btf_get_fd_by_id",
    "btf_get_next_id",
    "btf_ids",
    "btf_info",
    "btf_load",
    "fd_number",
    "link_create",
    "link_detach",
    "link_get_fd_by_id",
    "link_get_next_id",
    "link_ids",
    "link_info",
    "map_create",
    "map_delete",
    "map_get_fd_by_id",
    "map_get_next_id",
    "map_get_next_key",
    "map_ids",
    "map_info",
    "map_keys",
    "map_lookup",
    "map_update",
    "obj_get",
    "obj_pin",
    "prog_attach",
    "prog_detach",
    "prog_get_fd_by_id",
    "prog_get_next_id",
    "prog_ids",
    "prog_info",
    "prog_jited",
    "prog_load",
    "prog_query",
    "prog_test_run",
    "prog_xlated",
    "syscall_number",
]
