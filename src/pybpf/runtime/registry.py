"""Helper registry: helper implementations bound to the prototype table by id.

A helper implementation is a Python callable ``fn(ctx, r1, r2, r3, r4, r5) -> int`` taking
the :class:`~pybpf.runtime.ExecutionContext` and the five argument registers as unsigned
64-bit integers, and returning r0 (masked to 64 bits; ``None`` counts as 0, for void
helpers). Register one with ``registry.register(5, fn)`` or ``@registry.register("name")``.

Error contract (engines apply it through :func:`helper_failure`): a helper that wants the
*program* to see an error returns a negative errno, as in Linux. A helper that raises a
:class:`~pybpf.errors.PybpfError` (for example :class:`~pybpf.errors.MemoryAccessError`
from reading program memory) stops the run with that error, its ``pc`` set to the call.
Any other exception is a bug in the helper: the run stops with
:class:`~pybpf.errors.HelperError` (``helper_id``, ``pc``) whose ``__cause__`` is the
original exception. The process never crashes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from pybpf.errors import HelperError, PybpfError
from pybpf.helpers import lookup
from pybpf.runtime.context import ExecutionContext

__all__ = ["HelperFn", "HelperRegistry", "helper_failure", "call_helper"]

HelperFn = Callable[[ExecutionContext, int, int, int, int, int], "int | None"]

_M64 = (1 << 64) - 1


def _resolve_id(key: int | str) -> int:
    if isinstance(key, str):
        row = lookup(key)
        if row is None or row.id == 0:
            raise HelperError(f"unknown helper name {key!r}", helper_id=-1)
        return row.id
    if not isinstance(key, int) or key < 0:
        raise HelperError(f"invalid helper id {key!r}", helper_id=-1)
    return key


class HelperRegistry:
    """A mapping from helper id to implementation.

    Ids need not be in the Linux table (an embedding may add private helpers, as uBPF
    does), but names must be Linux's.
    """

    def __init__(self, helpers: Mapping[int | str, HelperFn] | None = None) -> None:
        self._fns: dict[int, HelperFn] = {}
        for key, fn in (helpers or {}).items():
            self.register(key, fn)

    def register(self, key: int | str, fn: HelperFn | None = None):
        """Bind ``fn`` to a helper id or Linux name; without ``fn``, return a decorator."""
        helper_id = _resolve_id(key)

        def bind(f: HelperFn) -> HelperFn:
            if not callable(f):
                raise HelperError(
                    f"helper {helper_id} implementation is not callable", helper_id=helper_id
                )
            self._fns[helper_id] = f
            return f

        return bind if fn is None else bind(fn)

    def unregister(self, key: int | str) -> None:
        """Remove the implementation of a helper (absent ones are ignored)."""
        self._fns.pop(_resolve_id(key), None)

    def get(self, helper_id: int) -> HelperFn | None:
        """The implementation of ``helper_id``, or ``None``."""
        return self._fns.get(helper_id)

    def ids(self) -> list[int]:
        """The bound helper ids, sorted."""
        return sorted(self._fns)

    def copy(self) -> HelperRegistry:
        """An independent registry with the same bindings."""
        new = HelperRegistry()
        new._fns = dict(self._fns)
        return new

    def __contains__(self, helper_id: object) -> bool:
        return helper_id in self._fns

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids())

    def __len__(self) -> int:
        return len(self._fns)

    def __repr__(self) -> str:
        return f"<HelperRegistry {len(self._fns)} helpers>"


def _name(helper_id: int) -> str:
    row = lookup(helper_id)
    return f"bpf_{row.name}#{helper_id}" if row is not None and row.id else f"helper #{helper_id}"


def helper_failure(exc: Exception, helper_id: int, pc: int | None) -> PybpfError:
    """The error a run stops with when helper ``helper_id`` raised ``exc`` at ``pc``."""
    if isinstance(exc, PybpfError):
        if getattr(exc, "pc", None) is None:
            exc.pc = pc
        return exc
    err = HelperError(
        f"{_name(helper_id)} failed: {type(exc).__name__}: {exc}", helper_id=helper_id, pc=pc
    )
    err.__cause__ = exc
    return err


def call_helper(
    registry: HelperRegistry,
    ctx: ExecutionContext,
    helper_id: int,
    r1: int = 0,
    r2: int = 0,
    r3: int = 0,
    r4: int = 0,
    r5: int = 0,
) -> int:
    """Call a helper with the error contract applied; returns r0 as an unsigned 64-bit value."""
    fn = registry.get(helper_id)
    if fn is None:
        raise HelperError(
            f"no implementation for {_name(helper_id)}", helper_id=helper_id, pc=ctx.pc
        )
    ctx.helper_id = helper_id
    try:
        result = fn(ctx, r1, r2, r3, r4, r5)
        return 0 if result is None else int(result) & _M64
    except Exception as exc:
        raise helper_failure(exc, helper_id, ctx.pc)  # noqa: B904 (cause set inside)
