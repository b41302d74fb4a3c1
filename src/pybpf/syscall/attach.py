"""attach: attaching kernel programs to hooks: ``PROG_ATTACH``/``DETACH``/``QUERY`` and links.

``prog_attach`` ties a program to a target (a cgroup, a sockmap, a netns...) until
``prog_detach``; ``link_create`` returns a link :class:`~pybpf.syscall.fd.Fd` whose last
close detaches the program.
"""

from __future__ import annotations

import ctypes

from pybpf.syscall.attr import (
    LinkCreateAttr,
    LinkDetachAttr,
    ProgAttachAttr,
    ProgQueryAttr,
    address,
    in_buffer,
)
from pybpf.syscall.call import bpf
from pybpf.syscall.fd import Fd, FdLike, fd_number
from pybpf.syscall.uapi import AttachType, Cmd

__all__ = ["prog_attach", "prog_detach", "prog_query", "link_create", "link_detach"]

# Attach types whose link_create cookie lives in the ``tracing`` member, not ``perf_event``.
_TRACING = {
    AttachType.TRACE_FENTRY,
    AttachType.TRACE_FEXIT,
    AttachType.MODIFY_RETURN,
    AttachType.LSM_MAC,
    AttachType.TRACE_RAW_TP,
}


def prog_attach(
    prog_fd: FdLike,
    target_fd: FdLike,
    attach_type: AttachType | int,
    flags: int = 0,
    *,
    replace_fd: FdLike | None = None,
) -> None:
    """``BPF_PROG_ATTACH``: attach the program to ``target_fd`` (``flags``: AttachFlag)."""
    attr = ProgAttachAttr(
        target_fd=fd_number(target_fd),
        attach_bpf_fd=fd_number(prog_fd),
        attach_type=int(attach_type),
        attach_flags=int(flags),
        replace_bpf_fd=0 if replace_fd is None else fd_number(replace_fd),
    )
    bpf(Cmd.PROG_ATTACH, attr)


def prog_detach(
    target_fd: FdLike, attach_type: AttachType | int, prog_fd: FdLike | None = None
) -> None:
    """``BPF_PROG_DETACH``: detach ``prog_fd`` (or the only program) from ``target_fd``."""
    attr = ProgAttachAttr(
        target_fd=fd_number(target_fd),
        attach_bpf_fd=0 if prog_fd is None else fd_number(prog_fd),
        attach_type=int(attach_type),
    )
    bpf(Cmd.PROG_DETACH, attr)


def prog_query(
    target_fd: FdLike, attach_type: AttachType | int, query_flags: int = 0, max_progs: int = 64
) -> tuple[int, list[int]]:
    """``BPF_PROG_QUERY``: ``(attach_flags, program ids)`` attached to ``target_fd``."""
    ids = (ctypes.c_uint32 * max_progs)()
    attr = ProgQueryAttr(
        target_fd=fd_number(target_fd),
        attach_type=int(attach_type),
        query_flags=query_flags,
        prog_ids=ctypes.addressof(ids),
        prog_cnt=max_progs,
    )
    bpf(Cmd.PROG_QUERY, attr)
    return attr.attach_flags, list(ids[: min(attr.prog_cnt, max_progs)])


def link_create(
    prog_fd: FdLike,
    target_fd: FdLike | int,
    attach_type: AttachType | int,
    flags: int = 0,
    *,
    target_btf_id: int = 0,
    cookie: int = 0,
    iter_info: bytes = b"",
    relative_fd: int = 0,
    expected_revision: int = 0,
) -> Fd:
    """``BPF_LINK_CREATE``: attach through a link; closing its last fd detaches.

    ``target_fd`` is an ifindex for XDP and tcx. ``cookie`` goes to the tracing or
    perf-event member as ``attach_type`` requires; ``relative_fd``/``expected_revision``
    are tcx/netkit/cgroup ordering; ``iter_info`` is a ``union bpf_iter_link_info``.
    """
    attr = LinkCreateAttr(
        prog_fd=fd_number(prog_fd),
        target_fd=fd_number(target_fd),
        attach_type=int(attach_type),
        flags=flags,
    )
    iter_buf = in_buffer(iter_info)
    if iter_buf is not None:
        attr.tail.iter.iter_info = address(iter_buf)
        attr.tail.iter.iter_info_len = len(iter_info)
    elif attach_type in _TRACING:
        attr.tail.tracing.target_btf_id = target_btf_id
        attr.tail.tracing.cookie = cookie
    elif attach_type == AttachType.PERF_EVENT:
        attr.tail.perf_event.bpf_cookie = cookie
    elif relative_fd or expected_revision:
        attr.tail.relative.relative_fd = relative_fd
        attr.tail.relative.expected_revision = expected_revision
    else:
        attr.tail.target_btf_id = target_btf_id
    return Fd(bpf(Cmd.LINK_CREATE, attr), "link")


def link_detach(link_fd: FdLike) -> None:
    """``BPF_LINK_DETACH``: detach the link's program now (the fd stays open, defunct)."""
    bpf(Cmd.LINK_DETACH, LinkDetachAttr(link_fd=fd_number(link_fd)))
