"""Layout: the native blocks JIT code and Python share (context slots, status codes, batches).

Every run hands the compiled entry function the address of one native block of
:data:`FIELDS` unsigned 64-bit slots. Generated code reads its inputs from it (stack base,
region table, packet, helper dispatcher) and, when it must stop, writes a status and the
error's details there and returns; Python then raises the matching
:mod:`pybpf.errors` exception. IR building (:mod:`pybpf.jit.lower`) and the Python side
(:mod:`pybpf.jit.program`) both read the slot numbers from here, so they cannot disagree.

A batch run (:meth:`pybpf.jit.JitProgram.run_batch`) also hands the batch loop a
descriptor of :data:`BATCH_FIELDS` u64 fields (:class:`BatchField`) saying where the
packets are and what each run's registers and context fields hold (:class:`PacketArg`).
"""

from __future__ import annotations

from enum import IntEnum

from pybpf.isa.opcodes import MAX_CALL_DEPTH, STACK_SIZE

__all__ = [
    "Slot",
    "Status",
    "FIELDS",
    "NO_HEADER",
    "REGION_FIELDS",
    "PERM_READ",
    "PERM_WRITE",
    "STACK_BYTES",
    "HELPER_ARGS",
    "BatchField",
    "BATCH_FIELDS",
    "PacketArg",
    "PATCH_FIELDS",
    "TAIL_CALL",
    "DISPATCH_GLOBAL",
]

TAIL_CALL = 12  # helper id of bpf_tail_call (lowered to return the target's r0)
DISPATCH_GLOBAL = "pybpf_dispatch"  # each module's u64 global: its helper dispatcher's address


class Slot(IntEnum):
    """Index of each u64 field of the context block."""

    STATUS = 0  # a Status; generated code returns at once when it is not OK
    ERR_PC = 1  # pc of the instruction that stopped the run
    ERR_A = 2  # memory: address; call depth: depth; budget: budget left at block entry
    ERR_B = 3  # memory: access size
    ERR_C = 4  # memory: 0 read, 1 write
    MAY_GOTO = 5  # may_goto iterations left in this run
    BUDGET = 6  # instructions left (debug checks only), signed
    STACK = 7  # address of the stack block: MAX_CALL_DEPTH frames of STACK_SIZE bytes
    REGIONS = 8  # address of the region table (debug checks only)
    NREGIONS = 9  # rows in the region table
    PACKET = 10  # address of the legacy LD_ABS/LD_IND packet
    PACKET_SIZE = 11  # its length
    HAS_PACKET = 12  # 1 when the run has a packet
    DISPATCH = 13  # unused (each module reads its helper dispatcher from a global)
    ACCESS = 14  # address of the shared debug-mode access check (pybpf_access_ok)
    ARG1 = 15  # r1..r5 at entry (one slot each: passing them through ctypes costs more)
    ARG2 = 16
    ARG3 = 17
    ARG4 = 18
    ARG5 = 19
    MAY_GOTO_INIT = 20  # copied to MAY_GOTO by the entry function at the start of each run
    BUDGET_INIT = 21  # copied to BUDGET likewise (the entry also clears STATUS)
    RCACHE_BASE = 22  # debug checks: the region the last read check found (base, size);
    RCACHE_SIZE = 23  # size 0 matches nothing. Reset whenever the region table changes.
    WCACHE_BASE = 24  # the same for writes
    WCACHE_SIZE = 25
    BATCH_DATA = 26  # batch runs: the current packet's start and end (the batch loop
    BATCH_END = 27  # writes them before each packet)
    BATCH_ROW = 28  # 1: row 0 of the region table is the current packet (debug checks)
    CPU = 29  # the run's CPU (per-CPU maps in native map calls)
    TAILED = 30  # 1 after a bpf_tail_call ran its target: the calling function returns r0
    TAIL_COUNT = 31  # bpf_tail_call count of the run's chain (Linux's tail_call_cnt)
    TAIL_COUNT_INIT = 32  # copied to TAIL_COUNT by the entry function (a target continues
    # its caller's count; 0 for a program run from Python, each run of repeat or batch)
    PACKET_HEAD = 33  # legacy loads with negative offsets (SKF_NET_OFF, SKF_LL_OFF): the
    PACKET_MAC = 34  # buffer's head, mac and network headers, signed offsets from PACKET
    PACKET_NET = 35  # (NO_HEADER: not set, every negative load fails)


NO_HEADER = -(1 << 60)  # PACKET_MAC/PACKET_NET when the run's packet has no such header


FIELDS = len(Slot)


class Status(IntEnum):
    """Why generated code stopped (``Slot.STATUS``)."""

    OK = 0
    MEMORY = 1  # a checked access failed: ERR_A address, ERR_B size, ERR_C access
    CALL_DEPTH = 2  # a local call went past MAX_CALL_DEPTH frames: ERR_A depth
    HELPER = 3  # a helper failed; the Python side holds the exception
    BUDGET = 4  # the instruction budget ran out: ERR_A budget left at the block's entry
    NO_PACKET = 5  # LD_ABS/LD_IND ran without a packet


# Region table rows: (base, end, permissions), each a u64.
REGION_FIELDS = 3
PERM_READ = 1
PERM_WRITE = 2

# One stack frame per call depth, contiguous: frame d is [STACK + d*512, STACK + (d+1)*512).
STACK_BYTES = MAX_CALL_DEPTH * STACK_SIZE

# The dispatcher's arguments after the context: helper id, pc, call depth, r1..r5.
HELPER_ARGS = 3 + 5


class BatchField(IntEnum):
    """Index of each u64 field of a batch descriptor (:mod:`pybpf.jit.batch`).

    The batch loop (:mod:`pybpf.jit.batchloop`) reads it once; packet ``i`` is
    ``[BASE + offsets[i], BASE + offsets[i] + lengths[i])``.
    """

    COUNT = 0  # packets
    BASE = 1  # address of the packet buffer
    OFFSETS = 2  # address of COUNT u64 offsets into the buffer
    LENGTHS = 3  # address of COUNT u64 lengths
    RESULTS = 4  # address of COUNT u64: each packet's r0
    ARG_KINDS = 5  # 5 fields: a PacketArg per register r1..r5
    ARG_VALUES = 10  # 5 fields: a constant added to each register's PacketArg value
    CTX = 15  # address of the context copy each packet's run gets (0: none)
    CTX_TEMPLATE = 16  # address of the context template copied to CTX before each packet
    CTX_SIZE = 17  # bytes copied
    PATCHES = 18  # address of NPATCHES rows (offset, PacketArg, size 4 or 8), each u64
    NPATCHES = 19  # context fields set from the packet after the copy
    ENTRY = 20  # address of the program's entry function, i64 (i64* ctx)


BATCH_FIELDS = max(BatchField) + 1  # ARG_KINDS and ARG_VALUES span five fields each
PATCH_FIELDS = 3


class PacketArg(IntEnum):
    """What a register (or a context field) holds for each packet of a batch run."""

    ZERO = 0  # nothing but the constant
    DATA = 1  # the packet's start address
    DATA_END = 2  # one past its last byte
    LENGTH = 3  # its length in bytes
    CONTEXT = 4  # the address of the run's context copy
