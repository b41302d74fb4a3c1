"""Helper table: one :class:`HelperPrototype` row per Linux helper id, looked up by id or name.

This is the table every layer reads (verifier, engines, disassembler, CLI). Each row joins
the id and name from :mod:`pybpf.helpers.ids` with the transcribed kernel prototype from
:mod:`pybpf.helpers.prototypes`. A helper whose prototype was not transcribed is still a
row, with ``known = False`` and no types.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.errors import InputError
from pybpf.helpers.ids import HELPER_IDS, HELPER_NAMES
from pybpf.helpers.prototypes import PROTOTYPES
from pybpf.helpers.types import ArgSpec, ArgType, RetSpec

__all__ = ["HelperPrototype", "HELPERS", "helper", "helper_by_id", "helper_by_name", "lookup"]


@dataclass(frozen=True)
class HelperPrototype:
    """A Linux helper: id, name and (when ``known``) its kernel prototype.

    ``args`` lists the used arguments in order (r1, r2, ...); ``ret`` is the return type;
    ``gpl_only``, ``pkt_access`` and ``might_sleep`` are the kernel's flags;
    ``kernel_proto`` names the ``struct bpf_func_proto`` the row was copied from.
    For an unknown prototype ``ret`` is ``None``, ``args`` empty and the flags ``None``.
    """

    id: int
    name: str
    known: bool
    ret: RetSpec | None = None
    args: tuple[ArgSpec, ...] = ()
    gpl_only: bool | None = None
    pkt_access: bool | None = None
    might_sleep: bool | None = None
    kernel_proto: str | None = None

    @property
    def c_name(self) -> str:
        """The C function name, ``bpf_<name>``."""
        return f"bpf_{self.name}"

    @property
    def enum_name(self) -> str:
        """The ``enum bpf_func_id`` member, ``BPF_FUNC_<name>``."""
        return f"BPF_FUNC_{self.name}"

    @property
    def nargs(self) -> int | None:
        """How many of r1..r5 the helper reads, or ``None`` when the prototype is unknown."""
        return len(self.args) if self.known else None

    def arg(self, n: int) -> ArgSpec | None:
        """The type of argument ``n`` (1-based, r1..r5), or ``None`` when unused or unknown."""
        if 1 <= n <= len(self.args):
            return self.args[n - 1]
        return None

    def signature(self) -> str:
        """A one-line summary: ``RET_INTEGER bpf_x(ARG_..., ...)`` or ``bpf_x(?)``."""
        if not self.known or self.ret is None:
            return f"{self.c_name}(?)"
        return f"{self.ret.name} {self.c_name}({', '.join(a.name for a in self.args)})"


def _build() -> tuple[HelperPrototype, ...]:
    rows = []
    for helper_id, name in enumerate(HELPER_NAMES):
        proto = PROTOTYPES.get(name)
        if proto is None:
            rows.append(HelperPrototype(helper_id, name, known=False))
            continue
        if any(a.base == ArgType.ARG_DONTCARE for a in proto.args):
            raise AssertionError(f"prototype of {name} lists an unused argument")
        rows.append(
            HelperPrototype(
                helper_id,
                name,
                known=True,
                ret=proto.ret,
                args=proto.args,
                gpl_only=proto.gpl_only,
                pkt_access=proto.pkt_access,
                might_sleep=proto.might_sleep,
                kernel_proto=proto.kernel_proto,
            )
        )
    return tuple(rows)


HELPERS: tuple[HelperPrototype, ...] = _build()
"""Every helper row, indexed by id (``HELPERS[5].name == "ktime_get_ns"``); 0 is ``unspec``."""


def lookup(key: int | str) -> HelperPrototype | None:
    """The row for a helper id or name (``"map_lookup_elem"`` or ``"bpf_map_lookup_elem"``)."""
    if isinstance(key, str):
        name = key[4:] if key.startswith("bpf_") and key not in HELPER_IDS else key
        name = name[9:] if name.startswith("BPF_FUNC_") else name
        helper_id = HELPER_IDS.get(name)
        return None if helper_id is None else HELPERS[helper_id]
    if isinstance(key, int) and 0 <= key < len(HELPERS):
        return HELPERS[key]
    return None


def helper_by_id(helper_id: int) -> HelperPrototype:
    """The row for ``helper_id``; :class:`~pybpf.errors.InputError` if there is none."""
    row = lookup(helper_id) if isinstance(helper_id, int) else None
    if row is None or row.id == 0:
        raise InputError(f"unknown helper id {helper_id}")
    return row


def helper_by_name(name: str) -> HelperPrototype:
    """The row named ``name`` (with or without ``bpf_``); ``InputError`` if there is none."""
    row = lookup(name)
    if row is None or row.id == 0:
        raise InputError(f"unknown helper {name!r}")
    return row


def helper(key: int | str) -> HelperPrototype:
    """The row for an id or a name; :class:`~pybpf.errors.InputError` if there is none."""
    return helper_by_name(key) if isinstance(key, str) else helper_by_id(key)
