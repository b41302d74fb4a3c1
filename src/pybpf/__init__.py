"""pybpf: a portable eBPF platform: load, verify, run and attach clang-compiled eBPF objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Object",
    "PerfBuffer",
    "RingBuffer",
    "TraceLog",
    "load",
    "print_linear_hist",
    "print_log2_hist",
]

if TYPE_CHECKING:
    from pybpf.objects import (
        Object,
        PerfBuffer,
        RingBuffer,
        TraceLog,
        load,
        print_linear_hist,
        print_log2_hist,
    )


def __getattr__(name: str) -> Any:
    """The public facade, imported on first use (``pybpf.Object``, ``pybpf.load``,
    ``pybpf.RingBuffer``, ...)."""
    if name in __all__ and name != "__version__":
        import pybpf.hooks  # noqa: F401  (installs the dispatcher Program.attach calls)
        from pybpf import objects

        return getattr(objects, name)
    raise AttributeError(f"module 'pybpf' has no attribute {name!r}")
