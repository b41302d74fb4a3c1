"""eBPF-for-Windows objects: how to recognise them, and their helper ids in Linux's numbering.

An object built with eBPF for Windows' headers looks like a Linux one but numbers map
types and helpers its own way, uses 32-byte legacy map records and has its own program
types (``bind``; an ``xdp_md`` with 64-bit pointers). :func:`is_windows_object` recognises
one from its map records, section names or BTF type names; :func:`translate_helper` maps
its general helper ids to Linux's (map types are translated by :mod:`pybpf.maptypes`).
Helpers with no Linux counterpart are refused with :class:`~pybpf.errors.NotSupportedError`
naming them, never misread.
"""

from __future__ import annotations

from collections.abc import Iterable

from pybpf.btf import Spec as BTFSpec
from pybpf.errors import NotSupportedError

__all__ = [
    "WINDOWS_MAP_RECORD_SIZE",
    "WINDOWS_HELPERS",
    "is_windows_object",
    "translate_helper",
]

WINDOWS_MAP_RECORD_SIZE = 32  # ebpf_map_definition_in_file_t: eight u32 fields

# Sections only eBPF for Windows uses: these names, or names that start with a prefix.
_WINDOWS_SECTIONS = frozenset({"bind", "sample_ext"})
_WINDOWS_SECTION_PREFIXES = (
    "bind/",
    "sample_ext/",
    "cgroup/recv_accept",
    "cgroup/connect_authorization",
    "cgroup/listen",
)
# Type names from eBPF for Windows' headers (ebpf_structs.h, ebpf_nethooks.h).
_WINDOWS_BTF_NAMES = frozenset(
    {
        "ebpf_map_type_t",
        "ebpf_pin_type_t",
        "_ebpf_map_definition_in_file",
        "ebpf_map_definition_in_file_t",
        "bind_md_t",
        "_bind_md",
        "xdp_md_t",
        "bpf_sock_addr_t",
        "bpf_sock_ops_t",
        "sample_program_context_t",
    }
)

# eBPF for Windows' general helper ids (ebpf_structs.h) -> (name, Linux helper id or None).
WINDOWS_HELPERS: dict[int, tuple[str, int | None]] = {
    1: ("map_lookup_elem", 1),
    2: ("map_update_elem", 2),
    3: ("map_delete_elem", 3),
    4: ("map_lookup_and_delete_elem", None),
    5: ("tail_call", 12),
    6: ("get_prandom_u32", 7),
    7: ("ktime_get_boot_ns", 125),
    8: ("get_smp_processor_id", 8),
    9: ("ktime_get_ns", 5),
    10: ("csum_diff", 28),
    11: ("ringbuf_output", 130),
    12: ("trace_printk2", 6),  # Linux's trace_printk(fmt, fmt_size, ...) takes r3-r5 alike
    13: ("trace_printk3", 6),
    14: ("trace_printk4", 6),
    15: ("trace_printk5", 6),
    16: ("map_push_elem", 87),
    17: ("map_pop_elem", 88),
    18: ("map_peek_elem", 89),
    19: ("get_current_pid_tgid", 14),
    20: ("get_current_logon_id", None),
    21: ("is_current_admin", None),
    22: ("memcpy", None),
    23: ("memcmp", None),
    24: ("memset", None),
    25: ("memmove", None),
    26: ("get_socket_cookie", 46),
    27: ("strncpy_s", None),
    28: ("strncat_s", None),
    29: ("strnlen_s", None),
    30: ("ktime_get_boot_ms", None),
    31: ("ktime_get_ms", None),
    32: ("perf_event_output", 25),
    33: ("get_current_process_start_key", None),
    34: ("get_current_thread_create_time", None),
    35: ("redirect_map", 51),
}


def is_windows_object(
    map_record_sizes: Iterable[int], sections: Iterable[str], btf: BTFSpec | None
) -> bool:
    """True when an object was built with eBPF for Windows' headers.

    Signs: a legacy map record of 32 bytes, a section only eBPF for Windows uses
    (``bind``, ``cgroup/recv_accept4``, ...), or a BTF type from its headers.
    """
    if WINDOWS_MAP_RECORD_SIZE in set(map_record_sizes):
        return True
    for name in sections:
        if name in _WINDOWS_SECTIONS or name.startswith(_WINDOWS_SECTION_PREFIXES):
            return True
    if btf is not None:
        return any(btf.find(name) is not None for name in _WINDOWS_BTF_NAMES)
    return False


def translate_helper(windows_id: int, **location: object) -> int:
    """Linux's id for eBPF for Windows' helper ``windows_id``.

    Helpers Linux does not have (and program-type-specific helpers, ids from 65536) raise
    :class:`NotSupportedError` with ``feature`` naming the helper.
    """
    name, linux_id = WINDOWS_HELPERS.get(windows_id, (f"helper {windows_id}", None))
    if linux_id is None:
        raise NotSupportedError(
            f"eBPF-for-Windows helper {windows_id} ({name}) has no Linux counterpart",
            feature=f"windows helper {name}",
            **location,
        )
    return linux_id
