"""Source: where a capture's bytes come from (a path or a binary file) and who closes it.

Readers read in big chunks (:data:`CHUNK` bytes), so a path is opened unbuffered; a file
object handed in is read as it is and left open for its owner to close.
"""

from __future__ import annotations

import io
import os
from typing import IO, Any

from ..errors import CaptureError

__all__ = ["CHUNK", "ByteSource", "open_source", "open_target", "read_at_least"]

# How much a reader asks for at a time: big enough that per-call overhead vanishes, small
# enough that a reader's memory stays bounded.
CHUNK = 1 << 20

ByteSource = str | os.PathLike | IO[bytes]


def _path_of(obj: Any) -> str | None:
    if isinstance(obj, str | os.PathLike):
        return os.fspath(obj)
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) else None


def open_source(source: ByteSource) -> tuple[IO[bytes], str | None, bool]:
    """``(file, path, owned)`` for a path or a readable binary file (owned: ours to close)."""
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        try:
            return open(path, "rb", buffering=0), path, True
        except OSError as exc:
            raise CaptureError(f"cannot open capture: {exc.strerror or exc}", path=path) from exc
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(source)), None, True
    if not hasattr(source, "read"):
        raise CaptureError(f"not a path or a binary file: {type(source).__name__}")
    return source, _path_of(source), False


def open_target(target: ByteSource) -> tuple[IO[bytes], str | None, bool]:
    """``(file, path, owned)`` for a path to create or a writable binary file."""
    if isinstance(target, str | os.PathLike):
        path = os.fspath(target)
        try:
            return open(path, "wb"), path, True
        except OSError as exc:
            raise CaptureError(f"cannot create capture: {exc.strerror or exc}", path=path) from exc
    if not hasattr(target, "write"):
        raise CaptureError(f"not a path or a binary file: {type(target).__name__}")
    return target, _path_of(target), False


def read_at_least(read, head: bytes, size: int) -> bytes:
    """``head`` extended with reads until it holds ``size`` bytes or the source ends."""
    parts = [head]
    have = len(head)
    while have < size:
        more = read(max(CHUNK, size - have))
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)
