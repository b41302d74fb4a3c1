"""Helper availability: which helpers each program type may call, by the kernel vs pybpf's table.

Run ``python benchmarks/helper_availability.py [--json] [--types xdp,kprobe,...]`` as root
on Linux. For every program type pybpf lists in
:data:`~pybpf.progtypes.contexts.HELPERS_BY_TYPE` that this kernel loads, under each
expected attach type (and sleepable flag) that gives the type a different helper set, it
loads ``call <id>; r0 = 0; exit`` for every helper id of pybpf's table (license ``GPL``)
and reads the verdict from the verifier's log: ``unknown func``, ``program of this type
cannot use helper``, ``helper call is not allowed in probe`` and ``cannot call
GPL-restricted function`` mean *not available*; anything else (accepted, or an argument
error such as ``R1 !read_ok``) means *available*. A type's kernel set is the union over its
attach configurations (pybpf's table is keyed by program type only); the configurations
whose set is smaller are printed as attach-dependent. Then, for every helper available
somewhere, one load with license ``Proprietary`` says whether the kernel treats it as
GPL-only, compared with ``gpl_only`` of pybpf's helper table.

It prints the disagreements with :data:`HELPERS_BY_TYPE` (``kernel_only``: the kernel
allows, pybpf's table does not; ``pybpf_only``: the reverse), the attach-dependent helpers,
the helpers a type's proto gives but only sleepable programs may call (``helper call
might sleep in a non-sleepable prog``: counted as available), the GPL-only disagreements,
the number of loads and how long it took; ``--json`` prints
the same as one JSON object. Exit status 1 when the table disagrees with the kernel.
``tests/test_helpers_by_type_kernel.py`` runs a fixed sample of the same probes.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

from pybpf.errors import NotSupportedError, SyscallError
from pybpf.helpers.table import HELPERS
from pybpf.isa.codec import encode
from pybpf.isa.instruction import Instruction
from pybpf.isa.opcodes import AluOp, Class, JmpOp, Source
from pybpf.progtypes import AttachType, ProgType
from pybpf.progtypes.contexts import HELPERS_BY_TYPE

_T, _A = ProgType, AttachType
BPF_F_SLEEPABLE = 1 << 4

# The verifier's words for "this program may not call this helper" (old and new kernels).
UNAVAILABLE = (
    "unknown func",
    "program of this type cannot use helper",
    "helper call is not allowed in probe",
    "cannot call GPL-restricted function",
)
GPL_RESTRICTED = "cannot call GPL-restricted function"


@dataclass(frozen=True)
class Config:
    """One way to load a program type: expected attach type, attach target, sleepable."""

    prog_type: ProgType
    attach: AttachType | None = None
    target: str = ""  # what libbpf's section names after the prefix (fentry/<target>)
    sleepable: bool = False

    @property
    def label(self) -> str:
        """``type[/attach[:target]][.s]``."""
        text = self.prog_type.type_name
        if self.attach is not None:
            text += "/" + self.attach.name.lower() + (f":{self.target}" if self.target else "")
        return text + (".s" if self.sleepable else "")


def _c(prog_type: ProgType, *attaches: AttachType | None, target: str = "") -> list[Config]:
    return [Config(prog_type, a, target) for a in (attaches or (None,))]


# Every attach configuration whose helper set may differ (Linux's *_func_proto switch on
# expected_attach_type or sleepable). Tracing and LSM programs need a target in vmlinux BTF.
CONFIGS: tuple[Config, ...] = tuple(
    _c(_T.SOCKET_FILTER)
    + _c(_T.KPROBE)
    + _c(_T.KPROBE, _A.TRACE_KPROBE_MULTI, _A.TRACE_UPROBE_MULTI, _A.TRACE_KPROBE_SESSION)
    + [Config(_T.KPROBE, _A.TRACE_UPROBE_MULTI, sleepable=True)]
    + _c(_T.SCHED_CLS)
    + _c(_T.SCHED_ACT)
    + _c(_T.TRACEPOINT)
    + _c(_T.XDP)
    + _c(_T.XDP, _A.XDP_DEVMAP, _A.XDP_CPUMAP)
    + _c(_T.PERF_EVENT)
    + _c(_T.CGROUP_SKB, _A.CGROUP_INET_INGRESS, _A.CGROUP_INET_EGRESS)
    + _c(
        _T.CGROUP_SOCK,
        _A.CGROUP_INET_SOCK_CREATE,
        _A.CGROUP_INET_SOCK_RELEASE,
        _A.CGROUP_INET4_POST_BIND,
        _A.CGROUP_INET6_POST_BIND,
    )
    + _c(_T.LWT_IN)
    + _c(_T.LWT_OUT)
    + _c(_T.LWT_XMIT)
    + _c(_T.LWT_SEG6LOCAL)
    + _c(_T.SOCK_OPS)
    + _c(_T.SK_SKB, _A.SK_SKB_STREAM_PARSER, _A.SK_SKB_STREAM_VERDICT, _A.SK_SKB_VERDICT)
    + _c(_T.CGROUP_DEVICE)
    + _c(_T.SK_MSG)
    + _c(_T.RAW_TRACEPOINT)
    + _c(_T.RAW_TRACEPOINT_WRITABLE)
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
        _A.CGROUP_INET4_GETPEERNAME,
        _A.CGROUP_INET6_GETPEERNAME,
        _A.CGROUP_INET4_GETSOCKNAME,
        _A.CGROUP_INET6_GETSOCKNAME,
        _A.CGROUP_UNIX_CONNECT,
        _A.CGROUP_UNIX_SENDMSG,
        _A.CGROUP_UNIX_RECVMSG,
        _A.CGROUP_UNIX_GETPEERNAME,
        _A.CGROUP_UNIX_GETSOCKNAME,
    )
    + _c(_T.LIRC_MODE2, _A.LIRC_MODE2)
    + _c(_T.SK_REUSEPORT, _A.SK_REUSEPORT_SELECT, _A.SK_REUSEPORT_SELECT_OR_MIGRATE)
    + _c(_T.FLOW_DISSECTOR, _A.FLOW_DISSECTOR)
    + _c(_T.SK_LOOKUP, _A.SK_LOOKUP)
    + _c(_T.CGROUP_SYSCTL, _A.CGROUP_SYSCTL)
    + _c(_T.CGROUP_SOCKOPT, _A.CGROUP_GETSOCKOPT, _A.CGROUP_SETSOCKOPT)
    + _c(_T.TRACING, _A.TRACE_RAW_TP, target="sched_switch")
    + _c(_T.TRACING, _A.TRACE_FENTRY, _A.TRACE_FEXIT, target="bpf_fentry_test1")
    + _c(_T.TRACING, _A.MODIFY_RETURN, target="bpf_modify_return_test")
    + _c(_T.TRACING, _A.TRACE_ITER, target="task")
    + [
        Config(_T.TRACING, _A.TRACE_FENTRY, "bpf_modify_return_test", sleepable=True),
        Config(_T.TRACING, _A.TRACE_ITER, "task", sleepable=True),
    ]
    + _c(_T.LSM, _A.LSM_MAC, target="file_open")
    + [Config(_T.LSM, _A.LSM_MAC, "file_open", sleepable=True)]
    + _c(_T.LSM, _A.LSM_CGROUP, target="socket_bind")
    + _c(_T.SYSCALL)
    + [Config(_T.SYSCALL, sleepable=True)]
    + _c(_T.NETFILTER, _A.NETFILTER)
)


_TRAMPOLINES = tuple(
    c for c in CONFIGS if c.attach in (_A.TRACE_FENTRY, _A.TRACE_FEXIT, _A.MODIFY_RETURN)
)
# Helpers the table gives a type only through attach configurations that need what a
# machine may lack (fentry/fexit/fmod_ret need ftrace trampolines): when none of those
# configurations loads, a "pybpf_only" there is listed as unverified, not as a disagreement.
ONLY_UNDER: dict[tuple[ProgType, str], tuple[Config, ...]] = {
    (_T.TRACING, name): _TRAMPOLINES
    for name in ("get_func_arg", "get_func_ret", "get_func_arg_cnt")
}


def program(helper_id: int) -> bytes:
    """``call helper_id; r0 = 0; exit`` (the helper's arguments are left unset)."""
    return encode(
        [
            Instruction(int(Class.JMP) | int(JmpOp.CALL), imm=helper_id),
            Instruction(int(Class.ALU64) | int(AluOp.MOV) | int(Source.K), dst=0, imm=0),
            Instruction(int(Class.JMP) | int(JmpOp.EXIT)),
        ]
    )


def _returning(value: int) -> bytes:
    return encode(
        [
            Instruction(int(Class.ALU64) | int(AluOp.MOV) | int(Source.K), dst=0, imm=value),
            Instruction(int(Class.JMP) | int(JmpOp.EXIT)),
        ]
    )


# A trivial program, returning 0 or (for hooks that must return 1, e.g. recvmsg) 1.
_BASELINES = (_returning(0), _returning(1))


class Prober:
    """Loads probe programs of the configurations into the running kernel, counting loads."""

    def __init__(self) -> None:
        self.loads = 0
        self._btf_ids: dict[Config, int] = {}
        self._gpl_cache: dict[tuple[Config, int, str], str] = {}

    def _attach_btf_id(self, config: Config) -> int:
        if not config.target:
            return 0
        if config not in self._btf_ids:
            from pybpf.kernel.vmlinux import attach_btf_id, kernel_btf

            self._btf_ids[config] = attach_btf_id(
                config.prog_type, config.attach, config.target, kernel_btf()
            )
        return self._btf_ids[config]

    def load(self, config: Config, insns: bytes, license: str = "GPL") -> str:
        """Load once: ``""`` when accepted, else the log's last lines (or the errno name)."""
        from pybpf import syscall

        self.loads += 1
        try:
            fd, _ = syscall.prog_load(
                int(config.prog_type),
                insns,
                license,
                log_size=64 * 1024,
                expected_attach_type=int(config.attach) if config.attach is not None else 0,
                prog_flags=BPF_F_SLEEPABLE if config.sleepable else 0,
                attach_btf_id=self._attach_btf_id(config),
            )
        except SyscallError as err:
            lines = [line for line in (err.log or "").splitlines() if line.strip()]
            tail = " | ".join(lines[-3:])
            return tail or f"errno {errno.errorcode.get(err.errno, err.errno)}"
        fd.close()
        return ""

    def loadable(self, config: Config) -> str | None:
        """``None`` when the kernel loads a trivial program of ``config``, else why not."""
        verdict = ""
        for insns in _BASELINES:
            try:
                verdict = self.load(config, insns)
            except NotSupportedError as err:
                return str(err)
            if verdict == "":
                return None
        return verdict

    def available(self, config: Config, helper_id: int) -> tuple[bool, str]:
        """Whether ``config`` may call ``helper_id``, and the kernel's verdict text."""
        verdict = self.load(config, program(helper_id))
        return not any(word in verdict for word in UNAVAILABLE), verdict

    def gpl_only(self, config: Config, helper_id: int) -> bool:
        """The kernel refuses ``helper_id`` (available to ``config``) without a GPL licence."""
        return GPL_RESTRICTED in self.load(config, program(helper_id), "Proprietary")


def table_allows(prog_type: ProgType, name: str) -> bool:
    """pybpf's answer: ``name`` is in ``HELPERS_BY_TYPE[prog_type]``."""
    return name in HELPERS_BY_TYPE[prog_type]


@dataclass
class Matrix:
    """The kernel's answers: per configuration the helpers it allows, and what did not load."""

    allowed: dict[Config, frozenset[str]]
    skipped: dict[Config, str]
    verdicts: dict[tuple[Config, str], str]
    gpl_only: dict[str, bool]

    def by_type(self) -> dict[ProgType, frozenset[str]]:
        """Each loaded type's union over its configurations."""
        out: dict[ProgType, frozenset[str]] = {}
        for config, names in self.allowed.items():
            out[config.prog_type] = out.get(config.prog_type, frozenset()) | names
        return out


def probe(
    configs: Iterable[Config], helper_ids: Iterable[int], prober: Prober, gpl: bool = True
) -> Matrix:
    """The kernel's matrix over ``configs`` x ``helper_ids`` (and GPL-onlyness if ``gpl``)."""
    ids = list(helper_ids)
    allowed: dict[Config, frozenset[str]] = {}
    skipped: dict[Config, str] = {}
    verdicts: dict[tuple[Config, str], str] = {}
    where: dict[str, Config] = {}
    for config in configs:
        if config.prog_type not in HELPERS_BY_TYPE:
            continue
        why = prober.loadable(config)
        if why is not None:
            skipped[config] = why
            continue
        names = set()
        for helper_id in ids:
            name = HELPERS[helper_id].name
            ok, verdict = prober.available(config, helper_id)
            verdicts[(config, name)] = verdict
            if ok:
                names.add(name)
                where.setdefault(name, config)
        allowed[config] = frozenset(names)
    gpl_only = {}
    if gpl:
        for name, config in where.items():
            gpl_only[name] = prober.gpl_only(config, HELPERS[_ID[name]].id)
    return Matrix(allowed, skipped, verdicts, gpl_only)


_ID = {row.name: row.id for row in HELPERS[1:]}


def unverified(matrix: Matrix, prog_type: ProgType, name: str) -> bool:
    """The table allows ``name`` to ``prog_type`` only under configurations that did not load."""
    needs = ONLY_UNDER.get((prog_type, name))
    return needs is not None and all(c in matrix.skipped for c in needs)


def disagreements(matrix: Matrix, helper_names: Iterable[str]) -> list[dict[str, str]]:
    """Every (type, helper) where the table and the kernel's union differ (see ONLY_UNDER)."""
    names = sorted(helper_names, key=_ID.__getitem__)
    out = []
    for prog_type, kernel in sorted(matrix.by_type().items()):
        for name in names:
            ours, theirs = table_allows(prog_type, name), name in kernel
            if ours and not theirs and unverified(matrix, prog_type, name):
                continue
            if ours != theirs:
                verdict = ""
                if not theirs:  # quote the refusal of the first configuration
                    first = next(c for c in matrix.allowed if c.prog_type == prog_type)
                    verdict = matrix.verdicts.get((first, name), "")
                out.append(
                    {
                        "prog_type": prog_type.type_name,
                        "helper": name,
                        "side": "kernel_only" if theirs else "pybpf_only",
                        "kernel": verdict,
                    }
                )
    return out


MIGHT_SLEEP = "helper call might sleep in a non-sleepable prog"


def sleepable_only(matrix: Matrix) -> dict[str, list[str]]:
    """Per type, the helpers it may name that every loaded configuration then refused as
    sleeping in a non-sleepable program (counted as available: the type's proto gives them)."""
    out: dict[str, list[str]] = {}
    for prog_type, names in sorted(matrix.by_type().items()):
        configs = [c for c in matrix.allowed if c.prog_type == prog_type]
        only = [
            name
            for name in sorted(names, key=_ID.__getitem__)
            if all(
                MIGHT_SLEEP in matrix.verdicts[(c, name)]
                for c in configs
                if name in matrix.allowed[c]
            )
        ]
        if only:
            out[prog_type.type_name] = only
    return out


def attach_dependent(matrix: Matrix) -> list[dict[str, object]]:
    """The configurations that may call fewer helpers than their type's union: which."""
    union = matrix.by_type()
    out = []
    for config, names in matrix.allowed.items():
        missing = union[config.prog_type] - names
        if missing:
            out.append({"config": config.label, "missing": sorted(missing, key=_ID.__getitem__)})
    return out


def gpl_disagreements(matrix: Matrix) -> list[dict[str, object]]:
    """Helpers whose kernel GPL-onlyness differs from ``gpl_only`` in pybpf's helper table."""
    out = []
    for name, kernel in sorted(matrix.gpl_only.items(), key=lambda kv: _ID[kv[0]]):
        row = HELPERS[_ID[name]]
        if row.gpl_only is not None and row.gpl_only != kernel:
            out.append({"helper": name, "kernel_gpl_only": kernel, "table_gpl_only": row.gpl_only})
    return out


def main(argv: list[str] | None = None) -> int:
    """Probe the kernel, print the disagreements; exit 1 when the table disagrees."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--types", help="comma-separated program type names (default: all)")
    parser.add_argument("--no-gpl", action="store_true", help="skip the GPL-onlyness loads")
    args = parser.parse_args(argv)
    configs = list(CONFIGS)
    if args.types:
        wanted = {ProgType.from_name(name) for name in args.types.split(",")}
        configs = [c for c in configs if c.prog_type in wanted]
    helper_ids = [row.id for row in HELPERS[1:]]
    prober = Prober()
    start = time.perf_counter()
    try:
        matrix = probe(configs, helper_ids, prober, gpl=not args.no_gpl)
    except NotSupportedError as err:
        print(f"no bpf(): {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    diffs = disagreements(matrix, [HELPERS[i].name for i in helper_ids])
    pairs = len(matrix.by_type()) * len(helper_ids)
    report = {
        "kernel": kernel_release(),
        "types": len(matrix.by_type()),
        "configs": len(matrix.allowed),
        "helpers": len(helper_ids),
        "pairs": pairs,
        "config_pairs": len(matrix.verdicts),
        "loads": prober.loads,
        "seconds": round(seconds, 2),
        "disagreements": diffs,
        "attach_dependent": attach_dependent(matrix),
        "sleepable_only": sleepable_only(matrix),
        "gpl_disagreements": gpl_disagreements(matrix),
        "skipped": {c.label: why for c, why in matrix.skipped.items()},
        "unverified": [
            f"{t.type_name}:{name}"
            for (t, name) in ONLY_UNDER
            if t in matrix.by_type() and unverified(matrix, t, name)
        ],
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print(report)
    return 1 if diffs else 0


def kernel_release() -> str:
    """The running kernel's release (``uname -r``), or ``"?"``."""
    import os

    return os.uname().release if hasattr(os, "uname") else "?"


def _print(report: dict) -> None:
    print(
        f"kernel {report['kernel']}: {report['types']} program types "
        f"({report['configs']} attach configurations) x {report['helpers']} helpers = "
        f"{report['pairs']} (type, helper) pairs; {report['loads']} loads in "
        f"{report['seconds']} s"
    )
    for label, why in report["skipped"].items():
        print(f"  not loadable here: {label}: {why}")
    if report["unverified"]:
        print(f"  unverified (their configurations did not load): {' '.join(report['unverified'])}")
    diffs = report["disagreements"]
    print(f"disagreements with HELPERS_BY_TYPE: {len(diffs)}")
    for d in diffs:
        tail = f"   [{d['kernel']}]" if d["kernel"] else ""
        print(f"  {d['side']:11} {d['prog_type']:24} {d['helper']}{tail}")
    dependent = report["attach_dependent"]
    print(f"attach-dependent configurations (fewer helpers than their type): {len(dependent)}")
    for d in dependent:
        print(f"  {d['config']}: {' '.join(d['missing'])}")
    sleepy = report["sleepable_only"]
    print(f"types whose programs may name a helper only when sleepable: {len(sleepy)}")
    for prog_type, names in sleepy.items():
        print(f"  {prog_type}: {' '.join(names)}")
    gpl = report["gpl_disagreements"]
    print(f"GPL-only disagreements with the helper table: {len(gpl)}")
    for d in gpl:
        print(f"  {d['helper']}: kernel {d['kernel_gpl_only']}, table {d['table_gpl_only']}")


if __name__ == "__main__":
    sys.exit(main())
