"""cli: the ``pybpf`` command, a thin shell over pybpf's public API (bpftool's conventions)."""

from pybpf.cli.app import cli, main

__all__ = ["cli", "main"]
