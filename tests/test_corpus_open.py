"""The corpus: every real object opens into programs matching expected.csv, or fails cleanly.

For each object of ``../shared/corpus/expected.csv``: objects without ``reject_load`` or
``reject`` rows open, and their programs, as (section, function) pairs, are exactly the
object's rows; ``reject_load`` objects raise one InputError; ``reject`` objects open or are
refused cleanly. Each row's program then takes its type from the ``prog_type`` column and
links into one self-contained program.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import InputError, NotSupportedError
from pybpf.isa import Pseudo
from pybpf.progtypes import ProgType
from pybpf.spec import link

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
EXPECTED = CORPUS / "expected.csv"


def _objects() -> dict[tuple[str, str], list[dict[str, str]]]:
    if not EXPECTED.exists():
        return {}
    rows: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in csv.DictReader(EXPECTED.open()):
        rows[(row["project"], row["object"])].append(row)
    return dict(rows)


OBJECTS = _objects()
pytestmark = pytest.mark.skipif(not OBJECTS, reason=f"corpus not found at {CORPUS}")


def _ids(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1][:24]}"


@pytest.mark.parametrize("key", sorted(OBJECTS), ids=_ids)
def test_object(key):
    project, obj = key
    rows = OBJECTS[key]
    statuses = {r["status"] for r in rows}
    path = CORPUS / project / obj
    if "reject_load" in statuses:
        with pytest.raises(InputError) as err:
            pybpf.Object.open(path)
        assert err.value.path == str(path)
        return
    if "reject" in statuses:
        try:
            spec = pybpf.Object.open(path).spec
        except (InputError, NotSupportedError):
            return  # a clean refusal meets a reject row
    else:
        spec = pybpf.Object.open(path).spec
    found = {(p.section, p.name) for p in spec.programs.values()}
    assert found == {(r["section"], r["function"]) for r in rows}
    for row in rows:
        spec.set_program_type(row["function"], row["prog_type"])
        assert spec.programs[row["function"]].type == ProgType.from_name(row["prog_type"])
        linked = link(spec, row["function"])
        assert linked.functions[0] == (row["function"], 0)
        for insn in linked.instructions:
            if insn.is_lddw and insn.src in (Pseudo.MAP_IDX, Pseudo.MAP_IDX_VALUE):
                assert 0 <= insn.imm < len(linked.maps)


def test_every_row_is_covered():
    rows = sum(len(v) for v in OBJECTS.values())
    assert rows > 400 and len(OBJECTS) > 150


def test_same_bytes_same_spec():
    data = (CORPUS / "cilium" / "bpf_lxc.o").read_bytes()
    a = pybpf.Object.open(data, name="x").spec
    b = pybpf.Object.open(bytes(data), name="x").spec
    assert a == b
    assert a.copy() == a
    b.maps[next(iter(b.maps))].max_entries += 1
    assert a != b


def test_windows_objects_are_recognised_and_translated():
    bind = pybpf.Object.open(CORPUS / "invalid" / "dac31099c3bb5b6395908c82cc8540e77a6a1849").spec
    assert bind.platform == "windows"
    prog = bind.programs["BindMonitor"]
    assert prog.type == ProgType.BIND
    # Windows helper ids 1-3 are Linux's map helpers too; the records were 32-byte ones.
    assert all(len(m.record) == 8 for m in bind.maps.values())
    tail = pybpf.Object.open(next((CORPUS / "invalid").glob("timeout-*"))).spec
    assert tail.platform == "windows"
    calls = {i.imm for p in tail.programs.values() for i in p.instructions if i.is_call}
    assert 12 in calls and 5 not in calls  # Windows' tail_call (5) is Linux's 12
    prog_array = tail.maps["bind_tail_call_map"]
    assert prog_array.type.type_name == "prog_array" and prog_array.windows_type == 3
    assert prog_array.values[0] == (0, "bind_test_callee0")
    linux = pybpf.Object.open(CORPUS / "linux" / "sockex1_kern.o").spec
    assert linux.platform == "linux"
