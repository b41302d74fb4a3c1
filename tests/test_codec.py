"""Codec: decode/encode round trips, check's refusals and the location of decode errors."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.errors import DecodeError
from pybpf.isa.codec import check, decode, encode
from pybpf.isa.instruction import LDDW_CODE, Instruction
from strategies import programs, valid_instructions

SHARED = Path(__file__).parents[2] / "shared"
NEGATIVE = SHARED / "conformance" / "negative"


def slot(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


EXIT = slot(0x95)
MOV_R0_1 = slot(0xB7, imm=1)


@settings(max_examples=400, deadline=None)
@given(valid_instructions())
def test_valid_instructions_pass_check_and_round_trip(insn: Instruction) -> None:
    check(insn)
    data = encode([insn])
    assert len(data) == 8 * insn.slots
    assert decode(data) == [insn]


@settings(max_examples=150, deadline=None)
@given(programs())
def test_programs_round_trip(insns: list[Instruction]) -> None:
    data = encode(insns)
    assert decode(data) == insns
    assert encode(decode(data)) == data


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_bytes_raise_decode_error_only(data: bytes) -> None:
    try:
        insns = decode(data)
    except DecodeError as exc:
        assert exc.field in ("opcode", "dst", "src", "off", "imm", "length")
        assert exc.pc is not None and exc.offset == exc.pc * 8
    else:
        assert encode(insns) == data


@settings(max_examples=400, deadline=None)
@given(
    st.integers(0, 255),
    st.integers(0, 15),
    st.integers(0, 15),
    st.integers(-0x8000, 0x7FFF),
    st.one_of(st.integers(-0x80000000, 0x7FFFFFFF), st.sampled_from([0, 16, 32, 64, 0xE1])),
)
def test_random_fields_are_checked_without_surprises(code, dst, src, off, imm) -> None:
    insn = Instruction(code, dst, src, off, imm)
    try:
        check(insn, 3)
    except DecodeError as exc:
        assert exc.pc == 3 and exc.offset == 24
    else:
        assert decode(encode([insn])) == [insn]  # lddw encodes both of its slots


def test_lddw_combines_its_two_slots() -> None:
    data = bytes.fromhex("1801000088776655 0000000044332211".replace(" ", ""))
    (insn,) = decode(data)
    assert insn.is_lddw and insn.dst == 1 and insn.slots == 2
    assert insn.imm64 == 0x1122334455667788
    assert encode([insn]) == data


def test_pcs_count_slots() -> None:
    data = slot(LDDW_CODE, 1) + slot(0) + MOV_R0_1 + slot(0x07, 12)
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert info.value.pc == 3 and info.value.offset == 24
    assert info.value.field == "dst" and info.value.value == 12


def test_unknown_opcode() -> None:
    with pytest.raises(DecodeError) as info:
        decode(MOV_R0_1 + slot(0xFF) + EXIT)
    err = info.value
    assert (err.field, err.value, err.pc, err.offset) == ("opcode", 0xFF, 1, 8)


@pytest.mark.parametrize(
    ("raw", "field", "value"),
    [
        (slot(0xBF, 11, 1), "dst", 11),  # r11 = r1
        (slot(0xBF, 1, 15), "src", 15),
        (slot(0x61, 0, 12, 4), "src", 12),
        (slot(0x85, 0, 3, imm=1), "src", 3),  # unknown call kind
    ],
)
def test_bad_register_fields(raw: bytes, field: str, value: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode(MOV_R0_1 + raw)
    assert (info.value.field, info.value.value, info.value.pc) == (field, value, 1)


def test_truncated_lddw() -> None:
    with pytest.raises(DecodeError) as info:
        decode(MOV_R0_1 + slot(LDDW_CODE, 1, imm=5))
    assert info.value.field == "length" and info.value.pc == 1 and info.value.offset == 8


def test_length_not_a_multiple_of_eight() -> None:
    with pytest.raises(DecodeError) as info:
        decode(MOV_R0_1 + b"\x95\0\0")
    assert info.value.field == "length" and info.value.value == 11


@pytest.mark.parametrize(
    ("second", "field"),
    [(slot(0x95), "opcode"), (slot(0, 1), "dst"), (slot(0, 0, 1), "src"), (slot(0, off=1), "off")],
)
def test_lddw_second_slot_must_be_empty(second: bytes, field: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(slot(LDDW_CODE, 1) + second)
    assert info.value.field == field and info.value.pc == 1


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (slot(0x07, 0, 1, imm=1), "src"),  # add64 imm with src
        (slot(0x0F, 0, 0, imm=1), "imm"),  # add64 reg with imm
        (slot(0x07, 0, 0, 1, 1), "off"),  # add64 imm with offset
        (slot(0x95, 0, 0, 0, 1), "imm"),  # exit with imm
        (slot(0x05, 1), "dst"),  # ja with dst
        (slot(0x87, 0, 0, 0, 1), "imm"),  # neg64 with imm
        (slot(0x7B, 10, 0, -8, 1), "imm"),  # stxdw with imm
        (slot(0x62, 10, 1, -4), "src"),  # stw with src
        (slot(0xD4, 0, 0, 0, 8), "imm"),  # le8 does not exist
        (slot(0x3F, 0, 1, 2), "off"),  # div with off 2
    ],
)
def test_nonzero_unused_fields(raw: bytes, field: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(raw + EXIT)
    assert info.value.field == field and info.value.pc == 0 and info.value.offset == 0


def test_check_refuses_out_of_range_fields() -> None:
    for insn, field in [
        (Instruction(0xB7, imm=1 << 31), "imm"),
        (Instruction(0x05, off=1 << 15), "off"),
        (Instruction(LDDW_CODE, 1, imm_hi=1 << 31), "imm"),
        (Instruction(0xB7, imm_hi=1), "imm"),
    ]:
        with pytest.raises(DecodeError) as info:
            check(insn)
        assert info.value.field == field


def _raw_section(path: Path) -> bytes:
    lines, inside = [], False
    for line in path.read_text().splitlines():
        if "--" in line:
            inside = "raw" in line
        elif inside and line.strip():
            lines.append(line)
    return bytes.fromhex(" ".join(lines))


def test_negative_conformance_raw_programs_are_refused() -> None:
    if not NEGATIVE.is_dir():
        pytest.skip(f"{NEGATIVE} is absent (the shared reference data sits beside the clone)")
    files = [p for p in sorted(NEGATIVE.glob("*.data")) if "-- raw" in p.read_text()]
    assert len(files) >= 40
    for path in files:
        with pytest.raises(DecodeError) as info:
            decode(_raw_section(path))
        assert info.value.pc == 0, path.name
        unused = path.stem.rsplit("-", 1)[1]
        expected = {"offset": "off", "imm": "imm", "src": "src", "dst": "dst"}[unused]
        assert info.value.field == expected, path.name
