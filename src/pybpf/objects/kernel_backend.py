"""Kernel backend: ``Object.load(backend="kernel")`` through :mod:`pybpf.kernel`, same names.

:func:`load_kernel` loads the spec with :class:`pybpf.kernel.KernelObject` (imported only
here, when asked for) and wraps each of its programs in a :class:`KernelProgramView` whose
``test_run(data_in, ctx_in, repeat)`` returns the same
:class:`~pybpf.objects.program.TestRunResult` as the portable :class:`Program`. Maps are
the kernel backend's :class:`~pybpf.kernel.KernelMap` (bytes in, bytes out:
``lookup``/``update``/``delete``/``keys``), not the portable dict-like maps.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from pybpf.objects.program import TestRunResult
from pybpf.progtypes import ProgType
from pybpf.spec import ObjectSpec

__all__ = ["KernelProgramView", "load_kernel"]

_NO_CTX_OUT = {
    ProgType.RAW_TRACEPOINT,
    ProgType.RAW_TRACEPOINT_WRITABLE,
    ProgType.TRACING,
    ProgType.SYSCALL,
}


class KernelProgramView:
    """A program loaded into the kernel, with the portable program's ``test_run``."""

    engine = "kernel"

    def __init__(self, program: Any) -> None:
        self.kernel = program
        self.name: str = program.name
        self.section: str = program.section
        self.type = program.type
        self.attach_type = program.attach_type
        self.linked = program.linked

    @property
    def id(self) -> int:
        """The kernel's program id."""
        return self.kernel.id

    @property
    def tag(self) -> str:
        """The kernel's tag of the program."""
        return self.kernel.info().tag

    def test_run(
        self, data_in: bytes = b"", ctx_in: bytes | None = None, repeat: int = 1
    ) -> TestRunResult:
        """``BPF_PROG_TEST_RUN`` in the kernel (its context rules, its errors). ``repeat``
        1 is sent as 0 (the same for Linux, and the only value raw tracepoints accept);
        types whose runs give no context back (raw tracepoints, tracing, syscall) get no
        ``ctx_out`` buffer, which Linux refuses for them."""
        ctx_size_out = 0 if self.type in _NO_CTX_OUT else None
        r = self.kernel.test_run(
            bytes(data_in),
            ctx=ctx_in,
            repeat=repeat if repeat > 1 else 0,
            ctx_size_out=ctx_size_out,
        )
        return TestRunResult(r.retval, r.duration, r.data_out, r.ctx_out)

    def attach(self, target: Any = None, **options: Any) -> Any:
        """Attach to the program's hook in the kernel: a
        :class:`pybpf.kernel.link.KernelLink` (``detach()``/``close()``/``with``); see
        :func:`pybpf.kernel.link.attach` for ``target`` and the options."""
        return self.kernel.attach(target, **options)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the program at ``path`` in a bpffs (a real bpffs path on this backend)."""
        self.kernel.pin(path)

    def close(self) -> None:
        """Release the program's fd."""
        self.kernel.close()

    def __repr__(self) -> str:
        return f"<KernelProgramView {self.name!r}>"


def load_kernel(
    spec: ObjectSpec,
    *,
    programs: Iterable[str] | None = None,
    pin_root: str | os.PathLike[str] | None = None,
    **options: Any,
) -> tuple[Any, dict[str, KernelProgramView], dict[str, Any]]:
    """Load ``spec`` into the kernel: ``(the KernelObject, programs, maps)``.

    ``options`` go to :meth:`pybpf.kernel.KernelObject.load` (``log_level``,
    ``keep_going``, ``prog_type``, ``vmlinux``). Raises what it raises
    (:class:`~pybpf.errors.SyscallError` with the verifier log, ...).
    """
    from pybpf.kernel import KernelObject

    kobj = KernelObject.load(spec, programs=programs, pin_maps_dir=pin_root, **options)
    views = {name: KernelProgramView(p) for name, p in kobj.programs.items()}
    return kobj, views, dict(kobj.maps)
