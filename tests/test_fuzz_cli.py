"""CLI fuzzing: every ``pybpf`` command with generated and mutated argv ends in a usage error,
success, or one pybpf error; never a traceback (a non-pybpf exception or InternalError), a
hang or a blow-up of memory.

The argv of each command is built from its own click parameters (so new commands and
options are fuzzed without editing this file): option values come from pools of good and
hostile values per type (files of every kind pybpf reads, garbage files, missing paths,
paths escaping the state directory, odd numbers and strings, bpftool map words; never
the kernel map backend, and commands that change the host or wait by design are left out,
see ``EXCLUDED``), then the
token list is mutated (tokens dropped, duplicated, swapped, replaced). Commands run in a
temporary working directory, with ``PYBPF_STATE`` private to the test, so outputs stay
there. Errors are judged as ``pybpf.cli.app.main`` reports them: click usage errors and
:class:`~pybpf.errors.InputError` (exit 2) and the other pybpf families but
InternalError (exit 255); a mutated object file may fail verification. CI runs a
fixed-seed, bounded number of inputs; a longer run::

    PYBPF_FUZZ_EXAMPLES=3000 python -m pytest -q tests/test_fuzz_cli.py

Crashing argvs are kept as JSON lists in ``tests/fixtures/fuzz/cli/`` and replayed here
(``{ROOT}`` in a token is the repository's root).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from fuzz_guard import corpus, fuzz_settings, guard
from pybpf.cli.app import cli
from pybpf.errors import InternalError, PybpfError
from pybpf.maps import MapDefinition, create_map
from pybpf.maptypes import MapType

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
_GOOD_FILES = [
    EXAMPLES / "c" / "xdp_counter.o",
    EXAMPLES / "c" / "packet_helpers.o",
    EXAMPLES / "c" / "legacy_maps.o",
    EXAMPLES / "c" / "tail_calls.o",
    EXAMPLES / "captures" / "mixed.pcap",
    ROOT / "tests" / "fixtures" / "elf" / "windows_bind.o",
    ROOT / "tests" / "fixtures" / "captures" / "multi_le.pcapng",
]
# Written into the working directory by the fixture: every kind of file pybpf reads.
_MADE_FILES = {
    "prog.asm": "r0 = 1\nr1 = *(u8 *)(r1 + 0)\nr0 += r1\nexit\n",
    "loop.asm": "L:\nr0 += 1\ngoto L\n",
    "prog.hex": "b7 00 00 00 01 00 00 00 95 00 00 00 00 00 00 00",
    "bad.hex": "b7 00 zz",
    "prog.bin": bytes.fromhex("b700000001000000" "9500000000000000"),
    "odd.bin": b"\x95\0\0",
    "conf.data": "-- asm\nmov %r0, 1\nexit\n-- result\n0x1\n",
    "bad.data": "-- asm\nnot an insn\n-- result\nzz\n",
    "mem.bin": bytes(range(64)),
    "garbage.o": b"\x7fELF" + bytes(range(256)) * 2,
    "empty": b"",
    "text.pcap": "not a capture",
}
PATHS = [str(p) for p in _GOOD_FILES] + list(_MADE_FILES) + [
    "missing.o", ".", "/", "/dev/null", "-", "../outside", "/sys/fs/bpf/../x", "a\\b",
]  # fmt: skip
OUTPUTS = ["out.bin", "out.pcap", "out.pcapng", "sub/missing/out", ".", "empty", "x=out.pcap"]
STRINGS = [
    "", " ", "0", "1", "-1", "0x10", "99999999999999999999", "-0", "nan", "xdp_counter",
    "count_packets", "xdp_prog", "00 11 22", "zz", "0" * 1000, "é", "a\tb", "--help", "-j",
    "pass=out.pcap", "drop=out.pcapng", "redirect=", "=", "1,2", "ff" * 40, "00" * 14,
]  # fmt: skip
INTS = ["0", "1", "2", "-1", "4294967296", "18446744073709551617", "abc", "", "0x10", "1e3"]
PIN = "/sys/fs/bpf/counts"
MAP_WORDS = [
    "pinned", "name", "id", "key", "value", "hex", "any", "exist", "noexist", "0", "1", "255",
    "256", "-1", "0x01", "010", "ff", "/sys/fs/bpf/counts", "/sys/fs/bpf/../escape", "counts",
    str(EXAMPLES / "c" / "xdp_counter.o"), "missing.o", "garbage.o",
]  # fmt: skip


def _commands(group: click.Group, prefix: tuple = ()) -> list[tuple[tuple, click.Command]]:
    out = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += _commands(command, prefix + (name,))
        else:
            out.append((prefix + (name,), command))
    return out


# Left out on purpose (this machine runs as root, with real interfaces and a real bpffs):
# commands that change the host, or that wait for events by design.
EXCLUDED = {
    "net attach": "attaches programs to real interfaces",
    "net detach": "detaches real programs from real interfaces",
    "link detach": "may name kernel links",
    "cc": "runs clang on arbitrary paths (slow, writes outputs)",
    "prog tracelog": "--follow waits for messages by design",
    "map event_pipe": "waits for events by design",
}
ALL_COMMANDS = _commands(cli)
COMMANDS = [(path, c) for path, c in ALL_COMMANDS if " ".join(path) not in EXCLUDED]


def _values(param: click.Parameter) -> st.SearchStrategy[str]:
    """Mostly values the option accepts (so commands run), sometimes hostile ones."""
    return st.one_of(_good(param), _good(param), _good(param), _hostile(param))


def _good(param: click.Parameter) -> st.SearchStrategy[str]:
    kind = param.type
    if param.name == "backend":  # the kernel backend reaches the host's real bpffs
        return st.just("portable")
    if isinstance(kind, click.Choice):
        return st.sampled_from(list(kind.choices))
    if isinstance(kind, click.IntRange | click.types.IntParamType):
        return st.sampled_from(["0", "1", "2", "3"])
    if isinstance(kind, click.Path):
        if "out" in (param.name or ""):
            return st.sampled_from(OUTPUTS[:3])
        return st.sampled_from([str(p) for p in _GOOD_FILES] + list(_MADE_FILES))
    if param.name == "words":
        return st.sampled_from(MAP_WORDS[:3] + ["/sys/fs/bpf/counts", "counts", "key", "1"])
    if param.name in ("data_out", "ctx_out", "outs"):
        return st.sampled_from(OUTPUTS[:3] + ["pass=out.pcap", "drop=out.pcapng"])
    if param.name in ("data_in", "ctx_in", "mem_hex"):
        return st.sampled_from(["00 11 22", "00" * 14, "ff" * 40, "00" * 64, ""])
    return st.sampled_from(STRINGS[9:12] + ["uint", "0"])


def _hostile(param: click.Parameter) -> st.SearchStrategy[str]:
    kind = param.type
    if param.name == "backend":
        return st.sampled_from(["portable", "bogus", ""])
    if isinstance(kind, click.Choice):
        return st.sampled_from([*kind.choices, "bogus", ""])
    if isinstance(kind, click.IntRange | click.types.IntParamType):
        if param.name == "repeat":  # a long repeat is a request, not a bug
            return st.sampled_from(["0", "1", "3", "-1", "abc"])
        return st.sampled_from(INTS)
    if isinstance(kind, click.Path):
        if param.name in ("output",) or "out" in (param.name or ""):
            return st.sampled_from(OUTPUTS)
        return st.sampled_from(PATHS)
    if param.name == "words":
        return st.sampled_from(MAP_WORDS)
    if param.name in ("data_out", "ctx_out", "outs"):
        return st.sampled_from(OUTPUTS + STRINGS[:6])
    return st.sampled_from(STRINGS + PATHS[:4])


@st.composite
def map_words(draw: st.DrawFn) -> list[str]:
    """bpftool's ``MAP [key DATA] [value DATA] [flag]``, with odd DATA and sizes."""
    words = draw(
        st.sampled_from(
            [["pinned", PIN], ["name", "counts"], ["pinned", "/sys/fs/bpf/nothing"],
             [str(EXAMPLES / "c" / "xdp_counter.o")], ["pinned", "/sys/fs/bpf/../x"]]
        )
    )  # fmt: skip
    byte = st.sampled_from(["0", "1", "255", "256", "0x01", "010", "ff", "zz"])
    for word in ("key", "value"):
        if draw(st.integers(0, 3)):
            words.append(word)
            if draw(st.booleans()):
                words.append("hex")
            words += draw(st.lists(byte, min_size=0, max_size=10))
    if draw(st.booleans()):
        words.append(draw(st.sampled_from(["any", "exist", "noexist", "bogus"])))
    return words


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    path, command = draw(st.sampled_from(COMMANDS))
    argv: list[str] = []
    if draw(st.integers(0, 3)) == 0:
        argv.append(draw(st.sampled_from(["-j", "-p"])))
    argv += list(path)
    for param in command.params:
        if isinstance(param, click.Argument):
            if param.name == "words" and draw(st.integers(0, 3)):
                argv += draw(map_words())
                continue
            count = 1 if param.nargs == 1 else draw(st.integers(0, 6))
            if param.nargs == 1 and draw(st.integers(0, 19)) == 0:
                count = 0  # a missing argument
            argv += [draw(_values(param)) for _ in range(count)]
        elif draw(st.booleans()):
            opt = draw(st.sampled_from(param.opts))
            if getattr(param, "is_flag", False):
                argv.append(opt)
            else:
                argv += [opt, draw(_values(param))]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):  # token-level mutations
        if not argv:
            break
        i = draw(st.integers(0, len(argv) - 1))
        op = draw(st.sampled_from(["drop", "dup", "swap", "replace"]))
        if op == "drop":
            del argv[i]
        elif op == "dup":
            argv.insert(i, argv[i])
        elif op == "swap":
            j = draw(st.integers(0, len(argv) - 1))
            argv[i], argv[j] = argv[j], argv[i]
        else:
            argv[i] = draw(st.sampled_from(STRINGS + PATHS))
    return argv


def invoke(argv: list[str]) -> str:
    """Run one argv as ``pybpf.cli.app.main`` would, failing on a traceback; returns how it
    ended (``"usage"``, ``"ok"`` or the pybpf error's class)."""
    runner = CliRunner()
    with runner.isolation():
        try:
            cli.main(args=argv, prog_name="pybpf", standalone_mode=False)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            return "usage"  # usage errors (exit 2), --help/--version
        except InternalError:
            raise
        except PybpfError as err:
            return type(err).__name__  # InputError exits 2, the other families 255
        except BrokenPipeError:
            return "broken pipe"
    return "ok"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PYBPF_STATE", str(tmp_path / "state"))
    work = tmp_path / "work"
    work.mkdir()
    for name, content in _MADE_FILES.items():
        target = work / name
        if isinstance(content, str):
            target.write_text(content)
        else:
            target.write_bytes(content)
    monkeypatch.chdir(work)
    counts = create_map(MapDefinition(MapType.HASH, 4, 8, 4, name="counts"), pin=PIN)
    counts.update_raw(bytes(4), bytes(8))
    yield work
    counts.close()


def _run(argv: list[str]) -> None:
    guard("cli", lambda: invoke(argv), allowed=(), seconds=20, max_bytes=256 << 20)


@fuzz_settings(150)
@given(argv=argvs())
def test_generated_argv(workdir: Path, argv: list[str]) -> None:
    """150 argvs in CI (about 6 s); ``PYBPF_FUZZ_EXAMPLES=N`` for more."""
    before = set(os.listdir(workdir.parent))
    _run(argv)
    assert set(os.listdir(workdir.parent)) <= before | {"state"}  # nothing written outside


@pytest.mark.parametrize("path", corpus("cli"), ids=lambda p: p.name)
def test_regressions(workdir: Path, path: Path) -> None:
    argv = [t.replace("{ROOT}", str(ROOT)) for t in json.loads(path.read_text())]
    _run(argv)


def test_every_command_is_fuzzed_or_excluded_with_a_reason() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"asm", "disasm", "exec", "map update", "prog run", "net run", "verify"} <= names
    assert set(EXCLUDED) <= {" ".join(path) for path, _ in ALL_COMMANDS}
