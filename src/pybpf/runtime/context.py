"""Execution context: what a helper sees of the running program (memory, pc, cpu, sinks).

Engines create one :class:`ExecutionContext` per run and pass it as the first argument of
every helper call. Helpers reach program memory only through ``ctx.memory`` (the run's
:class:`~pybpf.memory.AddressSpace`), so the same permission checks apply as for the
program's own loads and stores.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pybpf.memory import AddressSpace, Region

__all__ = ["ExecutionContext", "TraceSink"]

TraceSink = Callable[[str], None]


def _default_trace(message: str) -> None:
    from pybpf.runtime.printk import TRACE_PIPE

    TRACE_PIPE.write(message)


@dataclass
class ExecutionContext:
    """Per-run state shared by the engine and the helpers.

    - ``memory``: the address space of the run (helpers read and write through it);
    - ``pc``: the pc of the instruction currently calling a helper (for error locations);
    - ``helper_id``: the id of the helper being called;
    - ``cpu``: what ``bpf_get_smp_processor_id`` returns (default 0);
    - ``random``: the generator behind ``bpf_get_prandom_u32`` (seed it for repeatable runs);
    - ``trace``: where ``bpf_trace_printk`` output goes (default: the process trace pipe,
      :data:`pybpf.runtime.printk.TRACE_PIPE`);
    - ``packet``: the packet region for legacy ``LD_ABS``/``LD_IND`` loads, if any;
    - ``extra``: free slots for the embedding application and later runtime services.
    """

    memory: AddressSpace
    pc: int = 0
    helper_id: int = 0
    cpu: int = 0
    random: random.Random = field(default_factory=random.Random)
    trace: TraceSink = _default_trace
    packet: Region | None = None
    extra: dict[str, Any] = field(default_factory=dict)
