"""Program type ids: Linux's ``bpf_prog_type`` and ``bpf_attach_type``, and eBPF for Windows' types.

Linux types keep their kernel values, so a program typed here can be loaded into Linux as
is. eBPF-for-Windows program types whose context differs from Linux's (its ``xdp_md`` holds
64-bit pointers; ``bind`` has no Linux counterpart) get pybpf-only values at
``WINDOWS_BASE + efW's id``: they run on the portable backend only.

Every type's *name* is bpftool's (``socket_filter``, ``sched_cls``, ``xdp``, ...): the enum
member name in lower case. Windows types are named ``bind`` and ``windows_<type>``.
"""

from __future__ import annotations

from enum import IntEnum

from pybpf.errors import InputError

__all__ = ["ProgType", "AttachType", "WINDOWS_BASE"]

WINDOWS_BASE = 0x10000  # pybpf-only ids: WINDOWS_BASE + ebpf_program_type_t of eBPF for Windows


class ProgType(IntEnum):
    """A program type: Linux ``BPF_PROG_TYPE_*`` values, then eBPF-for-Windows types."""

    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32
    # eBPF for Windows (ebpf_structs.h: XDP=1, BIND=2, CGROUP_SOCK_ADDR=3, SOCK_OPS=4, SAMPLE=999)
    WINDOWS_XDP = WINDOWS_BASE + 1
    BIND = WINDOWS_BASE + 2
    WINDOWS_CGROUP_SOCK_ADDR = WINDOWS_BASE + 3
    WINDOWS_SOCK_OPS = WINDOWS_BASE + 4
    WINDOWS_SAMPLE = WINDOWS_BASE + 999

    @property
    def type_name(self) -> str:
        """bpftool's name of the type (``"sched_cls"``; ``"bind"``, ``"windows_xdp"``)."""
        return self.name.lower()

    @property
    def is_linux(self) -> bool:
        """True for the types the Linux kernel knows (and can load)."""
        return self < WINDOWS_BASE

    @property
    def is_windows(self) -> bool:
        """True for eBPF-for-Windows types (portable backend only)."""
        return self >= WINDOWS_BASE

    @property
    def windows_id(self) -> int | None:
        """eBPF for Windows' ``ebpf_program_type_t`` value, or ``None`` for Linux types."""
        return int(self) - WINDOWS_BASE if self.is_windows else None

    @classmethod
    def from_name(cls, name: str) -> ProgType:
        """The type named ``name`` (bpftool's name, any case; ``BPF_PROG_TYPE_`` prefix allowed).

        An unknown name raises :class:`~pybpf.errors.InputError` with ``field="prog_type"``.
        """
        key = name.strip().upper().removeprefix("BPF_PROG_TYPE_")
        try:
            return cls[key]
        except KeyError:
            raise InputError(f"unknown program type {name!r}", field="prog_type") from None


class AttachType(IntEnum):
    """Linux ``enum bpf_attach_type`` (``BPF_`` prefix dropped), plus Windows attach types."""

    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    CGROUP_INET_SOCK_CREATE = 2
    CGROUP_SOCK_OPS = 3
    SK_SKB_STREAM_PARSER = 4
    SK_SKB_STREAM_VERDICT = 5
    CGROUP_DEVICE = 6
    SK_MSG_VERDICT = 7
    CGROUP_INET4_BIND = 8
    CGROUP_INET6_BIND = 9
    CGROUP_INET4_CONNECT = 10
    CGROUP_INET6_CONNECT = 11
    CGROUP_INET4_POST_BIND = 12
    CGROUP_INET6_POST_BIND = 13
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP6_SENDMSG = 15
    LIRC_MODE2 = 16
    FLOW_DISSECTOR = 17
    CGROUP_SYSCTL = 18
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_UDP6_RECVMSG = 20
    CGROUP_GETSOCKOPT = 21
    CGROUP_SETSOCKOPT = 22
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    MODIFY_RETURN = 26
    LSM_MAC = 27
    TRACE_ITER = 28
    CGROUP_INET4_GETPEERNAME = 29
    CGROUP_INET6_GETPEERNAME = 30
    CGROUP_INET4_GETSOCKNAME = 31
    CGROUP_INET6_GETSOCKNAME = 32
    XDP_DEVMAP = 33
    CGROUP_INET_SOCK_RELEASE = 34
    XDP_CPUMAP = 35
    SK_LOOKUP = 36
    XDP = 37
    SK_SKB_VERDICT = 38
    SK_REUSEPORT_SELECT = 39
    SK_REUSEPORT_SELECT_OR_MIGRATE = 40
    PERF_EVENT = 41
    TRACE_KPROBE_MULTI = 42
    LSM_CGROUP = 43
    STRUCT_OPS = 44
    NETFILTER = 45
    TCX_INGRESS = 46
    TCX_EGRESS = 47
    TRACE_UPROBE_MULTI = 48
    CGROUP_UNIX_CONNECT = 49
    CGROUP_UNIX_SENDMSG = 50
    CGROUP_UNIX_RECVMSG = 51
    CGROUP_UNIX_GETPEERNAME = 52
    CGROUP_UNIX_GETSOCKNAME = 53
    NETKIT_PRIMARY = 54
    NETKIT_PEER = 55
    TRACE_KPROBE_SESSION = 56
    TRACE_UPROBE_SESSION = 57
    # eBPF for Windows (bpf_attach_type_t): XDP=1, BIND=2, sock_addr 3-6 and 12-17, SOCK_OPS=7
    WINDOWS_XDP = WINDOWS_BASE + 1
    WINDOWS_BIND = WINDOWS_BASE + 2
    WINDOWS_CGROUP_INET4_CONNECT = WINDOWS_BASE + 3
    WINDOWS_CGROUP_INET6_CONNECT = WINDOWS_BASE + 4
    WINDOWS_CGROUP_INET4_RECV_ACCEPT = WINDOWS_BASE + 5
    WINDOWS_CGROUP_INET6_RECV_ACCEPT = WINDOWS_BASE + 6
    WINDOWS_CGROUP_SOCK_OPS = WINDOWS_BASE + 7
    WINDOWS_SAMPLE = WINDOWS_BASE + 8
    WINDOWS_CGROUP_INET4_CONNECT_AUTHORIZATION = WINDOWS_BASE + 12
    WINDOWS_CGROUP_INET6_CONNECT_AUTHORIZATION = WINDOWS_BASE + 13
    WINDOWS_CGROUP_INET4_BIND = WINDOWS_BASE + 14
    WINDOWS_CGROUP_INET6_BIND = WINDOWS_BASE + 15
    WINDOWS_CGROUP_INET4_LISTEN = WINDOWS_BASE + 16
    WINDOWS_CGROUP_INET6_LISTEN = WINDOWS_BASE + 17

    @property
    def is_linux(self) -> bool:
        """True for the attach types the Linux kernel knows."""
        return self < WINDOWS_BASE
