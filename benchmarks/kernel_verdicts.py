"""Kernel verdicts: every corpus program through pybpf's verifier and the running kernel, a report.

Run ``python benchmarks/kernel_verdicts.py [--corpus DIR] [--project P] [--sample]
[--report out.csv|out.json]``. For every row of ``expected.csv`` (program type from its
``prog_type`` column, for both verifiers) it verifies the function with pybpf and loads it,
with its object's maps, into this machine's kernel (``bpf()``; run as root). The report has
one row per program: project, object, section, function, program type, corpus status,
pybpf's verdict and first error, the kernel's verdict, its class (``safety``: invalid
memory access, uninitialised read, unbounded loop, pointer misuse, bad helper argument;
``other``: helper not for the type, complexity, BTF/attach/CO-RE, maps, context fields the
type may not use, return range, ...) with the reason and the log's last line, and the
outcome (``both_accept``, ``both_reject``, ``kernel_only_reject``, ``pybpf_only_reject``).
It prints the counts, the kernel-only refusals by class, and every *false accept*: a
program the kernel refuses for a safety reason that pybpf accepts; exit status 1 when there
is one. ``--sample`` takes the fixed CI sample (every row of the small projects, the first
rows of the big Cilium ones). Objects that fail to open are refusals on both sides;
eBPF-for-Windows files (three in ``invalid/``) are counted apart.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import sys
import time
from pathlib import Path

from pybpf.elf import read_object
from pybpf.errors import InputError
from pybpf.kernel.compare import Comparison, compare_program
from pybpf.kernel.verdict import OTHER, KernelVerdict
from pybpf.progtypes import ProgType

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
WINDOWS_FILES = ("662b334a", "dac31099", "timeout-29db")
BIG_PROJECTS = ("cilium", "bpf_cilium_test")
SAMPLE_PER_BIG_PROJECT = 8
FIELDS = (
    "project",
    "object",
    "section",
    "function",
    "prog_type",
    "status",
    "pybpf_verdict",
    "pybpf_message",
    "kernel_verdict",
    "kernel_class",
    "kernel_reason",
    "kernel_message",
    "outcome",
)


def read_rows(corpus: Path, projects: list[str] | None = None, sample: bool = False) -> list[dict]:
    """The rows of ``expected.csv`` (only ``projects``; with ``sample`` the CI sample)."""
    with open(corpus / "expected.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if not projects or r["project"] in projects]
    if not sample:
        return rows
    out = [r for r in rows if r["project"] not in BIG_PROJECTS]
    for project in BIG_PROJECTS:
        out += [r for r in rows if r["project"] == project][:SAMPLE_PER_BIG_PROJECT]
    return out


def is_windows(row: dict[str, str]) -> bool:
    """One of the eBPF-for-Windows files of ``invalid/``."""
    return row["project"] == "invalid" and row["object"].startswith(WINDOWS_FILES)


def compare_row(corpus: Path, row: dict[str, str], cache: dict) -> Comparison:
    """Both verdicts on one corpus row (an object that does not open is refused by both)."""
    key = (row["project"], row["object"])
    if key not in cache:
        try:
            cache[key] = read_object((corpus / row["project"] / row["object"]).read_bytes())
        except InputError as err:
            cache[key] = err
    obj = cache[key]
    prog_type = ProgType.from_name(row["prog_type"]) if row["prog_type"] else None
    if isinstance(obj, InputError):
        message = f"{type(obj).__name__}: {obj}"
        kernel = KernelVerdict(False, OTHER, "open", message)
        return Comparison(row["function"], row["section"], row["prog_type"], False, message, kernel)
    try:
        return compare_program(obj, row["function"], prog_type, path=row["object"])
    except InputError as err:
        message = f"{type(err).__name__}: {err}"
        kernel = KernelVerdict(False, OTHER, "load", message)
        return Comparison(row["function"], row["section"], row["prog_type"], False, message, kernel)


def record(row: dict[str, str], c: Comparison) -> dict[str, str]:
    """One report row."""
    return {
        "project": row["project"],
        "object": row["object"],
        "section": row["section"],
        "function": row["function"],
        "prog_type": c.prog_type,
        "status": row["status"],
        "pybpf_verdict": "accept" if c.pybpf_accepted else "reject",
        "pybpf_message": c.pybpf_message,
        "kernel_verdict": "accept" if c.kernel.accepted else "reject",
        "kernel_class": "" if c.kernel.accepted else c.kernel.category,
        "kernel_reason": c.kernel.reason,
        "kernel_message": c.kernel.message,
        "outcome": c.outcome,
    }


def run(rows: list[dict], corpus: Path, progress: bool = False) -> list[tuple[dict, Comparison]]:
    """Both verdicts on every row, in order."""
    cache: dict = {}
    out = []
    for i, row in enumerate(rows):
        out.append((row, compare_row(corpus, row, cache)))
        if progress and i % 25 == 24:
            print(f"  {i + 1}/{len(rows)}", file=sys.stderr)
    return out


def write_report(path: Path, records: list[dict[str, str]]) -> None:
    """CSV or JSON by the file's suffix."""
    if path.suffix == ".json":
        path.write_text(json.dumps(records, indent=1))
        return
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(records)


def summarize(results: list[tuple[dict, Comparison]]) -> tuple[list[str], list[str]]:
    """(printable summary lines, false accepts as ``project/object:function: reason``)."""
    outcomes: collections.Counter = collections.Counter()
    kernel_only: collections.Counter = collections.Counter()
    false_accepts = []
    windows = 0
    for row, c in results:
        if is_windows(row):
            windows += 1
            continue
        outcomes[c.outcome] += 1
        if c.outcome == "kernel_only_reject":
            kernel_only[f"{c.kernel.category}:{c.kernel.reason}"] += 1
        if c.false_accept:
            name = f"{row['project']}/{row['object']}:{row['function']}"
            false_accepts.append(f"{name}: {c.kernel.reason}: {c.kernel.message}")
    lines = [f"programs: {sum(outcomes.values())} (+{windows} eBPF-for-Windows, apart)"]
    for key in ("both_accept", "both_reject", "kernel_only_reject", "pybpf_only_reject"):
        lines.append(f"  {key:<20} {outcomes[key]}")
    if kernel_only:
        lines.append("kernel-only refusals by class:")
        for key, n in kernel_only.most_common():
            lines.append(f"  {key:<30} {n}")
    return lines, false_accepts


def main(argv: list[str] | None = None) -> int:
    """Run the corpus through both verifiers; print the counts; write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--project", action="append", help="only these projects")
    parser.add_argument("--sample", action="store_true", help="only the fixed CI sample")
    parser.add_argument("--report", type=Path, help="write every row here (.csv or .json)")
    args = parser.parse_args(argv)
    if not (args.corpus / "expected.csv").is_file():
        print(f"no corpus at {args.corpus}", file=sys.stderr)
        return 2
    rows = read_rows(args.corpus, args.project, args.sample)
    started = time.perf_counter()
    results = run(rows, args.corpus, progress=True)
    lines, false_accepts = summarize(results)
    print("\n".join(lines))
    print(f"time: {time.perf_counter() - started:.1f}s")
    for line in false_accepts:
        print(f"FALSE ACCEPT {line}")
    if args.report:
        write_report(args.report, [record(row, c) for row, c in results])
    return 1 if false_accepts else 0


if __name__ == "__main__":
    sys.exit(main())
