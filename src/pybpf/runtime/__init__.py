"""runtime: helper implementations bound to the helper table by id, and their context.

:func:`default_helpers` returns a fresh :class:`HelperRegistry` with every helper pybpf
implements so far (see :mod:`pybpf.runtime.basics` and :mod:`pybpf.runtime.maps`);
engines call helpers with an :class:`ExecutionContext` as
``fn(ctx, r1, r2, r3, r4, r5) -> r0``. The error contract is in
:mod:`pybpf.runtime.registry`.
"""

from pybpf.runtime.basics import BASIC_HELPERS, register_basics
from pybpf.runtime.context import ExecutionContext, TraceSink
from pybpf.runtime.maps import MAP_HELPERS, expose_maps, map_lddw_resolver, register_maps
from pybpf.runtime.printk import TRACE_PIPE, BprintfError, TracePipe, format_bprintf
from pybpf.runtime.registry import HelperFn, HelperRegistry, call_helper, helper_failure

__all__ = [
    "BASIC_HELPERS",
    "BprintfError",
    "ExecutionContext",
    "HelperFn",
    "HelperRegistry",
    "MAP_HELPERS",
    "TRACE_PIPE",
    "TraceSink",
    "TracePipe",
    "call_helper",
    "default_helpers",
    "expose_maps",
    "format_bprintf",
    "helper_failure",
    "map_lddw_resolver",
    "register_basics",
    "register_maps",
]


def default_helpers() -> HelperRegistry:
    """A new registry holding every helper implemented by the runtime."""
    return register_maps(register_basics(HelperRegistry()))
