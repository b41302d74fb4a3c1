"""Kernel verdicts: the verifier log's reason line and its class (safety or other)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pybpf.kernel.verdict import OTHER, SAFETY, classify, kernel_verdict, log_message
from pybpf.progtypes import ProgType

sys.path.insert(0, str(Path(__file__).parent))
from kernel import requires_bpf  # noqa: E402

LOG = """func#0 @0
0: R1=ctx() R10=fp0
0: (b7) r0 = 0                        ; R0_w=0
1: (61) r2 = *(u32 *)(r1 +0)          ; R1=ctx() R2_w=pkt(r=0)
; return *p; @ x.c:4
2: (71) r0 = *(u8 *)(r2 +0)
invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)
R2 offset is outside of the packet
processed 3 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""


def test_log_message_is_the_last_reason_line():
    assert log_message(LOG) == "R2 offset is outside of the packet"
    assert log_message(LOG, 2).startswith("invalid access to packet, off=0")
    assert log_message("") == ""
    # The kernel may not end the reason with a newline before the statistics.
    assert log_message("0: (95) exit\nR0 !read_ok processed 1 insns (limit)") == "R0 !read_ok"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("R0 invalid mem access 'map_value_or_null'", (SAFETY, "memory")),
        ("R2 offset is outside of the packet", (SAFETY, "memory")),
        ("R0 !read_ok", (SAFETY, "uninitialised_read")),
        ("invalid read from stack R2 off=-8 size=8", (SAFETY, "uninitialised_read")),
        ("back-edge from insn 1 to 1", (SAFETY, "unbounded_loop")),
        ("infinite loop detected at insn 1", (SAFETY, "unbounded_loop")),
        ("R1 leaks addr into map", (SAFETY, "pointer_misuse")),
        ("R1 pointer += pointer prohibited", (SAFETY, "pointer_misuse")),
        ("R1 type=scalar expected=fp, pkt, map_key", (SAFETY, "helper_argument")),
        ("program of this type cannot use helper bpf_redirect#23", (OTHER, "helper_unavailable")),
        ("invalid func unknown#100000", (OTHER, "helper_unavailable")),
        ("invalid func unknown#195896080", (OTHER, "core")),
        ("BPF program is too large. Processed 1000001 insn", (OTHER, "complexity")),
        ("unreachable insn 6", (OTHER, "unreachable_code")),
        ("something new", (OTHER, "unclassified")),
    ],
)
def test_classify(message, expected):
    assert classify(message) == expected


def test_context_access_inside_a_field_is_a_type_capability():
    # __sk_buff's data_end (offset 80) is not for socket filters: a field the type may not use.
    message = "invalid bpf_context access off=80 size=4"
    assert classify(message, ProgType.SOCKET_FILTER) == (OTHER, "context_field")
    # Straddling fields or past the struct is an invalid access.
    assert classify("invalid bpf_context access off=78 size=4", ProgType.SOCKET_FILTER)[0] == SAFETY
    assert classify("invalid bpf_context access off=4096 size=4", ProgType.XDP)[0] == SAFETY
    assert classify(message)[0] == SAFETY


@requires_bpf
def test_kernel_verdict_on_programs():
    from pybpf.objects import Object

    examples = Path(__file__).resolve().parents[1] / "examples" / "c"
    spec = Object.open(examples / "programs.o").spec
    good = kernel_verdict(spec, "xdp_pass")
    assert good.accepted and good.category == "accept"
    # The same program as a type whose return range it breaks is an "other" refusal.
    bad = kernel_verdict(spec, "xdp_pass", ProgType.CGROUP_SKB)
    assert not bad.accepted and bad.category == OTHER and bad.reason == "return_value"
    assert bad.errno is not None and "R0" in bad.message


def test_context_store_to_a_read_only_field_is_unsafe():
    message = "invalid bpf_context access off=0 size=4"  # __sk_buff.len
    store = "9: (79) r2 = *(u64 *)(r10 -8)\n10: (63) *(u32 *)(r2 +0) = r1\n" + message
    load = "10: (61) r1 = *(u32 *)(r2 +0)\n" + message
    assert classify(message, ProgType.SOCKET_FILTER, store) == (SAFETY, "memory")
    assert classify(message, ProgType.SOCKET_FILTER, load) == (OTHER, "context_field")
    # A writable field (mark) refused for the type is a capability of the type.
    mark = store.replace("off=0", "off=8")
    assert (
        classify("invalid bpf_context access off=8 size=4", ProgType.SOCKET_FILTER, mark)[0]
        == OTHER
    )


def test_nullable_argument_of_a_global_function_is_not_a_safety_refusal():
    log = "Validating add1() func#2...\n49: (61) r1 = *(u32 *)(r1 +0)\n"
    message = "R1 invalid mem access 'mem_or_null'"
    assert classify(message, log=log + message) == (OTHER, "global_function")
    assert classify(message, log=message) == (SAFETY, "memory")
    null_value = "R0 invalid mem access 'map_value_or_null'"
    assert classify(null_value, log=log + null_value) == (SAFETY, "memory")
