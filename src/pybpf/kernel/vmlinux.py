"""vmlinux: the running kernel's BTF (``/sys/kernel/btf/vmlinux``), read once and searched by name.

The kernel backend needs the kernel's own types for what libbpf resolves against them:
the BTF ids that fentry/fexit/fmod_ret, ``tp_btf``, ``lsm`` and ``iter`` programs attach to,
typed ``__ksym`` variables and kfuncs, and CO-RE relocations. Parsing the kernel's BTF
takes a couple of seconds in Python, so :func:`kernel_btf` does it on first use and keeps
the result for the life of the process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from pybpf.btf import Func, Kind, Typedef, parse
from pybpf.btf import Spec as BTFSpec
from pybpf.errors import NotSupportedError
from pybpf.progtypes import AttachType, ProgType

__all__ = ["VMLINUX_BTF", "kernel_btf", "attach_btf_id", "kernel_version_code"]

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")

_lock = threading.Lock()
_cache: dict[str, BTFSpec] = {}


def kernel_btf(path: str | os.PathLike[str] | None = None) -> BTFSpec:
    """The kernel's BTF, parsed on first use and kept (``path`` defaults to vmlinux's).

    Raises :class:`NotSupportedError` (``feature="vmlinux BTF"``) when the kernel exposes
    no BTF (``CONFIG_DEBUG_INFO_BTF`` off, or not Linux).
    """
    key = os.fspath(path) if path is not None else os.fspath(VMLINUX_BTF)
    with _lock:
        spec = _cache.get(key)
        if spec is None:
            try:
                data = Path(key).read_bytes()
            except OSError as exc:
                raise NotSupportedError(
                    f"the kernel's BTF is not readable at {key}: {exc.strerror}",
                    feature="vmlinux BTF",
                ) from None
            spec = parse(data)
            _cache[key] = spec
    return spec


# What libbpf looks up for each attach-by-BTF program kind: a name prefix and a BTF kind.
_ATTACH_TARGETS: dict[AttachType, tuple[str, Kind]] = {
    AttachType.TRACE_RAW_TP: ("btf_trace_", Kind.TYPEDEF),
    AttachType.TRACE_ITER: ("bpf_iter_", Kind.FUNC),
    AttachType.LSM_MAC: ("bpf_lsm_", Kind.FUNC),
    AttachType.LSM_CGROUP: ("bpf_lsm_", Kind.FUNC),
    AttachType.TRACE_FENTRY: ("", Kind.FUNC),
    AttachType.TRACE_FEXIT: ("", Kind.FUNC),
    AttachType.MODIFY_RETURN: ("", Kind.FUNC),
}


def attach_btf_id(
    prog_type: ProgType, attach_type: AttachType | None, target: str, btf: BTFSpec
) -> int:
    """The kernel BTF id a tracing/LSM program attaches to (libbpf's find_attach_btf_id).

    ``target`` is what follows the section prefix (``"tcp_connect"`` for
    ``fentry/tcp_connect``). Raises :class:`NotSupportedError` when the program kind needs
    another program to attach to (``freplace``) or the kernel has no such function.
    """
    if prog_type == ProgType.EXT or attach_type is None or attach_type not in _ATTACH_TARGETS:
        raise NotSupportedError(
            f"programs of type {prog_type.name} attach to another program, not the kernel",
            feature="attach target",
        )
    prefix, kind = _ATTACH_TARGETS[attach_type]
    if not target:
        raise NotSupportedError(
            "the section names no attach target (set ProgramSpec.attach_to)",
            feature="attach target",
        )
    wanted = Typedef if kind == Kind.TYPEDEF else Func
    found = btf.find(prefix + target, wanted)
    if found is None:
        raise NotSupportedError(
            f"the kernel's BTF has no {kind.name} named {prefix + target!r}",
            feature="attach target",
        )
    return found.id


def kernel_version_code() -> int:
    """``LINUX_VERSION_CODE`` of the running kernel (from ``uname``), 0 when unknown."""
    release = os.uname().release if hasattr(os, "uname") else ""
    numbers = []
    for part in release.split(".")[:3]:
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        numbers.append(int(digits) if digits else 0)
        if not digits:
            break
    while len(numbers) < 3:
        numbers.append(0)
    major, minor, patch = numbers[:3]
    return (major << 16) | (minor << 8) | min(patch, 255)
