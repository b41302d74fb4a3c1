"""Context layouts: each program type's context fields, return range and privilege, as data.

For every program type: the context struct's size and fields (offset, size, whether the
program may read or write it, and what it means: plain data, the packet start, end or
metadata pointer, or another kernel pointer), the range a program must return (Linux's
``check_return_code``; ``None`` when any value goes), and whether the type is
*privileged* (pointer comparisons and leaks allowed, as for tracing programs). Layouts
are Linux's UAPI structs (``linux/bpf.h``); eBPF for Windows' ``bind`` and ``xdp`` use its
own structs (64-bit pointers). ``bpf_sock`` is also the layout of the socket pointers
helpers such as ``sk_lookup_tcp`` return. :data:`HELPER_CONTEXTS` lists the helpers that
only some contexts may call (Linux gives them to those program types only);
:data:`HELPERS_BY_TYPE` the helpers of each type and :data:`ACCESS_BY_TYPE` which context bytes
each type may load and store, at which sizes (:func:`context_access_allowed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pybpf.progtypes.ids import ProgType

__all__ = [
    "FieldKind",
    "Field",
    "ContextLayout",
    "ProgramRules",
    "LAYOUTS",
    "RULES",
    "SOCK_LAYOUT",
    "rules_for",
    "HELPER_CONTEXTS",
    "helper_allowed",
    "HELPERS_BY_TYPE",
    "helper_allowed_for",
    "Access",
    "ACCESS_BY_TYPE",
    "context_access_allowed",
]


class FieldKind(Enum):
    """What a context field holds."""

    SCALAR = "scalar"
    PACKET = "packet"  # start of packet data (``data``)
    PACKET_END = "packet_end"  # one past the end (``data_end``)
    PACKET_META = "packet_meta"  # start of metadata (``data_meta``)
    POINTER = "pointer"  # another kernel pointer (``sk``, ``flow_keys``): never loaded as data


@dataclass(frozen=True, slots=True)
class Field:
    """One context field: ``[offset, offset + size)``."""

    name: str
    offset: int
    size: int
    read: bool = True
    write: bool = False
    kind: FieldKind = FieldKind.SCALAR

    @property
    def end(self) -> int:
        """One past the field's last byte."""
        return self.offset + self.size


@dataclass(frozen=True, slots=True)
class ContextLayout:
    """A context struct. ``fields`` empty means an opaque read-only (or free) byte array."""

    name: str
    size: int
    fields: tuple[Field, ...] = ()
    writable: bool = True  # for opaque layouts: may the program write anywhere

    def field_of(self, kind: FieldKind) -> Field | None:
        """The field with that meaning, if any."""
        return next((f for f in self.fields if f.kind == kind), None)

    def _offset(self, kind: FieldKind) -> int:
        f = self.field_of(kind)
        return -1 if f is None else f.offset

    @property
    def data(self) -> int:
        """Offset of the packet start pointer, or -1."""
        return self._offset(FieldKind.PACKET)

    @property
    def end(self) -> int:
        """Offset of the packet end pointer, or -1."""
        return self._offset(FieldKind.PACKET_END)

    @property
    def meta(self) -> int:
        """Offset of the packet metadata pointer, or -1."""
        return self._offset(FieldKind.PACKET_META)

    @property
    def packet_pointer_size(self) -> int:
        """Size of the packet pointer fields (4 in Linux's ``__sk_buff``/``xdp_md``)."""
        f = self.field_of(FieldKind.PACKET)
        return 0 if f is None else f.size

    def pointer_fields(self) -> tuple[Field, ...]:
        """Fields holding pointers (packet start/end/meta and others)."""
        return tuple(f for f in self.fields if f.kind != FieldKind.SCALAR)

    def fields_overlapping(self, lo: int, hi: int) -> list[Field]:
        """Fields sharing a byte with ``[lo, hi)``."""
        return [f for f in self.fields if f.offset < hi and lo < f.end]

    def may_write(self, lo: int, hi: int) -> bool:
        """Writing ``[lo, hi)`` is allowed: inside the struct and only writable fields."""
        if lo < 0 or hi > self.size:
            return False
        if not self.fields:
            return self.writable
        covered = self.fields_overlapping(lo, hi)
        if not covered or not all(f.write and f.kind == FieldKind.SCALAR for f in covered):
            return False
        return covered[0].offset <= lo and hi <= covered[-1].end


def _f(name: str, offset: int, size: int = 4, rw: str = "r", kind: str = "scalar") -> Field:
    return Field(name, offset, size, "r" in rw, "w" in rw, FieldKind(kind))


def _array(name: str, offset: int, count: int, rw: str = "r", size: int = 4) -> list[Field]:
    return [_f(f"{name}[{i}]", offset + i * size, size, rw) for i in range(count)]


_SK_BUFF = ContextLayout(
    "__sk_buff",
    192,
    tuple(
        [
            _f("len", 0),
            _f("pkt_type", 4),
            _f("mark", 8, rw="rw"),
            _f("queue_mapping", 12, rw="rw"),
            _f("protocol", 16),
            _f("vlan_present", 20),
            _f("vlan_tci", 24),
            _f("vlan_proto", 28),
            _f("priority", 32, rw="rw"),
            _f("ingress_ifindex", 36),
            _f("ifindex", 40),
            _f("tc_index", 44, rw="rw"),
            *_array("cb", 48, 5, "rw"),
            _f("hash", 68),
            _f("tc_classid", 72, rw="rw"),
            _f("data", 76, kind="packet"),
            _f("data_end", 80, kind="packet_end"),
            _f("napi_id", 84),
            _f("family", 88),
            _f("remote_ip4", 92),
            _f("local_ip4", 96),
            *_array("remote_ip6", 100, 4),
            *_array("local_ip6", 116, 4),
            _f("remote_port", 132),
            _f("local_port", 136),
            _f("data_meta", 140, kind="packet_meta"),
            _f("flow_keys", 144, 8, kind="pointer"),
            _f("tstamp", 152, 8, rw="rw"),
            _f("wire_len", 160),
            _f("gso_segs", 164),
            _f("sk", 168, 8, kind="pointer"),
            _f("gso_size", 176),
            _f("tstamp_type", 180, 1),
            _f("hwtstamp", 184, 8),
        ]
    ),
)

_XDP_MD = ContextLayout(
    "xdp_md",
    24,
    (
        _f("data", 0, kind="packet"),
        _f("data_end", 4, kind="packet_end"),
        _f("data_meta", 8, kind="packet_meta"),
        _f("ingress_ifindex", 12),
        _f("rx_queue_index", 16),
        _f("egress_ifindex", 20),
    ),
)

SOCK_LAYOUT = ContextLayout(
    "bpf_sock",
    80,
    (
        _f("bound_dev_if", 0, rw="rw"),
        _f("family", 4),
        _f("type", 8),
        _f("protocol", 12),
        _f("mark", 16, rw="rw"),
        _f("priority", 20, rw="rw"),
        _f("src_ip4", 24),
        *_array("src_ip6", 28, 4),
        _f("src_port", 44),
        _f("dst_port", 48, 2),
        _f("dst_ip4", 52),
        *_array("dst_ip6", 56, 4),
        _f("state", 72),
        _f("rx_queue_mapping", 76),
    ),
)

_SOCK_ADDR = ContextLayout(
    "bpf_sock_addr",
    72,
    (
        _f("user_family", 0),
        _f("user_ip4", 4, rw="rw"),
        *_array("user_ip6", 8, 4, "rw"),
        _f("user_port", 24, rw="rw"),
        _f("family", 28),
        _f("type", 32),
        _f("protocol", 36),
        _f("msg_src_ip4", 40, rw="rw"),
        *_array("msg_src_ip6", 44, 4, "rw"),
        _f("sk", 64, 8, kind="pointer"),
    ),
)

_SOCK_OPS_NAMES = (
    "family remote_ip4 local_ip4 remote_ip6[0] remote_ip6[1] remote_ip6[2] remote_ip6[3] "
    "local_ip6[0] local_ip6[1] local_ip6[2] local_ip6[3] remote_port local_port is_fullsock "
    "snd_cwnd srtt_us bpf_sock_ops_cb_flags state rtt_min snd_ssthresh rcv_nxt snd_nxt snd_una "
    "mss_cache ecn_flags rate_delivered rate_interval_us packets_out retrans_out total_retrans "
    "segs_in data_segs_in segs_out data_segs_out lost_out sacked_out"
).split()
_SOCK_OPS = ContextLayout(
    "bpf_sock_ops",
    224,
    tuple(
        [
            _f("op", 0),
            _f("args[0]", 4, rw="rw"),  # also ``reply``: the one writable argument
            *[_f(f"args[{i}]", 4 + 4 * i) for i in (1, 2, 3)],
            *[_f(name, 20 + 4 * i) for i, name in enumerate(_SOCK_OPS_NAMES)],
            _f("sk_txhash", 164, rw="rw"),
            _f("bytes_received", 168, 8),
            _f("bytes_acked", 176, 8),
            _f("sk", 184, 8, kind="pointer"),
            _f("skb_data", 192, 8, kind="packet"),
            _f("skb_data_end", 200, 8, kind="packet_end"),
            _f("skb_len", 208),
            _f("skb_tcp_flags", 212),
            _f("skb_hwtstamp", 216, 8),
        ]
    ),
)

_SK_MSG_MD = ContextLayout(
    "sk_msg_md",
    80,
    (
        _f("data", 0, 8, kind="packet"),
        _f("data_end", 8, 8, kind="packet_end"),
        _f("family", 16),
        _f("remote_ip4", 20),
        _f("local_ip4", 24),
        *_array("remote_ip6", 28, 4),
        *_array("local_ip6", 44, 4),
        _f("remote_port", 60),
        _f("local_port", 64),
        _f("size", 68),
        _f("sk", 72, 8, kind="pointer"),
    ),
)

_SK_REUSEPORT = ContextLayout(
    "sk_reuseport_md",
    56,
    (
        _f("data", 0, 8, kind="packet"),
        _f("data_end", 8, 8, kind="packet_end"),
        _f("len", 16),
        _f("eth_protocol", 20),
        _f("ip_protocol", 24),
        _f("bind_inany", 28),
        _f("hash", 32),
        _f("sk", 40, 8, kind="pointer"),
        _f("migrating_sk", 48, 8, kind="pointer"),
    ),
)

_SOCKOPT = ContextLayout(
    "bpf_sockopt",
    40,
    (
        _f("sk", 0, 8, kind="pointer"),
        _f("optval", 8, 8, kind="packet"),
        _f("optval_end", 16, 8, kind="packet_end"),
        _f("level", 24, rw="rw"),
        _f("optname", 28, rw="rw"),
        _f("optlen", 32, rw="rw"),
        _f("retval", 36, rw="rw"),
    ),
)

_SK_LOOKUP = ContextLayout(
    "bpf_sk_lookup",
    72,
    (
        _f("sk", 0, 8, kind="pointer"),
        _f("family", 8),
        _f("protocol", 12),
        _f("remote_ip4", 16),
        *_array("remote_ip6", 20, 4),
        _f("remote_port", 36),
        _f("local_ip4", 40),
        *_array("local_ip6", 44, 4),
        _f("local_port", 60),
        _f("ingress_ifindex", 64),
    ),
)

_CGROUP_DEV = ContextLayout(
    "bpf_cgroup_dev_ctx", 12, (_f("access_type", 0), _f("major", 4), _f("minor", 8))
)
_SYSCTL = ContextLayout("bpf_sysctl", 8, (_f("write", 0), _f("file_pos", 4, rw="rw")))
_LIRC = ContextLayout("lirc_mode2_sample", 4, (_f("sample", 0),))
_NF_CTX = ContextLayout(
    "bpf_nf_ctx", 16, (_f("state", 0, 8, kind="pointer"), _f("skb", 8, 8, kind="pointer"))
)
# Tracing contexts: opaque, read-only byte arrays (sizes as PREVAIL bounds them).
_PT_REGS = ContextLayout("pt_regs", (3 + 63 + 8 + 2) * 8, writable=False)
_TRACEPOINT = ContextLayout("tracepoint", 2048, writable=False)
_PERF_EVENT = ContextLayout("bpf_perf_event_data", 3 * 8 + (3 + 63 + 8 + 2) * 8, writable=False)
_RAW_TP = ContextLayout("bpf_raw_tracepoint_args", 12 * 8, writable=False)
_RAW_TP_WRITABLE = ContextLayout("bpf_raw_tracepoint_args", 12 * 8, writable=True)
_TRACING = ContextLayout("tracing_args", 12 * 8, writable=False)
_SYSCALL = ContextLayout("syscall_ctx", 65535, writable=True)

# eBPF for Windows (64-bit pointers).
_BIND_MD = ContextLayout(
    "bind_md",
    56,
    (
        _f("app_id_start", 0, 8, kind="packet"),
        _f("app_id_end", 8, 8, kind="packet_end"),
        _f("process_id", 16, 8),
        _f("socket_address", 24, 16, rw="rw"),  # a SOCKADDR: read as sockaddr_in fields
        _f("socket_address_length", 40, 1),
        _f("operation", 44),
        _f("protocol", 48, 1),
    ),
)
_WIN_XDP_MD = ContextLayout(
    "xdp_md_t",
    32,
    (
        _f("data", 0, 8, kind="packet"),
        _f("data_end", 8, 8, kind="packet_end"),
        _f("data_meta", 16, 8, kind="packet_meta"),
        _f("ingress_ifindex", 24),
    ),
)

LAYOUTS: dict[str, ContextLayout] = {
    layout.name: layout
    for layout in (
        _SK_BUFF,
        _XDP_MD,
        SOCK_LAYOUT,
        _SOCK_ADDR,
        _SOCK_OPS,
        _SK_MSG_MD,
        _SK_REUSEPORT,
        _SOCKOPT,
        _SK_LOOKUP,
        _CGROUP_DEV,
        _SYSCTL,
        _LIRC,
        _NF_CTX,
        _PT_REGS,
        _TRACEPOINT,
        _PERF_EVENT,
        _RAW_TP,
        _TRACING,
        _SYSCALL,
        _BIND_MD,
        _WIN_XDP_MD,
    )
}
"""Every layout by struct name."""


@dataclass(frozen=True, slots=True)
class ProgramRules:
    """What the verifier enforces for one program type."""

    prog_type: ProgType
    context: ContextLayout
    return_range: tuple[int, int] | None = None
    privileged: bool = False


def _rules(t: ProgType, ctx: ContextLayout, ret=None, privileged: bool = False) -> ProgramRules:
    return ProgramRules(t, ctx, ret, privileged)


_T = ProgType
RULES: dict[ProgType, ProgramRules] = {
    r.prog_type: r
    for r in (
        _rules(_T.SOCKET_FILTER, _SK_BUFF),
        _rules(_T.SCHED_CLS, _SK_BUFF),
        _rules(_T.SCHED_ACT, _SK_BUFF),
        _rules(_T.CGROUP_SKB, _SK_BUFF, (0, 3)),
        _rules(_T.LWT_IN, _SK_BUFF),
        _rules(_T.LWT_OUT, _SK_BUFF),
        _rules(_T.LWT_XMIT, _SK_BUFF),
        _rules(_T.LWT_SEG6LOCAL, _SK_BUFF),
        _rules(_T.SK_SKB, _SK_BUFF),
        _rules(_T.FLOW_DISSECTOR, _SK_BUFF),
        _rules(_T.XDP, _XDP_MD),
        _rules(_T.KPROBE, _PT_REGS, privileged=True),
        _rules(_T.TRACEPOINT, _TRACEPOINT),
        _rules(_T.PERF_EVENT, _PERF_EVENT),
        _rules(_T.RAW_TRACEPOINT, _RAW_TP, privileged=True),
        _rules(_T.RAW_TRACEPOINT_WRITABLE, _RAW_TP_WRITABLE, privileged=True),
        _rules(_T.TRACING, _TRACING, privileged=True),
        _rules(_T.LSM, _TRACING, privileged=True),
        _rules(_T.STRUCT_OPS, _TRACING, privileged=True),
        _rules(_T.EXT, _TRACING, privileged=True),
        _rules(_T.SYSCALL, _SYSCALL, privileged=True),
        _rules(_T.CGROUP_SOCK, SOCK_LAYOUT, (0, 1)),
        _rules(_T.CGROUP_SOCK_ADDR, _SOCK_ADDR, (0, 1)),
        _rules(_T.SOCK_OPS, _SOCK_OPS, (0, 1)),
        _rules(_T.SK_MSG, _SK_MSG_MD),
        _rules(_T.SK_REUSEPORT, _SK_REUSEPORT),
        _rules(_T.CGROUP_SOCKOPT, _SOCKOPT, (0, 1)),
        _rules(_T.SK_LOOKUP, _SK_LOOKUP, (0, 1)),
        _rules(_T.CGROUP_DEVICE, _CGROUP_DEV, (0, 1)),
        _rules(_T.CGROUP_SYSCTL, _SYSCTL, (0, 1)),
        _rules(_T.LIRC_MODE2, _LIRC),
        _rules(_T.NETFILTER, _NF_CTX, (0, 1)),
        _rules(_T.BIND, _BIND_MD),
        _rules(_T.WINDOWS_XDP, _WIN_XDP_MD),
    )
}
"""The rules of every program type pybpf can verify, by type."""


def rules_for(prog_type: ProgType) -> ProgramRules | None:
    """The rules of a program type, or ``None`` when pybpf has no context layout for it."""
    return RULES.get(prog_type)


_SKB, _XDP, _SOCK_OPS_N, _SOCK_ADDR_N = "__sk_buff", "xdp_md", "bpf_sock_ops", "bpf_sock_addr"
_SKB_ONLY = (
    "skb_store_bytes l3_csum_replace l4_csum_replace clone_redirect get_cgroup_classid "
    "skb_vlan_push skb_vlan_pop skb_get_tunnel_key skb_set_tunnel_key get_route_realm "
    "skb_load_bytes skb_get_tunnel_opt skb_set_tunnel_opt skb_change_proto skb_change_type "
    "skb_under_cgroup get_hash_recalc skb_change_tail skb_pull_data csum_update "
    "set_hash_invalid skb_change_head set_hash skb_adjust_room sk_redirect_map "
    "skb_get_xfrm_state skb_load_bytes_relative sk_redirect_hash lwt_push_encap "
    "lwt_seg6_store_bytes lwt_seg6_adjust_srh lwt_seg6_action skb_cgroup_id "
    "skb_ancestor_cgroup_id get_socket_uid skb_ecn_set_ce skb_output skb_set_tstamp "
    "skb_cgroup_classid"
).split()
_XDP_ONLY = "xdp_adjust_head xdp_adjust_meta xdp_adjust_tail xdp_get_buff_len".split()
_XDP_ONLY += "xdp_load_bytes xdp_store_bytes xdp_output".split()
_SOCK_OPS_ONLY = "sock_map_update sock_hash_update sock_ops_cb_flags_set".split()
_SOCK_OPS_ONLY += "load_hdr_opt store_hdr_opt reserve_hdr_opt".split()
_SK_MSG_ONLY = "msg_redirect_map msg_apply_bytes msg_cork_bytes msg_pull_data".split()
_SK_MSG_ONLY += "msg_redirect_hash msg_push_data msg_pop_data".split()

HELPER_CONTEXTS: dict[str, frozenset[str]] = {
    **{name: frozenset({_SKB}) for name in _SKB_ONLY},
    **{name: frozenset({_XDP}) for name in _XDP_ONLY},
    **{name: frozenset({_SOCK_OPS_N}) for name in _SOCK_OPS_ONLY},
    **{name: frozenset({"sk_msg_md"}) for name in _SK_MSG_ONLY},
    "fib_lookup": frozenset({_SKB, _XDP}),
    "check_mtu": frozenset({_SKB, _XDP}),
    "get_socket_cookie": frozenset({_SKB, _SOCK_ADDR_N, _SOCK_OPS_N, "bpf_sock"}),
    "setsockopt": frozenset({_SOCK_OPS_N, _SOCK_ADDR_N, "bpf_sockopt", "bpf_sock"}),
    "getsockopt": frozenset({_SOCK_OPS_N, _SOCK_ADDR_N, "bpf_sockopt", "bpf_sock"}),
    "bind": frozenset({_SOCK_ADDR_N}),
    "perf_prog_read_value": frozenset({"bpf_perf_event_data"}),
    "override_return": frozenset({"pt_regs"}),
    "rc_repeat": frozenset({"lirc_mode2_sample"}),
    "rc_keydown": frozenset({"lirc_mode2_sample"}),
    "rc_pointer_rel": frozenset({"lirc_mode2_sample"}),
    "sk_lookup_tcp": frozenset({_SKB, _XDP, _SOCK_ADDR_N}),
    "sk_lookup_udp": frozenset({_SKB, _XDP, _SOCK_ADDR_N}),
    "skc_lookup_tcp": frozenset({_SKB, _XDP, _SOCK_ADDR_N}),
    "sk_assign": frozenset({_SKB, "bpf_sk_lookup"}),
}
"""Helpers only some contexts may call: helper name -> context struct names."""


def helper_allowed(context: ContextLayout, helper: str) -> bool:
    """``helper`` may be called by a program with this context.

    Only Linux's and eBPF-for-Windows' own layouts are restricted; any other context (a
    test's) may call every helper.
    """
    allowed = HELPER_CONTEXTS.get(helper)
    if allowed is None or LAYOUTS.get(context.name) is not context:
        return True
    return context.name in allowed


# ---- helpers by program type (Linux 6.18's ``*_func_proto``, as root) ----
# Checked against the running kernel by benchmarks/helper_availability.py (one load per
# type, attach configuration and helper) and tests/test_helpers_by_type_kernel.py.
def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# bpf_base_func_proto(): every program type. Since Linux 6.14 it also gives every type the
# task helpers that were tracing-only (get_current_pid_tgid, send_signal, find_vma, ...).
_BASE = _names(
    "map_lookup_elem map_update_elem map_delete_elem map_push_elem map_pop_elem map_peek_elem "
    "map_lookup_percpu_elem get_prandom_u32 get_smp_processor_id get_numa_node_id tail_call "
    "ktime_get_ns ktime_get_boot_ns ktime_get_tai_ns ringbuf_output "
    "ringbuf_reserve ringbuf_submit ringbuf_discard ringbuf_query ringbuf_reserve_dynptr "
    "ringbuf_submit_dynptr ringbuf_discard_dynptr for_each_map_elem loop strncmp strtol strtoul "
    "dynptr_from_mem dynptr_read dynptr_write dynptr_data user_ringbuf_drain spin_lock "
    "spin_unlock jiffies64 per_cpu_ptr this_cpu_ptr timer_init timer_set_callback timer_start "
    "timer_cancel kptr_xchg cgrp_storage_get cgrp_storage_delete trace_printk trace_vprintk "
    "snprintf snprintf_btf probe_read_user probe_read_kernel probe_read_user_str "
    "probe_read_kernel_str get_current_task get_current_task_btf task_pt_regs "
    "get_ns_current_pid_tgid get_current_pid_tgid get_current_uid_gid get_current_comm "
    "get_current_cgroup_id get_current_ancestor_cgroup_id get_cgroup_classid perf_event_read "
    "perf_event_read_value current_task_under_cgroup send_signal send_signal_thread "
    "get_task_stack copy_from_user copy_from_user_task task_storage_get task_storage_delete "
    "get_branch_snapshot find_vma"
)
_COARSE = _names("ktime_get_coarse_ns")  # not for tracing, cgroup_device, sockopt, netfilter
_SKC_CASTS = _names(
    "skc_to_tcp6_sock skc_to_tcp_sock skc_to_tcp_timewait_sock skc_to_tcp_request_sock "
    "skc_to_udp6_sock skc_to_unix_sock skc_to_mptcp_sock"
)
# bpf_sk_base_func_proto(): the networking types' socket casts.
_SK_BASE = _BASE | _COARSE | _SKC_CASTS
_SOCK_REFS = _names("sk_lookup_tcp sk_lookup_udp sk_release skc_lookup_tcp")
_SK_FILTER = _SK_BASE | _names(
    "skb_load_bytes skb_load_bytes_relative get_socket_cookie get_socket_uid perf_event_output "
    "get_netns_cookie"
)
_TC = _SK_BASE | _SOCK_REFS | _names(
    "skb_store_bytes skb_load_bytes skb_load_bytes_relative skb_pull_data csum_diff csum_update "
    "csum_level l3_csum_replace l4_csum_replace clone_redirect skb_vlan_push "
    "skb_vlan_pop skb_change_proto skb_change_type skb_adjust_room skb_change_tail "
    "skb_change_head skb_get_tunnel_key skb_set_tunnel_key skb_get_tunnel_opt "
    "skb_set_tunnel_opt redirect redirect_neigh redirect_peer get_route_realm get_hash_recalc "
    "set_hash_invalid set_hash perf_event_output skb_under_cgroup get_socket_cookie "
    "get_socket_uid fib_lookup check_mtu sk_fullsock sk_storage_get sk_storage_delete "
    "skb_get_xfrm_state skb_cgroup_classid skb_cgroup_id skb_ancestor_cgroup_id tcp_sock "
    "get_listener_sock tcp_check_syncookie skb_ecn_set_ce tcp_gen_syncookie sk_assign "
    "skb_set_tstamp tcp_raw_gen_syncookie_ipv4 tcp_raw_gen_syncookie_ipv6 "
    "tcp_raw_check_syncookie_ipv4 tcp_raw_check_syncookie_ipv6 get_netns_cookie"
)
_XDP_HELPERS = _SK_BASE | _SOCK_REFS | _names(
    "perf_event_output csum_diff xdp_adjust_head xdp_adjust_meta redirect redirect_map "
    "xdp_adjust_tail xdp_get_buff_len xdp_load_bytes xdp_store_bytes fib_lookup check_mtu "
    "tcp_check_syncookie tcp_gen_syncookie tcp_raw_gen_syncookie_ipv4 "
    "tcp_raw_gen_syncookie_ipv6 tcp_raw_check_syncookie_ipv4 tcp_raw_check_syncookie_ipv6"
)
# cgroup_common_func_proto(): get_retval/set_retval, except for the hooks whose return
# value is fixed (cgroup_skb; sock_addr's recvmsg, getpeername, getsockname).
_CGROUP_COMMON = _BASE | _names("get_local_storage perf_event_output")
_RETVAL = _names("get_retval set_retval")
_CG_SKB = _SK_FILTER | _SOCK_REFS | _names(
    "get_local_storage sk_fullsock sk_storage_get sk_storage_delete skb_cgroup_id "
    "skb_ancestor_cgroup_id sk_cgroup_id sk_ancestor_cgroup_id tcp_sock get_listener_sock "
    "skb_ecn_set_ce"
)
_LWT_OUT = _SK_BASE | _names(
    "skb_load_bytes skb_pull_data csum_diff get_route_realm get_hash_recalc perf_event_output "
    "skb_under_cgroup"
)
_LWT_XMIT = _LWT_OUT | _names(
    "skb_get_tunnel_key skb_set_tunnel_key skb_get_tunnel_opt skb_set_tunnel_opt redirect "
    "clone_redirect skb_change_tail skb_change_head skb_store_bytes csum_update csum_level "
    "l3_csum_replace l4_csum_replace set_hash_invalid lwt_push_encap"
)
_SK_SKB = _SK_BASE | _SOCK_REFS | _names(
    "skb_store_bytes skb_load_bytes skb_pull_data skb_change_tail skb_change_head "
    "skb_adjust_room get_socket_cookie get_socket_uid sk_redirect_map sk_redirect_hash "
    "perf_event_output"
)
_SK_MSG = _SK_BASE | _names(
    "msg_redirect_map msg_redirect_hash msg_apply_bytes msg_cork_bytes msg_pull_data "
    "msg_push_data msg_pop_data perf_event_output sk_storage_get sk_storage_delete "
    "get_netns_cookie"
)
_SOCK_OPS_HELPERS = _SK_BASE | _names(
    "setsockopt getsockopt sock_ops_cb_flags_set sock_map_update sock_hash_update "
    "get_socket_cookie get_local_storage perf_event_output sk_storage_get sk_storage_delete "
    "get_netns_cookie tcp_sock load_hdr_opt store_hdr_opt reserve_hdr_opt"
)
_CG_SOCK = _CGROUP_COMMON | _RETVAL | _COARSE | _names(
    "get_socket_cookie get_netns_cookie sk_storage_get"
)
# bind: connect4/connect6 only; get_retval/set_retval: not recvmsg, getpeername, getsockname.
_CG_SOCK_ADDR = _CGROUP_COMMON | _RETVAL | _COARSE | _SKC_CASTS | _SOCK_REFS | _names(
    "bind get_socket_cookie get_netns_cookie sk_storage_get sk_storage_delete setsockopt "
    "getsockopt"
)
_CG_SYSCTL = _CGROUP_COMMON | _RETVAL | _COARSE | _names(
    "sysctl_get_name sysctl_get_current_value sysctl_get_new_value sysctl_set_new_value"
)
# setsockopt/getsockopt: the setsockopt hook only.
_CG_SOCKOPT = _CGROUP_COMMON | _RETVAL | _names(
    "get_netns_cookie sk_storage_get sk_storage_delete setsockopt getsockopt tcp_sock"
)
# bpf_tracing_func_proto(): probe_write_user only without lockdown (this kernel is locked
# down), override_return only with CONFIG_BPF_KPROBE_OVERRIDE (this kernel has none).
_TRACING_BASE = _BASE | _names("probe_read probe_read_str get_func_ip")
_TRACE_EVENT = _TRACING_BASE | _names("perf_event_output get_stackid get_stack get_attach_cookie")
_PERF = _TRACE_EVENT | _names("perf_prog_read_value read_branch_records")
# tracing_prog_func_proto(): get_func_arg/get_func_ret/get_func_arg_cnt for programs with a
# trampoline (fentry, fexit, fmod_ret), seq_* and d_path for iterators (d_path also for an
# allow-list of fentry targets).
_TRACING_HELPERS = _TRACE_EVENT | _SKC_CASTS | _names(
    "skb_output xdp_output sk_storage_get sk_storage_delete sock_from_file get_socket_cookie "
    "seq_printf seq_write seq_printf_btf d_path get_func_arg get_func_ret get_func_arg_cnt "
    "xdp_get_buff_len"
)
_LSM_HELPERS = _TRACING_HELPERS | _RETVAL | _names(
    "inode_storage_get inode_storage_delete bprm_opts_set ima_inode_hash ima_file_hash"
)
# bpf_syscall_prog_func_proto() over bpf_tracing_func_proto(); syscall programs are sleepable.
_SYSCALL_HELPERS = _TRACING_BASE | _SKC_CASTS | _names(
    "perf_event_output get_stackid get_stack skb_output xdp_output get_socket_cookie "
    "sock_from_file xdp_get_buff_len sys_bpf btf_find_by_name_kind sys_close "
    "kallsyms_lookup_name"
)

HELPERS_BY_TYPE: dict[ProgType, frozenset[str]] = {
    _T.SOCKET_FILTER: _SK_FILTER,
    _T.SCHED_CLS: _TC,
    _T.SCHED_ACT: _TC,
    _T.XDP: _XDP_HELPERS,
    _T.CGROUP_SKB: _CG_SKB,
    _T.LWT_IN: _LWT_OUT | _names("lwt_push_encap"),
    _T.LWT_OUT: _LWT_OUT,
    _T.LWT_XMIT: _LWT_XMIT,
    _T.LWT_SEG6LOCAL: _LWT_OUT
    | _names("lwt_seg6_store_bytes lwt_seg6_action lwt_seg6_adjust_srh"),
    _T.SK_SKB: _SK_SKB,
    _T.SK_MSG: _SK_MSG,
    _T.SOCK_OPS: _SOCK_OPS_HELPERS,
    _T.FLOW_DISSECTOR: _SK_BASE | _names("skb_load_bytes"),
    _T.SK_REUSEPORT: _BASE
    | _COARSE
    | _names("sk_select_reuseport skb_load_bytes skb_load_bytes_relative get_socket_cookie"),
    _T.SK_LOOKUP: _SK_BASE | _names("perf_event_output sk_assign sk_release"),
    _T.CGROUP_SOCK: _CG_SOCK,
    _T.CGROUP_SOCK_ADDR: _CG_SOCK_ADDR,
    _T.CGROUP_DEVICE: _CGROUP_COMMON,
    _T.CGROUP_SYSCTL: _CG_SYSCTL,
    _T.CGROUP_SOCKOPT: _CG_SOCKOPT,
    _T.KPROBE: _TRACE_EVENT,
    _T.TRACEPOINT: _TRACE_EVENT,
    _T.PERF_EVENT: _PERF,
    _T.RAW_TRACEPOINT: _TRACE_EVENT,
    _T.RAW_TRACEPOINT_WRITABLE: _TRACE_EVENT,
    _T.TRACING: _TRACING_HELPERS,
    _T.LSM: _LSM_HELPERS,
    _T.SYSCALL: _SYSCALL_HELPERS,
    _T.LIRC_MODE2: _BASE | _names("rc_repeat rc_keydown rc_pointer_rel"),
    _T.NETFILTER: _BASE,
}
"""Every helper a program type may call: Linux 6.18's ``<type>_func_proto`` for a root loader
on a kernel locked down for integrity without ``CONFIG_BPF_KPROBE_OVERRIDE`` (so no
``probe_write_user`` and no ``override_return``), as the running kernel answers.

A type whose helpers depend on the expected attach type lists the union over its attach
types (pybpf's verifier does not know the attach type): ``bind`` is only for
``cgroup_sock_addr``'s connect hooks, ``get_retval``/``set_retval`` not for its recvmsg,
getpeername and getsockname hooks, ``setsockopt``/``getsockopt`` only for
``cgroup_sockopt``'s setsockopt hook, ``get_func_arg``/``get_func_ret``/``get_func_arg_cnt``
only for tracing programs with a trampoline, ``seq_*`` and ``d_path`` for iterators.
A helper whose prototype pybpf lacks is refused as unsupported before this table is read.
``struct_ops`` and ``ext`` programs take the helpers of what they attach to, and eBPF for
Windows' types its own list: they are not restricted here."""


def helper_allowed_for(prog_type: ProgType | None, context: ContextLayout, helper: str) -> bool:
    """``helper`` may be called by a program of ``prog_type`` (whose context is ``context``).

    Types listed in :data:`HELPERS_BY_TYPE` are checked against their list; any other type
    (or none) falls back to :func:`helper_allowed` on the context.
    """
    allowed = HELPERS_BY_TYPE.get(prog_type) if prog_type is not None else None
    if allowed is None or LAYOUTS.get(context.name) is not context:
        return helper_allowed(context, helper)
    return helper in allowed


# ---- context accesses by program type (Linux 6.18's ``*_is_valid_access``, as root) ----
# Checked against the running kernel by benchmarks/context_access.py (one load per type,
# attach configuration, offset, size and load/store) and tests/test_context_access_kernel.py.
@dataclass(frozen=True, slots=True)
class Access:
    """A range of a context the kernel lets one program type load (``reads``: the sizes it
    accepts) or store (``writes``), each access aligned to its size and inside the range."""

    name: str
    offset: int
    size: int
    reads: frozenset[int]
    writes: frozenset[int] = frozenset()

    @property
    def end(self) -> int:
        """One past the range's last byte."""
        return self.offset + self.size

    def end_check(self, limit: int) -> bool:
        """The range ends at or before ``limit``."""
        return self.end <= limit

    def allows(self, offset: int, size: int, write: bool) -> bool:
        """``[offset, offset + size)`` lies in the range, aligned, with an accepted size."""
        sizes = self.writes if write else self.reads
        return (
            size in sizes
            and offset % size == 0
            and self.offset <= offset
            and offset + size <= self.offset + self.size
        )


def _a(name: str, offset: int, size: int, reads: str, writes: str = "") -> Access:
    return Access(name, offset, size, frozenset(map(int, reads)), frozenset(map(int, writes)))


_ACCESS_SOCKET_FILTER = (
    _a("len", 0, 4, "124"),
    _a("pkt_type", 4, 4, "124"),
    _a("mark", 8, 4, "124"),
    _a("queue_mapping", 12, 4, "124"),
    _a("protocol", 16, 4, "124"),
    _a("vlan_present", 20, 4, "124"),
    _a("vlan_tci", 24, 4, "124"),
    _a("vlan_proto", 28, 4, "124"),
    _a("priority", 32, 4, "124"),
    _a("ingress_ifindex", 36, 4, "124"),
    _a("ifindex", 40, 4, "124"),
    _a("tc_index", 44, 4, "124"),
    _a("cb", 48, 20, "1248", "1248"),
    _a("hash", 68, 4, "124"),
    _a("napi_id", 84, 4, "124"),
    _a("gso_segs", 164, 4, "124"),
    _a("sk", 168, 8, "8"),
    _a("gso_size", 176, 4, "124"),
)
_ACCESS_KPROBE = (_a("regs", 0, 168, "1248"),)  # x86-64 pt_regs (21 u64)
_ACCESS_SCHED_CLS = (
    _a("len", 0, 4, "124"),
    _a("pkt_type", 4, 4, "124"),
    _a("mark", 8, 4, "124", "4"),
    _a("queue_mapping", 12, 4, "124", "4"),
    _a("protocol", 16, 4, "124"),
    _a("vlan_present", 20, 4, "124"),
    _a("vlan_tci", 24, 4, "124"),
    _a("vlan_proto", 28, 4, "124"),
    _a("priority", 32, 4, "124", "4"),
    _a("ingress_ifindex", 36, 4, "124"),
    _a("ifindex", 40, 4, "124"),
    _a("tc_index", 44, 4, "124", "4"),
    _a("cb", 48, 20, "1248", "1248"),
    _a("hash", 68, 4, "124"),
    _a("tc_classid", 72, 4, "124", "4"),
    _a("data", 76, 4, "4"),
    _a("data_end", 80, 4, "4"),
    _a("napi_id", 84, 4, "124"),
    _a("data_meta", 140, 4, "4"),
    _a("tstamp", 152, 8, "8", "8"),
    _a("wire_len", 160, 4, "124"),
    _a("gso_segs", 164, 4, "124"),
    _a("sk", 168, 8, "8"),
    _a("gso_size", 176, 4, "124"),
    _a("tstamp_type", 180, 1, "1"),
    _a("hwtstamp", 184, 8, "8"),
)
_ACCESS_XDP = (
    _a("data", 0, 4, "4"),
    _a("data_end", 4, 4, "4"),
    _a("data_meta", 8, 4, "4"),
    _a("ingress_ifindex", 12, 4, "4"),
    _a("rx_queue_index", 16, 4, "4"),
    _a("egress_ifindex", 20, 4, "4"),  # devmap programs only (BPF_XDP_DEVMAP)
)
_ACCESS_PERF_EVENT = (  # bpf_perf_event_data: x86-64's pt_regs, sample_period, addr
    _a("regs", 0, 168, "8"),
    _a("sample_period", 168, 8, "1248"),
    _a("addr", 176, 8, "1248"),
)
_ACCESS_CGROUP_SKB = (
    _a("len", 0, 4, "124"),
    _a("pkt_type", 4, 4, "124"),
    _a("mark", 8, 4, "124", "4"),
    _a("queue_mapping", 12, 4, "124"),
    _a("protocol", 16, 4, "124"),
    _a("vlan_present", 20, 4, "124"),
    _a("vlan_tci", 24, 4, "124"),
    _a("vlan_proto", 28, 4, "124"),
    _a("priority", 32, 4, "124", "4"),
    _a("ingress_ifindex", 36, 4, "124"),
    _a("ifindex", 40, 4, "124"),
    _a("tc_index", 44, 4, "124"),
    _a("cb", 48, 20, "1248", "1248"),
    _a("hash", 68, 4, "124"),
    _a("data", 76, 4, "4"),
    _a("data_end", 80, 4, "4"),
    _a("napi_id", 84, 4, "124"),
    _a("family", 88, 4, "124"),
    _a("remote_ip4", 92, 4, "4"),
    _a("local_ip4", 96, 4, "4"),
    _a("remote_ip6", 100, 16, "4"),
    _a("local_ip6", 116, 16, "4"),
    _a("remote_port", 132, 4, "124"),
    _a("local_port", 136, 4, "124"),
    _a("tstamp", 152, 8, "8", "8"),
    _a("gso_segs", 164, 4, "124"),
    _a("sk", 168, 8, "8"),
    _a("gso_size", 176, 4, "124"),
    _a("hwtstamp", 184, 8, "8"),
)
_ACCESS_CGROUP_SOCK = (
    _a("bound_dev_if", 0, 4, "4", "4"),
    _a("family", 4, 4, "4"),
    _a("family", 4, 2, "2"),
    _a("family", 4, 1, "1"),
    _a("type", 8, 4, "4"),
    _a("type", 8, 2, "2"),
    _a("type", 8, 1, "1"),
    _a("protocol", 12, 4, "4"),
    _a("protocol", 12, 2, "2"),
    _a("protocol", 12, 1, "1"),
    _a("mark", 16, 4, "4", "4"),
    _a("priority", 20, 4, "4", "4"),
    _a("src_ip4", 24, 4, "124"),
    _a("src_ip6", 28, 16, "124"),
    _a("src_port", 44, 4, "4"),
    _a("src_port", 44, 2, "2"),
    _a("src_port", 44, 1, "1"),
    _a("dst_port", 48, 4, "4"),
    _a("dst_port", 48, 2, "12"),
    _a("dst_ip4", 52, 4, "124"),
    _a("dst_ip6", 56, 16, "124"),
    _a("state", 72, 4, "4"),
    _a("state", 72, 2, "2"),
    _a("state", 72, 1, "1"),
    _a("rx_queue_mapping", 76, 4, "4"),
    _a("rx_queue_mapping", 76, 2, "2"),
    _a("rx_queue_mapping", 76, 1, "1"),
)
_ACCESS_LWT_IN = (
    _a("len", 0, 4, "124"),
    _a("pkt_type", 4, 4, "124"),
    _a("mark", 8, 4, "124", "4"),
    _a("queue_mapping", 12, 4, "124"),
    _a("protocol", 16, 4, "124"),
    _a("vlan_present", 20, 4, "124"),
    _a("vlan_tci", 24, 4, "124"),
    _a("vlan_proto", 28, 4, "124"),
    _a("priority", 32, 4, "124", "4"),
    _a("ingress_ifindex", 36, 4, "124"),
    _a("ifindex", 40, 4, "124"),
    _a("tc_index", 44, 4, "124"),
    _a("cb", 48, 20, "1248", "1248"),
    _a("hash", 68, 4, "124"),
    _a("data", 76, 4, "4"),
    _a("data_end", 80, 4, "4"),
    _a("napi_id", 84, 4, "124"),
    _a("gso_segs", 164, 4, "124"),
    _a("sk", 168, 8, "8"),
    _a("gso_size", 176, 4, "124"),
)
_ACCESS_SOCK_OPS = (
    _a("op", 0, 4, "4"),
    _a("args", 4, 16, "4"),
    _a("args", 4, 4, "", "44"),
    _a("family", 20, 4, "4"),
    _a("remote_ip4", 24, 4, "4"),
    _a("local_ip4", 28, 4, "4"),
    _a("remote_ip6", 32, 16, "4"),
    _a("local_ip6", 48, 16, "4"),
    _a("remote_port", 64, 4, "4"),
    _a("local_port", 68, 4, "4"),
    _a("is_fullsock", 72, 4, "4"),
    _a("snd_cwnd", 76, 4, "4"),
    _a("srtt_us", 80, 4, "4"),
    _a("bpf_sock_ops_cb_flags", 84, 4, "4"),
    _a("state", 88, 4, "4"),
    _a("rtt_min", 92, 4, "4"),
    _a("snd_ssthresh", 96, 4, "4"),
    _a("rcv_nxt", 100, 4, "4"),
    _a("snd_nxt", 104, 4, "4"),
    _a("snd_una", 108, 4, "4"),
    _a("mss_cache", 112, 4, "4"),
    _a("ecn_flags", 116, 4, "4"),
    _a("rate_delivered", 120, 4, "4"),
    _a("rate_interval_us", 124, 4, "4"),
    _a("packets_out", 128, 4, "4"),
    _a("retrans_out", 132, 4, "4"),
    _a("total_retrans", 136, 4, "4"),
    _a("segs_in", 140, 4, "4"),
    _a("data_segs_in", 144, 4, "4"),
    _a("segs_out", 148, 4, "4"),
    _a("data_segs_out", 152, 4, "4"),
    _a("lost_out", 156, 4, "4"),
    _a("sacked_out", 160, 4, "4"),
    _a("sk_txhash", 164, 4, "4", "4"),
    _a("bytes_received", 168, 8, "8"),
    _a("bytes_acked", 176, 8, "8"),
    _a("sk", 184, 8, "8"),
    _a("skb_data", 192, 8, "8"),
    _a("skb_data_end", 200, 8, "8"),
    _a("skb_len", 208, 4, "4"),
    _a("skb_tcp_flags", 212, 4, "4"),
    _a("skb_tcp_flags", 212, 2, "2"),
    _a("skb_tcp_flags", 212, 1, "1"),
    _a("skb_hwtstamp", 216, 8, "8"),
)
_ACCESS_SK_SKB = (
    _a("len", 0, 4, "124"),
    _a("pkt_type", 4, 4, "124"),
    _a("queue_mapping", 12, 4, "124"),
    _a("protocol", 16, 4, "124"),
    _a("vlan_present", 20, 4, "124"),
    _a("vlan_tci", 24, 4, "124"),
    _a("vlan_proto", 28, 4, "124"),
    _a("priority", 32, 4, "124", "4"),
    _a("ingress_ifindex", 36, 4, "124"),
    _a("ifindex", 40, 4, "124"),
    _a("tc_index", 44, 4, "124", "4"),
    _a("cb", 48, 20, "1248"),
    _a("hash", 68, 4, "124"),
    _a("data", 76, 4, "4"),
    _a("data_end", 80, 4, "4"),
    _a("napi_id", 84, 4, "124"),
    _a("family", 88, 4, "124"),
    _a("remote_ip4", 92, 4, "4"),
    _a("local_ip4", 96, 4, "4"),
    _a("remote_ip6", 100, 16, "4"),
    _a("local_ip6", 116, 16, "4"),
    _a("remote_port", 132, 4, "124"),
    _a("local_port", 136, 4, "124"),
    _a("gso_segs", 164, 4, "124"),
    _a("sk", 168, 8, "8"),
    _a("gso_size", 176, 4, "124"),
)
_ACCESS_CGROUP_DEVICE = (
    _a("access_type", 0, 4, "124"),
    _a("major", 4, 4, "4"),
    _a("minor", 8, 4, "4"),
)
_ACCESS_SK_MSG = (
    _a("data", 0, 8, "8"),
    _a("data_end", 8, 8, "8"),
    _a("family", 16, 4, "4"),
    _a("remote_ip4", 20, 4, "4"),
    _a("local_ip4", 24, 4, "4"),
    _a("remote_ip6", 28, 16, "4"),
    _a("local_ip6", 44, 16, "4"),
    _a("remote_port", 60, 4, "4"),
    _a("local_port", 64, 4, "4"),
    _a("size", 68, 4, "4"),
    _a("sk", 72, 8, "8"),
)
_ACCESS_RAW_TRACEPOINT = (_a("args", 0, 96, "1248"),)  # 12 u64 arguments
_ACCESS_CGROUP_SOCK_ADDR = (
    _a("user_family", 0, 4, "4"),
    _a("user_ip4", 4, 4, "124", "4"),
    _a("user_ip6", 8, 16, "1248", "48"),
    _a("user_port", 24, 4, "124", "4"),
    _a("family", 28, 4, "4"),
    _a("type", 32, 4, "4"),
    _a("protocol", 36, 4, "4"),
    _a("msg_src_ip4", 40, 4, "124", "4"),
    _a("msg_src_ip6", 44, 16, "1248", "48"),
    _a("sk", 64, 8, "8"),
)
_ACCESS_SK_REUSEPORT = (
    _a("data", 0, 8, "8"),
    _a("data_end", 8, 8, "8"),
    _a("len", 16, 4, "124"),
    _a("eth_protocol", 20, 4, "24"),
    _a("ip_protocol", 24, 4, "124"),
    _a("bind_inany", 28, 4, "124"),
    _a("hash", 32, 4, "4"),
    _a("sk", 40, 8, "8"),
    _a("migrating_sk", 48, 8, "8"),
)
_ACCESS_FLOW_DISSECTOR = (
    _a("data", 76, 4, "4"),
    _a("data_end", 80, 4, "4"),
    _a("flow_keys", 144, 8, "8"),
)
_ACCESS_CGROUP_SYSCTL = (
    _a("write", 0, 4, "124"),
    _a("file_pos", 4, 4, "124", "4"),
)
_ACCESS_CGROUP_SOCKOPT = (
    _a("sk", 0, 8, "8"),
    _a("optval", 8, 8, "8"),
    _a("optval_end", 16, 8, "8"),
    _a("level", 24, 4, "4", "4"),
    _a("optname", 28, 4, "4", "4"),
    _a("optlen", 32, 4, "4", "4"),
    _a("retval", 36, 4, "4", "4"),
)
_ACCESS_SK_LOOKUP = (
    _a("sk", 0, 8, "8"),
    _a("family", 8, 4, "124"),
    _a("protocol", 12, 4, "124"),
    _a("remote_ip4", 16, 4, "124"),
    _a("remote_ip6", 20, 16, "124"),
    _a("remote_port", 36, 4, "124"),
    _a("local_ip4", 40, 4, "124"),
    _a("local_ip6", 44, 16, "124"),
    _a("local_port", 60, 4, "124"),
    _a("ingress_ifindex", 64, 4, "124"),
)
_ACCESS_NETFILTER = (
    _a("state", 0, 8, "8"),
    _a("skb", 8, 8, "8"),
)

ACCESS_BY_TYPE: dict[ProgType, tuple[Access, ...]] = {
    _T.SOCKET_FILTER: _ACCESS_SOCKET_FILTER,
    _T.KPROBE: _ACCESS_KPROBE,
    _T.SCHED_CLS: _ACCESS_SCHED_CLS,
    _T.SCHED_ACT: _ACCESS_SCHED_CLS,
    _T.XDP: _ACCESS_XDP,
    _T.PERF_EVENT: _ACCESS_PERF_EVENT,
    _T.CGROUP_SKB: _ACCESS_CGROUP_SKB,
    _T.CGROUP_SOCK: _ACCESS_CGROUP_SOCK,
    _T.LWT_IN: _ACCESS_LWT_IN,
    _T.LWT_OUT: _ACCESS_LWT_IN,
    _T.LWT_XMIT: _ACCESS_LWT_IN,
    _T.SOCK_OPS: _ACCESS_SOCK_OPS,
    _T.SK_SKB: _ACCESS_SK_SKB,
    _T.CGROUP_DEVICE: _ACCESS_CGROUP_DEVICE,
    _T.SK_MSG: _ACCESS_SK_MSG,
    _T.RAW_TRACEPOINT: _ACCESS_RAW_TRACEPOINT,
    _T.CGROUP_SOCK_ADDR: _ACCESS_CGROUP_SOCK_ADDR,
    _T.LWT_SEG6LOCAL: _ACCESS_LWT_IN,
    _T.SK_REUSEPORT: _ACCESS_SK_REUSEPORT,
    _T.FLOW_DISSECTOR: _ACCESS_FLOW_DISSECTOR,
    _T.CGROUP_SYSCTL: _ACCESS_CGROUP_SYSCTL,
    _T.CGROUP_SOCKOPT: _ACCESS_CGROUP_SOCKOPT,
    _T.SK_LOOKUP: _ACCESS_SK_LOOKUP,
    _T.NETFILTER: _ACCESS_NETFILTER,
}
"""Per program type, every context range it may load or store (``BPF_STX`` and ``BPF_ST``
alike) and at which sizes: Linux 6.18's ``<type>_is_valid_access`` for a root loader, as the
running kernel (x86-64: ``pt_regs`` is 168 bytes) answers. Every access must be aligned to
its size; most 4-byte fields allow 1- and 2-byte loads at any aligned offset inside them,
packet pointers only whole loads; ``__sk_buff.cb`` takes 8-byte accesses across its words.

A type whose accesses depend on the expected attach type lists the union over its attach
types (pybpf's verifier does not know the attach type): ``xdp_md.egress_ifindex`` only for
devmap programs; ``bpf_sock`` (cgroup_sock): ``src_ip4``/``src_ip6``/``src_port`` only after
bind (``inet4_post_bind``: no ``src_ip6``, ``inet6_post_bind``: no ``src_ip4``), and
``bound_dev_if``/``mark``/``priority`` read and stored only at socket create and release;
``bpf_sock_addr``: ``user_ip4`` for the IPv4 hooks, ``user_ip6`` for the IPv6 ones (neither
for unix sockets), ``msg_src_ip4``/``msg_src_ip6`` for udp4/udp6 sendmsg only;
``bpf_sockopt``: ``level``/``optname`` stored at setsockopt only, ``retval`` read and stored
at getsockopt only. A type missing here (tracepoint, tracing, lsm, syscall, eBPF for
Windows', ...) falls back to its layout's fields (:func:`context_access_allowed`)."""


def context_access_allowed(prog_type: ProgType, offset: int, size: int, write: bool) -> bool:
    """Linux's ``is_valid_access`` for a ``size``-byte load (or ``BPF_STX`` store when
    ``write``) at constant ``offset`` of ``prog_type``'s context, as pybpf's tables say.

    Types in :data:`ACCESS_BY_TYPE` use their ranges; any other type with a context layout
    follows its fields: a load within one field, a store within one writable data field
    (an opaque layout: anywhere inside, stores only when it is writable).
    """
    table = ACCESS_BY_TYPE.get(prog_type)
    if table is not None:
        return any(a.allows(offset, size, write) for a in table)
    rules = RULES.get(prog_type)
    if rules is None:
        return False
    layout = rules.context
    if offset < 0 or offset + size > layout.size:
        return False
    if not layout.fields:
        return layout.writable or not write
    covered = layout.fields_overlapping(offset, offset + size)
    if len(covered) != 1 or not (covered[0].offset <= offset and offset + size <= covered[0].end):
        return False
    return not write or (covered[0].write and covered[0].kind == FieldKind.SCALAR)
