"""Precision regressions: programs Linux accepts that pybpf once refused, next to their unsafe
twins (which both must still refuse).

The C sources and their compiled objects live in ``tests/fixtures/verifier_c`` (rebuild with
``clang -O2 -g -target bpf -I/usr/include/$(uname -m)-linux-gnu -c``); where ``bpf()`` works
the kernel's verdict on the same object is checked too, so the expectations are Linux's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pybpf.elf import read_object
from pybpf.isa import assemble
from pybpf.progtypes import ProgType
from pybpf.verifier import verify, verify_object

sys.path.insert(0, str(Path(__file__).parent))
from kernel import requires_bpf  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "verifier_c"

# program -> Linux's verdict (accepted?)
PACKET_OR_NULL = {"with_call": True, "no_call": True, "short_check": False, "moved_packet": False}


@pytest.mark.parametrize("name", sorted(PACKET_OR_NULL))
def test_packet_or_null_pointer_keeps_its_bound_across_paths_and_calls(name):
    obj = read_object((FIXTURES / "packet_or_null.o").read_bytes())
    result = verify_object(obj, name, ProgType.XDP)
    assert result.accepted is PACKET_OR_NULL[name], result.report()
    if not result.accepted:
        assert not result.errors[0].unsupported


def _xdp(body: str):
    head = """
r2 = *(u32 *)(r1 + 0)
r3 = *(u32 *)(r1 + 4)
r6 = 0
r4 = r2
r4 += 34
if r4 > r3 goto +2
r2 += 14
r6 = r2
"""
    return verify(assemble(head + body), ProgType.XDP)


def test_bound_of_a_maybe_null_packet_pointer_comes_back_after_the_null_test():
    ok = _xdp("call 5\nr0 = 2\nif r6 == 0 goto +1\nr0 = *(u8 *)(r6 + 19)\nexit")
    assert ok.accepted, ok.report()
    # one byte past what was checked (14 + 20 = 34)
    past = _xdp("call 5\nr0 = 2\nif r6 == 0 goto +1\nr0 = *(u8 *)(r6 + 20)\nexit")
    assert not past.accepted
    assert past.errors[0].pc == 11
    # without the null test the pointer may be 0
    assert not _xdp("r0 = *(u8 *)(r6 + 0)\nexit").accepted
    # a helper that may move the packet (bpf_xdp_adjust_head) kills the pointer
    moved = _xdp("r2 = 0\ncall 44\nr0 = 2\nif r6 == 0 goto +1\nr0 = *(u8 *)(r6 + 0)\nexit")
    assert not moved.accepted


@requires_bpf
def test_kernel_agrees_on_the_packet_or_null_fixture():
    from pybpf.kernel.verdict import kernel_verdict

    obj = read_object((FIXTURES / "packet_or_null.o").read_bytes())
    for name, accepted in PACKET_OR_NULL.items():
        assert kernel_verdict(obj, name, ProgType.XDP).accepted is accepted, name


# ---- corpus rows judged against Linux ------------------------------------------------------
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "build"


def _corpus(name: str):
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"{path} is not present (the corpus lives beside the clone)")
    obj = read_object(path.read_bytes())
    obj.platform = "linux"  # correlated_branch.o was built for eBPF for Windows
    return obj


# Linux refuses all three (socket filters): add1 writes skb->len, add2 passes its context
# where add1 takes memory, func's global add1 reads a maybe-null int * unchecked. pybpf's
# verifier refuses add2 and func; add1's write of a read-only field is refused at load,
# where the context accesses are rewritten to the runtime's layout (objects.context).
BPF2BPF = ("add1", "add2", "func")


@pytest.mark.parametrize("name", ["add2", "func"])
def test_bpf2bpf_rows_are_refused_as_linux_refuses_them(name):
    result = verify_object(_corpus("bpf2bpf.o"), name, ProgType.SOCKET_FILTER)
    assert not result.accepted and not result.errors[0].unsupported


def test_bpf2bpf_add1_is_refused_for_its_read_only_field_write():
    from pybpf.errors import VerifierError
    from pybpf.objects.context import rewrite_context_accesses, runtime_context_for
    from pybpf.spec import link

    obj = _corpus("bpf2bpf.o")
    result = verify_object(obj, "add1", ProgType.SOCKET_FILTER)
    # Linux: "invalid bpf_context access off=0 size=4" (a store to __sk_buff.len)
    assert [e.pc for e in result.errors] == [10]
    assert "read-only context field __sk_buff.len" in result.errors[0].message
    runtime = runtime_context_for(ProgType.SOCKET_FILTER).runtime  # and the loader's rewrite
    insns = link(obj, "add1").instructions
    with pytest.raises(VerifierError) as info:
        rewrite_context_accesses(insns, result.ctx_accesses, runtime)
    assert info.value.pc == 10


def test_a_bound_learnt_from_end_minus_start_reaches_a_pointer_kept_across_paths():
    # ConvergedBranch checks ``data_end - data >= 14`` on a number, then keeps ``data`` or
    # NULL: PREVAIL and pybpf accept it; Linux refuses it ("R7 offset is outside of the
    # packet": it learns no packet range from a subtraction), an imprecision, not a fault
    result = verify_object(_corpus("correlated_branch.o"), "ConvergedBranch", ProgType.XDP)
    assert result.accepted, result.report()


@requires_bpf
def test_kernel_verdicts_on_the_corpus_rows():
    from pybpf.kernel.verdict import SAFETY, kernel_verdict

    bpf2bpf = _corpus("bpf2bpf.o")
    for name in BPF2BPF:
        assert not kernel_verdict(bpf2bpf, name, ProgType.SOCKET_FILTER).accepted, name
    branch = _corpus("correlated_branch.o")
    branch.license = branch.license or "GPL"
    verdict = kernel_verdict(branch, "ConvergedBranch", ProgType.XDP)
    assert not verdict.accepted and verdict.category == SAFETY
