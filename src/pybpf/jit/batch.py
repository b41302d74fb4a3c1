"""Batch: many packets in one native buffer, the descriptor the batch loop reads, its results.

:class:`PacketBatch` holds packets back to back in one writable native region (from a
list of byte strings, or one buffer plus offsets and lengths); programs modify them in
place. :class:`BatchPlan` checks what each run's registers and context fields hold
(:class:`~pybpf.jit.layout.PacketArg`) and writes the descriptor
(:class:`~pybpf.jit.layout.BatchField`) of one batch run (a plan may serve many runs: it
keeps its native context copy mapped until closed); :class:`BatchResult` is what
:meth:`pybpf.jit.JitProgram.run_batch` returns. A batch's bounds are checked in one
C-level pass over its offsets and lengths (``array('Q')``), not a Python loop per packet.
"""

from __future__ import annotations

import ctypes
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from operator import add

from pybpf.errors import InputError
from pybpf.jit.layout import BATCH_FIELDS, BatchField, PacketArg
from pybpf.memory import Region

__all__ = ["PacketBatch", "BatchPlan", "BatchResult", "PacketArg"]

_M64 = (1 << 64) - 1
_Descriptor = ctypes.c_uint64 * BATCH_FIELDS


def _u64s(values: Iterable[int], what: str) -> array:
    try:
        if isinstance(values, array) and values.typecode == "Q":
            return values[:]  # a copy (memcpy, no Python loop)
        return array("Q", values)
    except (OverflowError, TypeError) as exc:
        raise InputError(f"{what} must be integers in 0..2**64-1") from exc


class PacketBatch:
    """Packets in one writable native region: packet ``i`` is
    ``region[offsets[i] : offsets[i] + lengths[i]]``.

    ``PacketBatch(buffer, offsets, lengths)`` takes one buffer: a writable
    :class:`~pybpf.memory.Region` is used in place (runs write into it; it stays the
    caller's), any other bytes-like object is copied. :meth:`from_packets` lays out a list of byte
    strings (each one starting on an ``align``-byte boundary). Packets may not overlap
    the buffer's end; they may overlap each other (then runs see each other's writes).
    Close with :meth:`close` (or use as a context manager).
    """

    def __init__(
        self,
        buffer: Region | bytes | bytearray | memoryview,
        offsets: Sequence[int],
        lengths: Sequence[int],
    ) -> None:
        if isinstance(buffer, Region):
            if buffer.closed:
                raise InputError("the packet buffer is closed")
            self.region, self._owned = buffer, False
        else:
            self.region = Region.from_bytes(buffer, kind="packet", name="batch")
            self._owned = True
        self.offsets = _u64s(offsets, "packet offsets")
        self.lengths = _u64s(lengths, "packet lengths")
        if len(self.offsets) != len(self.lengths):
            self.close()
            raise InputError(
                f"{len(self.offsets)} offsets but {len(self.lengths)} lengths for a packet batch"
            )
        size = self.region.size
        # one C-level pass (no Python loop per packet); the loop below runs only to name
        # the first packet that lies outside
        if self.offsets and max(map(add, self.offsets, self.lengths)) > size:
            self.close()
            for index, (offset, length) in enumerate(zip(self.offsets, self.lengths, strict=True)):
                if offset + length > size:
                    raise InputError(
                        f"packet {index} ({offset}+{length}) is outside a buffer of {size} "
                        "bytes",
                        offset=offset,
                    )

    @classmethod
    def back_to_back(
        cls, region: Region, sizes: Iterable[int], *, skip: int = 0, limit: int | None = None
    ) -> PacketBatch:
        """Packets laid back to back in ``region`` (a caller's writable region, used in
        place), packet ``i`` of ``sizes[i]`` bytes right after packet ``i - 1``: the runs see
        each from ``skip`` bytes in, at most ``limit`` bytes of it. The offsets are built
        once from the sizes and the bounds checked with their sum, in C-level passes."""
        if region.closed:
            raise InputError("the packet buffer is closed")
        sizes = _u64s(sizes, "packet sizes")
        offsets = array("Q", accumulate(sizes, initial=0))
        total = offsets.pop()  # the end of the last packet
        if total > region.size:
            raise InputError(f"{total} bytes of packets in a buffer of {region.size} bytes")
        lengths = sizes
        if limit is not None and sizes and max(sizes) > limit:
            lengths = _u64s((n if n <= limit else limit for n in sizes), "packet sizes")
        if skip:
            if skip < 0 or (sizes and min(lengths) < skip):
                raise InputError(f"packets shorter than the {skip} bytes to skip")
            offsets = array("Q", [o + skip for o in offsets])
            lengths = array("Q", [n - skip for n in lengths])
        batch = cls.__new__(cls)
        batch.region, batch._owned = region, False
        batch.offsets, batch.lengths = offsets, lengths
        return batch

    @classmethod
    def from_packets(
        cls, packets: Iterable[bytes | bytearray | memoryview], *, align: int = 8
    ) -> PacketBatch:
        """Copy ``packets`` into one new buffer, each at an ``align``-byte boundary."""
        if align < 1:
            raise InputError(f"packet alignment must be positive, not {align}")
        chunks = [memoryview(p).cast("B") for p in packets]
        offsets, lengths, position = [], [], 0
        for chunk in chunks:
            offsets.append(position)
            lengths.append(len(chunk))
            position += -(-len(chunk) // align) * align
        buffer = bytearray(position)
        for offset, chunk in zip(offsets, chunks, strict=True):
            buffer[offset : offset + len(chunk)] = chunk
        return cls(buffer, offsets, lengths)

    def __len__(self) -> int:
        return len(self.offsets)

    def packet(self, index: int) -> bytes:
        """Packet ``index`` as it is now (after runs: as the program left it)."""
        offset = self.offsets[index]
        return bytes(self.region.view[offset : offset + self.lengths[index]])

    def packets(self) -> list[bytes]:
        """Every packet, in order."""
        view = self.region.view
        return [bytes(view[o : o + n]) for o, n in zip(self.offsets, self.lengths, strict=True)]

    def close(self) -> None:
        """Free the copy (a buffer given as bytes); a caller's region stays the caller's."""
        if self._owned:
            self.region.close()

    def __enter__(self) -> PacketBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kind(value: object, what: str) -> PacketArg:
    try:
        return PacketArg(value)
    except ValueError:
        raise InputError(f"{what}: {value!r} is not a PacketArg") from None


class BatchPlan:
    """What each packet's run gets, checked once (see :meth:`pybpf.jit.JitProgram.run_batch`).

    ``args``: r1..r5, each a :class:`PacketArg`, a plain integer (a constant), or a pair
    ``(PacketArg, constant)`` (the value plus the constant). ``context``: a template
    copied into a fresh native context region before every packet; ``context_fields``
    maps a byte offset in it to a :class:`PacketArg` (stored as 8 bytes) or a pair
    ``(PacketArg, size)`` with size 4 or 8, written after the copy (a context's packet
    pointers, for example).

    A plan may be built once and handed to every batch run that shares it
    (``run_batch(..., plan=plan)``): it keeps the native context copy the runs use
    (:meth:`context_region`, mapped on first use) for its lifetime, so repeated batches
    map and unmap nothing; ``context_region`` (a caller's writable region of the template's
    size) lets plans of one caller share one copy, which stays the caller's. One thread at a
    time may run with a plan (or with plans sharing a region); close it with :meth:`close`
    (or use as a context manager).
    """

    def __init__(
        self,
        args: Sequence[object],
        context: bytes | bytearray | memoryview | None = None,
        context_fields: Mapping[int, object] | None = None,
        *,
        context_region: Region | None = None,
    ) -> None:
        if len(args) > 5:
            raise InputError(f"at most 5 arguments (r1-r5), got {len(args)}")
        self.kinds: list[int] = []
        self.values: list[int] = []
        for reg, arg in enumerate(list(args) + [0] * (5 - len(args)), start=1):
            if isinstance(arg, PacketArg):
                kind, value = arg, 0
            elif isinstance(arg, int) and not isinstance(arg, bool):
                kind, value = PacketArg.ZERO, arg
            elif isinstance(arg, tuple) and len(arg) == 2 and isinstance(arg[1], int):
                kind, value = _kind(arg[0], f"r{reg}"), arg[1]
            else:
                raise InputError(f"r{reg}: {arg!r} is not a PacketArg, integer or pair")
            self.kinds.append(int(kind))
            self.values.append(value & _M64)
        self.has_context = context is not None
        self.template = bytes(context) if context is not None else b""
        self._template = ctypes.create_string_buffer(self.template, max(len(self.template), 1))
        if context is None and context_fields:
            raise InputError("context fields need a context template")
        if PacketArg.CONTEXT in self.kinds and context is None:
            raise InputError("PacketArg.CONTEXT needs a context template")
        rows: list[int] = []
        for offset, spec in (context_fields or {}).items():
            kind, size = spec if isinstance(spec, tuple) else (spec, 8)
            kind = _kind(kind, f"context field at {offset}")
            if size not in (4, 8) or not isinstance(offset, int) or offset < 0:
                raise InputError(f"context field {offset}: size must be 4 or 8, not {size}")
            if offset + size > len(self.template):
                raise InputError(
                    f"context field {offset}+{size} is outside a {len(self.template)}-byte "
                    "context",
                    offset=offset,
                )
            rows += [offset, int(kind), size]
        self.patches = array("Q", rows)
        self._ctx: Region | None = None
        self._shared = context_region
        if context_region is not None and (
            context is None or context_region.closed or not context_region.writable
            or context_region.size != len(self.template)
        ):  # fmt: skip
            raise InputError(
                "a shared context region must be open, writable and of the template's size"
            )
        self._fixed: tuple | None = None  # (context region, the descriptor's plan part)

    def context_region(self) -> Region | None:
        """The native region each run's context copy lives in (``None`` without a
        context template): mapped on first use, kept until :meth:`close`."""
        if not self.has_context:
            return None
        if self._shared is not None:
            if self._shared.closed:
                raise InputError("the shared context region is closed")
            return self._shared
        if self._ctx is None or self._ctx.closed:
            self._ctx = Region(len(self.template), kind="ctx", name="ctx")
        return self._ctx

    def close(self) -> None:
        """Unmap the context copy (idempotent; a later run maps a new one; a shared
        region stays open)."""
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None

    def __enter__(self) -> BatchPlan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def descriptor(self, batch: PacketBatch, results: array, ctx: Region | None):
        """The batch loop's descriptor for ``batch`` (kept alive by the caller)."""
        fixed = self._fixed
        if fixed is None or fixed[0] is not ctx:  # the plan's part, built once per context
            part = _Descriptor()
            for j in range(5):
                part[BatchField.ARG_KINDS + j] = self.kinds[j]
                part[BatchField.ARG_VALUES + j] = self.values[j]
            if ctx is not None:
                part[BatchField.CTX] = ctx.address
                part[BatchField.CTX_TEMPLATE] = ctypes.addressof(self._template)
                part[BatchField.CTX_SIZE] = len(self.template)
                part[BatchField.PATCHES] = self.patches.buffer_info()[0]
                part[BatchField.NPATCHES] = len(self.patches) // 3
            self._fixed = fixed = (ctx, bytes(part))
        desc = _Descriptor.from_buffer_copy(fixed[1])
        desc[BatchField.COUNT] = len(batch)
        desc[BatchField.BASE] = batch.region.address
        desc[BatchField.OFFSETS] = batch.offsets.buffer_info()[0]
        desc[BatchField.LENGTHS] = batch.lengths.buffer_info()[0]
        desc[BatchField.RESULTS] = results.buffer_info()[0]
        return desc


@dataclass(frozen=True)
class BatchResult:
    """A batch run: ``retvals[i]`` is packet ``i``'s r0 (u64); ``data_out[i]`` its data
    after the run (given when the packets were a list; a :class:`PacketBatch` holds them
    in place); ``ns_per_packet`` the mean native time per packet."""

    retvals: list[int]
    data_out: list[bytes] | None
    ns_per_packet: float
