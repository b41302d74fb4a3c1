"""Fuzz guard: runs one fuzz input under a time limit and a memory bound, and counts inputs.

Every input fuzz test (``tests/test_fuzz_*.py``) runs its inputs through :func:`guard`:

- the call gets ``seconds`` of wall time (a ``SIGALRM`` timer raises :class:`Hang`, a
  ``BaseException`` so no ``except Exception`` in pybpf can swallow it);
- the process's peak resident memory may grow by at most ``max_bytes`` during the call
  (``getrusage`` ``ru_maxrss``, cheap enough for every input; a huge allocation pybpf
  should have refused shows up here or as ``MemoryError``);
- only the ``allowed`` error families may escape; anything else fails the test.

Runs are deterministic (``derandomize=True``, no example database). ``PYBPF_FUZZ_EXAMPLES=N``
runs N inputs per test instead of the CI default; ``PYBPF_FUZZ_RANDOM=1`` draws fresh random
inputs each run (Hypothesis prints the ``@seed`` of a failure); ``PYBPF_FUZZ_REPORT=<file>``
appends one JSON line per target with the number of inputs run and how they ended. A long
run of every input fuzzer::

    PYBPF_FUZZ_EXAMPLES=20000 PYBPF_FUZZ_RANDOM=1 PYBPF_FUZZ_REPORT=fuzz.jsonl \
        python -m pytest -q tests/test_fuzz_*.py
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

FIXTURES = Path(__file__).parent / "fixtures" / "fuzz"
EXAMPLES = int(os.environ.get("PYBPF_FUZZ_EXAMPLES", "0") or 0)
RANDOM = os.environ.get("PYBPF_FUZZ_RANDOM", "") not in ("", "0")
COUNTS: dict[str, Counter] = {}


class Hang(BaseException):
    """One input ran longer than its time bound."""


def examples(default: int) -> int:
    """How many inputs a test runs: ``PYBPF_FUZZ_EXAMPLES`` when set, else ``default``."""
    return EXAMPLES or default


def fuzz_settings(default: int) -> settings:
    """Hypothesis settings for a fuzz test: fixed seed, ``default`` inputs unless overridden."""
    return settings(
        max_examples=examples(default),
        derandomize=not RANDOM,
        database=None,
        deadline=None,  # the SIGALRM guard bounds each input; deadlines flake under load
        suppress_health_check=list(HealthCheck),
    )


def _max_rss() -> int:
    """The process's peak resident set so far, in bytes (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _alarm(_signum: int, _frame: Any) -> None:
    raise Hang("input took longer than its time bound")


def guard(
    target: str,
    fn: Callable[[], Any],
    *,
    allowed: tuple[type[BaseException], ...],
    seconds: float = 10.0,
    max_bytes: int = 256 << 20,
) -> BaseException | None:
    """Run ``fn()`` for one input of ``target``; returns the allowed error it raised, or None.

    ``fn`` may return a string naming how the input ended (counted in the report).

    Raises :class:`Hang` past ``seconds``, ``AssertionError`` when the heap grew by more than
    ``max_bytes``, and re-raises any error not in ``allowed``.
    """
    counts = COUNTS.setdefault(target, Counter())
    counts["inputs"] += 1
    timed = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM")
    base = _max_rss()
    old = signal.signal(signal.SIGALRM, _alarm) if timed else None
    if timed:
        signal.setitimer(signal.ITIMER_REAL, seconds)
    error: BaseException | None = None
    try:
        outcome = fn()
        counts[outcome if isinstance(outcome, str) else "ok"] += 1
    except allowed as err:
        counts[type(err).__name__] += 1
        error = err
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    growth = _max_rss() - base
    counts["rss_growth_max"] = max(counts["rss_growth_max"], growth)
    assert growth <= max_bytes, f"{target}: peak memory grew by {growth} bytes for one input"
    return error


def corpus(target: str) -> list[Path]:
    """The kept regression inputs of ``target`` (``tests/fixtures/fuzz/<target>/*``)."""
    folder = FIXTURES / target
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def _report() -> None:
    path = os.environ.get("PYBPF_FUZZ_REPORT")
    if not path or not COUNTS:
        return
    with open(path, "a") as f:
        for target, counts in sorted(COUNTS.items()):
            f.write(json.dumps({"target": target, "pid": os.getpid(), **counts}) + "\n")


atexit.register(_report)
