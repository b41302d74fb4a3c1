"""Suite: bpf_conformance ``.data`` files parsed into plain :class:`ConformanceCase` records.

The format (bpf_conformance's ``bpf_test_parser.cc``): lines are read with CR stripped, ``#``
starts a comment anywhere on a line, and a line containing ``--`` starts a section, matched by
substring in this order: ``asm``, ``result``, ``mem``, ``raw``, ``no register offset``, `` c``,
``error``. ``-- result`` is the last non-empty line of its section (hex when it contains
``0x``, else decimal, as a u64); ``-- mem`` is whitespace-separated hex bytes; ``-- raw`` is one
little-endian u64 per token (hex with ``0x`` or decimal), or lines of 8 hex bytes, and
overrides ``-- asm``. A file under a ``negative/`` folder is expected NOT to pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pybpf.errors import ConformanceFileError

__all__ = ["ConformanceCase", "parse_case", "parse_text", "collect"]

# Section names in the order the upstream parser tries them (substring match).
_DIRECTIVES = (
    ("asm", "asm"),
    ("result", "result"),
    ("mem", "mem"),
    ("raw", "raw"),
    ("no register offset", "ignored"),
    (" c", "ignored"),
    ("error", "error"),
)


@dataclass(frozen=True)
class ConformanceCase:
    """One ``.data`` test: program text or raw bytecode, input memory and what is expected.

    ``result`` is the expected r0 (u64) or ``None``; ``error`` the expected error text or
    ``None``; ``negative`` is true for files that a conforming runtime must not pass.
    ``problem`` is set when the file itself is malformed (such a case can never pass).
    """

    path: str
    name: str
    asm: str | None
    raw: bytes | None
    mem: bytes
    result: int | None
    error: str | None
    negative: bool
    problem: str | None = None


def _parse_raw(lines: list[tuple[int, str]], path: str) -> bytes:
    out = bytearray()
    for lineno, text in lines:
        tokens = text.split()
        if not tokens:
            continue
        if len(tokens) == 8 and all(len(t) == 2 and not t.lower().startswith("0x") for t in tokens):
            try:
                out += bytes(int(t, 16) for t in tokens)
            except ValueError as exc:
                raise ConformanceFileError(
                    f"bad raw byte in {text!r}", path=path, line=lineno
                ) from exc
            continue
        for token in tokens:
            try:
                value = int(token, 16) if token.lower().startswith("0x") else int(token, 10)
            except ValueError as exc:
                raise ConformanceFileError(
                    f"bad raw instruction {token!r}", path=path, line=lineno
                ) from exc
            if not 0 <= value < 1 << 64:
                raise ConformanceFileError(
                    f"raw instruction {token} exceeds 64 bits", path=path, line=lineno
                )
            out += value.to_bytes(8, "little")
    return bytes(out)


def _parse_mem(lines: list[tuple[int, str]], path: str) -> bytes:
    out = bytearray()
    for lineno, text in lines:
        for token in text.split():
            try:
                value = int(token, 16)
            except ValueError as exc:
                raise ConformanceFileError(
                    f"bad memory byte {token!r}", path=path, line=lineno
                ) from exc
            if not 0 <= value <= 0xFF:
                raise ConformanceFileError(
                    f"memory byte {token} exceeds 8 bits", path=path, line=lineno
                )
            out.append(value)
    return bytes(out)


def _last_line(lines: list[tuple[int, str]]) -> tuple[int, str] | None:
    nonempty = [(n, t.strip()) for n, t in lines if t.strip()]
    return nonempty[-1] if nonempty else None


def parse_text(text: str, *, path: str = "<text>", negative: bool = False) -> ConformanceCase:
    """Parse one ``.data`` file's text; a malformed file gives a case whose ``problem`` says why."""
    sections: dict[str, list[tuple[int, str]]] = {}
    current: str | None = None
    problem: str | None = None
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.replace("\r", "")
        if "#" in line:
            line = line[: line.index("#")]
        if "--" in line:
            for needle, kind in _DIRECTIVES:
                if needle in line:
                    current = kind
                    sections.setdefault(kind, [])
                    break
            else:
                problem = problem or f"line {lineno}: unknown directive {line.strip()!r}"
                current = "ignored"
            continue
        if current is not None:
            sections.setdefault(current, []).append((lineno, line))
    name = Path(path).stem
    raw = mem = None
    result = error = None
    try:
        if "raw" in sections:
            raw = _parse_raw(sections["raw"], path)
        mem = _parse_mem(sections.get("mem", []), path)
        if "result" in sections:
            last = _last_line(sections["result"])
            if last is not None:
                lineno, token = last
                try:
                    value = int(token, 16) if "0x" in token.lower() else int(token, 10)
                except ValueError as exc:
                    raise ConformanceFileError(
                        f"bad result {token!r}", path=path, line=lineno
                    ) from exc
                result = value & 0xFFFFFFFFFFFFFFFF
    except ConformanceFileError as exc:
        problem = problem or str(exc)
    if "error" in sections:
        last = _last_line(sections["error"])
        error = last[1] if last else ""
    asm = None
    if "asm" in sections:
        asm = "\n".join(t for _, t in sections["asm"])
    if problem is None and result is None and error is None:
        problem = "no -- result or -- error section"
    if problem is None and raw is None and (asm is None or not asm.strip()):
        problem = "no program: empty -- asm and no -- raw section"
    return ConformanceCase(
        path=path,
        name=name,
        asm=asm,
        raw=raw,
        mem=mem or b"",
        result=result,
        error=error,
        negative=negative,
        problem=problem,
    )


def parse_case(path: str | Path) -> ConformanceCase:
    """Read and parse one ``.data`` file; files under a ``negative`` folder are negative cases."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ConformanceFileError(f"cannot read: {exc.strerror}", path=str(p)) from exc
    return parse_text(text, path=str(p), negative="negative" in p.parent.parts)


def collect(paths: Iterable[str | Path]) -> Iterator[ConformanceCase]:
    """Every case under the given files and directories (recursively, ``*.data``, sorted)."""
    for path in paths:
        p = Path(path)
        if p.is_dir():
            for child in sorted(p.rglob("*.data")):
                yield parse_case(child)
        elif p.exists():
            yield parse_case(p)
        else:
            raise ConformanceFileError("no such file or directory", path=str(p))
