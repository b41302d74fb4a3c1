"""ACCESS_BY_TYPE against the running kernel: which context bytes each program type may
load and store.

The table-only tests check that the ranges are well formed (inside the type's context,
aligned, sizes 1-8) and agree with the layouts (a range names a field of the layout; a
store goes only to a field the layout calls writable data), and the facts the corpus
showed pybpf getting wrong (a socket filter may not read ``data``/``data_end``). The kernel
test loads a fixed sample of ``benchmarks/context_access.py``'s probes (one load or store
of 1, 2, 4 or 8 bytes at a constant context offset) for every program type this kernel
loads and fails on any case where :func:`context_access_allowed` and the kernel disagree;
the full matrix runs with ``python benchmarks/context_access.py``. The table is Linux
6.18's on x86-64 as this machine runs it: on another release the kernel test skips.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import pytest

from pybpf.progtypes import ProgType
from pybpf.progtypes.contexts import ACCESS_BY_TYPE, RULES, FieldKind, context_access_allowed

sys.path.insert(0, str(Path(__file__).parent))
from kernel import reference_kernel_skip  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_KERNEL = (6, 18)  # the release ACCESS_BY_TYPE was checked against
STRIDE = 5  # the kernel sample: every 5th offset (moved by the type), plus packet fields


@functools.cache
def _bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    path = ROOT / "benchmarks" / "context_access.py"
    spec = importlib.util.spec_from_file_location("context_access", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve annotations there
    spec.loader.exec_module(module)
    return module


def _kernel_skip_reason() -> str | None:
    return reference_kernel_skip("ACCESS_BY_TYPE", REFERENCE_KERNEL, machine="x86_64")


# ---- the table on its own ----


def test_every_range_is_inside_its_context_aligned_and_sized():
    assert ACCESS_BY_TYPE, "the table is empty"
    for prog_type, table in ACCESS_BY_TYPE.items():
        layout = RULES[prog_type].context
        assert table, prog_type
        for a in table:
            assert 0 <= a.offset and a.end_check(layout.size), (prog_type, a)
            assert a.reads | a.writes, (prog_type, a)
            for size in a.reads | a.writes:
                assert size in (1, 2, 4, 8) and size <= a.size, (prog_type, a)
                aligned = [o for o in range(a.offset, a.end - size + 1) if o % size == 0]
                assert aligned, (prog_type, a, size)


def test_ranges_name_the_layout_fields_they_cover():
    for prog_type, table in ACCESS_BY_TYPE.items():
        layout = RULES[prog_type].context
        if not layout.fields:
            continue
        for a in table:
            names = {f.name.split("[")[0] for f in layout.fields_overlapping(a.offset, a.end)}
            assert a.name in names, (prog_type, a, names)


def test_stores_go_only_to_fields_the_layout_calls_writable_data():
    for prog_type, table in ACCESS_BY_TYPE.items():
        layout = RULES[prog_type].context
        for a in table:
            if not a.writes:
                continue
            if not layout.fields:
                assert layout.writable, (prog_type, a)
                continue
            for f in layout.fields_overlapping(a.offset, a.end):
                assert f.write and f.kind == FieldKind.SCALAR, (prog_type, a, f)


def test_packet_pointers_are_read_whole_or_not_at_all():
    for prog_type in ACCESS_BY_TYPE:
        layout = RULES[prog_type].context
        for f in layout.pointer_fields():
            for size in (1, 2, 4, 8):
                if size != f.size:
                    assert not context_access_allowed(prog_type, f.offset, size, False)
            assert not context_access_allowed(prog_type, f.offset, f.size, True)


def test_a_socket_filter_may_not_read_packet_pointers_but_tc_may():
    skb = RULES[ProgType.SOCKET_FILTER].context
    for kind in (FieldKind.PACKET, FieldKind.PACKET_END, FieldKind.PACKET_META):
        offset = skb.field_of(kind).offset
        assert not context_access_allowed(ProgType.SOCKET_FILTER, offset, 4, False)
        assert context_access_allowed(ProgType.SCHED_CLS, offset, 4, False)


def test_misaligned_and_out_of_bounds_accesses_are_refused():
    for prog_type, table in ACCESS_BY_TYPE.items():
        size = RULES[prog_type].context.size
        for a in table:
            for n in a.reads:
                if n > 1:
                    assert not context_access_allowed(prog_type, a.offset + 1, n, False)
        for n in (1, 2, 4, 8):
            assert not context_access_allowed(prog_type, size, n, False)
            assert not context_access_allowed(prog_type, -n, n, False)


def test_a_type_without_ranges_follows_its_layout():
    prog_type = ProgType.TRACEPOINT  # an opaque, read-only context
    assert prog_type not in ACCESS_BY_TYPE
    layout = RULES[prog_type].context
    assert context_access_allowed(prog_type, 0, 8, False)
    assert not context_access_allowed(prog_type, 0, 8, True)
    assert not context_access_allowed(prog_type, layout.size - 4, 8, False)


# ---- against the kernel ----


def _sample(prog_type, todo):
    layout = RULES[prog_type].context
    focus = {f.offset for f in layout.pointer_fields()}
    shift = int(prog_type) % STRIDE
    return [c for c in todo if c[0] % STRIDE == shift or c[0] in focus]


def test_the_table_agrees_with_the_kernel_on_a_sample():
    reason = _kernel_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    bench = _bench()
    prober = bench.Prober()
    matrix = bench.probe(bench.CONFIGS, prober, select=_sample)
    assert matrix.by_type(), f"no program type loaded: {matrix.skipped}"
    assert ProgType.SOCKET_FILTER in matrix.by_type()
    diffs = bench.disagreements(matrix)
    assert not diffs, "\n".join(bench._ranges(diffs))
