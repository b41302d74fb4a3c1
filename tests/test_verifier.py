"""verify(): accepted programs, one rejected program per assertion kind, diagnostics, CFG and WTO.

Programs are written in llvm-objdump assembly (``pybpf.isa.assemble``); map references and
local calls are built as raw instructions. Each rejection is checked by the error's
attributes (pc, label, the failed assertion's reason), not by the whole message text.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.errors import VerifierError
from pybpf.isa import Instruction, assemble
from pybpf.maptypes import MapType
from pybpf.progtypes import ProgType
from pybpf.progtypes.contexts import RULES, FieldKind, rules_for
from pybpf.verifier import MapDescriptor, Options, ir, verify, verify_object
from pybpf.verifier.cfg import build_cfg
from pybpf.verifier.lower import lower
from pybpf.verifier.wto import Cycle, weak_topological_order

MAP = MapDescriptor(fd=0, type=int(MapType.HASH), key_size=4, value_size=8, max_entries=16)

GUARD = """
r2 = *(u32 *)(r1 + 0)
r3 = *(u32 *)(r1 + 4)
r4 = r2
r4 += 14
if r4 > r3 goto +{skip}
"""


def _xdp(text: str, **kw):
    return verify(assemble(text), ProgType.XDP, **kw)


def _lookup(after: str) -> list[Instruction]:
    """key = 0 on the stack, r0 = map_lookup_elem(map 0, &key), then ``after``."""
    head = assemble("*(u32 *)(r10 - 4) = 0\nr2 = r10\nr2 += -4")
    tail = assemble("call 1\n" + after)
    return head + [Instruction(code=0x18, dst=1, src=1, imm=0)] + tail


def _reject(result, reason: str, pc: int | None = None):
    assert not result.accepted, result.report()
    first = result.errors[0]
    assert reason in first.message, first
    if pc is not None:
        assert first.pc == pc, first
    return first


# ---- accepted programs -------------------------------------------------------------------
def test_bounds_checked_packet_read_is_accepted():
    r = _xdp(GUARD.format(skip=2) + "r0 = *(u8 *)(r2 + 13)\nexit\nr0 = 2\nexit")
    assert r.accepted, r.report()
    assert r.verdict == "accept" and r.instructions == 9


def test_stack_round_trip_and_spill_are_accepted():
    r = _xdp("*(u64 *)(r10 - 8) = r1\nr6 = *(u64 *)(r10 - 8)\nr0 = *(u32 *)(r6 + 12)\nexit")
    assert r.accepted, r.report()


def test_checked_map_value_is_accepted():
    r = verify(
        _lookup("if r0 == 0 goto +2\nr0 = *(u64 *)(r0 + 0)\nexit\nr0 = 0\nexit"),
        ProgType.XDP,
        maps={0: MAP},
    )
    assert r.accepted, r.report()


def test_bounded_loop_terminates_with_its_bound():
    text = "r0 = 0\nr0 += 1\nif r0 < 10 goto -2\nexit"
    r = _xdp(text, options=Options(termination=True))
    assert r.accepted, r.report()
    assert r.loop_bound == 10


def test_local_call_is_inlined():
    insns = [Instruction(code=0x85, src=1, imm=1)] + assemble("exit\nr0 = 7\nexit")
    r = verify(insns, ProgType.XDP)
    assert r.accepted, r.report()


# ---- one rejection per assertion kind ----------------------------------------------------
def test_packet_read_past_the_checked_end_is_rejected():
    r = _xdp(GUARD.format(skip=2) + "r0 = *(u16 *)(r2 + 13)\nexit\nr0 = 2\nexit")
    first = _reject(r, "Upper bound must be at most packet_size", pc=5)
    assert "packet+0" in first.values


def test_unchecked_packet_read_is_rejected():
    _reject(_xdp("r2 = *(u32 *)(r1 + 0)\nr0 = *(u8 *)(r2 + 0)\nexit"), "packet_size", pc=1)


def test_uninitialised_register_is_rejected():
    _reject(_xdp("r0 = r5\nexit"), "Invalid type", pc=0)
    _reject(_xdp("*(u64 *)(r10 - 8) = r5\nr0 = 0\nexit"), "Invalid type", pc=0)
    _reject(_xdp("r0 = 0\nr0 += r5\nexit"), "Invalid type", pc=1)


def test_uninitialised_stack_is_rejected():
    r = _xdp("r2 = r10\nr2 += -8\nr0 = *(u64 *)(r2 + 0)\nexit")
    _reject(r, "Stack content is not numeric", pc=2)


def test_stack_out_of_the_frame_is_rejected():
    _reject(_xdp("*(u64 *)(r10 - 520) = 0\nr0 = 0\nexit"), "Lower bound", pc=0)


def test_null_map_value_is_rejected():
    r = verify(_lookup("r0 = *(u64 *)(r0 + 0)\nexit"), ProgType.XDP, maps={0: MAP})
    _reject(r, "Possible null access")


def test_map_value_overrun_is_rejected():
    text = "if r0 == 0 goto +2\nr0 = *(u64 *)(r0 + 4)\nexit\nr0 = 0\nexit"
    r = verify(_lookup(text), ProgType.XDP, maps={0: MAP})
    _reject(r, "Upper bound must be at most r0.shared_region_size")


def test_helper_argument_of_the_wrong_type_is_rejected():
    r = _xdp("r2 = r10\nr2 += -4\n*(u32 *)(r10 - 4) = 0\nr1 = 0\ncall 1\nr0 = 0\nexit")
    _reject(r, "Invalid type", pc=4)


def test_pointer_leak_into_a_map_is_rejected():
    text = "if r0 == 0 goto +2\n*(u64 *)(r0 + 0) = r10\nexit\nr0 = 0\nexit"
    r = verify(_lookup(text), ProgType.XDP, maps={0: MAP})
    _reject(r, "Only numbers can be stored")


def test_returning_a_pointer_is_rejected():
    _reject(_xdp("r0 = r1\nexit"), "Invalid type", pc=1)


def test_division_by_zero_is_rejected_only_when_forbidden():
    text = "r0 = 10\nr1 = *(u32 *)(r1 + 12)\nr0 /= r1\nexit"
    assert _xdp(text).accepted
    _reject(_xdp(text, options=Options(allow_division_by_zero=False)), "division by zero", pc=2)


def test_unbounded_loop_is_rejected_when_termination_is_checked():
    text = "r0 = 0\nr0 += 2\nif r0 != 9 goto -2\nexit"
    assert _xdp(text).accepted
    _reject(_xdp(text, options=Options(termination=True)), "Loop counter is too large")


def test_writing_the_packet_pointer_field_is_rejected():
    _reject(_xdp("r2 = 0\n*(u32 *)(r1 + 0) = r2\nr0 = 0\nexit"), "context pointer field", pc=1)


def test_arithmetic_on_a_maybe_null_pointer_is_rejected():
    r = verify(_lookup("r0 += 4\nr0 = 0\nexit"), ProgType.XDP, maps={0: MAP})
    _reject(r, "possibly null")


def test_frame_pointer_is_read_only():
    _reject(_xdp("r10 = 0\n*(u64 *)(r10 - 8) = 1\nr0 = 0\nexit"), "read-only", pc=0)
    _reject(_xdp("r10 += -1000\nr0 = 0\nexit"), "read-only", pc=0)
    _reject(_xdp("r10 = *(u64 *)(r1 + 0)\nr0 = 0\nexit"), "read-only", pc=0)


def test_unknown_helper_is_rejected():
    first = _reject(_xdp("call 100000\nr0 = 0\nexit"), "invalid helper function id", pc=0)
    assert not first.unsupported


def test_unmodelled_constructs_are_flagged_unsupported_and_violations_are_not():
    kfunc = [Instruction(code=0x85, src=2, imm=1234), *assemble("r0 = 0\nexit")]
    r = verify(kfunc, ProgType.XDP)
    assert not r.accepted and r.unsupported and r.errors[0].unsupported
    assert r.errors[0].to_json()["unsupported"] is True
    no_prototype = verify(assemble("call 75\nr0 = 0\nexit"), ProgType.LWT_SEG6LOCAL)
    assert no_prototype.unsupported
    for program in ("r10 = 0\nr0 = 0\nexit", "r0 = *(u8 *)(r1 + 100)\nexit"):
        r = _xdp(program)
        assert not r.accepted and not r.unsupported and not r.errors[0].unsupported
    # one proven violation beside an unmodelled construct: the program is not "unsupported"
    bad = "r2 = *(u32 *)(r1 + 12)\nif r2 == 0 goto +2\nr0 = *(u8 *)(r1 + 100)\nexit"
    mixed = [*assemble(bad), *kfunc]
    r = verify(mixed, ProgType.XDP)
    assert len(r.errors) == 2 and not r.unsupported
    assert verify(assemble("r0 = 0\nexit"), ProgType.XDP).unsupported is False


def test_return_value_outside_the_program_types_range_is_rejected():
    assert verify(assemble("r0 = 1\nexit"), ProgType.CGROUP_SKB).accepted
    _reject(verify(assemble("r0 = 5\nexit"), ProgType.CGROUP_SKB), "Invalid return value")


def test_recursion_and_bad_jumps_are_rejected():
    recursive = [Instruction(code=0x85, src=1, imm=-1)] + assemble("exit")
    _reject(verify(recursive, ProgType.XDP), "illegal recursion")
    _reject(_xdp("r0 = 0\nif r0 > 0 goto +5\nexit"), "invalid control flow")
    _reject(_xdp("r0 = 0"), "falls off the end")


def test_packet_pointers_die_when_the_packet_may_move():
    body = "r6 = r2\nr2 = 0\ncall 44\nr0 = *(u8 *)(r6 + 0)\nexit\nr0 = 0\nexit"
    text = GUARD.format(skip=5) + body
    _reject(_xdp(text), "Invalid type")


RINGBUF = MapDescriptor(fd=1, type=int(MapType.RINGBUF), key_size=0, value_size=0, max_entries=4096)


def _reserve(after: str) -> list[Instruction]:
    """r0 = ringbuf_reserve(map 1, 8, 0), then ``after``."""
    return [Instruction(code=0x18, dst=1, src=1, imm=1)] + assemble(
        "r2 = 8\nr3 = 0\ncall 131\n" + after
    )


def _ringbuf(text: str):
    return verify(_reserve(text), ProgType.XDP, maps={1: RINGBUF})


def test_released_ring_buffer_record_is_accepted():
    text = "if r0 == 0 goto +4\n*(u64 *)(r0 + 0) = 1\nr1 = r0\nr2 = 0\ncall 132\nr0 = 0\nexit"
    assert _ringbuf(text).accepted, _ringbuf(text).report()


def test_unreleased_ring_buffer_record_is_rejected():
    _reject(_ringbuf("if r0 == 0 goto +1\n*(u64 *)(r0 + 0) = 1\nr0 = 0\nexit"), "Unreleased")


def test_ring_buffer_record_is_dead_after_submit():
    text = "if r0 == 0 goto +6\nr6 = r0\nr1 = r0\nr2 = 0\ncall 132\n*(u64 *)(r6 + 0) = 1\n"
    _reject(_ringbuf(text + "r0 = 0\nexit"), "Invalid type")


def test_releasing_twice_is_rejected():
    text = "if r0 == 0 goto +6\nr6 = r0\nr1 = r0\nr2 = 0\ncall 132\nr1 = r6\ncall 132\n"
    _reject(_ringbuf(text + "r0 = 0\nexit"), "Invalid type")


def test_reference_rules_can_be_turned_off():
    text = "if r0 == 0 goto +1\n*(u64 *)(r0 + 0) = 1\nr0 = 0\nexit"
    off = Options(linux_rules=False)
    assert verify(_reserve(text), ProgType.XDP, maps={1: RINGBUF}, options=off).accepted


def test_stack_depth_and_context_accesses_are_recorded():
    r = _xdp(
        GUARD.format(skip=3) + "*(u64 *)(r10 - 24) = r4\nr0 = *(u8 *)(r2 + 13)\nexit\nr0 = 2\nexit"
    )
    assert r.accepted, r.report()
    assert r.stack_depth == 32
    assert r.ctx_accesses == {0: (0, 4, True), 1: (4, 4, True)}


def test_combined_stack_of_all_frames_is_limited():
    call = [Instruction(code=0x85, src=1, imm=2)]
    main = assemble("*(u64 *)(r10 - 512) = 0\nexit")
    callee = assemble("*(u64 *)(r10 - 8) = 0\nr0 = 0\nexit")
    r = verify(assemble("r0 = 0") + call + main + callee, ProgType.XDP)
    _reject(r, "combined stack size")
    assert verify(
        assemble("r0 = 0") + call + main + callee, ProgType.XDP, options=Options(linux_rules=False)
    ).accepted


def test_context_accesses_stay_within_one_field():
    # Linux's own words for xdp_md (progtypes.contexts.ACCESS_BY_TYPE)
    _reject(_xdp("r0 = *(u64 *)(r1 + 12)\nr0 = 0\nexit"), "invalid bpf_context access", pc=0)
    assert _xdp("r0 = *(u32 *)(r1 + 12)\nr0 = 0\nexit").accepted
    # xdp_md takes whole u32 loads only (__is_valid_xdp_access), no narrow ones
    _reject(_xdp("r0 = *(u16 *)(r1 + 12)\nr0 = 0\nexit"), "off=12 size=2", pc=0)
    # a type without access ranges still keeps to one field of its layout
    insns = assemble("r0 = *(u64 *)(r1 + 12)\nr0 = 0\nexit")
    loose = Options(type_helpers=False)  # the type guessed: no per-type ranges
    _reject(verify(insns, ProgType.XDP, options=loose), "within one field", pc=0)


def test_context_accesses_follow_the_program_type():
    # a socket filter may not read __sk_buff.data / data_end (offsets 76 / 80); tc may
    for off in (76, 80):
        text = f"r0 = *(u32 *)(r1 + {off})\nr0 = 0\nexit"
        _reject(verify(assemble(text), ProgType.SOCKET_FILTER), f"off={off} size=4", pc=0)
        assert verify(assemble(text), ProgType.SCHED_CLS).accepted


def test_context_offsets_must_be_constant():
    text = "r2 = *(u32 *)(r1 + 12)\nr2 &= 4\nr1 += r2\nr0 = *(u32 *)(r1 + 12)\nexit"
    _reject(_xdp(text), "variable offset", pc=3)


def test_invariants_print_like_prevail():
    from pybpf.verifier import analyze, entry_state
    from pybpf.verifier.lower import lower
    from pybpf.verifier.program import ProgramInfo
    from pybpf.verifier.result import describe_state

    info = ProgramInfo.for_type(ProgType.XDP)
    insns = assemble(GUARD.format(skip=2) + "r0 = *(u8 *)(r2 + 13)\nexit\nr0 = 2\nexit")
    r = analyze(lower(insns), info, entry_state(info), keep_invariants=True)
    lines = describe_state(r.invariants["5"])
    assert "r2.type=packet" in lines and "r2.packet_offset=0" in lines
    assert "r4.packet_offset-packet_size<=0" in lines


# ---- diagnostics -------------------------------------------------------------------------
def test_rejection_raises_verifier_error_with_location():
    r = _xdp(GUARD.format(skip=2) + "r0 = *(u16 *)(r2 + 13)\nexit\nr0 = 2\nexit", name="drop")
    with pytest.raises(VerifierError) as info:
        r.raise_for_errors()
    err = info.value
    assert err.pc == 5 and err.label == "5" and err.program == "drop"
    assert "FAIL" in err.report
    assert r.to_json()["errors"][0]["pc"] == 5
    assert r.to_json()["verdict"] == "reject"


def test_program_types_without_a_layout_are_not_supported():
    from pybpf.errors import NotSupportedError

    with pytest.raises(NotSupportedError) as info:
        verify(assemble("r0 = 0\nexit"), ProgType.UNSPEC)
    assert info.value.feature == "prog_type"


def test_accepting_does_not_raise_and_bytes_are_accepted():
    from pybpf.isa import encode

    r = verify(encode(assemble("r0 = 0\nexit")), ProgType.SOCKET_FILTER)
    r.raise_for_errors()
    assert r.report() == "PASS"


# ---- CFG and WTO -------------------------------------------------------------------------
def test_cfg_has_assume_edges_and_inlined_frames():
    insns = [Instruction(code=0x85, src=1, imm=2)] + assemble(
        "exit\nexit\nr0 = 0\nif r0 > 1 goto +1\nexit\nexit"
    )
    cfg = build_cfg(lower(insns))
    labels = {str(label) for label in cfg.labels()}
    assert {"0", "0/3", "0/4:5", "0/4:6", "entry", "exit"} <= labels
    edge = next(lbl for lbl in cfg.labels() if str(lbl) == "0/4:6")
    assert isinstance(cfg.instructions[edge], ir.Assume)
    assert cfg.instructions[edge].cond.op == ir.CondOp.GT


def test_wto_nests_loops():
    graph = {0: [1], 1: [2], 2: [3, 1], 3: [4, 1], 4: []}
    order = weak_topological_order(0, lambda v: graph[v])
    assert order[0] == 0 and order[-1] == 4
    cycle = order[1]
    assert isinstance(cycle, Cycle) and cycle.head == 1
    assert cycle.components == [2, 3]


def test_wto_handles_long_programs_without_recursion_limits():
    n = 5000
    graph = {i: [i + 1] for i in range(n)}
    graph[n] = [0]
    order = weak_topological_order(0, lambda v: graph[v])
    assert isinstance(order[0], Cycle) and len(order[0].components) == n


# ---- context layouts ---------------------------------------------------------------------
def test_context_layouts_match_linux():
    skb = rules_for(ProgType.SCHED_CLS).context
    assert (skb.size, skb.data, skb.end, skb.meta) == (192, 76, 80, 140)
    xdp = rules_for(ProgType.XDP).context
    assert (xdp.size, xdp.data, xdp.end, xdp.meta) == (24, 0, 4, 8)
    assert rules_for(ProgType.CGROUP_SOCK_ADDR).context.size == 72
    assert rules_for(ProgType.SOCK_OPS).context.size == 224
    assert rules_for(ProgType.KPROBE).privileged
    assert not rules_for(ProgType.XDP).privileged
    assert rules_for(ProgType.CGROUP_SOCK).return_range == (0, 1)
    bind = rules_for(ProgType.BIND).context
    assert bind.packet_pointer_size == 8 and bind.field_of(FieldKind.PACKET_END).offset == 8


def test_every_layout_is_consistent():
    for rules in RULES.values():
        layout = rules.context
        ends = [f.end for f in layout.fields]
        assert all(e <= layout.size for e in ends), layout.name
        offsets = [f.offset for f in layout.fields]
        assert offsets == sorted(offsets), layout.name
        for a, b in zip(layout.fields, layout.fields[1:], strict=False):
            assert a.end <= b.offset, (layout.name, a.name, b.name)


# ---- read-only map values and per-type helper lists ---------------------------------------
RODATA = MapDescriptor(0, int(MapType.ARRAY), 4, 16, 1, name=".rodata", flags=0x80)
DATA = MapDescriptor(0, int(MapType.ARRAY), 4, 16, 1, name=".data")
MAP_VALUE_LDDW = Instruction(code=0x18, dst=1, src=2, imm=0, imm_hi=4)  # r1 = &value + 4


@pytest.mark.parametrize(
    "body",
    [
        "*(u32 *)(r1 + 0) = 1\nr0 = 0\nexit",
        "r2 = 1\nlock *(u32 *)(r1 + 0) += r2\nr0 = 0\nexit",
        "r2 = 7\n*(u64 *)(r1 + 0) = r2\nr0 = 0\nexit",
    ],
)
def test_writes_to_read_only_map_values_are_refused(body):
    insns = [MAP_VALUE_LDDW, *assemble(body)]
    assert RODATA.readonly and not DATA.readonly
    assert verify(insns, ProgType.XDP, maps={0: DATA}).accepted
    first = _reject(verify(insns, ProgType.XDP, maps={0: RODATA}), "read-only map value")
    assert not first.unsupported
    # reading is fine
    assert verify(
        [MAP_VALUE_LDDW, *assemble("r0 = *(u32 *)(r1 + 0)\nexit")], ProgType.XDP, maps={0: RODATA}
    ).accepted


def test_looked_up_values_of_read_only_maps_are_read_only():
    program = _lookup(
        "if r0 == 0 goto +2\n*(u64 *)(r0 + 0) = 1\nr0 = *(u64 *)(r0 + 0)\nr0 = 0\nexit"
    )
    ro = MapDescriptor(0, int(MapType.HASH), 4, 8, 16, flags=0x80)
    assert verify(program, ProgType.XDP, maps={0: MAP}).accepted
    _reject(verify(program, ProgType.XDP, maps={0: ro}), "read-only map value")


def test_helpers_a_program_type_does_not_have_are_refused_with_both_names():
    # skb_change_tail (38) is a tc helper: Linux's sk_filter_func_proto does not give it
    program = assemble("r2 = 64\nr3 = 0\ncall 38\nr0 = 0\nexit")
    assert verify(program, ProgType.SCHED_CLS).accepted
    first = _reject(verify(program, ProgType.SOCKET_FILTER), "not available")
    assert "skb_change_tail" in first.message and "socket_filter" in first.message
    assert not first.unsupported
    # the context-level rule alone (a program whose type is a guess) lets it through
    relaxed = Options(type_helpers=False)
    assert verify(program, ProgType.SOCKET_FILTER, options=relaxed).accepted
    # tracing helpers in a packet program, packet helpers in a tracing program (Linux 6.14+
    # gives every type get_current_pid_tgid; get_func_ip stays with the tracing types)
    _reject(verify(assemble("call 173\nr0 = 0\nexit"), ProgType.XDP), "get_func_ip")
    assert verify(assemble("call 173\nr0 = 0\nexit"), ProgType.KPROBE).accepted
    _reject(verify(assemble("r2 = 0\ncall 44\nr0 = 0\nexit"), ProgType.SCHED_CLS), "xdp_adjust")


# ---- callbacks ------------------------------------------------------------------------------
def _loop_program(callback: str, ctx: str = "r3 = 0") -> list[Instruction]:
    """``bpf_loop(r1 & 15, callback, ctx, 0)`` (r1: an xdp_md field) with the callback's
    code after the main exit."""
    head = assemble("r1 = *(u32 *)(r1 + 12)\nr1 &= 15")
    after = assemble(f"{ctx}\nr4 = 0\ncall 181\nr0 = 2\nexit")
    cb_pc = 2 + 2 + sum(i.slots for i in after)
    lddw = Instruction(code=0x18, dst=2, src=4, imm=cb_pc - 2 - 1)  # BPF_PSEUDO_FUNC
    return head + [lddw] + after + assemble(callback)


def test_bpf_loop_callbacks_are_verified_as_functions():
    assert verify(_loop_program("r0 = r1\nr0 &= 1\nexit"), ProgType.XDP).accepted
    r = verify(_loop_program("r0 = 5\nexit"), ProgType.XDP)
    first = _reject(r, "Invalid return value")
    assert first.label.startswith("callback") and not first.unsupported
    r = verify(_loop_program("r0 = *(u64 *)(r10 - 600)\nr0 = 0\nexit"), ProgType.XDP)
    assert not r.accepted and not r.unsupported
    # a callback_ctx at a variable offset of the caller's frame is not modelled: flagged
    with_ctx = "r5 = r1\nr5 &= 8\n*(u64 *)(r10 - 16) = 0\nr3 = r10\nr3 += -16\nr3 += r5"
    r = verify(_loop_program("r0 = *(u64 *)(r2 + 0)\nr0 = 0\nexit", with_ctx), ProgType.XDP)
    assert not r.accepted and r.unsupported


# ---- global functions ---------------------------------------------------------------------
def _with_global(main: str, body: str, params) -> tuple[list[Instruction], dict]:
    """``main`` then a global function ``f`` (``call f`` in ``main``) with ``params``."""
    from pybpf.verifier.functions import GlobalFunction

    insns = assemble(f"{main}\nf:\n{body}")
    start = sum(i.slots for i in assemble(main.replace("call f", "call 0")))
    return insns, {start: GlobalFunction(start, "f", tuple(params))}


def test_global_functions_are_verified_on_their_own_and_calls_checked():
    from pybpf.verifier.functions import Param, ParamKind

    mem4 = Param(ParamKind.MEM, 4)
    main = "*(u32 *)(r10 - 4) = 7\nr1 = r10\nr1 += -4\ncall f\nr0 = 2\nexit"
    checked = "r0 = 0\nif r1 == 0 goto +1\nr0 = *(u32 *)(r1 + 0)\nexit"
    insns, fns = _with_global(main, checked, [mem4])
    assert verify(insns, ProgType.XDP, functions=fns).accepted
    # the function may get NULL: reading its argument unchecked is refused, in the function
    insns, fns = _with_global(main, "r0 = *(u32 *)(r1 + 0)\nexit", [mem4])
    first = _reject(verify(insns, ProgType.XDP, functions=fns), "null")
    assert first.label.startswith("f: ")
    assert verify(insns, ProgType.XDP).accepted  # inlined, the caller's pointer is known
    # the callee's bounds come from its signature, not from the caller
    insns, fns = _with_global(main, "r0 = *(u64 *)(r1 + 0)\nexit", [Param(ParamKind.MEM, 4)])
    _reject(verify(insns, ProgType.XDP, functions=fns), "Upper bound")
    # arguments: the context where memory is expected, uninitialised or too small memory
    for bad_main, reason in (
        ("r1 = r6\ncall f\nr0 = 2\nexit", "Invalid type"),
        ("r1 = r10\nr1 += -4\ncall f\nr0 = 2\nexit", "not numeric"),
        ("*(u16 *)(r10 - 2) = 7\nr1 = r10\nr1 += -2\ncall f\nr0 = 2\nexit", "Upper bound"),
    ):
        insns, fns = _with_global("r6 = r1\n" + bad_main, checked, [mem4])
        _reject(verify(insns, ProgType.XDP, functions=fns), reason)
    # scalars and the context; after the call r0 is a number and r1-r5 are gone
    ctx_fn = "r0 = *(u32 *)(r1 + 12)\nr0 += r2\nexit"
    scalar_ctx = [Param(ParamKind.CTX), Param(ParamKind.SCALAR)]
    insns, fns = _with_global("r2 = 5\ncall f\nr0 &= 1\nexit", ctx_fn, scalar_ctx)
    assert verify(insns, ProgType.XDP, functions=fns).accepted
    insns, fns = _with_global("r2 = 5\ncall f\nr0 = r2\nexit", ctx_fn, scalar_ctx)
    assert not verify(insns, ProgType.XDP, functions=fns).accepted
    insns, fns = _with_global("r2 = r10\ncall f\nr0 = 2\nexit", ctx_fn, scalar_ctx)
    _reject(verify(insns, ProgType.XDP, functions=fns), "Invalid type")


def test_a_global_function_that_moves_the_packet_kills_the_callers_packet_pointers():
    from pybpf.verifier.functions import Param, ParamKind

    main = GUARD.format(skip=4) + "r6 = r2\ncall f\nr0 = *(u8 *)(r6 + 0)\nexit\nr0 = 2\nexit"
    for body, ok in (("r0 = 0\nexit", True), ("r2 = 4\ncall 44\nr0 = 0\nexit", False)):
        insns, fns = _with_global(main, body, [Param(ParamKind.CTX)])
        assert verify(insns, ProgType.XDP, functions=fns).accepted is ok


def test_global_functions_are_read_from_btf():
    from pybpf.elf import read_object
    from pybpf.verifier.functions import ParamKind

    path = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "build" / "bpf2bpf.o"
    if not path.is_file():
        pytest.skip(f"{path} is not present (the corpus lives beside the clone)")
    obj = read_object(path.read_bytes())
    r = verify_object(obj, "func", ProgType.SOCKET_FILTER)
    # add1(int *x) reads *x unchecked: Linux refuses it, verified on its own
    assert not r.accepted and any(d.label.startswith("add1: ") for d in r.errors)
    assert verify_object(
        obj, "func", ProgType.SOCKET_FILTER, options=Options(global_functions=False)
    ).accepted
    from pybpf.spec import link
    from pybpf.verifier.functions import read_signatures

    linked = link(obj, "func")
    placed = [(n, pc, obj.programs[n].btf_func_id) for n, pc in linked.functions]
    sigs = read_signatures(obj.btf, placed, "__sk_buff")
    assert sorted(f.name for f in sigs.values()) == ["add1", "add2"]
    assert all(f.params[0].kind == ParamKind.MEM and f.params[0].size == 4 for f in sigs.values())


def test_a_callback_ctx_in_the_callers_frame_is_memory_up_to_the_frames_top():
    with_ctx = "*(u64 *)(r10 - 8) = 0\nr3 = r10\nr3 += -8"
    ok = "r3 = *(u64 *)(r2 + 0)\nr3 += 1\n*(u64 *)(r2 + 0) = r3\nr0 = 0\nexit"
    assert verify(_loop_program(ok, with_ctx), ProgType.XDP).accepted
    past = "r0 = *(u64 *)(r2 + 4)\nr0 = 0\nexit"  # 8 bytes from r10 - 4: past the frame
    r = verify(_loop_program(past, with_ctx), ProgType.XDP)
    first = _reject(r, "Upper bound")
    assert not first.unsupported
    leak = "*(u64 *)(r2 + 0) = r10\nr0 = 0\nexit"  # a pointer into the caller's stack
    assert not verify(_loop_program(leak, with_ctx), ProgType.XDP).accepted


def test_the_caller_forgets_what_its_callback_may_have_changed():
    # r3 = *(r10 - 8) after the loop may not be 0 any more: dividing by it may be by zero
    with_ctx = "*(u64 *)(r10 - 8) = 7\nr3 = r10\nr3 += -8"
    head = assemble("r1 = 10")
    after = assemble(
        f"{with_ctx}\nr4 = 0\ncall 181\nr0 = *(u64 *)(r10 - 8)\nif r0 == 7 goto +1\n"
        "r0 = r5\nr0 = 0\nexit"
    )
    cb_pc = 1 + 2 + sum(i.slots for i in after)
    lddw = Instruction(code=0x18, dst=2, src=4, imm=cb_pc - 2)
    program = head + [lddw] + after + assemble("*(u64 *)(r2 + 0) = 1\nr0 = 0\nexit")
    # a caller still believing *(r10 - 8) == 7 would call the read of r5 (gone after the
    # call) dead code; it is reachable, and refused
    _reject(verify(program, ProgType.XDP), "Invalid type")
