"""Test support for tests that need the Linux kernel's bpf(): the probe, skip reason and sandboxes.

``BPF_UNAVAILABLE`` is ``None`` where bpf() works (a tiny array map can be created) and the
reason otherwise (not Linux, errno name); ``requires_bpf`` skips with that reason.
``private_bpffs()`` and ``private_cgroup()`` give a directory of this test process's own,
removed afterwards, so tests never touch pins or cgroups they did not make.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybpf.errors import NotSupportedError, SyscallError

BPF_FS = Path("/sys/fs/bpf")


def _probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"bpf() exists only on Linux (this is {sys.platform})"
    from pybpf import syscall

    try:
        with syscall.map_create(syscall.MapType.ARRAY, 4, 4, 1):
            return None
    except NotSupportedError as err:
        return f"bpf() is not supported here: {err}"
    except SyscallError as err:
        name = errno.errorcode.get(err.errno, str(err.errno))
        return f"bpf() refused a tiny array map: {name} ({err.strerror})"


BPF_UNAVAILABLE = _probe()
requires_bpf = pytest.mark.skipif(BPF_UNAVAILABLE is not None, reason=BPF_UNAVAILABLE or "")


def reference_kernel_skip(
    table: str, reference: tuple[int, int], *, machine: str | None = None
) -> str | None:
    """Why a test comparing ``table`` (checked against Linux ``reference``, as (major,
    minor), on ``machine`` when given) with the running kernel cannot run here, or None:
    no bpf(), not root (probing every program type needs it), another machine or
    another kernel release."""
    if BPF_UNAVAILABLE is not None:
        return BPF_UNAVAILABLE
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "probing every program type needs root"
    if machine is not None and os.uname().machine != machine:
        return f"{table} was checked on {machine}; this machine is {os.uname().machine}"
    release = os.uname().release
    try:
        major, minor = (int(part) for part in release.split("-")[0].split(".")[:2])
    except ValueError:
        return f"cannot read the kernel release {release!r}"
    if (major, minor) != reference:
        return f"{table} is Linux {reference}'s; this kernel is {release}"
    return None


def _mounts() -> list[tuple[str, str]]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            out.append((fields[1], fields[2]))
    return out


def _mount(source: bytes, target: bytes, fstype: bytes) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source, target, fstype, 0, None) != 0:
        return ctypes.get_errno()
    return 0


def _umount(target: bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(target, 2)  # MNT_DETACH


@contextlib.contextmanager
def private_bpffs() -> Iterator[Path]:
    """A fresh directory in a bpffs: ``/sys/fs/bpf/pybpf-test-<pid>`` when /sys/fs/bpf is a
    bpffs, else a private bpffs mounted on a temporary directory. Skips if neither works."""
    if (str(BPF_FS), "bpf") in _mounts():
        path = BPF_FS / f"pybpf-test-{os.getpid()}"
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
        return
    mountpoint = tempfile.mkdtemp(prefix="pybpf-bpffs-")
    err = _mount(b"bpf", os.fsencode(mountpoint), b"bpf")
    if err:
        os.rmdir(mountpoint)
        pytest.skip(f"no bpffs: /sys/fs/bpf is not one and mount failed ({errno.errorcode[err]})")
    try:
        yield Path(mountpoint)
    finally:
        _umount(os.fsencode(mountpoint))
        os.rmdir(mountpoint)


@contextlib.contextmanager
def private_cgroup() -> Iterator[Path]:
    """A new, empty cgroup-v2 directory of this process's own, removed afterwards."""
    roots = [Path(point) for point, kind in _mounts() if kind == "cgroup2"]
    for root in roots:
        path = root / f"pybpf-test-{os.getpid()}"
        try:
            path.mkdir()
        except OSError:
            continue
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                path.rmdir()
        return
    pytest.skip("no writable cgroup v2 hierarchy")


def open_fds() -> set[int]:
    """This process's open file descriptors (Linux)."""
    return {int(name) for name in os.listdir("/proc/self/fd")}


@contextlib.contextmanager
def tracefs() -> Iterator[Path]:
    """A tracefs: the mounted one, else a private mount on a temporary directory (unmounted
    afterwards). Skips if neither works."""
    for point, kind in _mounts():
        if kind == "tracefs":
            yield Path(point)
            return
    mountpoint = tempfile.mkdtemp(prefix="pybpf-tracefs-")
    err = _mount(b"nodev", os.fsencode(mountpoint), b"tracefs")
    if err:
        os.rmdir(mountpoint)
        pytest.skip(f"no tracefs: none mounted and mount failed ({errno.errorcode[err]})")
    try:
        yield Path(mountpoint)
    finally:
        _umount(os.fsencode(mountpoint))
        os.rmdir(mountpoint)


@contextlib.contextmanager
def veth_in_netns() -> Iterator[tuple[str, str, str]]:
    """A veth pair: ``(outer, netns, inner)``, ``outer`` (up) in this namespace and its peer
    ``inner`` (up, 10.211.0.2/24) in a new network namespace ``netns``; both removed
    afterwards. Skips without ``ip`` or the rights to make them."""
    import subprocess

    tag = f"{os.getpid() % 100000}"
    outer, inner, netns = f"pbo{tag}", f"pbi{tag}", f"pybpf-test-{tag}"

    def ip(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)

    if shutil.which("ip") is None:
        pytest.skip("no ip command (iproute2)")
    made = ip("netns", "add", netns)
    if made.returncode:
        pytest.skip(f"cannot make a network namespace: {made.stderr.strip()}")
    try:
        steps = [
            ("link", "add", outer, "type", "veth", "peer", "name", inner),
            ("link", "set", inner, "netns", netns),
            ("link", "set", outer, "up"),
            ("-n", netns, "addr", "add", "10.211.0.2/24", "dev", inner),
            ("-n", netns, "link", "set", inner, "up"),
        ]
        for step in steps:
            done = ip(*step)
            if done.returncode:
                pytest.skip(f"cannot set up a veth pair: ip {' '.join(step)}: {done.stderr}")
        yield outer, netns, inner
    finally:
        ip("link", "del", outer)
        ip("netns", "del", netns)
