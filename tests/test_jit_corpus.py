"""Corpus agreement on a fixed sample: accepted programs compile on the JIT and packet programs
give the same results on both engines (``benchmarks/corpus_engines.py`` runs the whole corpus)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pybpf.jit import available

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import corpus_engines  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

pytestmark = [
    pytest.mark.skipif(not available(), reason="llvmlite is not installed"),
    pytest.mark.skipif(
        not (CORPUS / "expected.csv").is_file(), reason=f"no corpus at {CORPUS} (../shared)"
    ),
]

# (project, object, function): xdp, tc and socket filter programs from several projects,
# with maps, packet access, loops and local calls
SAMPLE = [
    ("build", "packet_start_ok.o", "read_write_packet_start"),
    ("build", "correlated_branch.o", "ConvergedBranch"),
    ("build", "bounded_loop.o", "test_bounded_loop"),
    ("build", "map_in_map.o", "func"),
    ("build", "packet_access.o", "test_packet_access"),
    ("cilium-examples", "tcx_bpf_bpfel.o", "ingress_prog_func"),
    ("linux", "tcbpf1_kern.o", "classifier"),
    ("prototype-kernel", "xdp_ddos01_blacklist_kern.o", "xdp_prog"),
    ("linux", "sockex1_kern.o", "socket1"),
]


def _row(project: str, obj: str, function: str) -> dict[str, str]:
    for row in corpus_engines.rows_of(CORPUS, [project]):
        if row["object"] == obj and row["function"] == function:
            return row
    pytest.skip(f"{project}/{obj} {function} is not in this corpus")


@pytest.mark.parametrize(("project", "obj", "function"), SAMPLE)
def test_a_sample_program_compiles_and_agrees(tmp_path, monkeypatch, project, obj, function):
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))
    out = corpus_engines.check_row(CORPUS, _row(project, obj, function))
    # the sample is of programs pybpf accepts: a refusal is a change to look at, not a skip
    assert out.get("accepted"), out.get("error")
    assert out.get("compiled"), out.get("error")
    if out.get("type") in corpus_engines.PACKET_TYPES and not out.get("nondeterministic"):
        assert out["agree"], out.get("diff")


def test_the_packets_are_fixed():
    assert len(corpus_engines.PACKETS) == 8
    assert corpus_engines.PACKETS == corpus_engines.PACKETS  # built once, at import
    assert all(len(p) >= 14 for p in corpus_engines.PACKETS)
