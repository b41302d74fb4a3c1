"""objects: eBPF object files for loader programs: ``Object.open``, ``load()``, programs and maps.

``pybpf.Object.open(path)`` gives an :class:`Object` whose ``spec`` is editable;
``obj.load(engine=...)`` (or ``pybpf.load(path)``) makes its maps and programs live;
``obj.programs[name].test_run(...)`` is ``BPF_PROG_TEST_RUN``. :class:`RingBuffer`,
:class:`PerfBuffer` and :class:`TraceLog` consume events as libbpf does;
:func:`print_log2_hist` prints map histograms as bcc does; :func:`list_programs` gives the
pinned programs of the state directory.
"""

from pybpf.objects.datasec import DataSection
from pybpf.objects.describe import describe, listing, read_btf
from pybpf.objects.events import PerfBuffer, RingBuffer, TraceLog
from pybpf.objects.histogram import print_linear_hist, print_log2_hist
from pybpf.objects.object import Object, load
from pybpf.objects.pinned import ProgramRecord, list_programs
from pybpf.objects.program import Program, TestRunResult, calc_tag

__all__ = [
    "DataSection",
    "Object",
    "PerfBuffer",
    "Program",
    "ProgramRecord",
    "RingBuffer",
    "TestRunResult",
    "TraceLog",
    "calc_tag",
    "describe",
    "list_programs",
    "listing",
    "load",
    "print_linear_hist",
    "print_log2_hist",
    "read_btf",
]
