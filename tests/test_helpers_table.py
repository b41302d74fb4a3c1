"""Helper table: ids and names match linux/bpf.h, prototypes are Linux's, lookups work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pybpf.errors import InputError
from pybpf.helpers import HELPER_NAMES, HELPERS, ArgType, RetType, TypeFlag, helper, lookup
from pybpf.helpers import types as t

UAPI = Path("/usr/include/linux/bpf.h")


def _uapi_helpers(text: str) -> dict[int, str]:
    """Parse ___BPF_FUNC_MAPPER (new form, explicit ids) or __BPF_FUNC_MAPPER (old, implicit)."""
    explicit = re.findall(r"FN\((\w+), (\d+), ##ctx\)", text)
    if explicit:
        return {int(i): name for name, i in explicit}
    block = text[text.index("#define __BPF_FUNC_MAPPER(FN)") :]
    block = block[: block.index("/* */")]
    return dict(enumerate(re.findall(r"FN\((\w+)\)", block)))


def test_ids_match_the_installed_linux_header():
    if not UAPI.exists():
        pytest.skip("no /usr/include/linux/bpf.h on this machine")
    installed = _uapi_helpers(UAPI.read_text())
    assert len(installed) > 150
    for helper_id, name in installed.items():
        assert HELPER_NAMES[helper_id] == name, helper_id


def test_table_covers_every_id_once():
    assert [row.id for row in HELPERS] == list(range(212))
    assert HELPERS[211].name == "cgrp_storage_delete"
    assert len({row.name for row in HELPERS}) == len(HELPERS)
    known = [row for row in HELPERS if row.known]
    assert len(known) >= 40
    unknown = [row for row in HELPERS if not row.known]
    assert all(r.ret is None and r.args == () and r.gpl_only is None for r in unknown)
    assert lookup("lwt_seg6_adjust_srh").known is False


def test_lookup_by_id_and_every_spelling_of_the_name():
    row = helper(1)
    assert row is helper("map_lookup_elem") is helper("bpf_map_lookup_elem")
    assert row is helper("BPF_FUNC_map_lookup_elem")
    assert (row.c_name, row.enum_name) == ("bpf_map_lookup_elem", "BPF_FUNC_map_lookup_elem")
    assert lookup(5).name == "ktime_get_ns" and lookup(999) is None and lookup("nope") is None
    for bad in (0, -1, 212, "unspec", "not_a_helper"):
        with pytest.raises(InputError):
            helper(bad)


def _sig(name):
    row = helper(name)
    return row.ret.name, [a.name for a in row.args], row.gpl_only


@pytest.mark.parametrize(
    "name, ret, args, gpl",
    [
        ("map_lookup_elem", "RET_PTR_TO_MAP_VALUE_OR_NULL",
         ["ARG_CONST_MAP_PTR", "ARG_PTR_TO_MAP_KEY"], False),
        ("map_update_elem", "RET_INTEGER",
         ["ARG_CONST_MAP_PTR", "ARG_PTR_TO_MAP_KEY", "ARG_PTR_TO_MAP_VALUE", "ARG_ANYTHING"],
         False),
        ("ktime_get_ns", "RET_INTEGER", [], False),
        ("trace_printk", "RET_INTEGER", ["ARG_PTR_TO_MEM | MEM_RDONLY", "ARG_CONST_SIZE"], True),
        ("tail_call", "RET_VOID", ["ARG_PTR_TO_CTX", "ARG_CONST_MAP_PTR", "ARG_ANYTHING"], False),
        ("skb_load_bytes", "RET_INTEGER",
         ["ARG_PTR_TO_CTX", "ARG_ANYTHING", "ARG_PTR_TO_UNINIT_MEM", "ARG_CONST_SIZE"], False),
        ("csum_diff", "RET_INTEGER",
         ["ARG_PTR_TO_MEM | PTR_MAYBE_NULL | MEM_RDONLY", "ARG_CONST_SIZE_OR_ZERO",
          "ARG_PTR_TO_MEM | PTR_MAYBE_NULL | MEM_RDONLY", "ARG_CONST_SIZE_OR_ZERO", "ARG_ANYTHING"],
         False),
        ("perf_event_output", "RET_INTEGER",
         ["ARG_PTR_TO_CTX", "ARG_CONST_MAP_PTR", "ARG_ANYTHING", "ARG_PTR_TO_MEM | MEM_RDONLY",
          "ARG_CONST_SIZE_OR_ZERO"], True),
        ("ringbuf_reserve", "RET_PTR_TO_RINGBUF_MEM_OR_NULL",
         ["ARG_CONST_MAP_PTR", "ARG_CONST_ALLOC_SIZE_OR_ZERO", "ARG_ANYTHING"], False),
        ("ringbuf_submit", "RET_VOID",
         ["ARG_PTR_TO_RINGBUF_MEM | OBJ_RELEASE", "ARG_ANYTHING"], False),
        ("loop", "RET_INTEGER",
         ["ARG_ANYTHING", "ARG_PTR_TO_FUNC", "ARG_PTR_TO_STACK_OR_NULL", "ARG_ANYTHING"], False),
        ("sk_lookup_tcp", "RET_PTR_TO_SOCKET_OR_NULL",
         ["ARG_PTR_TO_CTX", "ARG_PTR_TO_MEM | MEM_RDONLY", "ARG_CONST_SIZE", "ARG_ANYTHING",
          "ARG_ANYTHING"], False),
        ("sk_release", "RET_INTEGER", ["ARG_PTR_TO_BTF_ID_SOCK_COMMON | OBJ_RELEASE"], False),
        ("probe_read_kernel", "RET_INTEGER",
         ["ARG_PTR_TO_UNINIT_MEM", "ARG_CONST_SIZE_OR_ZERO", "ARG_ANYTHING"], True),
        ("spin_lock", "RET_VOID", ["ARG_PTR_TO_SPIN_LOCK"], False),
        ("strtol", "RET_INTEGER",
         ["ARG_PTR_TO_MEM | MEM_RDONLY", "ARG_CONST_SIZE", "ARG_ANYTHING",
          "ARG_PTR_TO_FIXED_SIZE_MEM | MEM_UNINIT | MEM_WRITE | MEM_ALIGNED"], False),
    ],
)  # fmt: skip
def test_prototypes_are_linux_s(name, ret, args, gpl):
    assert _sig(name) == (ret, args, gpl)


def test_flags_and_sizes_are_recorded():
    assert helper("map_lookup_elem").pkt_access is True
    assert helper("trace_printk").pkt_access is False
    assert helper("copy_from_user").might_sleep is True
    assert helper("strtol").arg(4).size == 8
    assert helper("strtol").arg(5) is None and helper("ktime_get_ns").nargs == 0
    assert helper("redirect_map").kernel_proto == "bpf_xdp_redirect_map_proto"
    assert helper("lwt_seg6_adjust_srh").nargs is None
    assert helper("get_current_task_btf").ret.btf_id.startswith("btf_tracing_ids")


def test_type_encoding_matches_linux_bits():
    assert TypeFlag.PTR_MAYBE_NULL == 1 << 8 and TypeFlag.MEM_WRITE == 1 << 26
    uninit = t.ARG_PTR_TO_MEM | t.MEM_UNINIT | t.MEM_WRITE
    assert uninit == t.ARG_PTR_TO_UNINIT_MEM and uninit.name == "ARG_PTR_TO_UNINIT_MEM"
    assert uninit.value == int(ArgType.ARG_PTR_TO_MEM) | (1 << 15) | (1 << 26)
    assert uninit.uninit and not uninit.readonly
    assert t.RET_PTR_TO_MAP_VALUE_OR_NULL.base == RetType.RET_PTR_TO_MAP_VALUE
    assert t.RET_PTR_TO_MAP_VALUE_OR_NULL.maybe_null
    assert t.RET_VOID.is_void and not t.RET_INTEGER.is_void
    assert (t.ARG_PTR_TO_MEM | t.PTR_MAYBE_NULL).name == "ARG_PTR_TO_MEM_OR_NULL"
    assert str(t.ARG_PTR_TO_CTX | t.PTR_MAYBE_NULL) == "ARG_PTR_TO_CTX_OR_NULL"
