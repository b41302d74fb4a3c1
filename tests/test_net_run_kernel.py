"""Tests for pybpf.hooks.runner against Linux: the same capture through the kernel's test runs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import pybpf
from kernel import requires_bpf
from pybpf.hooks.runner import run_capture
from test_net_run import MIX, capture, read, udp

EXAMPLES = Path(__file__).parents[1] / "examples" / "c"
pytestmark = requires_bpf


def _run(path: Path, name: str, backend: str, frames: list[bytes], outs: tuple[str, ...]):
    kwargs = {"backend": "kernel"} if backend == "kernel" else {"engine": backend}
    obj = pybpf.load(path, **kwargs)
    try:
        sinks = {o: io.BytesIO() for o in outs}
        verdicts = []
        run_capture(
            obj.programs[name], io.BytesIO(capture(frames)), sinks,
            on_packet=lambda n, v: verdicts.append((v.retval, v.verdict)),
        )
        return verdicts, {o: read(s.getvalue()) for o, s in sinks.items()}
    finally:
        obj.close()


@pytest.mark.parametrize("engine", ["interpreter", "jit"])
def test_xdp_counter_matches_the_kernel(engine: str) -> None:
    path = EXAMPLES / "xdp_counter.o"
    ours = _run(path, "xdp_count", engine, MIX, ("pass", "drop"))
    theirs = _run(path, "xdp_count", "kernel", MIX, ("pass", "drop"))
    assert ours == theirs


def test_tc_and_socket_verdicts_match_the_kernel() -> None:
    frames = []
    for act in range(8):
        f = bytearray(udp(bytes(120)))
        f[13] = act
        frames.append(bytes(f))
    ours = _run(EXAMPLES / "tc_ctx.o", "tc_ctx", "interpreter", frames, ())
    theirs = _run(EXAMPLES / "tc_ctx.o", "tc_ctx", "kernel", frames, ())
    assert ours[0] == theirs[0]
    ours = _run(EXAMPLES / "sock_ctx.o", "sock_ctx", "interpreter", MIX[:3], ("pass",))
    theirs = _run(EXAMPLES / "sock_ctx.o", "sock_ctx", "kernel", MIX[:3], ("pass",))
    assert ours == theirs


def test_cli_engine_kernel(tmp_path: Path, capsys) -> None:
    import json

    from test_net_run import _main

    src = tmp_path / "in.pcap"
    src.write_bytes(capture(MIX))
    records = []
    for engine in ("kernel", "jit"):
        code, out, _ = _main(
            ["net", "run", str(EXAMPLES / "xdp_counter.o"), "--pcap", str(src), "--json",
             "--engine", engine],
            capsys,
        )
        assert code == 0
        records.append(json.loads(out)["verdicts"])
    assert records[0] == records[1] == {"drop": 3, "pass": 3}
