"""pybpf: a portable eBPF platform: load, verify, run and attach clang-compiled eBPF objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "Object", "load"]

if TYPE_CHECKING:
    from pybpf.objects import Object, load


def __getattr__(name: str) -> Any:
    """The public facade, imported on first use (``pybpf.Object``, ``pybpf.load``)."""
    if name in ("Object", "load"):
        from pybpf import objects

        return getattr(objects, name)
    raise AttributeError(f"module 'pybpf' has no attribute {name!r}")
