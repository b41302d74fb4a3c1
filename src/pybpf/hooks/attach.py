"""Attach dispatch: one ``attach(program, target, **options)`` for every portable hook.

What a portable-backend program attaches to depends on its type (libbpf's
``bpf_program__attach`` picks the same way, from the program's type and section):

- XDP and tc (``sched_cls``/``sched_act``): ``target`` is an interface name; the program
  runs on the frames it receives through a :class:`~pybpf.hooks.live.LiveLink` served by a
  background thread (options: ``to``, ``promiscuous``, ``return_path``, ``batch``). Linux
  only, root.
- Socket hooks (``cgroup_sock_addr``, ``cgroup_sock``, eBPF for Windows' ``bind``): this
  Python process's sockets (:func:`~pybpf.hooks.socket.attach_socket`); ``target`` may be
  ``None`` or an attach type name (``"cgroup_inet4_connect"``), as may ``attach_type=``.
- Tracing types (kprobe, tracepoint, raw_tracepoint, perf_event, fentry/fexit/lsm,
  uprobe, ...): the portable backend has no kernel events to run them on:
  :class:`~pybpf.errors.NotSupportedError` naming the type and the kernel backend
  (``pybpf.load(path, backend="kernel")``), whose programs attach as libbpf's do. They
  still run with ``test_run(ctx_in=...)``.
- Anything else: :class:`~pybpf.errors.NotSupportedError` naming the type.

Importing this module installs :func:`attach` as what ``Program.attach`` calls
(:mod:`pybpf.objects.attach`).
"""

from __future__ import annotations

import threading
from typing import Any

from pybpf.errors import InputError, NotSupportedError
from pybpf.objects import attach as registry
from pybpf.progtypes import ProgType

from .link import Link
from .socket import SOCKET_ATTACH_TYPES, attach_socket

__all__ = ["attach", "ServedLiveLink", "TRACING_TYPES"]

TRACING_TYPES = frozenset(
    {
        ProgType.KPROBE,
        ProgType.TRACEPOINT,
        ProgType.RAW_TRACEPOINT,
        ProgType.RAW_TRACEPOINT_WRITABLE,
        ProgType.PERF_EVENT,
        ProgType.TRACING,
        ProgType.LSM,
    }
)
_PACKET_TYPES = frozenset({ProgType.XDP, ProgType.SCHED_CLS, ProgType.SCHED_ACT})
_SOCKET_TYPES = frozenset(SOCKET_ATTACH_TYPES.values())


def _type_name(program: Any) -> str:
    ptype = getattr(program, "type", None)
    return ptype.type_name if ptype is not None else "untyped"


def attach(program: Any, target: Any = None, **options: Any) -> Link | ServedLiveLink:
    """Attach a loaded portable-backend ``program`` where its type says (module docstring).

    Returns the :class:`~pybpf.hooks.link.Link`; ``detach()``/``close()``/``with`` end it.
    Raises :class:`~pybpf.errors.NotSupportedError` for hooks the portable backend does not
    have, :class:`~pybpf.errors.InputError` for a bad target or option.
    """
    kernel_attach = getattr(getattr(program, "kernel", None), "attach", None)
    if kernel_attach is not None:  # a kernel-backend program: the kernel attaches it
        return kernel_attach(target, **options)
    ptype = getattr(program, "type", None)
    name = getattr(program, "name", None)
    if ptype in _PACKET_TYPES:
        if not isinstance(target, str) or not target:
            raise InputError(
                f"attaching a {_type_name(program)} program needs an interface name",
                field="target",
                program=name,
            )
        return ServedLiveLink(program, target, **options)
    if ptype in _SOCKET_TYPES:
        attach_type = options.pop("attach_type", None)
        if isinstance(target, str) and attach_type is None:
            attach_type = target
        elif target is not None:
            raise InputError(
                "socket hooks attach to this process: give no target (or an attach type)",
                field="target",
                program=name,
            )
        if options:
            raise InputError(f"unknown socket hook options {sorted(options)}", field="options")
        return attach_socket(program, attach_type)
    if ptype in TRACING_TYPES:
        raise NotSupportedError(
            f"{_type_name(program)} programs attach to kernel events, which the portable "
            "backend does not have: load with backend='kernel' to attach them (they run "
            "here with test_run(ctx_in=...))",
            feature=f"attach {_type_name(program)}",
            program=name,
        )
    raise NotSupportedError(
        f"the portable backend has no hook for {_type_name(program)} programs",
        feature=f"attach {_type_name(program)}",
        program=name,
    )


def _live_link_class() -> type:
    from .live import LiveLink  # Linux-only (AF_PACKET): imported when a link is made

    return LiveLink


class ServedLiveLink:
    """A :class:`~pybpf.hooks.live.LiveLink` whose receive loop runs in a daemon thread.

    Built by :func:`attach` for XDP/tc programs; ``detach()`` stops and joins the thread.
    Attribute access goes to the live link (``counters``, ``stats()``, ``id``, ...).
    """

    def __init__(self, program: Any, dev: str, **options: Any) -> None:
        self.link = _live_link_class()(program, dev, **options)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.link.serve, args=(self._stop.is_set,), name=f"pybpf-live-{dev}",
            daemon=True,
        )
        self._thread.start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.link, name)

    def detach(self) -> None:
        """Stop the loop, wait for it, then end the link (its ports close after the loop)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.link.detach()

    def close(self) -> None:
        """Same as :meth:`detach`."""
        self.detach()

    def __enter__(self) -> ServedLiveLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        return f"<ServedLiveLink {self.link!r}>"


registry.install(attach)
