"""Program types: the section-prefix table under libbpf 1.x, legacy, PREVAIL and Windows rules."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pybpf.errors import InputError
from pybpf.progtypes import (
    SECTION_RULES,
    AttachType,
    Loader,
    ProgType,
    match_section,
    prevail_program_type,
)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


@pytest.mark.parametrize(
    ("section", "prog_type", "attach", "target"),
    [
        ("xdp", ProgType.XDP, AttachType.XDP, ""),
        ("xdp.frags", ProgType.XDP, AttachType.XDP, ""),
        ("xdp/devmap", ProgType.XDP, AttachType.XDP_DEVMAP, ""),
        ("tc", ProgType.SCHED_CLS, None, ""),
        ("tcx/ingress", ProgType.SCHED_CLS, AttachType.TCX_INGRESS, ""),
        ("classifier", ProgType.SCHED_CLS, None, ""),
        ("socket", ProgType.SOCKET_FILTER, None, ""),
        ("kprobe/sys_execve", ProgType.KPROBE, None, "sys_execve"),
        ("kprobe", ProgType.KPROBE, None, ""),
        ("kretprobe/do_exit", ProgType.KPROBE, None, "do_exit"),
        ("uretprobe/bash_readline", ProgType.KPROBE, None, "bash_readline"),
        ("kprobe.multi/tcp_*", ProgType.KPROBE, AttachType.TRACE_KPROBE_MULTI, "tcp_*"),
        ("tracepoint/sched/sched_switch", ProgType.TRACEPOINT, None, "sched/sched_switch"),
        ("tp/sched/sched_switch", ProgType.TRACEPOINT, None, "sched/sched_switch"),
        ("raw_tp/task_rename", ProgType.RAW_TRACEPOINT, None, "task_rename"),
        ("fentry/tcp_connect", ProgType.TRACING, AttachType.TRACE_FENTRY, "tcp_connect"),
        ("fexit.s/x", ProgType.TRACING, AttachType.TRACE_FEXIT, "x"),
        ("lsm/file_open", ProgType.LSM, AttachType.LSM_MAC, "file_open"),
        ("cgroup/bind4", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_BIND, ""),
        ("cgroup/post_bind4", ProgType.CGROUP_SOCK, AttachType.CGROUP_INET4_POST_BIND, ""),
        ("cgroup_skb/egress", ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS, ""),
        ("sockops", ProgType.SOCK_OPS, AttachType.CGROUP_SOCK_OPS, ""),
        ("sk_skb/stream_parser", ProgType.SK_SKB, AttachType.SK_SKB_STREAM_PARSER, ""),
        ("sk_msg", ProgType.SK_MSG, AttachType.SK_MSG_VERDICT, ""),
        ("lwt_xmit", ProgType.LWT_XMIT, None, ""),
        ("perf_event", ProgType.PERF_EVENT, None, ""),
        ("syscall", ProgType.SYSCALL, None, ""),
        ("struct_ops/dctcp_init", ProgType.STRUCT_OPS, None, "dctcp_init"),
    ],
)
def test_libbpf_names(section, prog_type, attach, target):
    m = match_section(section)
    assert m is not None and m.loader == Loader.LIBBPF
    assert (m.prog_type, m.attach_type, m.target) == (prog_type, attach, target)


@pytest.mark.parametrize(
    ("section", "prog_type"),
    [
        ("xdp_prog", ProgType.XDP),  # libbpf 0.x / samples/bpf: plain prefixes
        ("xdp1", ProgType.XDP),
        ("socket1", ProgType.SOCKET_FILTER),
        ("socket/3", ProgType.SOCKET_FILTER),
        ("classifier_ingress", ProgType.SCHED_CLS),
        ("cgroup/sock1", ProgType.CGROUP_SOCK),
        ("kprobe/0", ProgType.KPROBE),
        ("raw_tracepoint/task_rename", ProgType.RAW_TRACEPOINT),
    ],
)
def test_legacy_prefixes(section, prog_type):
    m = match_section(section)
    assert m is not None and m.prog_type == prog_type


@pytest.mark.parametrize("section", ["2/7", "from-netdev", "tc_mark", "kprobex", "bind", ""])
def test_unknown_sections_have_no_type(section):
    assert match_section(section) is None


def test_libbpf_plus_rules_need_a_slash():
    # "kprobe+" is exactly "kprobe" or "kprobe/...": never "kprobes" (not a legacy prefix
    # either, since legacy kprobes need the slash).
    assert match_section("kprobes") is None
    assert match_section("tracepointx") is None


def test_windows_sections():
    bind = match_section("bind", platform="windows")
    assert bind is not None and bind.prog_type == ProgType.BIND
    assert bind.attach_type == AttachType.WINDOWS_BIND
    assert match_section("bind/3", platform="windows").prog_type == ProgType.BIND
    xdp = match_section("xdp", platform="windows")
    assert xdp.prog_type == ProgType.WINDOWS_XDP and xdp.prog_type.is_windows
    ra = match_section("cgroup/recv_accept4", platform="windows")
    assert ra.prog_type == ProgType.WINDOWS_CGROUP_SOCK_ADDR
    assert ra.attach_type == AttachType.WINDOWS_CGROUP_INET4_RECV_ACCEPT
    assert match_section("kprobe/x", platform="windows") is None
    with pytest.raises(ValueError):
        match_section("xdp", platform="plan9")


def test_type_names_are_bpftools():
    assert ProgType.SCHED_CLS.type_name == "sched_cls"
    assert ProgType.from_name("cgroup_sock_addr") is ProgType.CGROUP_SOCK_ADDR
    assert ProgType.from_name("BPF_PROG_TYPE_XDP") is ProgType.XDP
    assert ProgType.BIND.type_name == "bind" and ProgType.BIND.windows_id == 2
    assert ProgType.XDP.is_linux and ProgType.XDP.windows_id is None
    with pytest.raises(InputError) as err:
        ProgType.from_name("lxc")
    assert err.value.field == "prog_type"


def test_linux_ids():
    # Spot checks against linux/bpf.h.
    assert (ProgType.SOCKET_FILTER, ProgType.XDP, ProgType.SK_LOOKUP) == (1, 6, 30)
    assert (AttachType.CGROUP_INET4_BIND, AttachType.XDP, AttachType.TCX_INGRESS) == (8, 37, 46)


def test_table_rows_are_unique_per_loader():
    seen = set()
    for rule in SECTION_RULES:
        for loader in Loader:
            if rule.loaders & loader:
                key = (rule.prefix, loader)
                assert key not in seen, key
                seen.add(key)


def test_prevail_rule_examples():
    assert prevail_program_type("cgroup_skb/egress") == ProgType.SOCKET_FILTER
    assert prevail_program_type("cgroup/post_bind4") == ProgType.CGROUP_SOCK_ADDR
    assert prevail_program_type("lsm.s/x") == ProgType.TRACING
    assert prevail_program_type("from-netdev", "cilium/bpf_xdp.o") == ProgType.XDP
    assert prevail_program_type("2/1", "cilium/bpf_lxc.o") == ProgType.SCHED_CLS
    assert prevail_program_type("2/1", "cilium/bpf_lb.o") == ProgType.SOCKET_FILTER
    assert prevail_program_type("bind") == ProgType.SOCKET_FILTER


def test_prevail_rule_reproduces_corpus_column():
    expected = CORPUS / "expected.csv"
    if not expected.exists():
        pytest.skip(f"corpus not found at {CORPUS}")
    rows = [r for r in csv.DictReader(expected.open()) if r["prog_type"]]
    assert rows
    bad = [
        (r["object"], r["section"], r["prog_type"])
        for r in rows
        if prevail_program_type(r["section"], f"{r['project']}/{r['object']}").type_name
        != r["prog_type"]
    ]
    assert not bad


def test_every_helper_list_names_real_helpers_and_keeps_the_base_ones():
    from pybpf.helpers import HELPER_IDS
    from pybpf.progtypes.contexts import HELPERS_BY_TYPE, helper_allowed_for, rules_for

    assert {ProgType.XDP, ProgType.SCHED_CLS, ProgType.KPROBE} <= set(HELPERS_BY_TYPE)
    for prog_type, names in HELPERS_BY_TYPE.items():
        assert names <= set(HELPER_IDS), prog_type
        assert {"map_lookup_elem", "tail_call", "ktime_get_ns"} <= names, prog_type
    xdp = rules_for(ProgType.XDP).context
    assert helper_allowed_for(ProgType.XDP, xdp, "xdp_adjust_head")
    assert not helper_allowed_for(ProgType.XDP, xdp, "skb_store_bytes")
    assert not helper_allowed_for(ProgType.XDP, xdp, "override_return")
    assert helper_allowed_for(None, xdp, "xdp_adjust_head")  # no type: context rules only
