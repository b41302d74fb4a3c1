"""Program info: what the analysis knows about a program besides its code (options, maps, context).

:class:`Options` are the analysis switches (termination checking, division by zero, ...);
:class:`MapDescriptor` describes one map a program refers to by fd (or by index);
:class:`ProgramInfo` joins them with the program type's context layout, return range and
privilege from :mod:`pybpf.progtypes.contexts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pybpf.errors import NotSupportedError
from pybpf.maptypes import MapFlag, MapType
from pybpf.progtypes import ProgType
from pybpf.progtypes.contexts import ContextLayout, rules_for
from pybpf.verifier.functions import GlobalFunction

__all__ = ["Options", "MapDescriptor", "ProgramInfo"]


@dataclass(frozen=True)
class Options:
    """Analysis switches.

    ``termination``: prove every loop bounded (at most ``loop_limit`` iterations); a loop
    not proven bounded is an error. ``loop_counters`` (on by default): count each loop
    head's visits anyway, so every accepted program's :class:`~pybpf.verifier.Result`
    says whether its loops are proven bounded (``terminates``, ``loop_bound``) without
    refusing those that are not.
    ``allow_division_by_zero``: BPF defines ``x / 0 == 0``; when false a possible zero
    divisor is an error. ``strict``: also check array-map indexes. ``must_exit`` false
    lets the program end by running off its last instruction (PREVAIL's test programs).
    ``linux_rules``: also enforce the rules Linux has and PREVAIL's model lacks: acquired
    sockets, ring-buffer records and spin locks released on every path; no copy or store of
    a register never written (``!read_ok``); constant context offsets (the loader rewrites
    each context access); all frames' stacks together within ``combined_stack`` bytes.
    ``type_helpers``: helpers are checked against the program type's Linux list
    (:data:`~pybpf.progtypes.contexts.HELPERS_BY_TYPE`); false keeps only the context-level
    restrictions, for programs whose type is a guess (PREVAIL's corpus types unknown
    sections such as ``tc`` or ``2/1`` as socket filters).
    ``global_functions``: verify non-static subprograms on their own against their BTF
    signature, as Linux does (false: inline them, PREVAIL's model).
    """

    termination: bool = False
    allow_division_by_zero: bool = True
    strict: bool = False
    loop_limit: int = 100_000
    max_packet_size: int = 65535
    subprogram_stack_size: int = 512
    max_frames: int = 8
    widening_delay: int = 2
    descending_steps: int = 2
    must_exit: bool = True
    linux_rules: bool = True
    combined_stack: int = 512
    type_helpers: bool = True
    global_functions: bool = True
    loop_counters: bool = True


_MAP_OF_PROGRAMS = (MapType.PROG_ARRAY,)
_MAP_OF_MAPS = (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)


@dataclass(frozen=True)
class MapDescriptor:
    """A map as the verifier sees it."""

    fd: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    inner_map_fd: int | None = None
    name: str = ""
    flags: int = 0

    @property
    def readonly(self) -> bool:
        """Programs may not write its values (``BPF_F_RDONLY_PROG``: ``.rodata``, ``.kconfig``)."""
        return bool(self.flags & MapFlag.RDONLY_PROG)

    @property
    def holds_programs(self) -> bool:
        """A program array (tail calls)."""
        return self.type in _MAP_OF_PROGRAMS

    @property
    def holds_maps(self) -> bool:
        """A map of maps (lookups return inner maps)."""
        return self.type in _MAP_OF_MAPS


@dataclass(frozen=True)
class ProgramInfo:
    """A program's context, privilege, return range, maps and analysis options.

    ``global_functions``: the subprograms verified on their own (by first pc), whose calls
    are checked against their signature instead of being inlined.
    ``sleepable``: the program is loaded with ``BPF_F_SLEEPABLE`` (libbpf's ``.s`` sections
    such as ``lsm.s/`` and ``syscall``); when false, helpers that might sleep
    (``copy_from_user``...) are forbidden as Linux does; ``None``: not known, not checked.
    """

    context: ContextLayout
    privileged: bool = False
    return_range: tuple[int, int] | None = None
    maps: Mapping[int, MapDescriptor] = field(default_factory=dict)
    maps_by_index: tuple[MapDescriptor, ...] = ()
    default_map: MapDescriptor | None = None
    prog_type: ProgType | None = None
    options: Options = field(default_factory=Options)
    global_functions: Mapping[int, GlobalFunction] = field(default_factory=dict)
    sleepable: bool | None = None

    @staticmethod
    def for_type(
        prog_type: ProgType,
        maps: Mapping[int, MapDescriptor] | None = None,
        options: Options | None = None,
        maps_by_index: tuple[MapDescriptor, ...] = (),
    ) -> ProgramInfo:
        """The info of a program of ``prog_type``.

        Raises :class:`~pybpf.errors.NotSupportedError` when pybpf has no context layout
        for the type.
        """
        rules = rules_for(prog_type)
        if rules is None:
            name = getattr(prog_type, "type_name", str(prog_type))
            raise NotSupportedError(
                f"no context layout for program type {name}", feature="prog_type"
            )
        return ProgramInfo(
            context=rules.context,
            privileged=rules.privileged,
            return_range=rules.return_range,
            maps=dict(maps or {}),
            maps_by_index=maps_by_index,
            prog_type=prog_type,
            options=options or Options(),
        )

    def map(self, fd: int) -> MapDescriptor | None:
        """The map with that fd (or the default map), if known."""
        found = self.maps.get(fd)
        return found if found is not None else self.default_map

    def maps_of(self, fds: frozenset[int] | None, lo: int | float, hi: int | float):
        """The maps of a reference known as a set of fds, else as an fd interval."""
        if fds is None:
            return self.maps_in(lo, hi)
        out = [self.map(fd) for fd in sorted(fds) if lo <= fd <= hi]
        return None if not out or any(d is None for d in out) else out

    def maps_in(self, lo: int | float, hi: int | float) -> list[MapDescriptor] | None:
        """Every map a fd in ``[lo, hi]`` may be, or ``None`` if one of them is unknown."""
        if lo == hi:
            one = self.map(int(lo))
            return None if one is None else [one]
        if hi - lo > 64:
            return None if self.default_map is None else [self.default_map]
        out = []
        for fd in range(int(lo), int(hi) + 1):
            desc = self.map(fd)
            if desc is None:
                return None
            out.append(desc)
        return out
