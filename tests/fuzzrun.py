"""Fuzz runs: verify one generated program, and run what the verifier accepts under checks.

:func:`judge` verifies a :class:`~fuzzgen.FuzzProgram` (loops must be proven bounded) and,
when it is accepted, loads it on the interpreter (every memory access checked) and runs it on
each packet twice, once with the stack frames zeroed and once filled with ``0xA5``, from the
same map contents. The outcome is an :class:`Outcome`: ``rejected``, ``refused at load``,
``ran`` or a false accept: a :class:`~pybpf.errors.MemoryAccessError`, a
:class:`~pybpf.errors.BudgetExceededError` (a loop the verifier called bounded ran away), or
runs that differ with the stack fill (the program read stack bytes it never wrote).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pybpf.vm.machine as machine
from fuzzgen import MAPS, FuzzProgram
from pybpf.errors import (
    BudgetExceededError,
    ExecutionError,
    InputError,
    MemoryAccessError,
    PybpfError,
)
from pybpf.isa.opcodes import STACK_SIZE
from pybpf.objects import Object
from pybpf.verifier import Options, verify_object

__all__ = ["Outcome", "judge", "OPTIONS"]

OPTIONS = Options(termination=True)
_FILLS = (bytes(STACK_SIZE), bytes([0xA5]) * STACK_SIZE)
FALSE_ACCEPTS = ("memory", "runaway", "uninit-stack")


@dataclass
class Outcome:
    """What happened to one program."""

    verdict: str  # "rejected", "load-refused", "ran", or one of FALSE_ACCEPTS
    runs: int = 0
    detail: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def false_accept(self) -> bool:
        """The verifier accepted a program that misbehaved."""
        return self.verdict in FALSE_ACCEPTS


@contextlib.contextmanager
def _stack_fill(fill: bytes) -> Iterator[None]:
    saved = machine._ZERO_FRAME
    machine._ZERO_FRAME = fill
    try:
        yield
    finally:
        machine._ZERO_FRAME = saved


def _reset(obj: Object) -> None:
    arr, table = obj.maps["arr"], obj.maps["hash"]
    for i in range(MAPS["arr"][3]):
        arr.update_raw(i.to_bytes(4, "little"), bytes([i * 3]) * MAPS["arr"][2])
    for key in table.keys_raw():
        table.delete_raw(key)
    for i in (0, 1):
        table.update_raw(i.to_bytes(4, "little"), (100 + i).to_bytes(8, "little"))


def _snapshot(obj: Object) -> tuple:
    return tuple(
        sorted((k, obj.maps[name].lookup_raw(k)) for k in obj.maps[name].keys_raw())
        for name in MAPS
    )


def _run(obj: Object, packet: bytes, fill: bytes) -> tuple:
    _reset(obj)
    with _stack_fill(fill):
        result = obj.programs["prog"].test_run(packet)
    return result.retval, result.data_out, _snapshot(obj)


def judge(program: FuzzProgram, packets: list[bytes]) -> Outcome:
    """Verify ``program``; run it on ``packets`` if accepted (see the module docstring)."""
    spec = program.object_spec()
    result = verify_object(spec, "prog", program.prog_type, options=OPTIONS)
    if not result.accepted:
        return Outcome("rejected", errors=[str(d) for d in result.errors])
    try:
        obj = Object(spec).load(engine="interpreter")
    except PybpfError as err:  # the engines' load check is path-insensitive
        return Outcome("load-refused", detail=repr(err))
    outcome = Outcome("ran")
    with obj:
        for packet in packets:
            try:
                first = _run(obj, packet, _FILLS[0])
                second = _run(obj, packet, _FILLS[1])
            except MemoryAccessError as err:
                return Outcome(
                    "memory", outcome.runs, f"{err!r} at pc {err.pc}, packet {len(packet)}"
                )
            except BudgetExceededError as err:
                return Outcome("runaway", outcome.runs, repr(err))
            except InputError:
                continue  # a packet Linux's test run would refuse for this program type
            except ExecutionError as err:
                return Outcome("exec-error", outcome.runs, repr(err))
            outcome.runs += 2
            if first != second:
                return Outcome(
                    "uninit-stack", outcome.runs, f"packet {packet.hex()}: {first} != {second}"
                )
    return outcome
