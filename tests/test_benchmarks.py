"""The benchmark programs compute what they claim (no timing is asserted here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import run as bench  # noqa: E402


@pytest.mark.parametrize("name", list(bench.PROGRAMS))
def test_benchmark_program_result(name):
    _ns, result = bench.bench_interpreter(name, budget_s=0.0)
    assert result == bench.EXPECTED[name]
