"""Verifier soundness fuzzing: every program the verifier accepts runs clean in the interpreter.

Programs come from ``tests/fuzzgen.py`` (XDP and tc programs shaped like real ones: packet
parsing with bounds checks that are sometimes wrong, map lookups with and without null
checks, stack writes and reads, loops, static function calls, ``bpf_loop`` callbacks,
pointer arithmetic, context fields, helpers that move the packet). ``tests/fuzzrun.py``
verifies each (loops must be proven bounded) and runs every accepted one on the
interpreter, whose address space checks
every access, on several packets, twice per packet (stack zeroed, then filled with 0xA5).
A :class:`~pybpf.errors.MemoryAccessError`, a :class:`~pybpf.errors.BudgetExceededError` or
a result that depends on the stack fill (a read of stack bytes never written) is a false
accept: the test fails with the seed and the program.

CI runs a fixed range of seeds in a few seconds. A longer run::

    PYBPF_FUZZ_EXAMPLES=20000 PYBPF_FUZZ_SEED=1000 \
        python -m pytest -q -s tests/test_verifier_fuzz.py

(``PYBPF_FUZZ_EXAMPLES`` programs from seed ``PYBPF_FUZZ_SEED``; ``-s`` shows the counts:
generated, accepted, executed runs, false accepts.) Programs that once were false accepts
are kept in ``tests/fixtures/verifier_fuzz/*.s`` (first line ``; type: xdp`` or ``; type:
tc``; ``; expect: reject`` for programs unsafe by Linux's rules that happen not to fault
in pybpf's memory layout) and must stay refused or run clean. Where ``bpf()`` works,
accepted programs are also loaded into the kernel; the ones it refuses with a safety error
are reported.
"""

from __future__ import annotations

import collections
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuzzgen import MAPS, from_text, generate, packets  # noqa: E402
from fuzzrun import judge  # noqa: E402
from pybpf.progtypes import ProgType  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "verifier_fuzz"
EXAMPLES = int(os.environ.get("PYBPF_FUZZ_EXAMPLES", "150"))
FIRST_SEED = int(os.environ.get("PYBPF_FUZZ_SEED", "0"))
PACKETS = 6


def _describe(seed: int, outcome) -> str:
    program = generate(seed)
    return f"false accept ({outcome.verdict}) of seed {seed}: {outcome.detail}\n{program.text}"


def test_accepted_programs_run_clean():
    counts: collections.Counter[str] = collections.Counter()
    failures = []
    for seed in range(FIRST_SEED, FIRST_SEED + EXAMPLES):
        outcome = judge(generate(seed), packets(seed, PACKETS))
        counts[outcome.verdict] += 1
        counts["runs"] += outcome.runs
        if outcome.false_accept or outcome.verdict == "exec-error":
            failures.append(_describe(seed, outcome))
    accepted = EXAMPLES - counts["rejected"]
    print(
        f"\nverifier fuzz: {EXAMPLES} generated, {accepted} accepted, "
        f"{counts['ran']} executed ({counts['runs']} runs), {len(failures)} false accepts; "
        f"{counts['load-refused']} refused by the engines' load check"
    )
    assert not failures, "\n\n".join(failures[:3])
    # not vacuous: a real share is accepted and runs, and a real share is refused
    assert counts["ran"] >= EXAMPLES // 6 and counts["rejected"] >= EXAMPLES // 3


def _fixture(path: Path):
    text = path.read_text()
    first = text.splitlines()[0]
    prog_type = ProgType.SCHED_CLS if "type: tc" in first else ProgType.XDP
    return from_text(text, prog_type)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.s")), ids=lambda p: p.stem)
def test_former_false_accepts_stay_fixed(path):
    outcome = judge(_fixture(path), packets(7, 10))
    assert not outcome.false_accept and outcome.verdict != "exec-error", outcome
    if "; expect: reject" in path.read_text():  # unsafe by Linux's rules, harmless here
        assert outcome.verdict == "rejected", outcome


def test_fixtures_exist():
    assert sorted(FIXTURES.glob("*.s")), f"no regression programs in {FIXTURES}"


def test_generator_covers_the_shapes_it_promises():
    texts = [generate(seed).text for seed in range(60)]
    joined = "\n".join(texts)
    for shape in ("call 1", "if r0 == 0", "r10 -", "goto L", "call fn", "r4 += r3", "r2 -= r7"):
        assert shape in joined, shape
    assert {generate(s).prog_type for s in range(60)} == {ProgType.XDP, ProgType.SCHED_CLS}
    assert generate(5).text == generate(5).text  # a seed replays
    spec = generate(5).object_spec()
    assert set(spec.maps) == set(MAPS)


def _kernel_verdicts(seeds: range) -> collections.Counter[str]:
    """Load each program pybpf accepts into the kernel; count Linux's reasons to refuse."""
    import dataclasses

    from fuzzrun import OPTIONS
    from pybpf import syscall
    from pybpf.errors import SyscallError
    from pybpf.isa import Pseudo, encode
    from pybpf.spec import link
    from pybpf.verifier import verify_object

    fds = {name: syscall.map_create(t, k, v, n) for name, (t, k, v, n) in MAPS.items()}
    reasons: collections.Counter[str] = collections.Counter()
    try:
        for seed in seeds:
            program = generate(seed)
            spec = program.object_spec()
            if not verify_object(spec, "prog", program.prog_type, options=OPTIONS).accepted:
                continue
            linked = link(spec, "prog")
            insns = [
                dataclasses.replace(i, src=Pseudo.MAP_FD, imm=int(fds[linked.maps[i.imm]]))
                if i.is_lddw and i.src == Pseudo.MAP_IDX
                else i
                for i in linked.instructions
            ]
            try:
                fd, _ = syscall.prog_load(program.prog_type, encode(insns), log_level=1)
            except SyscallError as err:
                lines = [x for x in err.log.splitlines() if x and not x.startswith("processed")]
                reason = lines[-1] if lines else f"errno {err.errno}"
                reasons[re.sub(r"-?\d+|0x[0-9a-f]+", "N", reason)] += 1
            else:
                fd.close()
                reasons["(accepted)"] += 1
    finally:
        for fd in fds.values():
            fd.close()
    return reasons


def test_kernel_verdicts_on_accepted_programs_are_reported():
    """Where bpf() works: the accepted programs the kernel refuses, by Linux's reason.

    They are not failures by themselves: pybpf proves paths dead that Linux walks
    (``unreachable insn``, contradictory guards), reads ``ptr <= 0`` as a null test, and
    lays stack frames and contexts out its own way; every one of them ran clean above.
    """
    from kernel import BPF_UNAVAILABLE

    if BPF_UNAVAILABLE is not None:
        pytest.skip(BPF_UNAVAILABLE)
    reasons = _kernel_verdicts(range(FIRST_SEED, FIRST_SEED + min(EXAMPLES, 120)))
    refused = sum(v for k, v in reasons.items() if k != "(accepted)")
    print(f"\nkernel on {sum(reasons.values())} pybpf-accepted programs: {refused} refused")
    for reason, n in reasons.most_common():
        print(f"  {n:4}  {reason}")
    assert reasons["(accepted)"] > 0  # the kernel comparison itself works
