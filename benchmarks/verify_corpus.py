"""Verifier benchmark: the whole corpus verified, verdicts and times next to PREVAIL's.

Run ``python benchmarks/verify_corpus.py [--corpus DIR] [--project P] [--json FILE]``. For
every row of ``expected.csv`` (program type from its ``prog_type`` column), it opens the
object, verifies the function in this process and prints, per project: pass rows accepted,
``expected_failure`` rows accepted, must-reject rows refused, pybpf's seconds and PREVAIL's
(``prevail_secs``: one process per program, ELF parsing included), then the worst programs
and any false accept. Exit status 1 when a must-reject row is accepted (the three
eBPF-for-Windows files in ``invalid/`` are counted apart: either verdict is correct).
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
from pybpf.progtypes import ProgType
from pybpf.progtypes.contexts import rules_for
from pybpf.progtypes.sections import match_section
from pybpf.verifier import Options, verify_object

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
WINDOWS_FILES = ("662b334a", "dac31099", "timeout-29db")
# Where libbpf's section rules (pybpf.progtypes.sections) type a section, the program is
# verified as that type with every Linux rule on. The prog_type column (PREVAIL's reading of
# section names: ``tc``, ``2/1`` -> socket filter) is kept only for sections no rule knows;
# such a type is a guess, so helpers are checked by context, not by the type's Linux list.
OPTIONS = Options()
GUESSED_TYPE_OPTIONS = Options(type_helpers=False)
# --prevail-model: PREVAIL's types for every row and its model (global functions inlined)
PREVAIL_OPTIONS = Options(type_helpers=False, global_functions=False)


def program_type(row: dict[str, str], prevail_model: bool = False) -> tuple[ProgType | None, bool]:
    """(program type, typed by the section) for a row; ``None`` for eBPF-for-Windows files."""
    if row["object"].startswith(WINDOWS_FILES):
        return None, False
    if not prevail_model:
        match = match_section(row["section"])
        if match is not None and rules_for(match.prog_type) is not None:
            return match.prog_type, True
    return (ProgType.from_name(row["prog_type"]) if row["prog_type"] else None), False


def must_reject(row: dict[str, str]) -> bool:
    """Rows that describe unsafe or malformed programs."""
    return row["status"] in ("reject", "reject_load") or (
        row["legacy_2025_macro"] == "TEST_SECTION_REJECT"
    )


def verdict(
    corpus: Path,
    row: dict[str, str],
    cache: dict,
    info: dict | None = None,
    prevail_model: bool = False,
) -> tuple[bool, str, float]:
    """(accepted, first error, seconds) for one row; open errors count as refusals.

    ``info`` (when given) receives the program type used (``prog_type``, ``typed_by``:
    ``section`` or ``column``), ``terminates`` and ``loop_bound``."""
    start = time.perf_counter()
    key = (row["project"], row["object"])
    try:
        if key not in cache:
            try:
                cache[key] = read_object((corpus / row["project"] / row["object"]).read_bytes())
            except InputError as err:
                cache[key] = err
        obj = cache[key]
        if isinstance(obj, InputError):
            raise obj
        prog_type, by_section = program_type(row, prevail_model)
        if prevail_model:
            options = PREVAIL_OPTIONS
        else:
            options = OPTIONS if by_section else GUESSED_TYPE_OPTIONS
        if info is not None:
            info["prog_type"] = prog_type.type_name if prog_type is not None else None
            info["typed_by"] = "section" if by_section else "column"
        result = verify_object(obj, row["function"], prog_type, options=options)
        if info is not None:
            info["terminates"] = result.terminates
            info["loop_bound"] = result.loop_bound
    except InputError as err:
        return False, f"{type(err).__name__}: {err}", time.perf_counter() - start
    first = str(result.errors[0]) if result.errors else ""
    return result.accepted, first, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Verify the corpus and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--project", action="append", help="only these projects")
    parser.add_argument("--json", type=Path, help="write every row's verdict here")
    parser.add_argument(
        "--prevail-model",
        action="store_true",
        help="PREVAIL's program types for every row, global functions inlined",
    )
    args = parser.parse_args(argv)
    table = args.corpus / "expected.csv"
    if not table.is_file():
        print(f"no corpus at {args.corpus}", file=sys.stderr)
        return 2
    with open(table) as fh:
        rows = [r for r in csv.DictReader(fh) if not args.project or r["project"] in args.project]
    stats: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    times: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    worst: list[tuple[float, str, float]] = []
    false_accepts, records, cache = [], [], {}
    typed_by: collections.Counter = collections.Counter()
    for row in rows:
        info: dict = {}
        accepted, error, secs = verdict(args.corpus, row, cache, info, args.prevail_model)
        typed_by[info.get("typed_by", "column")] += 1
        p, name = row["project"], f"{row['project']}/{row['object']}:{row['function']}"
        prevail = float(row["prevail_secs"] or 0)
        times[p][0] += secs
        times[p][1] += prevail
        worst.append((secs, name, prevail))
        s = stats[p]
        if row["object"].startswith(WINDOWS_FILES):
            s["windows"] += 1
            s["windows_accepted"] += accepted
        elif must_reject(row):
            s["reject"] += 1
            s["reject_refused"] += not accepted
            if accepted:
                false_accepts.append(name)
        elif row["status"] == "pass":
            s["pass"] += 1
            s["pass_accepted"] += accepted
            s["pass_terminates"] += accepted and info.get("terminates", False)
        else:
            s["xfail"] += 1
            s["xfail_accepted"] += accepted
        s["prevail_pass"] += row["prevail_verdict"] == "pass"
        records.append(
            {
                "row": name,
                "status": row["status"],
                "accepted": accepted,
                "error": error,
                "secs": round(secs, 4),
                "prevail_secs": prevail,
                "prevail_verdict": row["prevail_verdict"],
                **info,
            }
        )
    head = f"{'project':<18} {'pass acc.':>10} {'xfail acc.':>10} {'reject ref.':>11} "
    print(head + f"{'windows':>8} {'pybpf s':>8} {'PREVAIL s':>9} {'PREVAIL pass':>12}")
    total: collections.Counter = collections.Counter()
    tot_t = [0.0, 0.0]
    for p in sorted(stats):
        s = stats[p]
        total.update(s)
        tot_t[0] += times[p][0]
        tot_t[1] += times[p][1]
        print(
            f"{p:<18} {s['pass_accepted']:>4}/{s['pass']:<5} {s['xfail_accepted']:>4}/"
            f"{s['xfail']:<5} {s['reject_refused']:>5}/{s['reject']:<5} "
            f"{s['windows']:>8} {times[p][0]:>8.2f} {times[p][1]:>9.2f} {s['prevail_pass']:>12}"
        )
    print(
        f"{'total':<18} {total['pass_accepted']:>4}/{total['pass']:<5} "
        f"{total['xfail_accepted']:>4}/{total['xfail']:<5} {total['reject_refused']:>5}/"
        f"{total['reject']:<5} {total['windows']:>8} {tot_t[0]:>8.2f} {tot_t[1]:>9.2f} "
        f"{total['prevail_pass']:>12}"
    )
    print(
        f"program types: {typed_by['section']} rows from the section (libbpf's rules, all "
        f"Linux rules on), {typed_by['column']} from the prog_type column"
        + (" (--prevail-model)" if args.prevail_model else " (helpers by context)")
    )
    print(
        f"accepted pass rows proven terminating: {total['pass_terminates']}/"
        f"{total['pass_accepted']} (the rest keep an instruction budget)"
    )
    print("worst programs (pybpf s, PREVAIL s):")
    for secs, name, prevail in sorted(worst, reverse=True)[:5]:
        print(f"  {secs:8.3f} {prevail:8.3f}  {name}")
    if false_accepts:
        print("FALSE ACCEPTS: " + ", ".join(false_accepts))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    return 1 if false_accepts else 0


if __name__ == "__main__":
    sys.exit(main())
