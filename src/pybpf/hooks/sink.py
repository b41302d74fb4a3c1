"""Sink: the buffered output file a capture writer appends its header and records to.

:class:`Sink` owns the target (a path it opens, or a binary file it leaves open), buffers
the byte strings a writer appends and writes them out in big writes; :meth:`Sink.close`
(or leaving a ``with`` block, even on an error) flushes everything appended so far.
"""

from __future__ import annotations

from typing import Self

from ..errors import CaptureError
from .source import CHUNK, ByteSource, open_target

__all__ = ["Sink"]


class Sink:
    """Base of the capture writers: target file, output buffer, flush and close."""

    def __init__(self, target: ByteSource, byteorder: str) -> None:
        if byteorder not in ("<", ">"):
            raise CaptureError(f"byte order must be '<' or '>', not {byteorder!r}")
        self._file, self.path, self._owned = open_target(target)
        self.byteorder = byteorder
        self.count = 0  # records written
        self._parts: list[bytes] = []
        self._size = 0  # bytes of records buffered since the last flush

    def _record_written(self, size: int) -> None:
        """Count one record of ``size`` bytes just appended to the buffer; flush when full."""
        self.count += 1
        self._size += size
        if self._size >= CHUNK:
            self.flush()

    def flush(self) -> None:
        """Write out what is buffered."""
        if self._parts and self._file is not None:
            self._file.write(b"".join(self._parts))
            self._parts.clear()
            self._size = 0
            self._file.flush()

    def close(self) -> None:
        """Flush, and close the file if this writer opened it."""
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            if self._owned:
                self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
