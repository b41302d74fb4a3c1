"""Socket hooks against Linux: the same policies on real sockets, in a test cgroup and in pybpf.

examples/c/bind_monitor_policy.c's bind4/6, connect4/6, post_bind4, sock_create and
sock_release programs are attached in the kernel to a cgroup of this test's own (a child
process moved into it runs the scenario) and with pybpf's socket hooks to this process
(the same scenario, in each engine); what the sockets saw (redirected and denied binds and
connects, a post_bind deny undone, the priority sock_create set) and the maps (sockets
released, which process each hook saw) must be equal.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.errors import SyscallError
from pybpf.hooks import attach_socket
from pybpf.objects import Object

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernel import private_cgroup, requires_bpf  # noqa: E402

OBJECT = Path(__file__).resolve().parents[1] / "examples" / "c" / "bind_monitor_policy.o"
PROGRAMS = ("policy_bind4", "policy_bind6", "policy_connect4", "policy_connect6",
            "policy_post_bind4", "policy_sock_create", "policy_sock_release")

SCENARIO = r"""
import socket
from_port, to_port, deny_port, post_port = PORTS


def attempt(fn):
    try:
        return fn()
    except OSError as exc:
        return f"errno {exc.errno}"


out = {}
server = socket.socket()
out["bind redirected"] = attempt(lambda: server.bind(("127.0.0.1", from_port)))
out["server address"] = server.getsockname()
server.listen()
denied = socket.socket()
out["bind denied"] = attempt(lambda: denied.bind(("127.0.0.1", deny_port)))
undone = socket.socket()
out["post_bind denied"] = attempt(lambda: undone.bind(("127.0.0.1", post_port)))
out["after post_bind deny"] = undone.getsockname()
out["priority"] = undone.getsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY)
client = socket.socket()
out["connect redirected"] = attempt(lambda: client.connect(("127.0.0.2", from_port)))
out["peer"] = client.getpeername()
refused = socket.socket()
out["connect denied"] = refused.connect_ex(("127.0.0.1", deny_port))
server6 = socket.socket(socket.AF_INET6)
out["bind6 redirected"] = attempt(lambda: server6.bind(("::1", from_port)))
out["server6 address"] = server6.getsockname()[:2]
server6.listen()
out["bind6 denied"] = attempt(lambda: socket.socket(socket.AF_INET6).bind(("::1", deny_port)))
client6 = socket.socket(socket.AF_INET6)
out["connect6 redirected"] = attempt(lambda: client6.connect(("::1", from_port)))
out["peer6"] = client6.getpeername()[:2]
out["connect6 denied"] = attempt(lambda: socket.socket(socket.AF_INET6).connect(("::1", deny_port)))
for s in (server, denied, undone, client, refused, server6, client6):
    s.close()
step("done", out)
"""

CHILD = r"""
import json, os, sys
PORTS = json.loads(sys.argv[1])
def step(tag, data=None):
    print(json.dumps({"step": tag, "pid": os.getpid(), "data": data}), flush=True)
    sys.stdin.readline()
step("ready")
""" + SCENARIO


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _config(ports: list[int]) -> bytes:
    from_port, to_port, deny_port, post_port = ports
    return struct.pack("<6I", from_port, to_port, deny_port, post_port, 0, 5)


def _normal_seen(raw: dict[int, int], pid: int) -> dict[int, str]:
    """``seen`` as hook -> "self" when the caller was this process's main thread."""
    return {
        hook: ("self" if value == (pid << 32 | pid) else hex(value))
        for hook, value in raw.items()
        if value
    }


def _kernel(cgroup: Path, ports: list[int]) -> tuple[dict, int, dict]:
    from pybpf import syscall as sc

    obj = Object.open(OBJECT).load(backend="kernel")
    links = []
    cg = sc.Fd(os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY), "cgroup")
    try:
        obj.maps["config"].update(struct.pack("<I", 0), _config(ports))
        for name in PROGRAMS:
            prog = obj.programs[name]
            links.append(sc.link_create(prog.kernel.fd, cg, prog.attach_type))
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(ports)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        out, seen, released, pid = None, {}, 0, 0
        try:
            for line in child.stdout:
                report = json.loads(line)
                pid = report["pid"]
                if report["step"] == "ready":
                    (cgroup / "cgroup.procs").write_text(str(pid))
                else:
                    out = report["data"]
                    released = struct.unpack("<Q", obj.maps["released"].lookup(bytes(4)))[0]
                    for hook in range(8):
                        raw = obj.maps["seen"].lookup(struct.pack("<I", hook))
                        seen[hook] = struct.unpack("<Q", raw)[0]
                child.stdin.write("\n")
                child.stdin.flush()
        finally:
            child.stdin.close()
            assert child.wait(timeout=30) == 0
        return out, released, _normal_seen(seen, pid)
    finally:
        for link in links:
            link.close()
        cg.close()
        obj.close()


def _portable(engine: str, ports: list[int]) -> tuple[dict, int, dict]:
    with Object.open(OBJECT).load(engine=engine) as obj:
        obj.maps["config"][0] = _config(ports)
        links = [attach_socket(obj.programs[name]) for name in PROGRAMS]
        result = {}
        try:
            exec(SCENARIO, {"PORTS": ports, "step": lambda tag, data: result.update(data)})
        finally:
            for link in links:
                link.detach()
        seen = {hook: int(obj.maps["seen"][hook]) for hook in range(8)}
        released = int(obj.maps["released"][0])
    return json.loads(json.dumps(result)), released, _normal_seen(seen, os.getpid())


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@requires_bpf
@pytest.mark.skipif(not _has_ipv6_loopback(), reason="the scenario binds ::1 too")
@pytest.mark.parametrize("engine", ["interpreter", "jit"])
def test_socket_policies_match_the_kernel(engine):
    ports = _free_ports(4)
    try:
        with private_cgroup() as cgroup:
            kernel = _kernel(cgroup, ports)
    except SyscallError as err:
        if err.errno in (errno.EPERM, errno.EACCES):
            pytest.skip(f"no privilege to load or attach cgroup programs: {err}")
        raise
    portable = _portable(engine, ports)
    out, released, seen = kernel
    from_port, to_port, deny_port, post_port = ports
    assert out == {
        "bind redirected": None,
        "server address": ["127.0.0.1", to_port],
        "bind denied": f"errno {errno.EPERM}",
        "post_bind denied": f"errno {errno.EPERM}",
        "after post_bind deny": ["0.0.0.0", 0],
        "priority": 5,
        "connect redirected": None,
        "peer": ["127.0.0.1", to_port],
        "connect denied": errno.EPERM,
        "bind6 redirected": None,
        "server6 address": ["::1", to_port],
        "bind6 denied": f"errno {errno.EPERM}",
        "connect6 redirected": None,
        "peer6": ["::1", to_port],
        "connect6 denied": f"errno {errno.EPERM}",
    }
    assert released >= 9  # the scenario's sockets (the accepted ones are never made here)
    assert set(seen) == {0, 1, 2, 3, 4, 5, 6} and set(seen.values()) == {"self"}
    assert portable == kernel
