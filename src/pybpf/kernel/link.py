"""link: kernel programs attached to their hooks as libbpf attaches them, as ``KernelLink`` objects.

:func:`attach` picks the hook from the program's type and section (libbpf's
``bpf_program__attach``): XDP and tcx programs get a ``BPF_LINK_CREATE`` link on a network
interface (rtnetlink where the kernel has no such links: XDP before 5.9, a cls_bpf filter
on a clsact qdisc before 6.6's tcx); cgroup programs a link on a cgroup directory
(``BPF_PROG_ATTACH`` with ``BPF_F_ALLOW_MULTI`` where links are refused); kprobes and
uprobes a perf event of the ``kprobe``/``uprobe`` PMU (legacy kprobes through tracefs's
``kprobe_events`` when the PMU is missing), tracepoints a perf event of the tracepoint's
id, each tied to the program by a ``BPF_PERF_EVENT`` link (``PERF_EVENT_IOC_SET_BPF`` on
older kernels); raw tracepoints and ``tp_btf`` programs ``BPF_RAW_TRACEPOINT_OPEN``;
fentry/fexit/fmod_ret/LSM programs a tracing link to the BTF id given at load.
:class:`KernelLink` mirrors :class:`pybpf.hooks.link.Link`'s interface (``id``, ``type``,
``detach()``, ``close()``, ``with``); ``pin(path)`` pins the link in a bpffs. Closing the
link's last fd detaches it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import socket
from collections.abc import Callable
from typing import Any

from pybpf.errors import InputError, NotSupportedError, SyscallError
from pybpf.kernel.probes import (
    add_legacy_kprobe,
    pmu_retprobe_bit,
    pmu_type,
    remove_legacy_kprobe,
    symbol_offset,
    tracepoint_id,
)
from pybpf.progtypes import AttachType, ProgType
from pybpf.syscall import Fd, LinkInfo, link_create, link_info, obj_pin, prog_attach, prog_detach
from pybpf.syscall.perf import (
    PERF_TYPE_TRACEPOINT,
    PerfEventAttr,
    perf_enable,
    perf_event_open,
    perf_set_bpf,
    raw_tracepoint_open,
)

__all__ = ["KernelLink", "attach", "XDP_FLAGS_SKB_MODE", "XDP_FLAGS_DRV_MODE"]

XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
_PERF_SAMPLE_RAW = 1 << 10
_ALLOW_MULTI = 1 << 1
_ENOTSUPP = 524  # the kernel-internal "operation not supported" some commands return
_LEGACY_NAMES = itertools.count()

_CGROUP_DEFAULTS = {
    ProgType.CGROUP_SKB: AttachType.CGROUP_INET_INGRESS,
    ProgType.CGROUP_SOCK: AttachType.CGROUP_INET_SOCK_CREATE,
    ProgType.SOCK_OPS: AttachType.CGROUP_SOCK_OPS,
    ProgType.CGROUP_DEVICE: AttachType.CGROUP_DEVICE,
    ProgType.CGROUP_SYSCTL: AttachType.CGROUP_SYSCTL,
}
_CGROUP_TYPES = frozenset(_CGROUP_DEFAULTS) | {
    ProgType.CGROUP_SOCK_ADDR,
    ProgType.CGROUP_SOCKOPT,
}
_TRACING_TYPES = frozenset({ProgType.TRACING, ProgType.LSM, ProgType.EXT})


class KernelLink:
    """A kernel program attached to a hook; ``detach()`` (or ``close()``, or leaving a
    ``with`` block) ends it. ``id`` is the kernel's link id (0 for an attachment that is not
    a BPF link: a perf event with the program set by ioctl, a cgroup ``PROG_ATTACH``)."""

    def __init__(
        self,
        fd: Fd | None,
        link_type: str,
        program: Any,
        target: dict[str, Any] | None = None,
        *,
        keep: tuple[Fd, ...] = (),
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        self.fd = fd
        self.type = link_type
        self.program = program
        self.target = dict(target or {})
        self._keep = keep
        self._cleanup = cleanup
        self.attached = True
        self.id = 0
        if fd is not None and link_type != "perf_event_ioctl":
            with contextlib.suppress(SyscallError):
                self.id = link_info(fd).id

    def info(self) -> LinkInfo:
        """The kernel's description of the link (``bpftool link show``'s data)."""
        if self.fd is None or self.id == 0:
            raise InputError(f"a {self.type} attachment is not a BPF link")
        return link_info(self.fd)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the link at ``path`` in a bpffs: it outlives this process until unpinned."""
        if self.fd is None or self.id == 0:
            raise InputError(f"a {self.type} attachment is not a BPF link; it cannot be pinned")
        obj_pin(self.fd, path)

    def detach(self) -> None:
        """End the attachment (idempotent): close the link and its perf event, undo the
        legacy kprobe or cgroup attachment."""
        if not self.attached:
            return
        self.attached = False
        try:
            if self.fd is not None:
                self.fd.close()
            for fd in self._keep:
                fd.close()
        finally:
            if self._cleanup is not None:
                self._cleanup()

    def close(self) -> None:
        """Same as :meth:`detach`."""
        self.detach()

    def __enter__(self) -> KernelLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"<KernelLink id={self.id} {self.type} {state}>"


def _ifindex(target: Any) -> tuple[int, str]:
    if isinstance(target, int):
        return target, socket.if_indextoname(target) if target else ""
    if isinstance(target, str) and target:
        try:
            return socket.if_nametoindex(target), target
        except OSError:
            raise InputError(f"no network interface {target!r}", path=target) from None
    raise InputError("attach needs a network interface (name or ifindex)")


def _prefix(section: str) -> str:
    return section.split("/", 1)[0]


def _perf_link(program: Any, attr: PerfEventAttr, pid: int, keep: tuple, **info) -> KernelLink:
    """Open the perf event and tie the program to it (a link, or the ioctl before 5.15)."""
    perf = perf_event_open(attr, pid=pid, cpu=0 if pid < 0 else -1, keep=keep)
    cleanup = info.pop("cleanup", None)
    try:
        fd = link_create(program.fd, perf, AttachType.PERF_EVENT)
    except SyscallError as err:
        if err.errno not in (errno.EINVAL, _ENOTSUPP):
            perf.close()
            if cleanup:
                cleanup()
            raise
        try:
            perf_set_bpf(perf, program.fd)
            perf_enable(perf)
        except SyscallError:
            perf.close()
            if cleanup:
                cleanup()
            raise
        return KernelLink(perf, "perf_event_ioctl", program, info, cleanup=cleanup)
    return KernelLink(fd, "perf_event", program, info, keep=(perf,), cleanup=cleanup)


def _probe_attr(pmu: str, name: bytes, offset: int, retprobe: bool) -> tuple[PerfEventAttr, Any]:
    buf = ctypes.create_string_buffer(name)
    attr = PerfEventAttr(
        type=pmu_type(pmu),
        config=(1 << pmu_retprobe_bit(pmu)) if retprobe else 0,
        config1=ctypes.addressof(buf),
        config2=offset,
        sample_period=1,
        wakeup_events=1,
    )
    return attr, buf


def _tracepoint_attr(tp_id: int) -> PerfEventAttr:
    return PerfEventAttr(
        type=PERF_TYPE_TRACEPOINT,
        config=tp_id,
        sample_type=_PERF_SAMPLE_RAW,
        sample_period=1,
        wakeup_events=1,
    )


def _attach_kprobe(program, function: str, offset: int, retprobe: bool, tracefs) -> KernelLink:
    info = {"function": function, "offset": offset, "retprobe": retprobe}
    try:
        attr, buf = _probe_attr("kprobe", function.encode(), offset, retprobe)
    except NotSupportedError:
        name = f"pybpf_{os.getpid()}_{next(_LEGACY_NAMES)}"
        tp_id = add_legacy_kprobe(name, function, offset, retprobe, tracefs)
        return _perf_link(
            program,
            _tracepoint_attr(tp_id),
            -1,
            (),
            cleanup=lambda: remove_legacy_kprobe(name, tracefs),
            **info,
        )
    return _perf_link(program, attr, -1, (buf,), **info)


def _attach_uprobe(program, binary, function, offset, retprobe, pid) -> KernelLink:
    if binary is None:
        raise InputError("a uprobe needs the binary (a path) to probe", program=program.name)
    path = os.fspath(binary)
    if function:
        offset += symbol_offset(path, function)
    attr, buf = _probe_attr("uprobe", os.fsencode(path), offset, retprobe)
    info = {"binary": path, "function": function or "", "offset": offset, "retprobe": retprobe}
    return _perf_link(program, attr, pid, (buf,), **info)


def _tracing_attach_type(program) -> AttachType:
    if program.attach_type is not None:
        return AttachType(program.attach_type)
    if program.type == ProgType.LSM:
        return AttachType.LSM_MAC
    return AttachType.TRACE_FENTRY


def attach(
    program: Any,
    target: Any = None,
    *,
    direction: str | None = None,
    flags: int = 0,
    function: str | None = None,
    offset: int = 0,
    retprobe: bool | None = None,
    binary: str | os.PathLike[str] | None = None,
    pid: int = -1,
    cookie: int = 0,
    tracefs: str | os.PathLike[str] | None = None,
    netlink: bool = False,
) -> KernelLink:
    """Attach a loaded :class:`~pybpf.kernel.KernelProgram` where its type says.

    ``target``: the interface (name or ifindex) for XDP and tc, the cgroup directory for
    cgroup programs, the tracepoint (``"category/name"``), raw tracepoint or kernel function
    when the section does not name it. ``direction`` (``ingress``/``egress``) for tc when
    the section does not say; ``flags`` are XDP's (``XDP_FLAGS_SKB_MODE``...); XDP uses a
    link, or rtnetlink where links are refused (or with ``netlink=True``); tc uses a tcx
    link, or (kernels before 6.6, or ``netlink=True``) a clsact qdisc and a direct-action
    cls_bpf filter through rtnetlink (the link's ``target`` then has its ``handle`` and
    ``priority``). kprobes and
    uprobes take ``function``, ``offset`` and ``retprobe`` (default from the section),
    uprobes the ``binary`` and ``pid`` (-1: every process). Raises
    :class:`~pybpf.errors.NotSupportedError` for hooks this kernel lacks and
    :class:`~pybpf.errors.SyscallError` when the kernel refuses.
    """
    ptype = program.type
    section = program.section or ""
    prefix = _prefix(section)
    named = getattr(program, "attach_to", "") or ""
    if ptype == ProgType.XDP:
        ifindex, name = _ifindex(target)
        info = {"ifindex": ifindex, "devname": name}
        if not netlink:
            try:
                fd = link_create(program.fd, ifindex, AttachType.XDP, flags)
                return KernelLink(fd, "xdp", program, info)
            except SyscallError as err:
                if err.errno != errno.EINVAL:  # kernels before 5.9 have no XDP links
                    raise
        return _attach_xdp_netlink(program, ifindex, flags, info)
    if ptype in (ProgType.SCHED_CLS, ProgType.SCHED_ACT):
        ifindex, name = _ifindex(target)
        way = direction or ("egress" if section.endswith("egress") else "ingress")
        if way not in ("ingress", "egress"):
            raise InputError(f"tc direction must be ingress or egress, not {way!r}")
        kind = AttachType.TCX_INGRESS if way == "ingress" else AttachType.TCX_EGRESS
        info = {"ifindex": ifindex, "devname": name, "direction": way}
        if not netlink:
            try:
                fd = link_create(program.fd, ifindex, kind)
                return KernelLink(fd, "tcx", program, info)
            except SyscallError as err:
                if err.errno != errno.EINVAL:  # kernels before 6.6 have no tcx
                    raise
        return _attach_tc_netlink(program, ifindex, way, info)
    if ptype in _CGROUP_TYPES:
        return _attach_cgroup(program, target)
    if ptype == ProgType.KPROBE:
        ret = retprobe if retprobe is not None else prefix in ("kretprobe", "uretprobe")
        if prefix in ("uprobe", "uretprobe") or binary is not None:
            spec = named if ":" in named else ""
            if spec and binary is None:
                binary, _, name = spec.rpartition(":")
                function = function or name
            return _attach_uprobe(program, binary, function, offset, ret, pid)
        func = function or (target if isinstance(target, str) else "") or named
        if not func:
            raise InputError("a kprobe needs a kernel function", program=program.name)
        return _attach_kprobe(program, func, offset, ret, tracefs)
    if ptype == ProgType.TRACEPOINT:
        name = target if isinstance(target, str) else named
        category, _, event = name.partition("/")
        if not event:
            raise InputError(f"tracepoint {name!r} is not category/name", program=program.name)
        tp_id = tracepoint_id(category, event, tracefs)
        return _perf_link(program, _tracepoint_attr(tp_id), -1, (), tracepoint=name)
    if ptype in (ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE):
        name = target if isinstance(target, str) else named
        if not name:
            raise InputError("a raw tracepoint needs its name", program=program.name)
        fd = raw_tracepoint_open(name, program.fd, cookie)
        return KernelLink(fd, "raw_tracepoint", program, {"tp_name": name})
    if ptype in _TRACING_TYPES:
        kind = _tracing_attach_type(program)
        if kind == AttachType.TRACE_RAW_TP:
            fd = raw_tracepoint_open(None, program.fd, cookie)
        else:
            fd = link_create(program.fd, 0, kind, cookie=cookie)
        return KernelLink(
            fd, "tracing", program, {"attach_type": kind.name.lower(), "target": named}
        )
    raise NotSupportedError(
        f"attaching {ptype.name if ptype else 'untyped'} programs is not supported",
        feature="attach",
        program=program.name,
    )


def _attach_xdp_netlink(program: Any, ifindex: int, flags: int, info: dict) -> KernelLink:
    """XDP through rtnetlink; detaching removes the program only while it is still ours."""
    from pybpf.kernel.netlink import XDP_FLAGS_UPDATE_IF_NOEXIST, xdp_query, xdp_set

    xdp_set(ifindex, program.fd.fileno(), flags | XDP_FLAGS_UPDATE_IF_NOEXIST)
    prog_id = program.info().id

    def undo() -> None:
        if xdp_query(ifindex) == prog_id:
            xdp_set(ifindex, -1, flags)

    return KernelLink(None, "xdp_netlink", program, info, cleanup=undo)


def _attach_tc_netlink(program: Any, ifindex: int, way: str, info: dict) -> KernelLink:
    """tc through rtnetlink (libbpf's ``bpf_tc_hook_create`` + ``bpf_tc_attach``): a clsact
    qdisc (kept if it was there) and a direct-action ``bpf`` filter; detaching deletes the
    filter while it still runs this program (the qdisc stays, as with libbpf)."""
    from pybpf.kernel.netlink import tc_attach, tc_detach, tc_hook_create, tc_query

    tc_hook_create(ifindex)
    handle, priority = tc_attach(ifindex, way, program.fd.fileno(), program.name or "")
    prog_id = program.info().id
    info = {**info, "handle": handle, "priority": priority}

    def undo() -> None:
        if tc_query(ifindex, way, handle, priority) == prog_id:
            with contextlib.suppress(SyscallError):
                tc_detach(ifindex, way, handle, priority)

    return KernelLink(None, "tc_netlink", program, info, cleanup=undo)


def _attach_cgroup(program: Any, target: Any) -> KernelLink:
    if target is None:
        raise InputError("a cgroup program needs the cgroup directory", program=program.name)
    kind = program.attach_type
    if kind is None:
        kind = _CGROUP_DEFAULTS.get(program.type)
    if kind is None:
        raise InputError(
            f"{program.type.name} programs need an attach type (from the section)",
            program=program.name,
        )
    path = os.fspath(target)
    try:
        cgroup = Fd(os.open(path, os.O_RDONLY | os.O_DIRECTORY), "cgroup")
    except OSError as exc:
        raise InputError(f"cannot open cgroup {path}: {exc.strerror}", path=path) from None
    info = {"cgroup": path, "attach_type": AttachType(kind).name.lower()}
    with cgroup:
        try:
            fd = link_create(program.fd, cgroup, kind)
        except SyscallError as err:
            if err.errno != errno.EINVAL:
                raise
            prog_attach(program.fd, cgroup, kind, _ALLOW_MULTI)
            held = cgroup.dup()

            def undo() -> None:
                with held:
                    with contextlib.suppress(SyscallError):
                        prog_detach(held, kind, program.fd)

            return KernelLink(None, "cgroup_attach", program, info, cleanup=undo)
    return KernelLink(fd, "cgroup", program, info)
