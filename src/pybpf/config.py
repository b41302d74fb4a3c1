"""Config: pybpf's settings, read once from the environment, with their defaults.

Every environment knob pybpf honours is read here and nowhere else:

- ``PYBPF_STATE``: the state directory (the emulated bpffs where pinned objects live).
  Default: ``$XDG_STATE_HOME/pybpf`` or ``~/.local/state/pybpf``.
- ``PYBPF_INSN_BUDGET``: how many instructions the interpreter runs before it stops an
  unverified program (default 10,000,000).
- ``PYBPF_NCPUS``: how many CPUs per-CPU maps emulate (default: this machine's count).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings", "settings", "DEFAULT_INSN_BUDGET"]

DEFAULT_INSN_BUDGET = 10_000_000


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "pybpf"


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw, 0)
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class Settings:
    """pybpf's settings; :func:`settings` reads the current environment into one."""

    state_dir: Path = field(default_factory=_default_state_dir)
    insn_budget: int = DEFAULT_INSN_BUDGET
    ncpus: int = 1


def settings() -> Settings:
    """Read the settings from the environment (cheap; call it when a value is needed)."""
    state = os.environ.get("PYBPF_STATE")
    return Settings(
        state_dir=Path(state).expanduser() if state else _default_state_dir(),
        insn_budget=_int_env("PYBPF_INSN_BUDGET", DEFAULT_INSN_BUDGET),
        ncpus=_int_env("PYBPF_NCPUS", os.cpu_count() or 1),
    )
