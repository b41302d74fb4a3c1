"""Tests for the XDP samples in examples/: LPM-trie firewall, LRU flow table, ring buffer event
stream and tail-call dispatcher, in both engines, as scripts, and beside Linux."""

from __future__ import annotations

import ipaddress
import json
import struct
import sys
from pathlib import Path

import pytest

from kernel import requires_bpf
from test_samples import EXAMPLES, run_script

assert str(EXAMPLES) in sys.path  # test_samples put examples/ there: its modules follow

import dispatcher  # noqa: E402
import events  # noqa: E402
import lpm_firewall  # noqa: E402
import lru_flows  # noqa: E402
from engines import delete, get, items, load, ring_consume, u32  # noqa: E402
from frames import arp, icmp4, tcp4, udp4, udp6, xdp_md  # noqa: E402

ENGINES = ("interpreter", "jit")
XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3
C = EXAMPLES / "c"


def u64_at(m, index: int) -> int:
    return struct.unpack("<Q", get(m, u32(index)))[0]


# ---- LPM-trie firewall ---------------------------------------------------------------------
RULES = [("deny", "10.0.0.0/8"), ("allow", "10.1.0.0/16"), ("deny", "10.1.2.3/32"),
         ("deny", "192.0.2.128/25")]
SOURCES = ["10.0.0.0", "10.255.255.255", "10.1.0.0", "10.1.255.255", "10.1.2.3", "10.1.2.4",
           "9.255.255.255", "11.0.0.0", "192.0.2.127", "192.0.2.128", "192.0.2.255", "0.0.0.0"]


def longest_match(rules, source: str):
    """The rule deciding ``source``, found here by brute force (``None``: no match)."""
    addr = ipaddress.IPv4Address(source)
    found = [(ipaddress.IPv4Network(p), a, p) for a, p in rules if addr in ipaddress.IPv4Network(p)]
    return max(found, key=lambda f: f[0].prefixlen, default=None)


def firewall_run(engine: str, rules, sources, drop_rule: str | None = None):
    with load(C / "lpm_firewall.o", engine) as obj:
        lpm_firewall.install(obj, rules)
        if drop_rule:
            delete(obj.maps["prefixes"], lpm_firewall.prefix_key(drop_rule))
        prog = obj.programs["lpm_firewall"]
        retvals = [prog.test_run(udp4(src=s, payload=b"x")).retval for s in sources]
        return retvals, {name: items(m) for name, m in obj.maps.items()}


@pytest.mark.parametrize("engine", ENGINES)
def test_firewall_longest_prefix_decides(engine: str) -> None:
    retvals, maps = firewall_run(engine, RULES, SOURCES)
    hits: dict[str, int] = {}
    for source, retval in zip(SOURCES, retvals, strict=True):
        match = longest_match(RULES, source)
        expected = XDP_DROP if match and match[1] == "deny" else XDP_PASS
        assert retval == expected, source
        if match:
            hits[match[2]] = hits.get(match[2], 0) + 1
    for key, value in maps["prefixes"].items():
        plen, addr = struct.unpack("<I4s", key)
        action, _, n = struct.unpack("<IIQ", value)
        prefix = f"{ipaddress.IPv4Address(addr)}/{plen}"
        deny = dict((p, a) for a, p in RULES)[prefix] == "deny"
        assert (action, n) == (int(deny), hits.get(prefix, 0))
    assert len(maps["prefixes"]) == len(RULES)
    dropped = retvals.count(XDP_DROP)
    assert maps["stats"] == {u32(0): struct.pack("<Q", len(SOURCES) - dropped),
                             u32(1): struct.pack("<Q", dropped)}


@pytest.mark.parametrize("engine", ENGINES)
def test_firewall_without_the_allow_override(engine: str) -> None:
    retvals, _ = firewall_run(engine, RULES, ["10.1.200.1", "10.2.0.1"], drop_rule="10.1.0.0/16")
    assert retvals == [XDP_DROP, XDP_DROP]
    # non-IPv4 frames are not looked up
    with load(C / "lpm_firewall.o", engine) as obj:
        lpm_firewall.install(obj, [("deny", "0.0.0.0/0")])
        prog = obj.programs["lpm_firewall"]
        assert [prog.test_run(f).retval for f in (udp6(), arp(), udp4())] == [2, 2, 1]


def test_firewall_script(tmp_path: Path, capsys) -> None:
    record = run_script("lpm_firewall.py", "--deny", "10.0.0.0/8", "--allow", "10.1.0.0/16",
                        "--source", "10.1.1.1", "--source", "10.2.2.2", tmp_path=tmp_path)
    assert [p["verdict"] for p in record["packets"]] == ["pass", "drop"]
    assert (record["passed"], record["dropped"]) == (1, 1)
    assert lpm_firewall.main(["--engine", "jit"]) == 0
    out = capsys.readouterr().out
    assert "from 10.1.2.3        -> drop" in out and "rule 10.1.0.0/16        allow hits 1" in out


@requires_bpf
@pytest.mark.parametrize("engine", ENGINES)
def test_firewall_matches_the_kernel(engine: str) -> None:
    assert firewall_run(engine, RULES, SOURCES) == firewall_run("kernel", RULES, SOURCES)
    theirs = firewall_run("kernel", RULES, SOURCES[:4], drop_rule="10.1.0.0/16")
    assert firewall_run(engine, RULES, SOURCES[:4], drop_rule="10.1.0.0/16") == theirs


# ---- LRU flow table ------------------------------------------------------------------------
def flows_run(engine: str, new_flows: int):
    """The first flows' table, then the table, inserts and hot flow after eviction."""
    with load(C / "lru_flows.o", engine) as obj:
        prog = obj.programs["lru_flows"]
        for frame, times in lru_flows.FIRST:
            for _ in range(times):
                assert prog.test_run(frame).retval == XDP_PASS
        prog.test_run(icmp4())  # neither TCP nor UDP: no flow
        first = items(obj.maps["flows"])
        for i in range(new_flows):
            prog.test_run(lru_flows.hot_frame())
            prog.test_run(lru_flows.new_frame(i))
        return first, items(obj.maps["flows"]), u64_at(obj.maps["stats"], 0)


def flow_of(frame: bytes) -> bytes:
    """The flow key of an Ethernet/IPv4 frame, from its bytes."""
    ihl = (frame[14] & 0xF) * 4
    sport, dport = struct.unpack("!HH", frame[14 + ihl : 18 + ihl])
    return struct.pack("<4s4sHHB3x", frame[26:30], frame[30:34], sport, dport, frame[23])


@pytest.mark.parametrize("engine", ENGINES)
def test_flow_counters_and_eviction(engine: str) -> None:
    new = 40
    first, after, inserts = flows_run(engine, new)
    assert first == {
        flow_of(f): struct.pack("<QQ", n, n * len(f)) for f, n in lru_flows.FIRST
    }
    assert inserts == len(lru_flows.FIRST) + 1 + new
    assert len(after) <= lru_flows.CAPACITY < inserts  # full, so flows were evicted
    hot = lru_flows.hot_frame()
    assert after[flow_of(hot)] == struct.pack("<QQ", new, new * len(hot))  # used: kept
    last = lru_flows.new_frame(new - 1)
    assert after[flow_of(last)] == struct.pack("<QQ", 1, len(last))
    assert flow_of(lru_flows.new_frame(0)) not in after  # the oldest idle flow went first


def test_flows_script(tmp_path: Path, capsys) -> None:
    record = run_script("lru_flows.py", "--new-flows", "30", tmp_path=tmp_path)
    assert record["hot"] == [30, 30 * len(lru_flows.hot_frame())]
    assert len(record["after"]) <= 16 and record["inserts"] == 34
    assert lru_flows.main(["--engine", "jit", "--new-flows", "5"]) == 0
    out = capsys.readouterr().out
    assert "tcp 10.0.0.1:40000 -> 10.0.0.80:80      5 packets" in out
    assert "hot flow: 5 packets" in out


@requires_bpf
@pytest.mark.parametrize("engine", ENGINES)
def test_flows_match_the_kernel(engine: str) -> None:
    """Until the table is full the tables are equal; after, Linux's LRU and pybpf's CLOCK
    sweep may keep different idle flows, but the counters, inserts and the hot flow agree."""
    ours, theirs = flows_run(engine, 40), flows_run("kernel", 40)
    assert ours[0] == theirs[0] and ours[2] == theirs[2]
    hot = flow_of(lru_flows.hot_frame())
    assert ours[1][hot] == theirs[1][hot]
    assert len(ours[1]) <= 16 and len(theirs[1]) <= 16
    for key in ours[1].keys() & theirs[1].keys():
        assert ours[1][key] == theirs[1][key]
    assert flows_run(engine, 6) == flows_run("kernel", 6)  # 3 + 1 + 6 flows: never full


# ---- ring buffer event stream --------------------------------------------------------------
def syn_fields(frame: bytes) -> dict:
    """What an event must say about a SYN frame, from its bytes."""
    sport, dport, seq = struct.unpack("!HHI", frame[34:42])
    src, dst = ipaddress.IPv4Address(frame[26:30]), ipaddress.IPv4Address(frame[30:34])
    return {"src": f"{src}:{sport}", "dst": f"{dst}:{dport}", "ifindex": 1, "len": len(frame),
            "seq": seq}


def is_syn(frame: bytes) -> bool:
    return frame[12:14] == b"\x08\x00" and frame[23] == 6 and frame[47] & 0x12 == 0x02


def events_run(engine: str, frames: list[bytes], burst: int):
    with load(C / "events.o", engine) as obj:
        prog, ring = obj.programs["syn_events"], obj.maps["events"]
        records: list[bytes] = []
        for frame in frames:
            assert prog.test_run(frame, ctx_in=xdp_md(frame)).retval == XDP_PASS
        ring_consume(ring, records.append)
        kept: list[bytes] = []
        for i in range(burst):
            prog.test_run(events.syn(i))
        ring_consume(ring, kept.append)
        return records, kept, u64_at(obj.maps["lost"], 0)


@pytest.mark.parametrize("engine", ENGINES)
def test_one_event_per_syn_and_losses_when_full(engine: str) -> None:
    frames = events.stream(6)
    records, kept, lost = events_run(engine, frames, 200)
    assert [events.decode(r) for r in records] == [syn_fields(f) for f in frames if is_syn(f)]
    # 4096 bytes of ring; a record is 8 + 24 bytes; Linux keeps one byte free (mask)
    room = (4096 - 1) // (8 + events.EVENT.size)
    assert (len(kept), lost) == (room, 200 - room)
    assert [events.decode(r)["seq"] for r in kept] == [1000 + i for i in range(room)]


@pytest.mark.parametrize("engine", ENGINES)
def test_events_script_polls_while_the_stream_runs(engine: str, capsys) -> None:
    assert events.main(["--engine", engine, "--connections", "5", "--burst", "3", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    expected = [syn_fields(f) for f in events.stream(5) if is_syn(f)]
    assert record["events"] == expected and (record["burst"], record["lost"]) == (3, 0)


def test_events_script(tmp_path: Path) -> None:
    record = run_script("events.py", "--connections", "2", "--burst", "140", tmp_path=tmp_path)
    assert [e["seq"] for e in record["events"]] == [1000, 1001]
    assert record["burst"] + record["lost"] == 140 and record["lost"] > 0


@requires_bpf
@pytest.mark.parametrize("engine", ENGINES)
def test_events_match_the_kernel(engine: str) -> None:
    """The kernel run reads Linux's ring through pybpf.RingBuffer (libbpf's mmap protocol)."""
    frames = events.stream(4) + [tcp4(payload=b"x" * 30)]
    assert events_run(engine, frames, 150) == events_run("kernel", frames, 150)


# ---- tail-call dispatcher ------------------------------------------------------------------
def checksum_ok(data: bytes) -> bool:
    data += bytes(len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def dispatch_run(engine: str, without: list[str], frames: list[bytes]):
    with load(C / "dispatcher.o", engine) as obj:
        dispatcher.fill(obj, without)
        results = []
        for frame in frames:
            r = obj.programs["dispatch"].test_run(frame)
            results.append((r.retval, r.data_out))
        return results, items(obj.maps["handled"])


DISPATCH_FRAMES = [f for _, f in dispatcher.FRAMES] + [arp(), udp6(), tcp4(dport=2323)]


@pytest.mark.parametrize("engine", ENGINES)
def test_dispatch_by_protocol(engine: str) -> None:
    results, handled = dispatch_run(engine, [], DISPATCH_FRAMES)
    udp, tcp80, tcp23, echo, gre, arp_, v6, tcp2323 = results
    assert [r for r, _ in results] == [XDP_PASS, XDP_PASS, XDP_DROP, XDP_TX, XDP_PASS,
                                       XDP_PASS, XDP_PASS, XDP_PASS]
    request = DISPATCH_FRAMES[3]
    reply = echo[1]
    assert reply[26:30] == request[30:34] and reply[30:34] == request[26:30]
    assert reply[34] == 0 and reply[35] == request[35] and reply[38:] == request[38:]
    assert checksum_ok(reply[34:]) and checksum_ok(reply[14:34])
    assert handled == {u32(0): struct.pack("<Q", 1), u32(1): struct.pack("<Q", 1),
                       u32(6): struct.pack("<Q", 3), u32(17): struct.pack("<Q", 1),
                       **{u32(i): bytes(8) for i in range(256) if i not in (0, 1, 6, 17)}}


@pytest.mark.parametrize("engine", ENGINES)
def test_dispatch_without_handlers_falls_through(engine: str) -> None:
    results, handled = dispatch_run(engine, ["udp", "icmp"], DISPATCH_FRAMES[:5])
    assert [r for r, _ in results] == [XDP_PASS, XDP_PASS, XDP_DROP, XDP_PASS, XDP_PASS]
    assert results[3][1] == DISPATCH_FRAMES[3]  # no handler: the request is left alone
    assert u64_at_raw(handled, 0) == 3 and u64_at_raw(handled, 17) == 0


def u64_at_raw(table: dict[bytes, bytes], index: int) -> int:
    return struct.unpack("<Q", table[u32(index)])[0]


def test_dispatcher_script(tmp_path: Path, capsys) -> None:
    record = run_script("dispatcher.py", "--without", "tcp", tmp_path=tmp_path)
    assert [r["verdict"] for r in record["results"]] == ["pass", "pass", "pass", "tx", "pass"]
    assert record["handled"] == {"none": 3, "udp": 1, "tcp": 0, "icmp": 1}
    assert dispatcher.main(["--engine", "jit"]) == 0
    out = capsys.readouterr().out
    assert "icmp echo request  -> tx    10.0.0.2 -> 10.0.0.1 type 0" in out
    assert "handled: none 1, udp 1, tcp 2, icmp 1" in out


@requires_bpf
@pytest.mark.parametrize("engine", ENGINES)
def test_dispatch_matches_the_kernel(engine: str) -> None:
    for without in ([], ["tcp"]):
        ours = dispatch_run(engine, without, DISPATCH_FRAMES)
        assert ours == dispatch_run("kernel", without, DISPATCH_FRAMES)
