"""Tests for pybpf.hooks.runner and ``pybpf net run``: programs over captures, verdicts, outputs."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

import pybpf
from pybpf.cli.app import cli
from pybpf.errors import CaptureError, InputError, NotSupportedError
from pybpf.hooks import open_capture, open_writer
from pybpf.hooks.runner import run_capture

EXAMPLES = Path(__file__).parents[1] / "examples" / "c"
ENGINES = ("interpreter", "jit")
MAC_DST = bytes.fromhex("020000000002")
MAC_SRC = bytes.fromhex("020000000001")


def eth(proto: int) -> bytes:
    return MAC_DST + MAC_SRC + struct.pack(">H", proto)


def ipv4(proto: int, payload: bytes) -> bytes:
    head = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
        bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]),
    )
    return head + payload


def udp(payload: bytes) -> bytes:
    return eth(0x0800) + ipv4(17, struct.pack(">HHHH", 4000, 53, 8 + len(payload), 0) + payload)


def tcp(payload: bytes = b"") -> bytes:
    seg = struct.pack(">HHIIBBHHH", 4000, 80, 1, 0, 0x50, 0x02, 8192, 0, 0) + payload
    return eth(0x0800) + ipv4(6, seg)


def arp() -> bytes:
    body = struct.pack(">HHBBH", 1, 0x0800, 6, 4, 1) + MAC_SRC + bytes(4) + bytes(6) + bytes(4)
    return eth(0x0806) + body


def capture(frames: list[bytes], fmt: str = "pcap") -> bytes:
    buf = io.BytesIO()
    writer = open_writer(buf, fmt)
    for i, frame in enumerate(frames):
        writer.write(frame, 1_000_000_000 + i * 1000)
    writer.flush()
    return buf.getvalue()


def read(data: bytes) -> list[bytes]:
    with open_capture(io.BytesIO(data)) as cap:
        return [f.data for f in cap]


MIX = [udp(b""), udp(b"x" * 10), tcp(b"hello"), arp(), udp(b"q" * 3), tcp()]


@pytest.mark.parametrize("engine", ENGINES)
def test_xdp_counter_drops_udp_passes_the_rest(engine: str) -> None:
    obj = pybpf.load(EXAMPLES / "xdp_counter.o", engine=engine)
    outs = {"pass": io.BytesIO(), "drop": io.BytesIO(), "tx": io.BytesIO()}
    seen = []
    summary = run_capture(
        obj.programs["xdp_count"], io.BytesIO(capture(MIX)), outs,
        on_packet=lambda n, v: seen.append((n, v.verdict)),
    )
    is_udp = [f[12:14] == b"\x08\x00" and f[23] == 17 for f in MIX]
    assert read(outs["pass"].getvalue()) == [f for f, u in zip(MIX, is_udp, strict=True) if not u]
    assert read(outs["drop"].getvalue()) == [f for f, u in zip(MIX, is_udp, strict=True) if u]
    assert read(outs["tx"].getvalue()) == []
    assert seen == [(i + 1, "drop" if u else "pass") for i, u in enumerate(is_udp)]
    assert summary.packets == len(MIX)
    assert summary.bytes == sum(map(len, MIX))
    assert dict(summary.verdicts) == {"drop": sum(is_udp), "pass": len(MIX) - sum(is_udp)}
    # the program's own maps agree: 3 UDP and 2 TCP frames counted by protocol
    counts = obj.maps["proto_count"]
    assert counts[17] == 3 and counts[6] == 2


@pytest.mark.parametrize("engine", ENGINES)
def test_xdp_ctx_verdicts_and_modified_frames(engine: str) -> None:
    obj = pybpf.load(EXAMPLES / "xdp_ctx.o", engine=engine)
    frames = []
    for verdict in range(4):
        f = bytearray(udp(bytes(range(20))))
        f[15] = verdict  # low 2 bits of byte 15 choose the verdict
        frames.append(bytes(f))
    outs = {name: io.BytesIO() for name in ("aborted", "drop", "pass", "tx")}
    summary = run_capture(
        obj.programs["xdp_ctx"], io.BytesIO(capture(frames, "pcapng")), outs,
        ingress_ifindex=7, rx_queue=3,
    )
    assert dict(summary.verdicts) == {"aborted": 1, "drop": 1, "pass": 1, "tx": 1}
    for verdict, name in enumerate(("aborted", "drop", "pass", "tx")):
        (got,) = read(outs[name].getvalue())
        original = frames[verdict]
        want = struct.pack("<4I", 7, 3, len(original), 0) + original[16:]
        assert got == want  # written as the program modified it


@pytest.mark.parametrize("engine", ENGINES)
def test_tc_ctx_verdicts(engine: str) -> None:
    obj = pybpf.load(EXAMPLES / "tc_ctx.o", engine=engine)
    frames = []
    for act in (0, 2, 7, 3):
        f = bytearray(udp(bytes(120)))
        f[13] = act  # low 3 bits of byte 13: TC_ACT_*
        frames.append(bytes(f))
    outs = {"ok": io.BytesIO(), "shot": io.BytesIO(), "redirect": io.BytesIO()}
    summary = run_capture(obj.programs["tc_ctx"], io.BytesIO(capture(frames)), outs)
    assert dict(summary.verdicts) == {"ok": 1, "shot": 1, "redirect": 1, "pipe": 1}
    for name, index in (("ok", 0), ("shot", 1), ("redirect", 2)):
        (got,) = read(outs[name].getvalue())
        assert got[:14] == frames[index][:14]
        assert struct.unpack_from("<I", got, 14)[0] == len(frames[index])  # skb->len
        assert len(got) == len(frames[index])


@pytest.mark.parametrize("engine", ENGINES)
def test_socket_filter_truncates_to_returned_length(engine: str) -> None:
    obj = pybpf.load(EXAMPLES / "sock_ctx.o", engine=engine)  # returns skb->len (L3 on)
    outs = {"pass": io.BytesIO(), "drop": io.BytesIO()}
    frames = [udp(b""), tcp(b"abc"), udp(b"z" * 9)]
    summary = run_capture(obj.programs["sock_ctx"], io.BytesIO(capture(frames)), outs)
    assert dict(summary.verdicts) == {"pass": 3}
    assert read(outs["pass"].getvalue()) == frames  # len from L3 keeps the whole frame
    assert read(outs["drop"].getvalue()) == []


def test_socket_verdict_meanings() -> None:
    from pybpf.hooks.runner import classify

    frame = udp(b"abcdef")
    assert classify("socket", 0, frame, b"", None).verdict == "drop"
    cut = classify("socket", 20, frame, b"", None)
    assert cut.verdict == "pass" and cut.data == frame[:34]
    assert classify("xdp", 9, frame, frame, None).verdict == "aborted"
    red = classify("xdp", 4, frame, frame, (5, None, 0))
    assert (red.verdict, red.target) == ("redirect", 5)
    assert classify("tc", 0xFFFFFFFF, frame, frame, None).verdict == "unspec"
    assert classify("cgroup_skb", 1, frame, frame, None).verdict == "pass"


def test_unknown_output_verdict_is_refused() -> None:
    obj = pybpf.load(EXAMPLES / "xdp_counter.o")
    with pytest.raises(InputError) as info:
        run_capture(obj.programs["xdp_count"], io.BytesIO(capture(MIX)), {"shot": io.BytesIO()})
    assert info.value.field == "out"


def test_non_ethernet_capture_is_not_supported() -> None:
    obj = pybpf.load(EXAMPLES / "xdp_counter.o")
    buf = io.BytesIO()
    writer = open_writer(buf, "pcap", linktype=101)
    writer.write(MIX[0][14:])
    writer.flush()
    with pytest.raises(NotSupportedError):
        run_capture(obj.programs["xdp_count"], io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("engine", ENGINES)
def test_truncated_capture_runs_complete_records_then_raises(engine: str) -> None:
    obj = pybpf.load(EXAMPLES / "xdp_counter.o", engine=engine)
    data = capture(MIX)[:-5]  # the last record loses its tail
    outs = {"pass": io.BytesIO(), "drop": io.BytesIO()}
    with pytest.raises(CaptureError) as info:
        run_capture(obj.programs["xdp_count"], io.BytesIO(data), outs)
    assert info.value.packet == len(MIX)
    summary = info.value.summary
    assert summary.packets == len(MIX) - 1
    written = read(outs["pass"].getvalue()) + read(outs["drop"].getvalue())
    assert sorted(written) == sorted(MIX[:-1])


def test_progress_is_reported() -> None:
    obj = pybpf.load(EXAMPLES / "xdp_counter.o")
    calls = []
    frames = MIX * 100
    run_capture(
        obj.programs["xdp_count"], io.BytesIO(capture(frames)),
        progress=lambda n, b: calls.append((n, b)),
    )
    assert calls[-1] == (len(frames), sum(map(len, frames)))
    assert [n for n, _ in calls] == sorted(n for n, _ in calls) and len(calls) >= 3


# ---- the command ----------------------------------------------------------------------------
def test_cli_net_run_json(tmp_path: Path) -> None:
    src = tmp_path / "in.pcap"
    src.write_bytes(capture(MIX))
    p, d = tmp_path / "p.pcap", tmp_path / "d.pcapng"
    result = CliRunner().invoke(
        cli,
        ["net", "run", str(EXAMPLES / "xdp_counter.o"), "--program", "xdp_count",
         "--pcap", str(src), "--out", f"pass={p}", "--out", f"drop={d}", "--json",
         "--engine", "jit"],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["packets"] == len(MIX)
    assert record["verdicts"] == {"drop": 3, "pass": 3}
    assert record["written"] == {"drop": 3, "pass": 3}
    assert record["engine"] == "jit"
    assert len(read(p.read_bytes())) == 3
    assert d.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"  # pcapng by name
    assert len(read(d.read_bytes())) == 3


def _main(args: list[str], capsys) -> tuple[int, str, str]:
    from pybpf.cli.app import main

    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_cli_net_run_truncated_exits_2_naming_the_packet(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in.pcap"
    src.write_bytes(capture(MIX)[:-3])
    p = tmp_path / "p.pcap"
    code, out, err = _main(
        ["net", "run", str(EXAMPLES / "xdp_counter.o"), "--pcap", str(src), "--out", f"pass={p}"],
        capsys,
    )
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"packet {len(MIX)}" in errors[0]
    assert f"{len(MIX) - 1} packets" in out  # the summary of what ran
    assert len(read(p.read_bytes())) == 2  # TCP frames before the broken tail


def test_cli_bad_out_spec(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in.pcap"
    src.write_bytes(capture(MIX))
    code, _, err = _main(
        ["net", "run", str(EXAMPLES / "xdp_counter.o"), "--pcap", str(src), "--out", "pass"],
        capsys,
    )
    assert code == 2 and err.startswith("Error:")


def test_cli_not_a_capture(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in.pcap"
    src.write_bytes(b"nonsense" * 4)
    args = ["net", "run", str(EXAMPLES / "xdp_counter.o"), "--pcap", str(src)]
    code, _, err = _main(args, capsys)
    assert code == 2 and err.count("Error:") == 1


def test_cli_ingress_ifindex_reaches_the_context(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in.pcap"
    f = bytearray(udp(bytes(20)))
    f[15] = 2  # XDP_PASS
    src.write_bytes(capture([bytes(f)]))
    p = tmp_path / "p.pcap"
    code, out, _ = _main(
        ["net", "run", str(EXAMPLES / "xdp_ctx.o"), "--pcap", str(src), "--out", f"pass={p}",
         "--ingress-ifindex", "4", "--rx-queue", "2", "--json"],
        capsys,
    )
    assert code == 0
    assert json.loads(out)["verdicts"] == {"pass": 1}
    (got,) = read(p.read_bytes())
    assert struct.unpack_from("<2I", got) == (4, 2)


@pytest.mark.parametrize("engine", ENGINES)
def test_tc_ingress_ifindex(engine: str) -> None:
    obj = pybpf.load(EXAMPLES / "tc_ctx.o", engine=engine)
    outs = {"ok": io.BytesIO()}
    run_capture(obj.programs["tc_ctx"], io.BytesIO(capture([udp(bytes(120))])), outs,
                ingress_ifindex=9)
    (got,) = read(outs["ok"].getvalue())
    assert struct.unpack_from("<I", got, 14 + 4 * 9)[0] == 9


def test_cli_progress_bar_on_a_terminal(tmp_path: Path, capsys, monkeypatch) -> None:
    import sys

    from pybpf.cli import net_cmd

    src = tmp_path / "in.pcap"
    src.write_bytes(capture(MIX * 100))
    monkeypatch.setattr(net_cmd, "_PROGRESS_MIN_BYTES", 0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, out, err = _main(
        ["net", "run", str(EXAMPLES / "xdp_counter.o"), "--pcap", str(src)], capsys
    )
    assert code == 0 and "packets" in err  # the bar's label
    assert f"{len(MIX) * 100} packets" in out
