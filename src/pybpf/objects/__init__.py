"""objects: eBPF object files for loader programs: ``Object.open``, ``load()``, programs and maps.

``pybpf.Object.open(path)`` gives an :class:`Object` whose ``spec`` is editable;
``obj.load(engine=...)`` (or ``pybpf.load(path)``) makes its maps and programs live;
``obj.programs[name].test_run(...)`` is ``BPF_PROG_TEST_RUN``.
"""

from pybpf.objects.datasec import DataSection
from pybpf.objects.describe import describe, listing, read_btf
from pybpf.objects.object import Object, load
from pybpf.objects.program import Program, TestRunResult, calc_tag

__all__ = [
    "DataSection",
    "Object",
    "Program",
    "TestRunResult",
    "calc_tag",
    "describe",
    "listing",
    "load",
    "read_btf",
]
