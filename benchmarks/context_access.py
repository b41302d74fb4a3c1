"""Context access: which context bytes each program type may load and store, by the kernel
vs pybpf's table.

Run ``python benchmarks/context_access.py [--json] [--types socket_filter,xdp,...]
[--verifier]`` as root on Linux. For every program type with a context layout in
:data:`~pybpf.progtypes.contexts.RULES` that this kernel loads, under each attach
configuration of :data:`CONFIGS` (a type's accesses may depend on its expected attach
type), it loads, for every offset from 0 to a few bytes past the context's end and every
size 1, 2, 4 and 8: ``r0 = *(uN *)(r1 + off)`` (``ldx``), ``r2 = 0; *(uN *)(r1 + off) = r2``
(``stx``) and ``*(uN *)(r1 + off) = 0`` (``st``), each followed by ``r0 = <ret>; exit``, and
records whether the kernel accepts it. A type's kernel answer is the union over its
configurations (the ones allowing less are printed as attach-dependent). It compares each
case with :func:`~pybpf.progtypes.contexts.context_access_allowed` (``st`` and ``stx``
are both stores) and, with ``--verifier``, with pybpf's verifier itself (``verify()`` of the same
program), and prints the disagreements (``kernel_only``: the kernel accepts, pybpf refuses;
``pybpf_only``: the reverse), the number of loads and the time; ``--json`` prints the same
as one JSON object. Exit status 1 on any disagreement with the table.
``tests/test_context_access_kernel.py`` runs a fixed sample of the same probes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pybpf.errors import NotSupportedError
from pybpf.isa.codec import encode
from pybpf.isa.instruction import Instruction
from pybpf.isa.opcodes import AluOp, Class, JmpOp, Mode, Size, Source
from pybpf.progtypes import AttachType, ProgType
from pybpf.progtypes.contexts import RULES, context_access_allowed

sys.path.insert(0, str(Path(__file__).parent))
from helper_availability import Config, Prober, kernel_release  # noqa: E402

_T, _A = ProgType, AttachType
SIZES = (1, 2, 4, 8)
ACCESSES = ("ldx", "stx", "st")
PAST_END = 8  # offsets probed past the context's end
_SIZE = {1: Size.B, 2: Size.H, 4: Size.W, 8: Size.DW}


def _c(prog_type: ProgType, *attaches: AttachType | None) -> list[Config]:
    return [Config(prog_type, a) for a in (attaches or (None,))]


# The attach configurations whose context accesses may differ (Linux's *_is_valid_access
# switch on expected_attach_type). Tracing types are left out: their contexts are BTF's.
CONFIGS: tuple[Config, ...] = tuple(
    _c(_T.SOCKET_FILTER)
    + _c(_T.SCHED_CLS)
    + _c(_T.SCHED_ACT)
    + _c(_T.XDP)
    + _c(_T.XDP, _A.XDP_DEVMAP, _A.XDP_CPUMAP)
    + _c(_T.CGROUP_SKB, _A.CGROUP_INET_INGRESS, _A.CGROUP_INET_EGRESS)
    + _c(
        _T.CGROUP_SOCK,
        _A.CGROUP_INET_SOCK_CREATE,
        _A.CGROUP_INET_SOCK_RELEASE,
        _A.CGROUP_INET4_POST_BIND,
        _A.CGROUP_INET6_POST_BIND,
    )
    + _c(
        _T.CGROUP_SOCK_ADDR,
        _A.CGROUP_INET4_BIND,
        _A.CGROUP_INET6_BIND,
        _A.CGROUP_INET4_CONNECT,
        _A.CGROUP_INET6_CONNECT,
        _A.CGROUP_UDP4_SENDMSG,
        _A.CGROUP_UDP6_SENDMSG,
        _A.CGROUP_UDP4_RECVMSG,
        _A.CGROUP_UDP6_RECVMSG,
        _A.CGROUP_UNIX_CONNECT,
    )
    + _c(_T.LWT_IN)
    + _c(_T.LWT_OUT)
    + _c(_T.LWT_XMIT)
    + _c(_T.LWT_SEG6LOCAL)
    + _c(_T.SOCK_OPS)
    + _c(_T.SK_SKB, _A.SK_SKB_STREAM_PARSER, _A.SK_SKB_STREAM_VERDICT, _A.SK_SKB_VERDICT)
    + _c(_T.SK_MSG)
    + _c(_T.FLOW_DISSECTOR, _A.FLOW_DISSECTOR)
    + _c(_T.SK_REUSEPORT, _A.SK_REUSEPORT_SELECT, _A.SK_REUSEPORT_SELECT_OR_MIGRATE)
    + _c(_T.SK_LOOKUP, _A.SK_LOOKUP)
    + _c(_T.CGROUP_DEVICE)
    + _c(_T.CGROUP_SYSCTL, _A.CGROUP_SYSCTL)
    + _c(_T.CGROUP_SOCKOPT, _A.CGROUP_GETSOCKOPT, _A.CGROUP_SETSOCKOPT)
    + _c(_T.LIRC_MODE2, _A.LIRC_MODE2)
    + _c(_T.NETFILTER, _A.NETFILTER)
    + _c(_T.KPROBE)
    + _c(_T.PERF_EVENT)
    + _c(_T.RAW_TRACEPOINT)
)


def _mov(dst: int, imm: int) -> Instruction:
    return Instruction(int(Class.ALU64) | int(AluOp.MOV) | int(Source.K), dst=dst, imm=imm)


def program(access: str, offset: int, size: int, ret: int = 0) -> bytes:
    """The probe: one ``access`` of ``size`` bytes at ``r1 + offset``, then ``r0 = ret; exit``."""
    mem = int(Mode.MEM) | int(_SIZE[size])
    if access == "ldx":
        insns = [Instruction(int(Class.LDX) | mem, dst=0, src=1, off=offset)]
    elif access == "stx":
        insns = [_mov(2, 0), Instruction(int(Class.STX) | mem, dst=1, src=2, off=offset)]
    else:
        insns = [Instruction(int(Class.ST) | mem, dst=1, off=offset, imm=0)]
    return encode([*insns, _mov(0, ret), Instruction(int(Class.JMP) | int(JmpOp.EXIT))])


Case = tuple[int, int, str]  # (offset, size, access)


def cases(prog_type: ProgType, past_end: int = PAST_END) -> list[Case]:
    """Every (offset, size, access) probed for ``prog_type``: each byte of its context and
    ``past_end`` more, each size, each access."""
    size = RULES[prog_type].context.size
    return [(o, n, a) for o in range(size + past_end) for n in SIZES for a in ACCESSES]


def table_allows(prog_type: ProgType, case: Case) -> bool:
    """pybpf's table: :func:`context_access_allowed` (``st`` and ``stx`` are both stores)."""
    offset, size, access = case
    return context_access_allowed(prog_type, offset, size, access != "ldx")


def verifier_allows(prog_type: ProgType, case: Case) -> bool:
    """pybpf's verifier accepts the probe program."""
    from pybpf.verifier import verify

    offset, size, access = case
    return verify(program(access, offset, size), prog_type).accepted


@dataclass
class Matrix:
    """The kernel's answers: per configuration the accepted cases, the verdicts, the skips."""

    accepted: dict[Config, frozenset[Case]] = field(default_factory=dict)
    probed: dict[Config, list[Case]] = field(default_factory=dict)
    verdicts: dict[tuple[Config, Case], str] = field(default_factory=dict)
    skipped: dict[Config, str] = field(default_factory=dict)

    def by_type(self) -> dict[ProgType, frozenset[Case]]:
        """Each loaded type's union over its configurations."""
        out: dict[ProgType, frozenset[Case]] = {}
        for config, accepted in self.accepted.items():
            out[config.prog_type] = out.get(config.prog_type, frozenset()) | accepted
        return out

    def cases_of(self, prog_type: ProgType) -> list[Case]:
        """The cases probed for ``prog_type`` (the same under each configuration)."""
        return next(c for k, c in self.probed.items() if k.prog_type == prog_type)

    def verdict(self, prog_type: ProgType, case: Case) -> str:
        """The first configuration's refusal of ``case``."""
        first = next(c for c in self.accepted if c.prog_type == prog_type)
        return self.verdicts.get((first, case), "")


def probe(
    configs: Iterable[Config], prober: Prober, select=None, past_end: int = PAST_END
) -> Matrix:
    """The kernel's answers over ``configs``; ``select(prog_type, cases)`` picks a sample."""
    matrix = Matrix()
    for config in configs:
        if config.prog_type not in RULES:
            continue
        why = prober.loadable(config)
        ret = 0
        if why is not None:
            if prober.load(config, program("ldx", 0, 1, 1)) == "" or not why:
                ret = 1
            else:
                matrix.skipped[config] = why
                continue
        if prober.load(config, _ret(0)) != "":
            ret = 1
        todo = cases(config.prog_type, past_end)
        if select is not None:
            todo = select(config.prog_type, todo)
        accepted = set()
        for case in todo:
            verdict = prober.load(config, program(case[2], case[0], case[1], ret))
            if verdict == "":
                accepted.add(case)
            else:
                matrix.verdicts[(config, case)] = verdict
        matrix.accepted[config] = frozenset(accepted)
        matrix.probed[config] = todo
    return matrix


def _ret(value: int) -> bytes:
    return encode([_mov(0, value), Instruction(int(Class.JMP) | int(JmpOp.EXIT))])


def disagreements(matrix: Matrix, judge=table_allows) -> list[dict[str, object]]:
    """Every (type, offset, size, access) where ``judge`` and the kernel's union differ."""
    out = []
    for prog_type, kernel in sorted(matrix.by_type().items()):
        for case in matrix.cases_of(prog_type):
            ours, theirs = judge(prog_type, case), case in kernel
            if ours != theirs:
                out.append(
                    {
                        "prog_type": prog_type.type_name,
                        "offset": case[0],
                        "size": case[1],
                        "access": case[2],
                        "side": "kernel_only" if theirs else "pybpf_only",
                        "kernel": "" if theirs else matrix.verdict(prog_type, case),
                    }
                )
    return out


def attach_dependent(matrix: Matrix) -> dict[str, int]:
    """The configurations accepting fewer cases than their type's union: how many fewer."""
    union = matrix.by_type()
    return {
        config.label: len(union[config.prog_type] - accepted)
        for config, accepted in matrix.accepted.items()
        if union[config.prog_type] - accepted
    }


def _ranges(diffs: list[dict[str, object]]) -> list[str]:
    """Disagreements folded to one line per (type, side, access, size) run of offsets."""
    groups: dict[tuple, list[int]] = {}
    for d in diffs:
        key = (d["prog_type"], d["side"], d["access"], d["size"])
        groups.setdefault(key, []).append(int(d["offset"]))
    lines = []
    for (prog_type, side, access, size), offsets in groups.items():
        runs, start, prev = [], offsets[0], offsets[0]
        for o in offsets[1:] + [None]:
            if o is not None and o == prev + 1:
                prev = o
                continue
            runs.append(f"{start}" if start == prev else f"{start}-{prev}")
            if o is not None:
                start = prev = o
        lines.append(f"  {side:11} {prog_type:18} {access} u{size * 8}: off {','.join(runs)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Probe the kernel, print the disagreements; exit 1 when the table disagrees."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--types", help="comma-separated program type names (default: all)")
    parser.add_argument("--verifier", action="store_true", help="also compare pybpf's verifier")
    args = parser.parse_args(argv)
    configs = list(CONFIGS)
    if args.types:
        wanted = {ProgType.from_name(name) for name in args.types.split(",")}
        configs = [c for c in configs if c.prog_type in wanted]
    prober = Prober()
    start = time.perf_counter()
    try:
        matrix = probe(configs, prober)
    except NotSupportedError as err:
        print(f"no bpf(): {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    diffs = disagreements(matrix)
    report = {
        "kernel": kernel_release(),
        "types": len(matrix.by_type()),
        "configs": len(matrix.accepted),
        "cases": sum(len(matrix.cases_of(t)) for t in matrix.by_type()),
        "loads": prober.loads,
        "seconds": round(seconds, 2),
        "disagreements": diffs,
        "attach_dependent": attach_dependent(matrix),
        "skipped": {c.label: why for c, why in matrix.skipped.items()},
    }
    if args.verifier:
        start = time.perf_counter()
        report["verifier_disagreements"] = disagreements(matrix, verifier_allows)
        report["verifier_seconds"] = round(time.perf_counter() - start, 2)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print(report)
    return 1 if diffs else 0


def _print(report: dict) -> None:
    print(
        f"kernel {report['kernel']}: {report['types']} program types "
        f"({report['configs']} attach configurations), {report['cases']} "
        f"(type, offset, size, access) cases; {report['loads']} loads in {report['seconds']} s"
    )
    for label, why in report["skipped"].items():
        print(f"  not loadable here: {label}: {why}")
    diffs = report["disagreements"]
    print(f"disagreements with context_access_allowed: {len(diffs)}")
    print("\n".join(_ranges(diffs)))
    if "verifier_disagreements" in report:
        vd = report["verifier_disagreements"]
        print(f"disagreements with pybpf's verifier: {len(vd)} ({report['verifier_seconds']} s)")
        print("\n".join(_ranges(vd)))
    dependent = report["attach_dependent"]
    print(f"attach-dependent configurations (fewer accesses than their type): {len(dependent)}")
    for label, fewer in dependent.items():
        print(f"  {label}: {fewer} fewer")


if __name__ == "__main__":
    sys.exit(main())
