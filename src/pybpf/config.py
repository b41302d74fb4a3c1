"""Config: pybpf's settings, read once from the environment, with their defaults.

Every environment knob pybpf honours is read here and nowhere else:

- ``PYBPF_STATE``: the state directory (the emulated bpffs where pinned objects live).
  Default: ``$XDG_STATE_HOME/pybpf`` or ``~/.local/state/pybpf``.
- ``PYBPF_INSN_BUDGET``: how many instructions the interpreter runs before it stops an
  unverified program (default 10,000,000).
- ``PYBPF_NCPUS``: how many CPUs per-CPU maps emulate (default: this machine's count).
- ``PYBPF_JIT_CACHE``: ``0`` (or ``no``/``off``/``false``) turns off the on-disk code
  cache of JIT programs loaded from objects (default: on, ``jit-cache`` in the state
  directory); ``PYBPF_JIT_CACHE_SIZE``: its size bound in bytes (default 64 MiB; the
  least recently used entries go first).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings", "settings", "DEFAULT_INSN_BUDGET", "DEFAULT_JIT_CACHE_BYTES"]

DEFAULT_INSN_BUDGET = 10_000_000
DEFAULT_JIT_CACHE_BYTES = 64 << 20


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
    jit_cache: bool = True
    jit_cache_bytes: int = DEFAULT_JIT_CACHE_BYTES


def settings() -> Settings:
    """Read the settings from the environment (cheap; call it when a value is needed)."""
    state = os.environ.get("PYBPF_STATE")
    return Settings(
        state_dir=Path(state).expanduser() if state else _default_state_dir(),
        insn_budget=_int_env("PYBPF_INSN_BUDGET", DEFAULT_INSN_BUDGET),
        ncpus=_int_env("PYBPF_NCPUS", os.cpu_count() or 1),
        jit_cache=os.environ.get("PYBPF_JIT_CACHE", "1").strip().lower()
        not in ("0", "no", "off", "false"),
        jit_cache_bytes=_int_env("PYBPF_JIT_CACHE_SIZE", DEFAULT_JIT_CACHE_BYTES),
    )
