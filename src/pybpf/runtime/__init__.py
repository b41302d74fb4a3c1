"""runtime: helper implementations bound to the helper table by id, and their context.

:func:`default_helpers` returns a fresh :class:`HelperRegistry` with every helper pybpf
implements so far (see :mod:`pybpf.runtime.basics` and :mod:`pybpf.runtime.maps`);
engines call helpers with an :class:`ExecutionContext` as
``fn(ctx, r1, r2, r3, r4, r5) -> r0``. The error contract is in
:mod:`pybpf.runtime.registry`.
"""

from collections.abc import Mapping

from pybpf.runtime.basics import BASIC_HELPERS, register_basics
from pybpf.runtime.checksum import CHECKSUM_HELPERS, register_checksum
from pybpf.runtime.context import ExecutionContext, TraceSink
from pybpf.runtime.locks import LOCK_HELPERS, register_locks
from pybpf.runtime.maps import MAP_HELPERS, expose_maps, map_lddw_resolver, register_maps
from pybpf.runtime.packet import PACKET_HELPERS, register_packet
from pybpf.runtime.printk import TRACE_PIPE, BprintfError, TracePipe, format_bprintf
from pybpf.runtime.probe import PROBE_HELPERS, register_probe
from pybpf.runtime.process import PROCESS_HELPERS, register_process
from pybpf.runtime.registry import HelperFn, HelperRegistry, call_helper, helper_failure
from pybpf.runtime.strings import STRING_HELPERS, register_strings

__all__ = [
    "BASIC_HELPERS",
    "BprintfError",
    "CHECKSUM_HELPERS",
    "LOCK_HELPERS",
    "PROBE_HELPERS",
    "PROCESS_HELPERS",
    "STRING_HELPERS",
    "ExecutionContext",
    "HelperFn",
    "HelperRegistry",
    "MAP_HELPERS",
    "PACKET_HELPERS",
    "TRACE_PIPE",
    "TraceSink",
    "TracePipe",
    "call_helper",
    "default_helpers",
    "expose_maps",
    "format_bprintf",
    "helper_failure",
    "helper_registry",
    "map_lddw_resolver",
    "register_basics",
    "register_maps",
    "register_packet",
    "register_checksum",
    "register_locks",
    "register_probe",
    "register_process",
    "register_strings",
]


_DEFAULT: list[HelperRegistry] = []  # built once; callers get copies


def default_helpers() -> HelperRegistry:
    """A new registry holding every helper implemented by the runtime (a copy of one built
    on first use: the bindings are module-level functions, so copies are independent)."""
    if not _DEFAULT:
        registry = register_maps(register_basics(HelperRegistry()))
        for register in (
            register_checksum,
            register_strings,
            register_process,
            register_probe,
            register_locks,
            register_packet,
        ):
            register(registry)
        _DEFAULT[:] = [registry]
    return _DEFAULT[0].copy()


def helper_registry(
    helpers: HelperRegistry | Mapping[int | str, HelperFn] | None,
) -> HelperRegistry:
    """The registry an engine runs with: ``helpers`` itself, a registry built from a mapping
    (id or name -> function), or :func:`default_helpers` when ``None``."""
    if helpers is None:
        return default_helpers()
    if isinstance(helpers, HelperRegistry):
        return helpers
    return HelperRegistry(helpers)
