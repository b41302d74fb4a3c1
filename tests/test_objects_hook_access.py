"""A loaded Program's hook accessors and the skb fields a frame gives.

Hooks that run a program on regions of their own (``hooks.packetrun``) use
``Program.runtime_context``, ``Program.runner`` and ``Program.reachable_maps`` and
``objects.context.skb_frame_fields``, never the program's private attributes: a run through
them gives what ``test_run`` gives.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import pybpf
from pybpf.jit import available
from pybpf.memory import AddressSpace
from pybpf.objects.context import SkbContext, XdpContext, skb_frame_fields
from pybpf.objects.sock_context import SockAddrContext
from pybpf.progtypes import ProgType
from pybpf.progtypes.contexts import rules_for
from pybpf.runtime import expose_maps

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))
from frames import arp, tcp4, udp4, udp6  # noqa: E402

ENGINES = ["interpreter"] + (["jit"] if available() else [])


def test_runtime_context_is_the_builder_test_run_uses():
    obj = pybpf.load(EXAMPLES / "c" / "programs.o", engine="interpreter")
    kinds = {name: type(p.runtime_context) for name, p in obj.programs.items()}
    assert kinds["xdp_pass"] is XdpContext
    assert kinds["tc_ok"] is SkbContext and kinds["socket_all"] is SkbContext
    assert kinds["bind4_allow"] is SockAddrContext
    for name in ("kprobe_open", "tp_write"):  # plain-memory contexts: no builder
        assert obj.programs[name].runtime_context is None
    for prog in obj.programs.values():
        assert (prog.runtime_context is not None) == (prog.context == "runtime")
    assert not obj.programs["socket_all"].runtime_context.l2  # from L3 on, as Linux


def test_reachable_maps_are_the_objects_and_read_only():
    obj = pybpf.load(EXAMPLES / "c" / "tail_calls.o", engine="interpreter")
    prog = obj.programs["stage_two"]
    names = {m.name for m in prog.reachable_maps}
    assert not prog.maps and names == {m.name for m in obj.maps.values()}
    assert isinstance(prog.reachable_maps, tuple)  # a caller cannot change what runs reach
    assert all(any(m is r for r in prog.reachable_maps) for m in obj.programs["entry"].maps)


@pytest.mark.parametrize("engine", ENGINES)
def test_runner_on_own_regions_gives_what_test_run_gives(engine):
    obj = pybpf.load(EXAMPLES / "c" / "xdp_counter.o", engine=engine)
    prog = obj.programs["xdp_count"]
    assert hasattr(prog.runner, "run_batch") == (engine == "jit")
    frames = [udp4(payload=b"abc"), tcp4(payload=b"x"), udp6(payload=b""), arp()]
    expected = [prog.test_run(f).retval for f in frames]
    counts = {name: dict(m.items()) for name, m in obj.maps.items() if m.name != "tag"}
    runs, spent = prog.run_cnt, prog.run_time_ns
    got = []
    for frame in frames:
        prepared = prog.runtime_context.prepare(frame, None, program=prog.name)
        space = AddressSpace()
        expose_maps(space, prog.reachable_maps)
        for region in prepared.regions:
            space.add(region)
        try:
            r0 = prog.runner.run(
                (prepared.ctx.address,), memory=space, packet=prepared.legacy_packet(), cpu=0
            )
        finally:
            for region in prepared.regions:
                space.remove(region)
            prepared.close()
        got.append(r0 & 0xFFFFFFFF)
    assert got == expected
    assert (prog.run_cnt, prog.run_time_ns) == (runs, spent)  # the caller counts its runs
    after = {name: dict(m.items()) for name, m in obj.maps.items() if m.name != "tag"}
    assert after != counts  # the runs reached the object's maps


def _mcast(frame: bytes) -> bytes:
    return bytes([1, 0, 0x5E, 0, 0, 1]) + frame[6:]


FIELD_FRAMES = [
    udp4(payload=b"a"),
    tcp4(src="10.9.9.9"),
    udp6(payload=b"v6"),
    arp(),
    _mcast(udp4(payload=b"m")),
    bytes(6) + udp4(payload=b"z")[6:],  # to the loopback's all-zero address
]


@pytest.mark.parametrize("frame", FIELD_FRAMES)
def test_skb_frame_fields_are_what_prepare_packs(frame):
    builder = SkbContext(rules_for(ProgType.SCHED_CLS).context)
    fields = skb_frame_fields(frame)
    prepared = builder.prepare(frame, None)
    try:
        ctx = bytes(prepared.ctx.view)
    finally:
        prepared.close()
    layout = builder.runtime
    sizes = {f.name: f.size for f in builder.layout.fields}
    for name, value in fields.items():
        at = layout.offsets[name]
        assert int.from_bytes(ctx[at : at + sizes[name]], "little") == value, name
    # read independently of the builder: network-order protocol, eth_type_trans's pkt_type
    assert fields["protocol"] == int.from_bytes(frame[12:14], "little")
    assert fields["pkt_type"] == (2 if frame[0] & 1 else 0 if frame[:6] == bytes(6) else 3)
    proto = frame[12:14]
    if proto == b"\x08\x00":
        assert fields["family"] == 2
        assert fields["local_ip4"] == int.from_bytes(frame[26:30], "little")
        assert fields["remote_ip4"] == int.from_bytes(frame[30:34], "little")
    elif proto == b"\x86\xdd":
        assert fields["family"] == 10
        assert fields["remote_ip6[3]"] == int.from_bytes(frame[50:54], "little")
    else:
        assert set(fields) == {"protocol", "pkt_type"}


def test_hooks_and_cli_use_no_program_privates():
    private = re.compile(
        r"""getattr\(\w+,\s*["']_(runtime_context|runner|reachable)["']"""
        r"""|\b(program|prog)\._(runtime_context|runner|reachable)\b"""
        r"""|from pybpf\.objects\.context import \(?[^)]*\b_\w+"""
    )
    found = []
    for folder in ("hooks", "cli"):
        for path in sorted((ROOT / "src" / "pybpf" / folder).rglob("*.py")):
            found += [f"{path.name}: {m.group(0)}" for m in private.finditer(path.read_text())]
    assert found == []
