"""Stack: byte-precise initialisation of the eBPF stack and the cells whose values are tracked.

The stack of every frame lives in one address space of :data:`TOTAL_STACK` bytes (eight
frames of 512 bytes; the entry frame's ``r10`` is at offset 4096 and each call moves it
down by 512). Two facts are kept:

- ``numeric``: a bit mask, bit ``i`` set when byte ``i`` certainly holds number data (was
  written with a number). Reading through a pointer needs these bits; anything else may
  be uninitialised or part of a spilled pointer.
- ``cells``: offset -> width of the *cells* whose contents are tracked as a typed value
  (a spilled register or a stored number), named ``s[lo...hi]``; their type and numeric
  variables live in the product state under that name. Cells never overlap: a store
  kills every cell it touches.
"""

from __future__ import annotations

__all__ = ["Stack", "TOTAL_STACK", "FRAME_SIZE", "cell_name"]

FRAME_SIZE = 512
TOTAL_STACK = 8 * FRAME_SIZE


def cell_name(offset: int, width: int) -> str:
    """The location name of the cell covering ``[offset, offset + width)``."""
    return f"s[{offset}...{offset + width - 1}]"


def _mask(lo: int, hi: int) -> int:
    lo = max(lo, 0)
    hi = min(hi, TOTAL_STACK)
    if hi <= lo:
        return 0
    return ((1 << (hi - lo)) - 1) << lo


class Stack:
    """Numeric bytes and tracked cells of the whole stack."""

    __slots__ = ("numeric", "cells")

    def __init__(self, numeric: int = 0, cells: dict[int, int] | None = None) -> None:
        self.numeric = numeric
        self.cells: dict[int, int] = {} if cells is None else cells

    def copy(self) -> Stack:
        """An independent copy."""
        return Stack(self.numeric, dict(self.cells))

    # ---- numeric bytes -------------------------------------------------------------------
    def all_numeric(self, lo: int, hi: int) -> bool:
        """Every byte of ``[lo, hi)`` holds number data (``lo >= hi`` is vacuously true)."""
        if hi <= lo:
            return True
        if lo < 0 or hi > TOTAL_STACK:
            return False
        m = _mask(lo, hi)
        return self.numeric & m == m

    def numeric_run(self, lo: int) -> int:
        """How many consecutive numeric bytes start at ``lo``."""
        if lo < 0 or lo >= TOTAL_STACK:
            return 0
        rest = ~(self.numeric >> lo)
        return (rest & -rest).bit_length() - 1

    def set_numeric(self, lo: int, hi: int) -> None:
        """Mark ``[lo, hi)`` as number data."""
        self.numeric |= _mask(lo, hi)

    def clear_numeric(self, lo: int, hi: int) -> None:
        """Forget that ``[lo, hi)`` holds number data."""
        self.numeric &= ~_mask(lo, hi)

    # ---- cells ---------------------------------------------------------------------------
    def overlapping(self, lo: int, hi: int) -> list[int]:
        """Offsets of the cells that share a byte with ``[lo, hi)``."""
        return [o for o, w in self.cells.items() if o < hi and lo < o + w]

    def cell(self, offset: int, width: int) -> str | None:
        """The name of the exact cell ``[offset, offset + width)``, if tracked."""
        return cell_name(offset, width) if self.cells.get(offset) == width else None

    def cells_in(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The tracked cells lying entirely inside ``[lo, hi)``, by offset."""
        return sorted((o, w) for o, w in self.cells.items() if lo <= o and o + w <= hi)

    # ---- lattice ---------------------------------------------------------------------------
    def join(self, other: Stack) -> tuple[Stack, list[str]]:
        """The join, and the names of the cells tracked on one side only (to forget)."""
        keep = {o: w for o, w in self.cells.items() if other.cells.get(o) == w}
        dropped = [cell_name(o, w) for o, w in self.cells.items() if keep.get(o) != w]
        dropped += [cell_name(o, w) for o, w in other.cells.items() if keep.get(o) != w]
        return Stack(self.numeric & other.numeric, keep), dropped

    def leq(self, other: Stack) -> bool:
        """Inclusion: at least the numeric bytes and the cells of ``other``."""
        if other.numeric & ~self.numeric:
            return False
        return all(self.cells.get(o) == w for o, w in other.cells.items())

    def __repr__(self) -> str:
        runs = []
        i = 0
        while i < TOTAL_STACK:
            if self.numeric >> i & 1:
                n = self.numeric_run(i)
                runs.append(f"[{i}...{i + n - 1}]")
                i += n
            else:
                i += 1
        return f"Stack(numeric={runs}, cells={sorted(self.cells.items())})"
