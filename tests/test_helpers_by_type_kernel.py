"""HELPERS_BY_TYPE against the running kernel: which helpers each program type may call.

The table-only tests check that it is well formed (known helper names, Linux types) and that
the verifier keeps a forbidden helper (refused, a proven violation) apart from one whose
prototype pybpf lacks (refused as unsupported). The kernel test loads a fixed sample of
``benchmarks/helper_availability.py``'s probes (``call <id>; r0 = 0; exit``, license GPL)
for every program type this kernel loads and fails on any (type, helper) where the table
and the kernel disagree; the full matrix runs with ``python
benchmarks/helper_availability.py``. The table is transcribed from Linux 6.18 as this
machine runs it: on another kernel release the kernel test skips with the reason.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import pytest

from pybpf.helpers.ids import HELPER_IDS
from pybpf.helpers.table import HELPERS, helper_by_name
from pybpf.progtypes import AttachType, ProgType
from pybpf.progtypes.contexts import HELPERS_BY_TYPE, helper_allowed_for, rules_for
from pybpf.verifier import verify

sys.path.insert(0, str(Path(__file__).parent))
from kernel import reference_kernel_skip  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_KERNEL = (6, 18)  # the release HELPERS_BY_TYPE was checked against

# Helpers whose availability changed between kernel releases or that the table got wrong
# before, probed for every type; plus every 47th helper id (offset by the type), so that
# the sample moves over the whole table from type to type.
FOCUS = (
    "get_current_pid_tgid send_signal get_netns_cookie ktime_get_coarse_ns skc_to_tcp_sock "
    "get_retval perf_event_output get_attach_cookie xdp_get_buff_len probe_write_user"
).split()
STRIDE = 47


@functools.cache
def _bench():
    path = ROOT / "benchmarks" / "helper_availability.py"
    spec = importlib.util.spec_from_file_location("helper_availability", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve annotations there
    spec.loader.exec_module(module)
    return module


def _kernel_skip_reason() -> str | None:
    return reference_kernel_skip("HELPERS_BY_TYPE", REFERENCE_KERNEL)


# ---- the table on its own ----


def test_every_name_is_a_known_helper_and_every_type_a_linux_type():
    assert HELPERS_BY_TYPE, "the table is empty"
    for prog_type, names in HELPERS_BY_TYPE.items():
        assert isinstance(prog_type, ProgType) and prog_type.is_linux
        assert isinstance(names, frozenset) and names
        unknown = sorted(name for name in names if name not in HELPER_IDS or name == "unspec")
        assert not unknown, f"{prog_type.type_name}: {unknown}"
        # bpf_base_func_proto() gives every type the map helpers and tail calls
        assert {"map_lookup_elem", "map_update_elem", "tail_call"} <= names


def test_the_benchmark_exceptions_name_table_entries():
    bench = _bench()
    for (prog_type, name), configs in bench.ONLY_UNDER.items():
        assert name in HELPERS_BY_TYPE[prog_type]
        assert configs and all(c.prog_type == prog_type for c in configs)
    assert len(set(bench.CONFIGS)) == len(bench.CONFIGS)


def _call(name: str) -> bytes:
    return _bench().program(helper_by_name(name).id)


def test_allowed_forbidden_and_unsupported_helpers_are_told_apart():
    # Linux 6.14+ gives every type get_current_pid_tgid (a zero-argument helper)
    assert verify(_call("get_current_pid_tgid"), ProgType.SOCKET_FILTER).accepted
    forbidden = verify(_call("skb_store_bytes"), ProgType.SOCKET_FILTER)
    assert not forbidden.accepted and not forbidden.unsupported
    assert forbidden.errors[0].pc == 0
    unknown = [row.name for row in HELPERS[1:] if not row.known]
    assert unknown, "every helper has a prototype: nothing is left to report as unsupported"
    for name in unknown:
        for prog_type, names in HELPERS_BY_TYPE.items():
            if prog_type not in (ProgType.LWT_SEG6LOCAL, ProgType.SOCKET_FILTER):
                continue
            result = verify(_call(name), prog_type)
            assert not result.accepted, (name, prog_type)
            # allowed by Linux, not modelled: unsupported; not allowed: forbidden
            assert result.unsupported is (name in names), (name, prog_type)
    assert any(name in HELPERS_BY_TYPE[ProgType.LWT_SEG6LOCAL] for name in unknown)


def test_the_verifier_reads_the_table():
    for prog_type in (ProgType.SOCKET_FILTER, ProgType.CGROUP_SOCK, ProgType.KPROBE):
        context = rules_for(prog_type).context
        for row in HELPERS[1:]:
            assert helper_allowed_for(prog_type, context, row.name) == (
                row.name in HELPERS_BY_TYPE[prog_type]
            ), (prog_type, row.name)


# ---- against the kernel ----


# Beyond each type's first configuration that loads: those whose helper sets differ.
EXTRA_CONFIGS = {
    (ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_CONNECT),
    (ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_UDP4_RECVMSG),
    (ProgType.CGROUP_SOCKOPT, AttachType.CGROUP_SETSOCKOPT),
    (ProgType.TRACING, AttachType.TRACE_ITER),
}


def _sample(bench, prober) -> tuple[dict, dict]:
    """Per loaded type its configurations (the first that loads and EXTRA_CONFIGS) and the
    helper ids probed."""
    loaded: dict[ProgType, list] = {}
    for config in bench.CONFIGS:
        first = config.prog_type not in loaded
        extra = (config.prog_type, config.attach) in EXTRA_CONFIGS and not config.sleepable
        if (first or extra) and prober.loadable(config) is None:
            loaded.setdefault(config.prog_type, []).append(config)
    ids: dict[ProgType, list[int]] = {}
    for prog_type in loaded:
        chosen = {helper_by_name(name).id for name in FOCUS}
        chosen |= {row.id for row in HELPERS[1:] if (row.id + int(prog_type)) % STRIDE == 0}
        ids[prog_type] = sorted(chosen)
    return loaded, ids


@pytest.mark.skipif(_kernel_skip_reason() is not None, reason=_kernel_skip_reason() or "")
def test_a_sample_of_the_table_matches_the_kernel(capsys):
    bench = _bench()
    prober = bench.Prober()
    loaded, ids = _sample(bench, prober)
    assert ProgType.SOCKET_FILTER in loaded and ProgType.XDP in loaded, "nothing loads"
    wrong, pairs = [], 0
    for prog_type, type_configs in sorted(loaded.items()):
        for helper_id in ids[prog_type]:
            name = HELPERS[helper_id].name
            pairs += 1
            # the type's union over its configurations, stopping at the first that allows
            kernel = any(prober.available(c, helper_id)[0] for c in type_configs)
            ours = name in HELPERS_BY_TYPE[prog_type]
            if kernel != ours:
                wrong.append(f"{prog_type.type_name}:{name} kernel={kernel} table={ours}")
    with capsys.disabled():
        print(f"\n{pairs} (type, helper) pairs, {prober.loads} loads, {len(loaded)} types")
    assert pairs >= 200 and prober.loads <= 500
    assert not wrong, wrong


@pytest.mark.skipif(_kernel_skip_reason() is not None, reason=_kernel_skip_reason() or "")
def test_attach_dependent_helpers_are_as_documented():
    bench = _bench()
    prober = bench.Prober()
    Config, T, A = bench.Config, ProgType, AttachType

    def allows(config, name: str) -> bool:
        if prober.loadable(config) is not None:
            pytest.skip(f"{config.label} does not load here")
        return prober.available(config, helper_by_name(name).id)[0]

    connect = Config(T.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT)
    bind = Config(T.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND)
    recvmsg = Config(T.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG)
    assert allows(connect, "bind") and not allows(bind, "bind")
    assert allows(connect, "get_retval") and not allows(recvmsg, "get_retval")
    setsockopt = Config(T.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT)
    getsockopt = Config(T.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT)
    assert allows(setsockopt, "getsockopt") and not allows(getsockopt, "getsockopt")
    # the table lists the union over attach types
    assert {"bind", "get_retval"} <= HELPERS_BY_TYPE[T.CGROUP_SOCK_ADDR]
    assert "getsockopt" in HELPERS_BY_TYPE[T.CGROUP_SOCKOPT]
