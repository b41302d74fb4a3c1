"""conformance: the bpf_conformance suite's ``.data`` format, its runner and its plugin protocol."""

from pybpf.conformance.runner import Outcome, run_case, run_paths
from pybpf.conformance.suite import ConformanceCase, collect, parse_case

__all__ = ["ConformanceCase", "Outcome", "collect", "parse_case", "run_case", "run_paths"]
