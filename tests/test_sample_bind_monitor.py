"""The bind monitor sample: limit 2 gives permit, permit, deny on real binds; the kernel agrees.

Both flavours (eBPF for Windows' ``bind``: examples/c/bind_monitor.c; Linux's
``cgroup/bind4`` + ``cgroup/sock_release``: bind_monitor_cgroup.c) run on this process's
``socket.bind`` calls in the interpreter and the JIT; the script (examples/bind_monitor.py)
and ``pybpf exec`` run them in child processes; where bpf() works, the Linux flavour's
verdicts and map contents on a child's real binds in a test cgroup match pybpf's.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
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

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
C = EXAMPLES / "c"
ENGINES = ["interpreter", "jit"]
FLAVOURS = {"bind": C / "bind_monitor.o", "cgroup": C / "bind_monitor_cgroup.o"}

# The scenario, as a child process runs it (``step`` reports and waits for the parent).
SCENARIO = r"""
import socket
step("ready")
socks, verdicts = [], []
for _ in range(3):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", 0))
        verdicts.append("permit")
    except PermissionError as exc:
        verdicts.append("deny" if exc.errno == 1 else f"errno {exc.errno}")
    socks.append(s)
step("bound", verdicts)
socks[0].close()
step("closed one")
socks[2].close()
step("closed the denied one")
socks[1].close()
step("closed all")
"""
CHILD = r"""
import json, os, sys
def step(tag, data=None):
    print(json.dumps({"step": tag, "pid": os.getpid(), "data": data}), flush=True)
    sys.stdin.readline()
""" + SCENARIO


def _counts(obj) -> dict[int, int]:
    out = {}
    for key, value in obj.maps["process_map"].items():
        out[int(key)] = int(value["count"] if isinstance(value, dict) else value)
    return out


def _normal(counts: dict[int, int], pid: int) -> dict[str, int]:
    return {("self" if k == pid else str(k)): v for k, v in counts.items()}


def _portable_steps(obj) -> list[tuple]:
    """The scenario in this process under ``obj``'s attached programs: each step's tag,
    data and ``process_map`` (pids named ``self``)."""
    steps = []

    def step(tag, data=None):
        steps.append((tag, data, _normal(_counts(obj), os.getpid())))

    links = [attach_socket(p) for p in obj.programs.values()]
    try:
        exec(SCENARIO, {"step": step})
    finally:
        for link in links:
            link.detach()
    return steps


EXPECTED = [
    ("ready", None, {}),
    ("bound", ["permit", "permit", "deny"], {"self": 2}),
    ("closed one", None, {"self": 1}),
    ("closed the denied one", None, {"self": 1}),
    ("closed all", None, {}),
]


@pytest.fixture(scope="module", params=[(f, e) for f in FLAVOURS for e in ENGINES],
                ids=lambda p: f"{p[0]}-{p[1]}")
def monitor(request):
    flavour, engine = request.param
    with Object.open(FLAVOURS[flavour]).load(engine=engine) as obj:
        yield flavour, obj


def _reset(obj, limit: int) -> None:
    for key in [k for k, _ in obj.maps["process_map"].items()]:
        del obj.maps["process_map"][key]
    obj.maps["limits_map"][0] = limit


def test_limit_two_gives_permit_permit_deny_and_unbinds_delete_the_entry(monitor):
    flavour, obj = monitor
    _reset(obj, 2)
    assert _portable_steps(obj) == EXPECTED
    if flavour == "cgroup":
        assert list(obj.maps["bound_sockets"].items()) == []


@pytest.mark.parametrize("limit, binds", [(0, 4), (3, 5), (1, 2)])
def test_other_limits(monitor, limit, binds):
    _, obj = monitor
    _reset(obj, limit)
    sys.path.insert(0, str(EXAMPLES))
    try:
        import bind_monitor
    finally:
        sys.path.remove(str(EXAMPLES))
    links = [attach_socket(p) for p in obj.programs.values()]
    try:
        verdicts, socks = bind_monitor.bind_sockets(binds)
        allowed = binds if limit == 0 else min(limit, binds)
        assert verdicts == ["permit"] * allowed + ["deny"] * (binds - allowed)
        assert _counts(obj) == ({} if limit == 0 else {os.getpid(): allowed})
        for s in socks:
            s.close()
        assert _counts(obj) == {}
    finally:
        for link in links:
            link.detach()


def test_windows_flavour_records_the_app_id():
    import socket

    with Object.open(FLAVOURS["bind"]).load() as obj:
        obj.maps["limits_map"][0] = 2
        with attach_socket(obj.programs["bind_monitor"]):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                entry = obj.maps["process_map"][os.getpid()]
    image = os.fsencode(os.readlink("/proc/self/exe"))[:32]
    assert bytes(entry["name"]).rstrip(b"\0") == image.rstrip(b"\0")


def test_script_runs_the_scenario():
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "bind_monitor.py"), "--json", "--flavour", "cgroup"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    pid = str(report["pid"])
    assert report["verdicts"] == ["permit", "permit", "deny"]
    assert report["after_binds"] == {pid: 2}
    assert report["after_closes"] == [{pid: 1}, {}, {}]


@pytest.fixture
def pybpf_exec(capfd):
    """``pybpf exec ARGS`` through the CLI's ``main`` in this process (the command's child
    process writes to the captured descriptors): ``(status, stdout, stderr)``."""
    from pybpf.cli.app import main

    def run(*args: str) -> tuple[int, str, str]:
        capfd.readouterr()
        with pytest.raises(SystemExit) as info:
            main(["exec", *args])
        out, err = capfd.readouterr()
        return info.value.code, out, err

    return run


SCRIPT = str(EXAMPLES / "bind_monitor.py")


@pytest.mark.parametrize(
    "flavour, programs, left",
    [
        ("cgroup", [], 0),
        ("cgroup", ["--program", "bind_monitor_bind4"], 2),  # no sock_release: nothing uncounts
        ("bind", ["--program", "bind_monitor", "--engine", "jit"], 0),
    ],
)
def test_pybpf_exec_runs_a_python_program_under_the_policy(flavour, programs, left, pybpf_exec):
    status, out, err = pybpf_exec(
        str(FLAVOURS[flavour]), *programs, "--update", "limits_map", "0", "2", "--show-maps",
        "--", "python", SCRIPT, "--plain", "--json",
    )
    assert status == 1, err  # the script's status: a bind was denied
    report = json.loads(out)
    assert report["verdicts"] == ["permit", "permit", "deny"]
    maps = json.loads(err.strip().splitlines()[-1])
    counts = {k: (v["count"] if isinstance(v, dict) else v) for k, v in maps["process_map"].items()}
    assert counts == ({str(report["pid"]): left} if left else {})


def test_pybpf_exec_status_and_errors(pybpf_exec):
    obj = str(FLAVOURS["cgroup"])
    code = "import sys; print(sys.argv[1:]); raise SystemExit(7)"
    status, out, _ = pybpf_exec(obj, "--", "python", "-c", code, "a", "-b")
    assert status == 7 and out.strip() == "['a', '-b']"
    status, _, err = pybpf_exec(obj, "--", "python", "-c", "from pybpf.errors import InputError\n"
                                "raise InputError('from the script')")
    assert status == 1 and err.rstrip().endswith("from the script")
    assert "policy.py" not in err  # the script's traceback, as python prints it


@pytest.mark.parametrize(
    "args",
    [
        ["--", "ls"],  # not a Python program
        ["--mem", "00", "--", "python", "-c", "0"],  # raw-program options with a command
        ["--program", "x"],  # --program needs a command
        ["--engine", "kernel"],  # so does the kernel engine
    ],
)
def test_pybpf_exec_refuses_what_it_cannot_run(args, capsys):
    from pybpf.cli.app import main

    with pytest.raises(SystemExit) as info:
        main(["exec", str(FLAVOURS["cgroup"]), *args])
    assert info.value.code == 2


# ---- the kernel ---------------------------------------------------------------------------
def _kernel_steps(cgroup: Path) -> tuple[list[tuple], list]:
    from pybpf import syscall as sc

    obj = Object.open(FLAVOURS["cgroup"]).load(backend="kernel")
    try:
        obj.maps["limits_map"].update(struct.pack("<I", 0), struct.pack("<I", 2))
        attach = (
            ("bind_monitor_bind4", sc.AttachType.CGROUP_INET4_BIND),
            ("bind_monitor_release", sc.AttachType.CGROUP_INET_SOCK_RELEASE),
        )
        steps: list[tuple] = []
        with contextlib.ExitStack() as stack:
            cg = stack.enter_context(
                sc.Fd(os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY), "cgroup")
            )
            for name, kind in attach:
                stack.enter_context(sc.link_create(obj.programs[name].kernel.fd, cg, kind))
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            try:
                while True:
                    line = child.stdout.readline()
                    if not line:
                        break
                    report = json.loads(line)
                    if report["step"] == "ready":
                        (cgroup / "cgroup.procs").write_text(str(report["pid"]))
                    m = obj.maps["process_map"]
                    counts = {
                        struct.unpack("<Q", k)[0]: struct.unpack("<Q", m.lookup(k))[0]
                        for k in m.keys()
                    }
                    steps.append((report["step"], report["data"], _normal(counts, report["pid"])))
                    child.stdin.write("\n")
                    child.stdin.flush()
            finally:
                child.stdin.close()
                assert child.wait(timeout=30) == 0
        return steps, list(obj.maps["bound_sockets"].keys())
    finally:
        obj.close()


@requires_bpf
@pytest.mark.parametrize("engine", ENGINES)
def test_cgroup_bind4_matches_the_kernel_on_real_binds(engine):
    try:
        with private_cgroup() as cgroup:
            kernel, left = _kernel_steps(cgroup)
    except SyscallError as err:
        if err.errno in (errno.EPERM, errno.EACCES):
            pytest.skip(f"no privilege to load or attach cgroup programs: {err}")
        raise
    with Object.open(FLAVOURS["cgroup"]).load(engine=engine) as obj:
        obj.maps["limits_map"][0] = 2
        portable = _portable_steps(obj)
        assert list(obj.maps["bound_sockets"].items()) == []
    assert kernel == portable == EXPECTED
    assert left == []


def _exec_cgroups() -> set[str]:
    from pybpf.hooks.policy import cgroup2_root

    root = cgroup2_root()
    return {p.name for p in root.glob("pybpf-exec-*")} if root else set()


@requires_bpf
def test_pybpf_exec_on_the_kernel_engine_gives_the_same_verdicts(pybpf_exec):
    before = _exec_cgroups()
    status, out, err = pybpf_exec(
        str(FLAVOURS["cgroup"]), "--engine", "kernel", "--update", "limits_map", "0", "2",
        "--show-maps", "--", "python", SCRIPT, "--plain", "--json",
    )
    if status in (2, 255) and "cgroup" in err:
        pytest.skip(f"no cgroup to run in: {err.strip()}")
    assert status == 1, err
    assert json.loads(out)["verdicts"] == ["permit", "permit", "deny"]
    maps = json.loads(err.strip().splitlines()[-1])
    assert maps["process_map"] == {} and maps["bound_sockets"] == {}
    assert maps["limits_map"] == {"0": 2}
    assert _exec_cgroups() == before  # its cgroup is gone
