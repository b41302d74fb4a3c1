"""Histogram: log2 and linear histograms of map values printed as bcc prints them.

bcc tools keep a histogram in a map (key: the bucket, value: a count) and print it with
``table.print_log2_hist("usecs")``. :func:`format_log2_hist` / :func:`print_log2_hist` and
their linear twins take such a map (portable :class:`~pybpf.maps.Map`: keys and values as
ints or little-endian bytes; per-CPU values summed), a ``{bucket: count}`` mapping or a
list of counts, and give bcc's exact layout::

         usecs               : count     distribution
             0 -> 1          : 0        |                                        |
             2 -> 3          : 4        |****************************************|

:func:`log2_bucket` is the bucket a value falls in (bcc's ``bpf_log2l(v) + 1`` slots).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

__all__ = [
    "format_log2_hist",
    "format_linear_hist",
    "print_log2_hist",
    "print_linear_hist",
    "log2_bucket",
    "bucket_counts",
]

STARS_MAX = 40


def log2_bucket(value: int) -> int:
    """The log2 histogram slot of ``value`` (0 for 0, then ``floor(log2(v)) + 1``)."""
    return int(value).bit_length()


def _number(raw: Any) -> int:
    if isinstance(raw, bytes | bytearray | memoryview):
        return int.from_bytes(bytes(raw), "little")
    if isinstance(raw, Mapping):  # a struct key: bcc's {..., "slot": n}
        for name in ("slot", "bucket", "key"):
            if name in raw:
                return _number(raw[name])
        raise TypeError(f"cannot find the bucket in {raw!r}")
    if isinstance(raw, list | tuple):  # per-CPU values
        return sum(_number(v) for v in raw)
    return int(raw)


def bucket_counts(source: Any) -> list[int]:
    """Counts by bucket index from a map, a mapping or a sequence."""
    if isinstance(source, Sequence) and not isinstance(source, bytes | str):
        return [_number(v) for v in source]
    items = source.items() if hasattr(source, "items") else source
    counts: dict[int, int] = {}
    for key, value in items:
        slot = _number(key)
        counts[slot] = counts.get(slot, 0) + _number(value)
    size = max(counts, default=-1) + 1
    return [counts.get(i, 0) for i in range(size)]


def _stars(val: int, val_max: int, width: int) -> str:
    i = 0
    text = ""
    while not (i > (width * val / val_max) - 1 or i > width - 1):
        text += "*"
        i += 1
    if val > val_max:
        text = text[:-1] + "+"
    return text


def format_log2_hist(
    source: Any, val_type: str = "value", *, strip_leading_zero: bool = False
) -> str:
    """bcc's ``print_log2_hist`` output as text (empty when every count is 0)."""
    vals = bucket_counts(source)
    idx_max, val_max = -1, 0
    for i, v in enumerate(vals):
        if v > 0:
            idx_max = i
        val_max = max(val_max, v)
    if idx_max <= 32:
        header, width, stars = f"     {val_type:<19} : count     distribution", 10, STARS_MAX
    else:
        header = f"               {val_type:<29} : count     distribution"
        width, stars = 20, STARS_MAX // 2
    lines = [header] if idx_max > 0 else []
    for i in range(1, idx_max + 1):
        low, high = (1 << i) >> 1, (1 << i) - 1
        if low == high:
            low -= 1
        val = vals[i]
        if strip_leading_zero and not val:
            continue
        strip_leading_zero = False
        bar = _stars(val, val_max, stars)
        lines.append(f"{low:{width}d} -> {high:<{width}d} : {val:<8d} |{bar:<{stars}}|")
    return "\n".join(lines) + ("\n" if lines else "")


def format_linear_hist(
    source: Any, val_type: str = "value", *, strip_leading_zero: bool = False
) -> str:
    """bcc's ``print_linear_hist`` output as text."""
    vals = bucket_counts(source)
    idx_max, val_max = -1, 0
    for i, v in enumerate(vals):
        if v > 0:
            idx_max = i
        val_max = max(val_max, v)
    lines = [f"     {val_type:<13} : count     distribution"] if idx_max >= 0 else []
    for i in range(idx_max + 1):
        val = vals[i]
        if strip_leading_zero and not val:
            continue
        strip_leading_zero = False
        bar = _stars(val, val_max, STARS_MAX)
        lines.append(f"        {i:<10d} : {val:<8d} |{bar:<{STARS_MAX}}|")
    return "\n".join(lines) + ("\n" if lines else "")


def print_log2_hist(
    source: Any,
    val_type: str = "value",
    *,
    strip_leading_zero: bool = False,
    file: TextIO | None = None,
) -> None:
    """Print a log2 histogram as bcc's ``table.print_log2_hist(val_type)``."""
    (file or sys.stdout).write(
        format_log2_hist(source, val_type, strip_leading_zero=strip_leading_zero)
    )


def print_linear_hist(
    source: Any,
    val_type: str = "value",
    *,
    strip_leading_zero: bool = False,
    file: TextIO | None = None,
) -> None:
    """Print a linear histogram as bcc's ``table.print_linear_hist(val_type)``."""
    (file or sys.stdout).write(
        format_linear_hist(source, val_type, strip_leading_zero=strip_leading_zero)
    )
