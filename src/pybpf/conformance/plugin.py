"""Plugin: the bpf_conformance plugin protocol, so the suite's own runner can drive pybpf.

Protocol (bpf_conformance's ``bpf_conformance.cc``): one process per test, invoked as
``plugin [MEM_HEX] [options] [--elf]``. ``MEM_HEX`` (present only when the test has input
memory) is hex bytes separated by spaces; the program arrives on stdin as hex bytes in the
same format. The plugin prints r0 in hex on stdout and exits 0, or prints an error message and
exits non-zero. Options: ``--engine interpreter`` (default) and ``--elf`` (stdin is a
hex-encoded ELF object; needs the object loader).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pybpf.errors import InputError, NotSupportedError, PybpfError

__all__ = ["main", "parse_hex_bytes", "run_plugin"]


def parse_hex_bytes(text: str) -> bytes:
    """Parse whitespace-separated hex bytes (``"b7 00 00 00"``; ``0x`` prefixes allowed)."""
    out = bytearray()
    for token in text.split():
        token = token[2:] if token.lower().startswith("0x") else token
        if len(token) % 2:
            raise InputError(f"bad hex byte {token!r}")
        try:
            out += bytes.fromhex(token)
        except ValueError as exc:
            raise InputError(f"bad hex byte {token!r}") from exc
    return bytes(out)


def run_plugin(argv: Sequence[str], program_hex: str) -> int:
    """Run one test as the plugin would and return r0 (raises pybpf errors on refusal)."""
    from pybpf.isa import decode
    from pybpf.vm import execute

    mem = b""
    engine = "interpreter"
    elf = False
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--elf":
            elf = True
            if i + 1 < len(args) and args[i + 1] in ("true", "false"):
                elf = args[i + 1] == "true"
                i += 1
        elif arg == "--engine":
            if i + 1 >= len(args):
                raise InputError("--engine needs a value")
            engine = args[i + 1]
            i += 1
        elif arg.startswith("--"):
            raise InputError(f"unknown plugin option {arg!r}")
        elif i == 0:
            mem = parse_hex_bytes(arg)
        else:
            raise InputError(f"unexpected argument {arg!r}")
        i += 1
    if elf:
        raise NotSupportedError("--elf needs pybpf's object loader", feature="elf")
    if engine != "interpreter":
        raise NotSupportedError(f"engine {engine!r} is not available", feature=engine)
    insns = decode(parse_hex_bytes(program_hex))
    return execute(insns, mem if mem else None)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``pybpf-conformance-plugin``."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        value = run_plugin(args, sys.stdin.read())
    except PybpfError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except Exception as exc:  # never a traceback: the runner reads one line
        print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"{value:x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
