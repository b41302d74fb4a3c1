"""The bpf_conformance .data parser on hand-written files (format rules of bpf_test_parser.cc)."""

from __future__ import annotations

import pytest

from pybpf.conformance.suite import collect, parse_text
from pybpf.errors import ConformanceFileError


def test_sections_comments_and_result():
    case = parse_text(
        "# header\n-- asm\nmov %r0, 1 # trailing comment\r\nexit\n-- mem\n01 02\n03\n"
        "-- result\n0x5\n\n0x10\n",
        path="x/add.data",
    )
    assert case.name == "add"
    assert case.asm.split() == ["mov", "%r0,", "1", "exit"]
    assert case.mem == b"\x01\x02\x03"
    assert case.result == 0x10  # the last non-empty line wins
    assert case.problem is None and not case.negative


def test_decimal_result_and_negative_wraps_to_u64():
    assert parse_text("-- asm\nexit\n-- result\n17\n").result == 17
    assert parse_text("-- asm\nexit\n-- result\n-1\n").result == (1 << 64) - 1


def test_raw_as_u64_words_and_as_byte_lines():
    words = parse_text("-- raw\n0x0000000100000007 149\n-- result\n0x1\n")
    assert words.raw == bytes.fromhex("0700000001000000") + (149).to_bytes(8, "little")
    lines = parse_text("-- raw\n04 10 00 00 01 00 00 00\n95 00 00 00 00 00 00 00\n-- error\nx\n")
    assert lines.raw == bytes.fromhex("04100000010000009500000000000000")
    assert lines.error == "x" and lines.result is None


def test_ignored_sections():
    case = parse_text(
        "-- asm\nexit\n-- c\nint main() {}\n-- no register offset\nfoo\n-- result\n0\n"
    )
    assert case.asm.strip() == "exit" and case.problem is None


@pytest.mark.parametrize(
    "text",
    [
        "# nothing at all\n",
        "-- result\n0x0\n",  # no program
        "-- asm\n-- Unknown directive\n-- error\nInvalid register",
        "-- asm\nexit\n",  # neither result nor error
        "-- asm\nexit\n-- mem\nzz\n-- result\n0\n",
        "-- raw\n0xnothex\n-- result\n0\n",
    ],
)
def test_malformed_files_are_problems_not_exceptions(text):
    assert parse_text(text).problem


def test_collect_marks_negative_folder(tmp_path):
    (tmp_path / "negative").mkdir()
    (tmp_path / "a.data").write_text("-- asm\nexit\n-- result\n0\n")
    (tmp_path / "negative" / "b.data").write_text("-- asm\nexit\n-- result\n1\n")
    cases = list(collect([tmp_path]))
    assert [(c.name, c.negative) for c in cases] == [("a", False), ("b", True)]


def test_collect_missing_path():
    with pytest.raises(ConformanceFileError) as info:
        list(collect(["/nonexistent/dir"]))
    assert info.value.path == "/nonexistent/dir"
