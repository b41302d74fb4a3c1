"""Tests for pybpf.hooks.runner with packet helpers: redirect targets and xdp_adjust_* frames."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

import pybpf
from pybpf.hooks import open_capture, open_writer
from pybpf.hooks.runner import run_capture

EXAMPLES = Path(__file__).parents[1] / "examples" / "c"
ENGINES = ("interpreter", "jit")


def frame(first: bytes, size: int = 60) -> bytes:
    body = first + bytes(range(256))
    return body[:size]


def capture(frames: list[bytes]) -> bytes:
    buf = io.BytesIO()
    writer = open_writer(buf, "pcap")
    for i, f in enumerate(frames):
        writer.write(f, i)
    writer.flush()
    return buf.getvalue()


def read(data: bytes) -> list[bytes]:
    with open_capture(io.BytesIO(data)) as cap:
        return [f.data for f in cap]


@pytest.mark.parametrize("engine", ENGINES)
def test_redirect_targets_get_their_own_outputs(engine: str) -> None:
    obj = pybpf.load(EXAMPLES / "packet_helpers.o", engine=engine)
    # xdp_redir: bpf_redirect(data[0], data[1]); flags other than 0 abort
    frames = [frame(b"\x03\x00"), frame(b"\x05\x00"), frame(b"\x03\x00\x01"), frame(b"\x03\x01")]
    outs = {"redirect:3": io.BytesIO(), "redirect": io.BytesIO(), "aborted": io.BytesIO()}
    summary = run_capture(obj.programs["xdp_redir"], io.BytesIO(capture(frames)), outs)
    assert dict(summary.verdicts) == {
        "redirect": 3, "redirect:3": 2, "redirect:5": 1, "aborted": 1,
    }
    assert read(outs["redirect:3"].getvalue()) == [frames[0], frames[2]]
    assert read(outs["redirect"].getvalue()) == [frames[1]]  # no redirect:5 output given
    assert read(outs["aborted"].getvalue()) == [frames[3]]


@pytest.mark.parametrize("engine", ENGINES)
def test_adjust_head_and_tail_are_written_as_left(engine: str) -> None:
    obj = pybpf.load(EXAMPLES / "packet_helpers.o", engine=engine)
    frames = [frame(b"\x01"), frame(b"\x00")]
    outs = {"pass": io.BytesIO()}
    run_capture(obj.programs["xdp_push"], io.BytesIO(capture(frames)), outs)
    pushed, untouched = read(outs["pass"].getvalue())
    assert pushed == struct.pack("<II", 0xEFBEADDE, len(frames[0]) + 8) + frames[0]
    assert untouched == frames[1]
    # xdp_tail: grow or shrink by the signed 16-bit number in the first two bytes
    frames = [frame(struct.pack("<h", -10)), frame(struct.pack("<h", 6))]
    outs = {"pass": io.BytesIO()}
    run_capture(obj.programs["xdp_tail"], io.BytesIO(capture(frames)), outs)
    shrunk, grown = read(outs["pass"].getvalue())
    assert shrunk == frames[0][:-10]
    assert grown[: len(frames[1])] == frames[1] and len(grown) == len(frames[1]) + 6


@pytest.mark.parametrize("engine", ENGINES)
def test_metadata_is_not_part_of_the_written_frame(engine: str) -> None:
    obj = pybpf.load(EXAMPLES / "packet_helpers.o", engine=engine)
    f = frame(struct.pack("<h", -8))  # reserve 8 bytes of metadata
    outs = {"pass": io.BytesIO()}
    run_capture(obj.programs["xdp_meta"], io.BytesIO(capture([f])), outs)
    (got,) = read(outs["pass"].getvalue())
    assert got == struct.pack("<II", 0, 8) + f[8:]
