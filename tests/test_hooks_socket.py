"""Socket hooks: contexts built for socket programs, and programs attached to our own sockets.

The programs are examples/c/bind_monitor_policy.c (one per Linux hook) and
bind_monitor_policy_win.c (eBPF for Windows' ``bind``); they run on real sockets of the
test process, in the interpreter and the JIT.
"""

from __future__ import annotations

import _socket
import errno
import gc
import os
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from pybpf.errors import InputError, NotSupportedError, VerifierError
from pybpf.hooks import SocketLink, attach_socket
from pybpf.hooks.link import list_links
from pybpf.hooks.socket import attached_links
from pybpf.objects import Object
from pybpf.objects.sock_context import (
    BindOperation,
    uapi_pack,
    uapi_unpack,
    windows_sockaddr,
    windows_sockaddr_parse,
)
from pybpf.progtypes import AttachType
from pybpf.progtypes.contexts import LAYOUTS, SOCK_LAYOUT

C = Path(__file__).resolve().parents[1] / "examples" / "c"
SOCK_ADDR = LAYOUTS["bpf_sock_addr"]
BIND_MD = LAYOUTS["bind_md"]
ENGINES = ["interpreter", "jit"]
_WRAPPED = ("__init__", "bind", "connect", "connect_ex", "_real_close", "detach")


def _free_port() -> int:
    s = _socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _socket_class_state() -> dict:
    return {name: socket.socket.__dict__.get(name) for name in _WRAPPED}


_PRISTINE = _socket_class_state()


@pytest.fixture(autouse=True)
def _no_leftover_links():
    yield
    assert attached_links() == []
    assert _socket_class_state() == _PRISTINE


@pytest.fixture(scope="module", params=ENGINES)
def _policy_obj(request):
    with Object.open(C / "bind_monitor_policy.o").load(engine=request.param) as obj:
        yield obj


@pytest.fixture(scope="module", params=ENGINES)
def _win_policy_obj(request):
    with Object.open(C / "bind_monitor_policy_win.o").load(engine=request.param) as obj:
        yield obj


def _zero(obj) -> None:
    for m in obj.maps.values():
        for key in range(m.max_entries):
            m[key] = bytes(m.value_size)


@pytest.fixture
def policy(_policy_obj):
    _zero(_policy_obj)
    return _policy_obj


@pytest.fixture
def win_policy(_win_policy_obj):
    _zero(_win_policy_obj)
    return _win_policy_obj


def _config(obj, **values) -> None:
    fields = ("from_port", "to_port", "deny_port", "post_deny_port", "deny_dgram", "priority")
    obj.maps["config"][0] = {name: values.get(name, 0) for name in fields}


def _seen(obj, hook: int) -> int:
    return int(obj.maps["seen"][hook])


# ---- contexts -------------------------------------------------------------------------------
def test_sock_addr_context_round_trips_and_redirects(policy):
    _config(policy, from_port=1000, to_port=2000, deny_port=3000)
    prog = policy.programs["policy_connect4"]
    assert prog.context == "runtime"
    ctx = uapi_pack(SOCK_ADDR, {"user_family": 2, "user_ip4": 0x0A00000A,
                                "user_port": 0xE803, "family": 2, "type": 1, "protocol": 6})
    r = prog.test_run(ctx_in=ctx)
    out = uapi_unpack(SOCK_ADDR, r.ctx_out)
    assert r.retval == 1
    assert out["user_port"] == 0xD007  # htons(2000), as Linux stores sin_port
    assert out["user_ip4"].to_bytes(4, "little") == bytes([127, 0, 0, 1])
    assert (out["family"], out["type"], out["protocol"]) == (2, 1, 6)
    denied = uapi_pack(SOCK_ADDR, {"user_family": 2, "user_port": 0xB80B, "family": 2})
    r = prog.test_run(ctx_in=denied)
    assert r.retval == 0 and r.ctx_out == denied  # nothing rewritten


def test_sock_context_carries_writes_back(policy):
    _config(policy, priority=5)
    prog = policy.programs["policy_sock_create"]
    r = prog.test_run(ctx_in=uapi_pack(SOCK_LAYOUT, {"family": 2, "type": 1, "protocol": 6}))
    assert r.retval == 1 and uapi_unpack(SOCK_LAYOUT, r.ctx_out)["priority"] == 5
    _config(policy, deny_dgram=1)
    r = prog.test_run(ctx_in=uapi_pack(SOCK_LAYOUT, {"family": 2, "type": 2, "protocol": 17}))
    assert r.retval == 0


def test_bind_md_context_gives_app_id_and_takes_the_redirect(win_policy):
    win_policy.maps["config"][0] = 80
    win_policy.maps["config"][1] = 8080
    prog = win_policy.programs["bind_policy"]
    md = uapi_pack(BIND_MD, {"process_id": 4242, "socket_address_length": 16,
                             "socket_address": int.from_bytes(windows_sockaddr(80, bytes(4)),
                                                              "little"),
                             "operation": BindOperation.BIND, "protocol": 17})
    r = prog.test_run(b"C:\\python.exe", ctx_in=md)
    assert r.retval == 2  # BIND_REDIRECT
    assert r.data_out == b"C:\\python.exe"
    out = uapi_unpack(BIND_MD, r.ctx_out)
    assert windows_sockaddr_parse(out["socket_address"].to_bytes(16, "little")) == (8080, bytes(4))
    assert out["process_id"] == 4242 and out["app_id_start"] == 0


@pytest.mark.parametrize(
    "ctx_in, data_in, code",
    [
        (bytes(SOCK_ADDR.size) + b"\1", b"", errno.E2BIG),
        (uapi_pack(SOCK_ADDR, {"sk": 0x1000}), b"", errno.EINVAL),
        (uapi_pack(SOCK_ADDR, {}), bytes(SOCK_LAYOUT.size + 1) + b"\1", errno.E2BIG),
    ],
)
def test_sock_addr_bad_arguments_fail_as_bpf_does(policy, ctx_in, data_in, code):
    with pytest.raises(InputError) as info:
        policy.programs["policy_bind4"].test_run(data_in, ctx_in=ctx_in)
    assert info.value.errno == code


def test_bind_md_refuses_unknown_operations_and_long_addresses(win_policy):
    prog = win_policy.programs["bind_policy"]
    for values in ({"operation": 7}, {"socket_address_length": 17}):
        with pytest.raises(InputError) as info:
            prog.test_run(ctx_in=uapi_pack(BIND_MD, values))
        assert info.value.errno == errno.EINVAL


def test_windows_sockaddr_layout():
    raw = windows_sockaddr(0x1234, bytes([10, 0, 0, 1]))
    assert raw[:2] == b"\x02\x00" and raw[2:4] == b"\x12\x34" and raw[4:8] == bytes([10, 0, 0, 1])
    assert windows_sockaddr_parse(raw) == (0x1234, bytes([10, 0, 0, 1]))
    raw6 = windows_sockaddr(7, bytes(range(16)))
    assert struct.unpack_from("<H", raw6)[0] == 23 and windows_sockaddr_parse(raw6) == (7, None)


# ---- attaching ------------------------------------------------------------------------------
def test_attach_refuses_wrong_hooks_and_unbuilt_contexts(policy):
    with pytest.raises(InputError) as info:
        attach_socket(policy.programs["policy_bind4"], AttachType.CGROUP_INET_SOCK_RELEASE)
    assert info.value.field == "attach_type"
    with pytest.raises(InputError):
        attach_socket(policy.programs["policy_bind4"], "no_such_hook")
    with pytest.raises(InputError):
        attach_socket(policy.programs["policy_bind4"], AttachType.CGROUP_INET_INGRESS)
    with Object.open(C / "bind_monitor_policy.o").load(verify=False) as raw:
        with pytest.raises(NotSupportedError):
            attach_socket(raw.programs["policy_bind4"])


def test_link_is_listed_and_detach_restores_the_socket_class(policy):
    with attach_socket(policy.programs["policy_bind4"]) as link:
        assert isinstance(link, SocketLink)
        rec = {r.id: r for r in list_links()}[link.id]
        assert rec.type == "cgroup" and rec.prog_name == "policy_bind4"
        assert rec.target["attach_type"] == "cgroup_inet4_bind"
        assert socket.socket.__dict__.get("bind") is not None
    assert link.id not in {r.id for r in list_links()}
    assert _socket_class_state() == _PRISTINE


def test_bind4_denies_and_redirects(policy):
    to_port, from_port = _free_port(), _free_port()
    _config(policy, from_port=from_port, to_port=to_port, deny_port=9)
    with attach_socket(policy.programs["policy_bind4"]) as link:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            with pytest.raises(PermissionError) as info:
                s.bind(("127.0.0.1", 9))
            assert info.value.errno == errno.EPERM
            assert s.getsockname()[1] == 0  # nothing bound
            s.bind(("127.0.0.1", from_port))
            assert s.getsockname() == ("127.0.0.1", to_port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("localhost", 0))  # names resolve; no rewrite keeps the address as given
            assert s.getsockname()[0] == "127.0.0.1"
        assert (link.runs, link.denied, link.redirected) == (3, 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", from_port))  # detached: no redirect
        assert s.getsockname()[1] == from_port


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 sockets")
def test_bind6_redirects(policy):
    to_port, from_port = _free_port(), _free_port()
    _config(policy, from_port=from_port, to_port=to_port)
    with attach_socket(policy.programs["policy_bind6"]):
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("::1", from_port))
            except OSError as exc:
                pytest.skip(f"no IPv6 loopback: {exc}")
            assert s.getsockname()[:2] == ("::1", to_port)
    assert _seen(policy, 1) >> 32 == os.getpid()


def test_connect4_redirects_and_denies(policy):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        from_port = _free_port()
        _config(policy, from_port=from_port, to_port=port, deny_port=7)
        with attach_socket(policy.programs["policy_connect4"]) as link:
            with socket.socket() as c:
                c.connect(("10.255.255.1", from_port))  # redirected to 127.0.0.1:port
                assert c.getpeername() == ("127.0.0.1", port)
            with socket.socket() as c:
                with pytest.raises(PermissionError):
                    c.connect(("127.0.0.1", 7))
            with socket.socket() as c:
                assert c.connect_ex(("127.0.0.1", 7)) == errno.EPERM
            assert link.denied == 2 and link.redirected == 1


def test_post_bind4_deny_undoes_the_bind(policy):
    port = _free_port()
    _config(policy, post_deny_port=port)
    with attach_socket(policy.programs["policy_post_bind4"]):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fd = s.fileno()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 3)
            s.settimeout(2.5)
            with pytest.raises(PermissionError):
                s.bind(("127.0.0.1", port))
            assert s.fileno() == fd and s.getsockname() == ("0.0.0.0", 0)
            # the same socket as far as its user can tell: options and blocking mode kept
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY) == 3
            assert s.gettimeout() == 2.5 and not os.get_blocking(fd)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", 0))  # other ports pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as t:
        t.bind(("127.0.0.1", port))  # the port is free again


def test_sock_create_denies_and_sets_priority(policy):
    _config(policy, deny_dgram=1, priority=5)
    before = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()
    with attach_socket(policy.programs["policy_sock_create"]):
        with pytest.raises(PermissionError):
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY) == 5
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM):
            pass  # not an inet socket: no hook
    gc.collect()
    if before:
        assert set(os.listdir("/proc/self/fd")) <= before | {str(max(map(int, before)) + 1)}


def test_sock_release_on_close_and_collection_not_on_detach(policy):
    released = policy.maps["released"]
    with attach_socket(policy.programs["policy_sock_release"]):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.close()
        assert released[0] == 1
        s.close()  # closing twice releases once
        assert released[0] == 1
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        del s
        gc.collect()
        assert released[0] == 2
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        os.close(s.detach())  # the descriptor left Python: no release
        assert released[0] == 2


def test_programs_see_the_calling_thread(policy):
    _config(policy)
    seen = {}

    def bind_in_thread() -> None:
        seen["tid"] = threading.get_native_id()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))

    with attach_socket(policy.programs["policy_bind4"]):
        t = threading.Thread(target=bind_in_thread)
        t.start()
        t.join()
    assert _seen(policy, 0) == os.getpid() << 32 | seen["tid"]


def test_audit_hook_vetoes_raw_socket_objects(policy):
    _config(policy, deny_port=9)
    with attach_socket(policy.programs["policy_bind4"]):
        raw = _socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            with pytest.raises(PermissionError):
                raw.bind(("127.0.0.1", 9))
            raw.bind(("127.0.0.1", 0))
        finally:
            raw.close()


def test_concurrent_binds_are_all_counted():
    with Object.open(C / "bind_monitor_cgroup.o").load() as obj:
        obj.maps["limits_map"][0] = 1000
        links = [attach_socket(p) for p in obj.programs.values()]
        socks: list[socket.socket] = []
        lock = threading.Lock()

        def worker() -> None:
            mine = []
            for _ in range(10):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.1", 0))
                mine.append(s)
            with lock:
                socks.extend(mine)

        try:
            threads = [threading.Thread(target=worker) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert obj.maps["process_map"][os.getpid()] == 60
            for s in socks:
                s.close()
            assert os.getpid() not in dict(obj.maps["process_map"].items())
        finally:
            for link in links:
                link.detach()


def test_windows_bind_redirects_denies_and_reports_operations(win_policy):
    to_port, from_port = _free_port(), _free_port()
    for key, value in enumerate((from_port, to_port, 9)):
        win_policy.maps["config"][key] = value
    with attach_socket(win_policy.programs["bind_policy"]) as link:
        assert link.type == "bind"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            with pytest.raises(PermissionError):
                s.bind(("127.0.0.1", 9))
            s.bind(("127.0.0.1", from_port))
            assert s.getsockname() == ("127.0.0.1", to_port)
    n = win_policy.maps["calls_len"][0]
    calls = [win_policy.maps["calls"][i] for i in range(n)]
    ops = [(c >> 16, c & 0xFFFF) for c in calls]
    assert ops == [
        (BindOperation.BIND, 9),
        (BindOperation.BIND, from_port),
        (BindOperation.POST_BIND, to_port),
        (BindOperation.UNBIND, to_port),
    ]


@pytest.mark.parametrize(
    "prog_type, store, allowed",
    [
        ("BIND", "*(u64 *)(r1 + 16) = r2", False),  # bind_md.process_id
        ("BIND", "*(u8 *)(r1 + 27) = r2", True),  # socket_address[3]
        ("CGROUP_SOCK_ADDR", "*(u32 *)(r1 + 24) = r2", True),  # user_port
        ("CGROUP_SOCK_ADDR", "*(u32 *)(r1 + 4) = r2", True),  # user_ip4
        ("CGROUP_SOCK_ADDR", "*(u32 *)(r1 + 28) = r2", False),  # family
        ("CGROUP_SOCK", "*(u32 *)(r1 + 20) = r2", True),  # priority
        ("CGROUP_SOCK", "*(u32 *)(r1 + 44) = r2", False),  # src_port
    ],
)
def test_context_writes_follow_the_verifier_table(prog_type, store, allowed):
    from pybpf.isa.asm import assemble
    from pybpf.objects.context import rewrite_context_accesses, runtime_context_for
    from pybpf.progtypes import ProgType
    from pybpf.verifier import verify

    insns = assemble(f"r2 = 1\n{store}\nr0 = 0\nexit\n")
    kind = ProgType[prog_type]
    result = verify(insns, kind)
    runtime = runtime_context_for(kind).runtime
    if allowed:
        result.raise_for_errors()
        rewrite_context_accesses(insns, result.ctx_accesses, runtime)
    else:  # the verifier refuses it (as Linux's does), and so would the load-time rewrite
        assert [e.pc for e in result.errors] == [1]
        assert "read-only context field" in result.errors[0].message
        with pytest.raises(VerifierError) as info:
            rewrite_context_accesses(insns, result.ctx_accesses, runtime)
        assert info.value.pc == 1


def test_a_socket_collected_during_a_run_is_released_after_it(policy):
    from pybpf.hooks.socket import _Passthrough

    released = policy.maps["released"]
    with attach_socket(policy.programs["policy_sock_release"]):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with _Passthrough():  # as if garbage collection struck inside a program run
            del s
            gc.collect()
            assert released[0] == 0
        assert released[0] == 1


def test_closing_the_program_detaches_its_link():
    obj = Object.open(C / "bind_monitor_cgroup.o").load()
    obj.maps["limits_map"][0] = 1
    link = attach_socket(obj.programs["bind_monitor_bind4"])
    obj.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))  # no program runs: no error, no verdict
    assert not link.attached and attached_links() == []


def test_attach_and_detach_while_other_threads_use_sockets(policy):
    _config(policy)
    errors: list[BaseException] = []
    stop = threading.Event()

    def churn() -> None:
        try:
            while not stop.is_set():
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind(("127.0.0.1", 0))
                    s.connect(("127.0.0.1", 9))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(8):
            links = [attach_socket(policy.programs[n])
                     for n in ("policy_bind4", "policy_connect4", "policy_sock_release")]
            time.sleep(0.01)  # let the other threads meet the hooks
            for link in links:
                link.detach()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert int(policy.maps["released"][0]) > 0  # the hooks did run meanwhile
