"""pybpf: a portable eBPF platform: load, verify, run and attach clang-compiled eBPF objects."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
