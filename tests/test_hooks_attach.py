"""One attach for every portable hook: socket programs on this process, XDP on a live link
(its loop in a thread), tracing types refused with the reason; the registry Program.attach
reads."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import InputError, NotSupportedError
from pybpf.hooks.attach import ServedLiveLink, attach
from pybpf.hooks.link import list_links
from pybpf.hooks.socket import SocketLink
from pybpf.objects import attach as registry

EXAMPLES = Path(__file__).parents[1] / "examples" / "c"


@pytest.fixture(scope="module")
def programs():
    with pybpf.load(EXAMPLES / "programs.o") as obj:
        yield obj


def test_importing_hooks_installs_the_dispatcher():
    assert registry.attacher() is attach


def test_socket_program_attaches_to_this_process(programs):
    prog = programs.programs["bind4_allow"]  # denies binds to port 8080
    with attach(prog) as link:
        assert isinstance(link, SocketLink)
        assert [r.id for r in list_links()] == [link.id]
        with socket.socket() as s, pytest.raises(PermissionError) as err:
            s.bind(("127.0.0.1", 8080))
        assert err.value.errno == errno.EPERM
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
    assert list_links() == []
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", 8080))
        except OSError as exc:  # someone else may hold the port; the hook must not deny
            assert exc.errno == errno.EADDRINUSE


def test_socket_attach_takes_an_attach_type_name_only(programs):
    prog = programs.programs["bind4_allow"]
    with pytest.raises(InputError) as err:
        attach(prog, 3)
    assert err.value.field == "target"
    with pytest.raises(InputError):
        attach(prog, "cgroup_inet4_bind", bogus=1)
    with attach(prog, "cgroup_inet4_bind") as link:
        assert link.target["attach_type"] == "cgroup_inet4_bind"


@pytest.mark.parametrize("name", ["kprobe_open", "tp_write"])
def test_tracing_programs_need_the_kernel_backend(programs, name):
    with pytest.raises(NotSupportedError) as err:
        attach(programs.programs[name])
    assert err.value.feature.startswith("attach ")
    assert "backend='kernel'" in str(err.value)
    assert programs.programs[name].test_run(ctx_in=bytes(64)).retval in (0, 1)


def test_packet_programs_need_an_interface(programs):
    with pytest.raises(InputError) as err:
        attach(programs.programs["xdp_pass"])
    assert err.value.field == "target"


def test_other_types_are_refused_by_name(programs):
    with pytest.raises(NotSupportedError) as err:
        attach(programs.programs["egress_allow"])  # cgroup_skb: no portable hook
    assert "cgroup_skb" in err.value.feature


def test_xdp_attach_serves_a_live_link(tmp_path):
    from test_hooks_live import _why_not, build_wire, sh, udp_exchange

    reason = _why_not()
    if reason is not None:
        pytest.skip(reason)
    with build_wire() as wire, pybpf.load(EXAMPLES / "drop_empty_udp.o") as obj:
        for ns in (wire.client, wire.server):
            sh("ip", "-n", ns, "neigh", "flush", "all")
        link = attach(obj.programs["drop_empty_udp"], wire.b, to=wire.c)
        with link:
            assert isinstance(link, ServedLiveLink)
            assert [r.id for r in list_links()] == [link.id]
            assert udp_exchange(wire, [0, 10]) == [10]
            assert link.counters["drop"] == 1
        assert not link.attached and not link._thread.is_alive()
        assert list_links() == []


def test_program_attach_goes_through_the_registry(programs):
    prog = programs.programs["bind4_allow"]
    with prog.attach() as link:
        assert isinstance(link, SocketLink) and link.program is prog
    with pytest.raises(NotSupportedError):
        programs.programs["kprobe_open"].attach()
