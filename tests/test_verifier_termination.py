"""Termination as data: every result says whether its loops are proven bounded, and the bound.

With termination checking off (the loader's setting) a loop that is not proven bounded does
not refuse the program; ``Result.terminates`` is false and ``loop_bound`` ``None``, so the
engines can keep an instruction budget for exactly those programs. Loops in callbacks and
global functions count too.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pybpf.isa import Instruction, assemble
from pybpf.progtypes import ProgType
from pybpf.verifier import Options, verify

sys.path.insert(0, str(Path(__file__).parent))
from test_verifier import _loop_program, _with_global  # noqa: E402

BOUNDED = "r0 = 0\nr0 += 1\nif r0 < 10 goto -2\nexit"
UNBOUNDED = "r0 = 0\nr0 += 2\nif r0 != 9 goto -2\nexit"


def _xdp(text: str | list[Instruction], **kw):
    insns = assemble(text) if isinstance(text, str) else text
    return verify(insns, ProgType.XDP, **kw)


def test_a_bounded_loop_is_proven_terminating_with_its_bound():
    r = _xdp(BOUNDED)
    assert r.accepted and r.terminates and r.loop_bound == 10
    assert r.to_json()["terminates"] is True and r.to_json()["loop_bound"] == 10


def test_a_loop_free_program_terminates_within_zero_iterations():
    r = _xdp("r0 = 2\nexit")
    assert r.terminates and r.loop_bound == 0


def test_an_unbounded_loop_is_accepted_but_not_proven_terminating():
    r = _xdp(UNBOUNDED)
    assert r.accepted and not r.terminates and r.loop_bound is None
    # with termination checking it is an error, as before
    strict = _xdp(UNBOUNDED, options=Options(termination=True))
    assert not strict.accepted and strict.errors[0].pc == 1 and not strict.terminates


def test_a_loop_over_the_limit_is_not_proven():
    r = _xdp("r0 = 0\nr0 += 1\nif r0 < 200 goto -2\nexit", options=Options(loop_limit=100))
    assert r.accepted and not r.terminates and r.loop_bound is None


def test_without_loop_counters_loops_are_not_proven_and_loop_free_code_is():
    off = Options(loop_counters=False)
    assert not _xdp(BOUNDED, options=off).terminates
    assert _xdp("r0 = 2\nexit", options=off).terminates


def test_loops_of_callbacks_and_global_functions_count():
    spin = "r0 = 0\nr0 += 2\nif r0 != 9 goto -2\nr0 = 0\nexit"
    count = "r0 = 0\nr0 += 1\nif r0 < 7 goto -2\nr0 = 0\nexit"
    r = _xdp(_loop_program(spin))
    assert r.accepted and not r.terminates
    r = _xdp(_loop_program(count))
    assert r.accepted and r.terminates and r.loop_bound == 7
    from pybpf.verifier.functions import Param, ParamKind

    main = "r1 = 1\ncall f\nr0 = 2\nexit"
    for body, proven in ((spin, False), (count, True)):
        insns, fns = _with_global(main, body, [Param(ParamKind.SCALAR)])
        r = _xdp(insns, functions=fns)
        assert r.accepted and r.terminates is proven


def test_not_equal_exits_and_zero_extension_are_proven_bounded():
    # clang's shape of ``for (i = 0; i < 1000; i++)``: the exit tests ``i != 1000`` on the
    # zero-extended counter (``r1 = r6; r1 <<= 32; r1 >>= 32``)
    loop = """r6 = 0
goto +5
r6 += 1
r1 = r6
{zext}
if r1 == 1000 goto +2
*(u32 *)(r10 - 4) = r6
goto -7
r0 = 0
exit"""
    zext = "r1 <<= 32\nr1 >>= 32"
    r = verify(assemble(loop.format(zext=zext)), ProgType.SOCKET_FILTER)
    assert r.accepted and r.terminates and r.loop_bound == 1000
    # a jump between the two shifts keeps them apart (still accepted, not proven)
    split = loop.format(zext="r1 <<= 32\nif r6 == 7 goto +0\nr1 >>= 32").replace(
        "goto +5", "goto +6"
    )
    split = split.replace("goto -7", "goto -8")
    r = verify(assemble(split), ProgType.SOCKET_FILTER)
    assert r.accepted
    # a counter stepping over the exit value is not bounded
    r = verify(assemble(loop.format(zext=zext).replace("r6 += 1", "r6 += 3")), ProgType.XDP)
    assert r.accepted and not r.terminates


def test_zero_extension_pair_is_still_a_number_operation():
    # the rewritten pair asks what the shifts asked: a number
    r = verify(assemble("r1 <<= 32\nr1 >>= 32\nr0 = 0\nexit"), ProgType.XDP)
    assert not r.accepted and r.errors[0].pc == 0
