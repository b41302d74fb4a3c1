"""tc through rtnetlink (kernels before tcx): a clsact qdisc and a direct-action cls_bpf filter.

``attach(iface, netlink=True)`` takes the legacy path libbpf's ``bpf_tc_hook_create`` and
``bpf_tc_attach`` take (the path any kernel before 6.6 gets when ``BPF_LINK_CREATE`` refuses
tcx). ``examples/c/kernel_attach.o``'s ``tc_ingress`` counts its runs in ``hits``; frames sent
from the far end of a veth pair (the peer in a network namespace made for the test) reach the
near end's ingress. ``tc filter show`` (iproute2) is the independent witness of the filter.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pybpf.errors import InputError, SyscallError
from pybpf.objects import Object

sys.path.insert(0, str(Path(__file__).parent))
from kernel import requires_bpf, veth_in_netns  # noqa: E402
from test_kernel_attach import TC, _hits, _load, _send  # noqa: E402

pytestmark = requires_bpf
CALLS = 25


def _filters(dev: str, way: str = "ingress") -> str:
    if shutil.which("tc") is None:
        return ""
    done = subprocess.run(["tc", "filter", "show", "dev", dev, way], capture_output=True,
                          text=True, timeout=20)  # fmt: skip
    return done.stdout


def test_tc_filter_through_netlink_counts_frames_and_detach_removes_it():
    from pybpf.kernel.netlink import tc_query

    obj: Object = _load("tc_ingress")
    try:
        with veth_in_netns() as (outer, netns, inner):
            prog = obj.programs["tc_ingress"]
            with prog.attach(outer, netlink=True) as tc:
                assert tc.type == "tc_netlink" and tc.id == 0
                target = tc.target
                assert target["direction"] == "ingress" and target["devname"] == outer
                assert target["handle"] > 0 and target["priority"] > 0
                ifindex = target["ifindex"]
                assert tc_query(ifindex, "ingress", target["handle"], target["priority"]) == prog.id
                if shutil.which("tc"):
                    shown = _filters(outer)
                    assert "direct-action" in shown and f"id {prog.id}" in shown
                before = _hits(obj, TC)
                _send(netns, inner)
                time.sleep(0.05)
                assert _hits(obj, TC) - before >= CALLS
            assert not tc.attached
            assert tc_query(ifindex, "ingress", target["handle"], target["priority"]) == 0
            if shutil.which("tc"):
                assert "direct-action" not in _filters(outer)
            stopped = _hits(obj, TC)
            _send(netns, inner)
            assert _hits(obj, TC) == stopped
            tc.detach()  # idempotent
    finally:
        obj.close()


def test_two_filters_on_one_hook_and_egress():
    from pybpf.kernel.netlink import tc_query

    obj = _load("tc_ingress")
    try:
        with veth_in_netns() as (outer, _netns, _inner):
            prog = obj.programs["tc_ingress"]
            with (
                prog.attach(outer, netlink=True) as first,
                prog.attach(outer, netlink=True) as second,
            ):
                a, b = first.target, second.target
                assert (a["handle"], a["priority"]) != (b["handle"], b["priority"])
                first.detach()
                assert tc_query(b["ifindex"], "ingress", b["handle"], b["priority"]) == prog.id
            with prog.attach(outer, direction="egress", netlink=True) as out:
                t = out.target
                assert t["direction"] == "egress"
                assert tc_query(t["ifindex"], "egress", t["handle"], t["priority"]) == prog.id
                assert tc_query(t["ifindex"], "ingress", t["handle"], t["priority"]) == 0
    finally:
        obj.close()


def test_bad_direction_and_missing_interface():
    from pybpf.kernel.netlink import tc_attach, tc_parent

    with pytest.raises(InputError):
        tc_parent("sideways")
    obj = _load("tc_ingress")
    try:
        with pytest.raises(InputError):
            obj.programs["tc_ingress"].attach("pybpf-no-such0", netlink=True)
        with pytest.raises(SyscallError) as exc:  # ifindex that no interface has
            tc_attach(0x7FFFFFF0, "ingress", obj.programs["tc_ingress"].kernel.fd.fileno())
        assert exc.value.errno in (errno.ENODEV, errno.EINVAL)
    finally:
        obj.close()


def test_a_kernel_without_tcx_falls_back_to_netlink(monkeypatch):
    """Before 6.6 BPF_LINK_CREATE refuses the tcx attach types with EINVAL."""
    import pybpf.kernel.link as link

    def no_tcx(*args, **kwargs):
        raise SyscallError("BPF_LINK_CREATE", errno.EINVAL)

    obj = _load("tc_ingress")
    try:
        with veth_in_netns() as (outer, netns, inner):
            monkeypatch.setattr(link, "link_create", no_tcx)
            with obj.programs["tc_ingress"].attach(outer) as tc:
                assert tc.type == "tc_netlink"
                before = _hits(obj, TC)
                _send(netns, inner)
                time.sleep(0.05)
                assert _hits(obj, TC) - before >= CALLS
    finally:
        obj.close()
