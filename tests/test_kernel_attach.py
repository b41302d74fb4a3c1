"""Attaching kernel-backend programs: tracepoint, raw tracepoint, uprobe, kprobe, fentry, XDP,
tcx and cgroup hooks, each seen counting in a map, then detached.

``examples/c/kernel_attach.c`` has one program per hook, each adding 1 to its slot of the
``hits`` array (tracing ones only for this process's tgid, written into ``.bss``). Every
test triggers its hook, sees the count move, detaches and sees it stop. Network tests use a
veth pair whose peer lives in a network namespace of their own, the cgroup test a cgroup v2
directory of its own, the pin test a bpffs directory of its own; all are removed afterwards.
Hooks this kernel lacks (kprobes without CONFIG_KPROBES, fentry without trampolines) skip
with the kernel's reason.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pybpf.errors import InputError, NotSupportedError, SyscallError
from pybpf.objects import Object

sys.path.insert(0, str(Path(__file__).parent))
from kernel import (  # noqa: E402
    open_fds,
    private_bpffs,
    private_cgroup,
    requires_bpf,
    tracefs,
    veth_in_netns,
)

pytestmark = requires_bpf

OBJ = Path(__file__).resolve().parents[1] / "examples" / "c" / "kernel_attach.o"
TP, RAW_TP, KPROBE, UPROBE, XDP, CGROUP_SOCK, FENTRY, TC = range(8)
CALLS = 25


def _load(*programs: str) -> Object:
    obj = Object.open(OBJ)
    obj.load(backend="kernel", programs=list(programs))
    obj.maps[".bss"].update(b"\0" * 4, struct.pack("<I", os.getpid()))
    return obj


def _hits(obj: Object, slot: int) -> int:
    return struct.unpack("<Q", obj.maps["hits"].lookup(struct.pack("<I", slot)))[0]


def _getpids(n: int = CALLS) -> None:
    for _ in range(n):
        os.getpid()


def _counts_while_attached(obj: Object, slot: int, link, trigger=_getpids) -> int:
    """Trigger, check the count moved; detach, trigger, check it stopped. The count seen."""
    before = _hits(obj, slot)
    trigger()
    moved = _hits(obj, slot) - before
    assert moved >= CALLS, f"{link!r}: {moved} hits for {CALLS} triggers"
    link.detach()
    assert not link.attached
    stopped = _hits(obj, slot)
    trigger()
    assert _hits(obj, slot) == stopped
    return moved


def test_tracepoint_counts_getpid_calls():
    with tracefs() as root:
        obj = _load("tp_getpid")
        try:
            link = obj.programs["tp_getpid"].attach(tracefs=root)
            assert link.type == "perf_event" and link.id > 0
            assert link.info().prog_id == obj.programs["tp_getpid"].id
            assert link.target["tracepoint"] == "syscalls/sys_enter_getpid"
            _counts_while_attached(obj, TP, link)
        finally:
            obj.close()


def test_raw_tracepoint_counts_syscalls_and_the_link_pins():
    obj = _load("raw_sys_enter")
    try:
        with private_bpffs() as pins:
            with obj.programs["raw_sys_enter"].attach() as link:
                assert link.type == "raw_tracepoint" and link.id > 0
                link.pin(pins / "raw_link")
                assert (pins / "raw_link").exists()
                link.detach()
                # The pin holds the link: it still counts after our fd is closed.
                before = _hits(obj, RAW_TP)
                _getpids()
                assert _hits(obj, RAW_TP) - before >= CALLS
                (pins / "raw_link").unlink()
            # The pin's inode is freed after an RCU grace period, and the link with it.
            deadline = time.monotonic() + 5
            while True:
                before = _hits(obj, RAW_TP)
                _getpids()
                if _hits(obj, RAW_TP) == before or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert _hits(obj, RAW_TP) == before
    finally:
        obj.close()


def _libc() -> str:
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        if "/libc.so" in path or "/libc-" in path:
            return path
    pytest.skip("no libc mapped in this process")


def test_uprobe_counts_libc_getpid():
    obj = _load("uprobe_getpid")
    try:
        link = obj.programs["uprobe_getpid"].attach(binary=_libc(), function="getpid")
        assert link.type == "perf_event" and link.target["offset"] > 0
        _counts_while_attached(obj, UPROBE, link)
    finally:
        obj.close()


def test_kprobe_counts_getpid_or_skips_without_kprobes():
    with tracefs() as root:
        obj = _load("kprobe_getpid")
        try:
            try:
                link = obj.programs["kprobe_getpid"].attach(tracefs=root)
            except NotSupportedError as err:
                assert err.feature == "kprobe"
                pytest.skip(f"kprobe attach is not possible here: {err}")
            assert link.target["function"] == "__x64_sys_getpid"
            _counts_while_attached(obj, KPROBE, link)
        finally:
            obj.close()


def test_fentry_counts_getpid_or_skips():
    obj = Object.open(OBJ)
    try:
        obj.load(backend="kernel", programs=["fentry_getpid"])
    except (SyscallError, NotSupportedError) as err:
        pytest.skip(f"this kernel does not load fentry programs: {err}")
    try:
        obj.maps[".bss"].update(b"\0" * 4, struct.pack("<I", os.getpid()))
        link = obj.programs["fentry_getpid"].attach()
        assert link.type == "tracing"
        _counts_while_attached(obj, FENTRY, link)
    finally:
        obj.close()


_SEND = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
    "s.bind((sys.argv[1], 0))\n"
    "frame = b'\\xff' * 6 + b'\\x02' * 6 + b'\\x08\\x06' + bytes(46)\n"
    "for _ in range(int(sys.argv[2])): s.send(frame)\n"
)


def _send(netns: str, inner: str) -> None:
    # Frames sent from the namespace's end arrive at the outer end's XDP and tc hooks.
    subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", _SEND, inner, str(CALLS)],
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_xdp_and_tcx_on_a_veth_pair_in_a_namespace():
    obj = _load("xdp_rx", "tc_ingress")
    try:
        with veth_in_netns() as (outer, netns, inner):
            with obj.programs["xdp_rx"].attach(outer) as xdp:
                assert xdp.type == "xdp" and xdp.target["devname"] == outer
                with obj.programs["tc_ingress"].attach(outer) as tc:
                    assert tc.type == "tcx" and tc.target["direction"] == "ingress"
                    before = (_hits(obj, XDP), _hits(obj, TC))
                    _send(netns, inner)
                    time.sleep(0.05)
                    assert _hits(obj, XDP) - before[0] >= CALLS
                    assert _hits(obj, TC) - before[1] >= CALLS
            after = _hits(obj, XDP)
            _send(netns, inner)
            assert _hits(obj, XDP) == after
    finally:
        obj.close()


def test_xdp_through_netlink_on_a_veth_pair():
    from pybpf.kernel.netlink import xdp_query

    obj = _load("xdp_rx")
    try:
        with veth_in_netns() as (outer, netns, inner):
            prog = obj.programs["xdp_rx"]
            with prog.attach(outer, netlink=True) as xdp:
                assert xdp.type == "xdp_netlink" and xdp.id == 0
                assert xdp_query(xdp.target["ifindex"]) == prog.id
                before = _hits(obj, XDP)
                _send(netns, inner)
                time.sleep(0.05)
                assert _hits(obj, XDP) - before >= CALLS
            assert xdp_query(xdp.target["ifindex"]) == 0
    finally:
        obj.close()


def test_xdp_needs_an_interface():
    obj = _load("xdp_rx")
    try:
        with pytest.raises(InputError):
            obj.programs["xdp_rx"].attach("no-such-if0")
        with pytest.raises(InputError):
            obj.programs["xdp_rx"].attach()
    finally:
        obj.close()


def test_cgroup_sock_create_counts_sockets_of_the_cgroup():
    obj = _load("sock_create")
    try:
        with private_cgroup() as cgroup:
            with obj.programs["sock_create"].attach(cgroup) as link:
                assert link.type in ("cgroup", "cgroup_attach")
                before = _hits(obj, CGROUP_SOCK)
                script = (
                    f"import os, socket\nopen({str(cgroup / 'cgroup.procs')!r}, 'w')"
                    f".write(str(os.getpid()))\n"
                    f"for _ in range({CALLS}): socket.socket(socket.AF_INET, "
                    "socket.SOCK_DGRAM).close()\n"
                )
                subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
                assert _hits(obj, CGROUP_SOCK) - before == CALLS
            # Detached: sockets made from the cgroup are no longer counted.
            before = _hits(obj, CGROUP_SOCK)
            subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
            assert _hits(obj, CGROUP_SOCK) == before
    finally:
        obj.close()


def test_detach_is_idempotent_and_releases_fds():
    with tracefs() as root:
        obj = _load("tp_getpid")
        try:
            fds = open_fds()
            link = obj.programs["tp_getpid"].attach(tracefs=root)
            assert open_fds() - fds  # the link and its perf event
            link.detach()
            link.close()
            assert open_fds() == fds
        finally:
            obj.close()
