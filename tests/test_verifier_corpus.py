"""The verifier on real objects (``../shared/corpus``): no false accepts, PREVAIL's passes kept.

Every row whose ``status`` is ``reject``/``reject_load`` (or whose ``legacy_2025_macro`` is
``TEST_SECTION_REJECT``) must be refused: at open (``ElfError``/``DecodeError``) or by the
verifier. The three eBPF-for-Windows files in ``invalid/`` are read as Windows objects and
verified as such; the README allows either verdict for them, so they are only counted. A
fixed sample of ``pass`` rows (every small project, a slice of the Cilium ones) must be
accepted at the rate below. Program types come from libbpf's section rules
(:func:`pybpf.progtypes.sections.match_section`) verified with every Linux rule on; the
``prog_type`` column (PREVAIL's reading of the section name: unknown sections such as
``2/1`` become socket filters) is used only for sections no rule types, and such a guessed
type has its helpers checked by context, not by Linux's per-type list. With these rules
``build/bpf2bpf.o`` ``add2`` and ``func`` are refused, as Linux refuses them (``add2``
passes the context where ``add1`` takes memory; ``func``'s global ``add1`` reads its
maybe-null ``int *``); Linux also refuses ``add1`` (it writes ``skb->len``), which pybpf
refuses at load, when context accesses are rewritten, not in the verifier.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import pytest

from pybpf.elf import read_object
from pybpf.errors import InputError
from pybpf.progtypes import ProgType
from pybpf.progtypes.contexts import rules_for
from pybpf.progtypes.sections import match_section
from pybpf.spec import ObjectSpec
from pybpf.verifier import Options, verify_object

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
PASS_RATE = 0.95
BIG_PROJECTS = ("cilium", "bpf_cilium_test")  # sampled: their programs are the longest
SAMPLE_PER_BIG_PROJECT = 8
# Read as eBPF-for-Windows objects and verified as such (README: either verdict is correct).
WINDOWS_FILES = ("662b334a", "dac31099", "timeout-29db")
OPTIONS = Options()  # a type from the section: every Linux rule
GUESSED_TYPE_OPTIONS = Options(type_helpers=False)  # a type from the prog_type column


def _rows() -> list[dict[str, str]]:
    table = CORPUS / "expected.csv"
    if not table.is_file():
        pytest.skip(f"{table} is not present (the corpus lives beside the clone)")
    with open(table) as fh:
        return list(csv.DictReader(fh))


@cache
def _object(project: str, name: str) -> ObjectSpec:
    return read_object((CORPUS / project / name).read_bytes())


def _verdict(row: dict[str, str]) -> tuple[str, str]:
    """``("refused", why)`` or ``("accepted", "")``."""
    try:
        obj = _object(row["project"], row["object"])
        prog_type, options = None, GUESSED_TYPE_OPTIONS
        if not _is_windows(row):
            match = match_section(row["section"])
            if match is not None and rules_for(match.prog_type) is not None:
                prog_type, options = match.prog_type, OPTIONS
            elif row["prog_type"]:
                prog_type = ProgType.from_name(row["prog_type"])
        result = verify_object(obj, row["function"], prog_type, options=options)
    except InputError as err:
        return "refused", f"{type(err).__name__}: {err}"
    if result.accepted:
        return "accepted", ""
    return "refused", str(result.errors[0])


def _must_reject(row: dict[str, str]) -> bool:
    return row["status"] in ("reject", "reject_load") or (
        row["legacy_2025_macro"] == "TEST_SECTION_REJECT"
    )


def test_no_false_accepts():
    windows = 0
    accepted = []
    for row in _rows():
        if not _must_reject(row):
            continue
        verdict, _ = _verdict(row)
        if verdict == "accepted":
            if _is_windows(row):
                windows += 1
                continue
            accepted.append(f"{row['project']}/{row['object']}:{row['function']}")
    assert not accepted, f"unsafe programs accepted: {accepted}"


def _is_windows(row: dict[str, str]) -> bool:
    return row["project"] == "invalid" and row["object"].startswith(WINDOWS_FILES)


def _sample() -> list[dict[str, str]]:
    rows = [r for r in _rows() if r["status"] == "pass"]
    out = [r for r in rows if r["project"] not in BIG_PROJECTS]
    for project in BIG_PROJECTS:
        out += [r for r in rows if r["project"] == project][:SAMPLE_PER_BIG_PROJECT]
    return out


def test_prevail_passes_are_accepted(capsys):
    sample = _sample()
    refused = []
    for row in sample:
        verdict, why = _verdict(row)
        if verdict != "accepted":
            refused.append(f"{row['project']}/{row['object']}:{row['function']}: {why}")
    rate = 1 - len(refused) / len(sample)
    with capsys.disabled():
        print(f"\ncorpus pass rows accepted: {len(sample) - len(refused)}/{len(sample)}")
        for line in refused:
            print(f"  refused {line}")
    assert rate >= PASS_RATE, refused


def test_diagnostics_carry_source_lines():
    row = next(r for r in _rows() if r["object"] == "packet_overflow.o")
    obj = _object(row["project"], row["object"])
    result = verify_object(obj, row["function"], ProgType.from_name(row["prog_type"]))
    assert not result.accepted
    first = result.errors[0]
    assert first.pc is not None and first.line is not None and first.source
