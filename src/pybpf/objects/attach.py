"""Attach registry: where the hooks layer installs the function ``Program.attach`` calls.

Hooks sit above objects in the layer graph (docs/architecture.md), so a program cannot
import them; :mod:`pybpf.hooks.attach` installs its dispatcher here when it is imported
(``import pybpf`` facade names do so), and :func:`attacher` hands it to
:meth:`pybpf.objects.Program.attach`. Without it, attaching raises
:class:`~pybpf.errors.NotSupportedError` saying what to import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pybpf.errors import NotSupportedError

__all__ = ["install", "attacher"]

Attacher = Callable[..., Any]
_INSTALLED: list[Attacher] = []


def install(fn: Attacher) -> None:
    """Make ``fn(program, target, **options)`` what ``Program.attach`` calls."""
    _INSTALLED[:] = [fn]


def attacher() -> Attacher:
    """The installed dispatcher; NotSupportedError when the hooks layer is not imported."""
    if not _INSTALLED:
        raise NotSupportedError(
            "attaching needs the hooks layer: import pybpf.hooks (or use pybpf.load)",
            feature="attach",
        )
    return _INSTALLED[0]
