"""Section names: the ONE table of ELF section prefixes and the program types they give.

Each :class:`SectionRule` row says which loaders read a section prefix, and as what:

- ``LIBBPF``: libbpf 1.x ``SEC()`` names. A rule matches its exact name; a ``plus`` rule
  (libbpf's ``"kprobe+"``) also matches ``name/anything``, and a prefix ending in ``/``
  matches anything after it.
- ``LEGACY``: older loaders (libbpf 0.x's sloppy prefixes, samples/bpf ``bpf_load.c``):
  any section that *starts with* the prefix (``xdp_prog``, ``socket1``, ``classifier_x``).
- ``PREVAIL``: PREVAIL's Linux table (plain prefix), which made the corpus' ``prog_type``.
- ``WINDOWS``: eBPF for Windows (longest matching prefix, efW's own types).

:func:`match_section` resolves a section for a platform (libbpf's rules first, then the
legacy prefixes); :func:`prevail_program_type` reproduces PREVAIL's rule, Cilium file names
included. Sections no rule matches (Cilium's ``"2/7"`` tail-call sections, iproute2's
free-form names) have no type: the loader that knows (tc, ip) or the user sets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Flag, auto

from pybpf.progtypes.ids import AttachType, ProgType

__all__ = [
    "Loader",
    "SectionRule",
    "SectionMatch",
    "SECTION_RULES",
    "match_section",
    "prevail_program_type",
]


class Loader(Flag):
    """The loaders whose section-name convention a rule belongs to."""

    LIBBPF = auto()
    LEGACY = auto()
    PREVAIL = auto()
    WINDOWS = auto()


@dataclass(frozen=True, slots=True)
class SectionRule:
    """One section prefix: the type and attach type it gives, and who reads it that way.

    ``plus`` marks libbpf's ``"name+"`` form (exact, or ``name/target``); ``sleepable``,
    ``xdp_frags`` and ``attach_btf`` are libbpf's ``SEC_SLEEPABLE``, ``SEC_XDP_FRAGS`` and
    ``SEC_ATTACH_BTF`` (the target after ``/`` names a BTF function or type).
    """

    prefix: str
    prog_type: ProgType
    attach_type: AttachType | None
    loaders: Loader
    plus: bool = False
    sleepable: bool = False
    xdp_frags: bool = False
    attach_btf: bool = False

    def matches(self, section: str, loader: Loader) -> bool:
        """True when ``section`` matches this rule under ``loader``'s convention."""
        if not self.loaders & loader:
            return False
        if loader == Loader.LIBBPF:
            if self.prefix.endswith("/"):
                return section.startswith(self.prefix)
            if self.plus:
                rest = section[len(self.prefix) :]
                return section.startswith(self.prefix) and (rest == "" or rest.startswith("/"))
            return section == self.prefix
        return section.startswith(self.prefix)


@dataclass(frozen=True, slots=True)
class SectionMatch:
    """The rule a section matched and what follows the prefix (the attach target)."""

    section: str
    rule: SectionRule
    loader: Loader

    @property
    def prog_type(self) -> ProgType:
        """The program type the section gives."""
        return self.rule.prog_type

    @property
    def attach_type(self) -> AttachType | None:
        """The expected attach type, if the section implies one."""
        return self.rule.attach_type

    @property
    def target(self) -> str:
        """What follows the prefix and its ``/`` (``"sys_execve"`` for ``kprobe/sys_execve``)."""
        rest = self.section[len(self.rule.prefix) :]
        return rest[1:] if rest.startswith("/") else rest


_L = Loader.LIBBPF
_O = Loader.LEGACY
_P = Loader.PREVAIL
_W = Loader.WINDOWS
_A = AttachType
_T = ProgType


def _r(
    prefix: str, prog_type: ProgType, attach: AttachType | None, loaders: Loader, **kw
) -> SectionRule:
    return SectionRule(prefix, prog_type, attach, loaders, **kw)


# libbpf 1.x's section_defs[] (libbpf.c) in its order, then the older loaders' prefixes,
# PREVAIL's own spellings and eBPF for Windows' sections.
SECTION_RULES: tuple[SectionRule, ...] = (
    _r("socket", _T.SOCKET_FILTER, None, _L | _O | _P),
    _r("sk_reuseport/migrate", _T.SK_REUSEPORT, _A.SK_REUSEPORT_SELECT_OR_MIGRATE, _L | _O),
    _r("sk_reuseport", _T.SK_REUSEPORT, _A.SK_REUSEPORT_SELECT, _L | _O),
    _r("kprobe", _T.KPROBE, None, _L, plus=True),
    _r("uprobe", _T.KPROBE, None, _L, plus=True),
    _r("uprobe.s", _T.KPROBE, None, _L, plus=True, sleepable=True),
    _r("kretprobe", _T.KPROBE, None, _L, plus=True),
    _r("uretprobe", _T.KPROBE, None, _L, plus=True),
    _r("uretprobe.s", _T.KPROBE, None, _L, plus=True, sleepable=True),
    _r("kprobe.multi", _T.KPROBE, _A.TRACE_KPROBE_MULTI, _L, plus=True),
    _r("kretprobe.multi", _T.KPROBE, _A.TRACE_KPROBE_MULTI, _L, plus=True),
    _r("kprobe.session", _T.KPROBE, _A.TRACE_KPROBE_SESSION, _L, plus=True),
    _r("uprobe.multi", _T.KPROBE, _A.TRACE_UPROBE_MULTI, _L, plus=True),
    _r("uretprobe.multi", _T.KPROBE, _A.TRACE_UPROBE_MULTI, _L, plus=True),
    _r("uprobe.session", _T.KPROBE, _A.TRACE_UPROBE_SESSION, _L, plus=True),
    _r("uprobe.multi.s", _T.KPROBE, _A.TRACE_UPROBE_MULTI, _L, plus=True, sleepable=True),
    _r("uretprobe.multi.s", _T.KPROBE, _A.TRACE_UPROBE_MULTI, _L, plus=True, sleepable=True),
    _r("uprobe.session.s", _T.KPROBE, _A.TRACE_UPROBE_SESSION, _L, plus=True, sleepable=True),
    _r("ksyscall", _T.KPROBE, None, _L, plus=True),
    _r("kretsyscall", _T.KPROBE, None, _L, plus=True),
    _r("usdt", _T.KPROBE, None, _L, plus=True),
    _r("usdt.s", _T.KPROBE, None, _L, plus=True, sleepable=True),
    _r("tc/ingress", _T.SCHED_CLS, _A.TCX_INGRESS, _L),
    _r("tc/egress", _T.SCHED_CLS, _A.TCX_EGRESS, _L),
    _r("tcx/ingress", _T.SCHED_CLS, _A.TCX_INGRESS, _L),
    _r("tcx/egress", _T.SCHED_CLS, _A.TCX_EGRESS, _L),
    _r("netkit/primary", _T.SCHED_CLS, _A.NETKIT_PRIMARY, _L),
    _r("netkit/peer", _T.SCHED_CLS, _A.NETKIT_PEER, _L),
    _r("tc", _T.SCHED_CLS, None, _L),
    _r("classifier", _T.SCHED_CLS, None, _L | _O | _P),
    _r("action", _T.SCHED_ACT, None, _L | _O | _P),
    _r("tracepoint", _T.TRACEPOINT, None, _L, plus=True),
    _r("tp", _T.TRACEPOINT, None, _L, plus=True),
    _r("raw_tracepoint", _T.RAW_TRACEPOINT, None, _L, plus=True),
    _r("raw_tp", _T.RAW_TRACEPOINT, None, _L, plus=True),
    _r("raw_tracepoint.w", _T.RAW_TRACEPOINT_WRITABLE, None, _L, plus=True),
    _r("raw_tp.w", _T.RAW_TRACEPOINT_WRITABLE, None, _L, plus=True),
    _r("tp_btf", _T.TRACING, _A.TRACE_RAW_TP, _L, plus=True, attach_btf=True),
    _r("fentry", _T.TRACING, _A.TRACE_FENTRY, _L, plus=True, attach_btf=True),
    _r("fmod_ret", _T.TRACING, _A.MODIFY_RETURN, _L, plus=True, attach_btf=True),
    _r("fexit", _T.TRACING, _A.TRACE_FEXIT, _L, plus=True, attach_btf=True),
    _r("fentry.s", _T.TRACING, _A.TRACE_FENTRY, _L, plus=True, attach_btf=True, sleepable=True),
    _r("fmod_ret.s", _T.TRACING, _A.MODIFY_RETURN, _L, plus=True, attach_btf=True, sleepable=True),
    _r("fexit.s", _T.TRACING, _A.TRACE_FEXIT, _L, plus=True, attach_btf=True, sleepable=True),
    _r("freplace", _T.EXT, None, _L, plus=True, attach_btf=True),
    _r("lsm", _T.LSM, _A.LSM_MAC, _L, plus=True, attach_btf=True),
    _r("lsm.s", _T.LSM, _A.LSM_MAC, _L, plus=True, attach_btf=True, sleepable=True),
    _r("lsm_cgroup", _T.LSM, _A.LSM_CGROUP, _L, plus=True, attach_btf=True),
    _r("iter", _T.TRACING, _A.TRACE_ITER, _L, plus=True, attach_btf=True),
    _r("iter.s", _T.TRACING, _A.TRACE_ITER, _L, plus=True, attach_btf=True, sleepable=True),
    _r("syscall", _T.SYSCALL, None, _L, sleepable=True),
    _r("xdp.frags/devmap", _T.XDP, _A.XDP_DEVMAP, _L, xdp_frags=True),
    _r("xdp/devmap", _T.XDP, _A.XDP_DEVMAP, _L),
    _r("xdp.frags/cpumap", _T.XDP, _A.XDP_CPUMAP, _L, xdp_frags=True),
    _r("xdp/cpumap", _T.XDP, _A.XDP_CPUMAP, _L),
    _r("xdp.frags", _T.XDP, _A.XDP, _L, xdp_frags=True),
    _r("xdp", _T.XDP, _A.XDP, _L | _O | _P),
    _r("perf_event", _T.PERF_EVENT, None, _L | _O | _P),
    _r("lwt_in", _T.LWT_IN, None, _L | _O | _P),
    _r("lwt_out", _T.LWT_OUT, None, _L | _O | _P),
    _r("lwt_xmit", _T.LWT_XMIT, None, _L | _O | _P),
    _r("lwt_seg6local", _T.LWT_SEG6LOCAL, None, _L | _O | _P),
    _r("sockops", _T.SOCK_OPS, _A.CGROUP_SOCK_OPS, _L | _O | _P),
    _r("sk_skb/stream_parser", _T.SK_SKB, _A.SK_SKB_STREAM_PARSER, _L | _O),
    _r("sk_skb/stream_verdict", _T.SK_SKB, _A.SK_SKB_STREAM_VERDICT, _L | _O),
    _r("sk_skb/verdict", _T.SK_SKB, _A.SK_SKB_VERDICT, _L | _O),
    _r("sk_skb", _T.SK_SKB, None, _L | _O | _P),
    _r("sk_msg", _T.SK_MSG, _A.SK_MSG_VERDICT, _L | _O | _P),
    _r("lirc_mode2", _T.LIRC_MODE2, _A.LIRC_MODE2, _L | _O | _P),
    _r("flow_dissector", _T.FLOW_DISSECTOR, _A.FLOW_DISSECTOR, _L | _O | _P),
    _r("cgroup_skb/ingress", _T.CGROUP_SKB, _A.CGROUP_INET_INGRESS, _L | _O),
    _r("cgroup_skb/egress", _T.CGROUP_SKB, _A.CGROUP_INET_EGRESS, _L | _O),
    _r("cgroup/skb", _T.CGROUP_SKB, None, _L | _O | _P),
    _r("cgroup/sock_create", _T.CGROUP_SOCK, _A.CGROUP_INET_SOCK_CREATE, _L | _O),
    _r("cgroup/sock_release", _T.CGROUP_SOCK, _A.CGROUP_INET_SOCK_RELEASE, _L | _O),
    _r("cgroup/sock", _T.CGROUP_SOCK, _A.CGROUP_INET_SOCK_CREATE, _L | _O | _P),
    _r("cgroup/post_bind4", _T.CGROUP_SOCK, _A.CGROUP_INET4_POST_BIND, _L | _O),
    _r("cgroup/post_bind6", _T.CGROUP_SOCK, _A.CGROUP_INET6_POST_BIND, _L | _O),
    _r("cgroup/bind4", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_BIND, _L | _O),
    _r("cgroup/bind6", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_BIND, _L | _O),
    _r("cgroup/connect4", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_CONNECT, _L | _O),
    _r("cgroup/connect6", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_CONNECT, _L | _O),
    _r("cgroup/connect_unix", _T.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_CONNECT, _L),
    _r("cgroup/sendmsg4", _T.CGROUP_SOCK_ADDR, _A.CGROUP_UDP4_SENDMSG, _L | _O),
    _r("cgroup/sendmsg6", _T.CGROUP_SOCK_ADDR, _A.CGROUP_UDP6_SENDMSG, _L | _O),
    _r("cgroup/sendmsg_unix", _T.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_SENDMSG, _L),
    _r("cgroup/recvmsg4", _T.CGROUP_SOCK_ADDR, _A.CGROUP_UDP4_RECVMSG, _L | _O),
    _r("cgroup/recvmsg6", _T.CGROUP_SOCK_ADDR, _A.CGROUP_UDP6_RECVMSG, _L | _O),
    _r("cgroup/recvmsg_unix", _T.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_RECVMSG, _L),
    _r("cgroup/getpeername4", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_GETPEERNAME, _L | _O),
    _r("cgroup/getpeername6", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_GETPEERNAME, _L | _O),
    _r("cgroup/getpeername_unix", _T.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_GETPEERNAME, _L),
    _r("cgroup/getsockname4", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_GETSOCKNAME, _L | _O),
    _r("cgroup/getsockname6", _T.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_GETSOCKNAME, _L | _O),
    _r("cgroup/getsockname_unix", _T.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_GETSOCKNAME, _L),
    _r("cgroup/sysctl", _T.CGROUP_SYSCTL, _A.CGROUP_SYSCTL, _L | _O | _P),
    _r("cgroup/getsockopt", _T.CGROUP_SOCKOPT, _A.CGROUP_GETSOCKOPT, _L | _O | _P),
    _r("cgroup/setsockopt", _T.CGROUP_SOCKOPT, _A.CGROUP_SETSOCKOPT, _L | _O | _P),
    _r("cgroup/dev", _T.CGROUP_DEVICE, _A.CGROUP_DEVICE, _L | _O | _P),
    _r("struct_ops", _T.STRUCT_OPS, None, _L, plus=True),
    _r("struct_ops.s", _T.STRUCT_OPS, None, _L, plus=True, sleepable=True),
    _r("sk_lookup", _T.SK_LOOKUP, _A.SK_LOOKUP, _L),
    _r("netfilter", _T.NETFILTER, _A.NETFILTER, _L),
    # Older loaders' prefixes with a slash (libbpf 0.x, samples/bpf, PREVAIL).
    _r("kprobe/", _T.KPROBE, None, _O | _P),
    _r("kretprobe/", _T.KPROBE, None, _O | _P),
    _r("uprobe/", _T.KPROBE, None, _O),
    _r("uretprobe/", _T.KPROBE, None, _O),
    _r("tracepoint/", _T.TRACEPOINT, None, _O | _P),
    _r("tp/", _T.TRACEPOINT, None, _O),
    _r("raw_tracepoint/", _T.RAW_TRACEPOINT, None, _O | _P),
    _r("raw_tp/", _T.RAW_TRACEPOINT, None, _O | _P),
    _r("raw_tracepoint.w/", _T.RAW_TRACEPOINT_WRITABLE, None, _O | _P),
    _r("raw_tp.w/", _T.RAW_TRACEPOINT_WRITABLE, None, _O | _P),
    _r("tp_btf/", _T.TRACING, _A.TRACE_RAW_TP, _O | _P, attach_btf=True),
    _r("fentry/", _T.TRACING, _A.TRACE_FENTRY, _O | _P, attach_btf=True),
    _r("fexit/", _T.TRACING, _A.TRACE_FEXIT, _O | _P, attach_btf=True),
    _r("fmod_ret/", _T.TRACING, _A.MODIFY_RETURN, _O | _P, attach_btf=True),
    _r("iter/", _T.TRACING, _A.TRACE_ITER, _O | _P, attach_btf=True),
    _r("freplace/", _T.EXT, None, _O | _P, attach_btf=True),
    _r("lsm/", _T.LSM, _A.LSM_MAC, _O | _P, attach_btf=True),
    _r("xdp_devmap/", _T.XDP, _A.XDP_DEVMAP, _O),
    _r("xdp_cpumap/", _T.XDP, _A.XDP_CPUMAP, _O),
    _r("sk_lookup/", _T.SK_LOOKUP, _A.SK_LOOKUP, _O | _P),
    _r("struct_ops/", _T.STRUCT_OPS, None, _O | _P),
    # PREVAIL's own spellings (its table differs from the kernel's here).
    _r("perf_section", _T.PERF_EVENT, None, _P),
    _r("sk_reuseport/", _T.SK_REUSEPORT, None, _P),
    _r("cgroup/bind", _T.CGROUP_SOCK_ADDR, None, _P),
    _r("cgroup/post_bind", _T.CGROUP_SOCK_ADDR, None, _P),
    _r("cgroup/connect", _T.CGROUP_SOCK_ADDR, None, _P),
    _r("cgroup/sendmsg", _T.CGROUP_SOCK_ADDR, None, _P),
    _r("cgroup/recvmsg", _T.CGROUP_SOCK_ADDR, None, _P),
    _r("cgroup/getpeername", _T.CGROUP_SOCK_ADDR, None, _P),
    _r("cgroup/getsockname", _T.CGROUP_SOCK_ADDR, None, _P),
    _r("lsm.s/", _T.TRACING, None, _P),
    _r("syscall/", _T.SYSCALL, None, _P),
    _r("netfilter/", _T.NETFILTER, None, _P),
    # eBPF for Windows (net_ebpf_ext_program_info.h and its samples).
    _r("xdp", _T.WINDOWS_XDP, _A.WINDOWS_XDP, _W),
    _r("bind", _T.BIND, _A.WINDOWS_BIND, _W),
    _r("cgroup/connect4", _T.WINDOWS_CGROUP_SOCK_ADDR, _A.WINDOWS_CGROUP_INET4_CONNECT, _W),
    _r("cgroup/connect6", _T.WINDOWS_CGROUP_SOCK_ADDR, _A.WINDOWS_CGROUP_INET6_CONNECT, _W),
    _r(
        "cgroup/recv_accept4",
        _T.WINDOWS_CGROUP_SOCK_ADDR,
        _A.WINDOWS_CGROUP_INET4_RECV_ACCEPT,
        _W,
    ),
    _r(
        "cgroup/recv_accept6",
        _T.WINDOWS_CGROUP_SOCK_ADDR,
        _A.WINDOWS_CGROUP_INET6_RECV_ACCEPT,
        _W,
    ),
    _r(
        "cgroup/connect_authorization4",
        _T.WINDOWS_CGROUP_SOCK_ADDR,
        _A.WINDOWS_CGROUP_INET4_CONNECT_AUTHORIZATION,
        _W,
    ),
    _r(
        "cgroup/connect_authorization6",
        _T.WINDOWS_CGROUP_SOCK_ADDR,
        _A.WINDOWS_CGROUP_INET6_CONNECT_AUTHORIZATION,
        _W,
    ),
    _r("cgroup/bind4", _T.WINDOWS_CGROUP_SOCK_ADDR, _A.WINDOWS_CGROUP_INET4_BIND, _W),
    _r("cgroup/bind6", _T.WINDOWS_CGROUP_SOCK_ADDR, _A.WINDOWS_CGROUP_INET6_BIND, _W),
    _r("cgroup/listen4", _T.WINDOWS_CGROUP_SOCK_ADDR, _A.WINDOWS_CGROUP_INET4_LISTEN, _W),
    _r("cgroup/listen6", _T.WINDOWS_CGROUP_SOCK_ADDR, _A.WINDOWS_CGROUP_INET6_LISTEN, _W),
    _r("sockops", _T.WINDOWS_SOCK_OPS, _A.WINDOWS_CGROUP_SOCK_OPS, _W),
    _r("sample_ext", _T.WINDOWS_SAMPLE, _A.WINDOWS_SAMPLE, _W),
)

_BY_LOADER: dict[Loader, tuple[SectionRule, ...]] = {
    loader: tuple(r for r in SECTION_RULES if r.loaders & loader)
    for loader in (Loader.LIBBPF, Loader.LEGACY, Loader.PREVAIL, Loader.WINDOWS)
}


def _longest(section: str, loader: Loader) -> SectionRule | None:
    best: SectionRule | None = None
    for rule in _BY_LOADER[loader]:
        if rule.matches(section, loader) and (best is None or len(rule.prefix) > len(best.prefix)):
            best = rule
    return best


def match_section(
    section: str, *, platform: str = "linux", loaders: Loader | None = None
) -> SectionMatch | None:
    """The rule that types ``section``, or ``None`` when no rule knows it.

    On ``platform="linux"`` libbpf 1.x's rules are tried first (first match in libbpf's
    order), then the legacy prefixes (longest first); ``platform="windows"`` uses eBPF for
    Windows' sections. ``loaders`` restricts the conventions tried (in that same order).
    """
    if platform == "windows":
        order = (Loader.WINDOWS,)
    elif platform == "linux":
        order = (Loader.LIBBPF, Loader.LEGACY)
    else:
        raise ValueError(f"unknown platform {platform!r}")
    for loader in order:
        if loaders is not None and not loaders & loader:
            continue
        if loader == Loader.LIBBPF:
            rule = next((r for r in _BY_LOADER[loader] if r.matches(section, loader)), None)
        else:
            rule = _longest(section, loader)
        if rule is not None:
            return SectionMatch(section, rule, loader)
    return None


def prevail_program_type(section: str, path: str = "") -> ProgType:
    """The program type PREVAIL gives ``section`` of the object at ``path``.

    PREVAIL types Cilium's objects by file name (a path containing ``cilium`` and ``xdp`` is
    XDP, one containing ``cilium`` and ``lxc`` gets tc's context), otherwise by the first
    (here: longest) matching prefix of its table, and a socket filter when nothing matches.
    """
    if "cilium" in path:
        if "xdp" in path:
            return ProgType.XDP
        if "lxc" in path:
            return ProgType.SCHED_CLS
    rule = _longest(section, Loader.PREVAIL)
    return rule.prog_type if rule is not None else ProgType.SOCKET_FILTER
