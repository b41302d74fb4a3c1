"""pybpf: a portable eBPF platform: load, verify, run and attach clang-compiled eBPF objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "Object"]

if TYPE_CHECKING:
    from pybpf.objects import Object


def __getattr__(name: str) -> Any:
    """The public facade, imported on first use (``pybpf.Object``)."""
    if name == "Object":
        from pybpf.objects import Object

        return Object
    raise AttributeError(f"module 'pybpf' has no attribute {name!r}")
