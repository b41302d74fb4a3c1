"""uapi: Linux's numeric ids for bpf() commands, program, map, attach and link types, and flags.

Every value here mirrors ``include/uapi/linux/bpf.h`` (enum order is the kernel's ABI, so
the numbers never change). Program, attach and map type ids
and map flags are not repeated here: they come from the shared tables (``pybpf.progtypes``,
``pybpf.maptypes``), which sit below this layer.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

# The program, attach and map type ids are the shared tables' (one table each); they are
# re-exported here so the raw layer reads as Linux's uapi.
from pybpf.maptypes import MapFlag, MapType
from pybpf.progtypes.ids import AttachType, ProgType

__all__ = [
    "Cmd",
    "MapType",
    "ProgType",
    "AttachType",
    "LinkType",
    "UpdateFlag",
    "MapFlag",
    "ProgFlag",
    "AttachFlag",
    "TestRunFlag",
    "LogLevel",
    "OBJ_NAME_LEN",
    "TAG_SIZE",
    "FUNC_INFO_REC_SIZE",
    "LINE_INFO_REC_SIZE",
]

OBJ_NAME_LEN = 16  # BPF_OBJ_NAME_LEN, NUL included
TAG_SIZE = 8  # BPF_TAG_SIZE
FUNC_INFO_REC_SIZE = 8  # sizeof(struct bpf_func_info)
LINE_INFO_REC_SIZE = 16  # sizeof(struct bpf_line_info)


class Cmd(IntEnum):
    """``enum bpf_cmd``: the first argument of ``bpf(2)`` (uapi mirror)."""

    MAP_CREATE = 0
    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    MAP_DELETE_ELEM = 3
    MAP_GET_NEXT_KEY = 4
    PROG_LOAD = 5
    OBJ_PIN = 6
    OBJ_GET = 7
    PROG_ATTACH = 8
    PROG_DETACH = 9
    PROG_TEST_RUN = 10
    PROG_GET_NEXT_ID = 11
    MAP_GET_NEXT_ID = 12
    PROG_GET_FD_BY_ID = 13
    MAP_GET_FD_BY_ID = 14
    OBJ_GET_INFO_BY_FD = 15
    PROG_QUERY = 16
    RAW_TRACEPOINT_OPEN = 17
    BTF_LOAD = 18
    BTF_GET_FD_BY_ID = 19
    TASK_FD_QUERY = 20
    MAP_LOOKUP_AND_DELETE_ELEM = 21
    MAP_FREEZE = 22
    BTF_GET_NEXT_ID = 23
    MAP_LOOKUP_BATCH = 24
    MAP_LOOKUP_AND_DELETE_BATCH = 25
    MAP_UPDATE_BATCH = 26
    MAP_DELETE_BATCH = 27
    LINK_CREATE = 28
    LINK_UPDATE = 29
    LINK_GET_FD_BY_ID = 30
    LINK_GET_NEXT_ID = 31
    ENABLE_STATS = 32
    ITER_CREATE = 33
    LINK_DETACH = 34
    PROG_BIND_MAP = 35
    TOKEN_CREATE = 36

    @property
    def command_name(self) -> str:
        """The kernel's name for the command (``"BPF_PROG_LOAD"``)."""
        return "BPF_" + self.name





class LinkType(IntEnum):
    """``enum bpf_link_type`` (uapi mirror)."""

    UNSPEC = 0
    RAW_TRACEPOINT = 1
    TRACING = 2
    CGROUP = 3
    ITER = 4
    NETNS = 5
    XDP = 6
    PERF_EVENT = 7
    KPROBE_MULTI = 8
    STRUCT_OPS = 9
    NETFILTER = 10
    TCX = 11
    UPROBE_MULTI = 12
    NETKIT = 13
    SOCKMAP = 14


class UpdateFlag(IntFlag):
    """Flags of ``BPF_MAP_UPDATE_ELEM`` (``BPF_ANY``, ``BPF_NOEXIST``, ...)."""

    ANY = 0
    NOEXIST = 1
    EXIST = 2
    LOCK = 4  # BPF_F_LOCK



class ProgFlag(IntFlag):
    """``prog_flags`` of ``BPF_PROG_LOAD`` (``BPF_F_*``)."""

    STRICT_ALIGNMENT = 1 << 0
    ANY_ALIGNMENT = 1 << 1
    TEST_RND_HI32 = 1 << 2
    TEST_STATE_FREQ = 1 << 3
    SLEEPABLE = 1 << 4
    XDP_HAS_FRAGS = 1 << 5
    XDP_DEV_BOUND_ONLY = 1 << 6
    TEST_REG_INVARIANTS = 1 << 7


class AttachFlag(IntFlag):
    """``attach_flags`` of ``BPF_PROG_ATTACH`` (cgroup attach modes)."""

    ALLOW_OVERRIDE = 1 << 0
    ALLOW_MULTI = 1 << 1
    REPLACE = 1 << 2


class TestRunFlag(IntFlag):
    """``flags`` of ``BPF_PROG_TEST_RUN``."""

    __test__ = False  # not a pytest test class

    RUN_ON_CPU = 1 << 0
    XDP_LIVE_FRAMES = 1 << 1


class LogLevel(IntFlag):
    """Verifier ``log_level`` bits (``BPF_LOG_LEVEL1``, ``BPF_LOG_LEVEL2``, ...)."""

    LEVEL1 = 1
    LEVEL2 = 2
    STATS = 4
    FIXED = 8
