"""Policy runs: a Python program run under socket programs, the child side of ``pybpf exec``.

``pybpf exec OBJ --program P [--program P2 ...] -- python script.py ARGS`` starts a child
Python process (:func:`child_command`) whose entry point is this module
(``python -m pybpf.hooks.policy``): it loads ``OBJ`` on the portable backend, applies the
``--update MAP KEY VALUE`` map writes, attaches each program at its section's socket hook
(:func:`pybpf.hooks.socket.attach_socket`) and runs the program as ``python`` would
(``script.py``, ``-m module`` or ``-c code``, with ``sys.argv`` as the script expects). Its
exit status is the script's. ``--show-maps`` prints the object's maps as JSON on stderr
when the script ends (after the links are detached), to see what the policy counted.

:func:`run_in_cgroup` is ``pybpf exec --engine kernel``: Linux itself enforces the policy.
It loads the object into the kernel, makes a cgroup v2 directory of its own
(``pybpf-exec-<pid>`` under the first cgroup2 mount: ``/sys/fs/cgroup/unified`` or
``/sys/fs/cgroup``), attaches the programs to it with ``BPF_LINK_CREATE``, runs the command
(any command) inside it, and removes the links and the directory afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

from pybpf.errors import InputError, NotSupportedError

__all__ = ["child_command", "run", "run_in_cgroup", "split_python_command", "cgroup2_root"]

_WITH_ARGUMENT = {"-X", "-W", "-Q"}


def split_python_command(command: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """``(interpreter, interpreter options, program and its arguments)`` of a ``python ...``
    command line. ``python``/``python3`` mean this interpreter (``sys.executable``).

    Raises :class:`~pybpf.errors.InputError` for a command that is not a Python one.
    """
    if not command:
        raise InputError("no command to run", field="command")
    exe = command[0]
    base = os.path.basename(exe)
    if not base.startswith("python") and Path(exe).resolve() != Path(sys.executable).resolve():
        raise InputError(
            f"pybpf exec runs Python programs ('python script.py'), not {exe!r}",
            field="command",
        )
    if base in ("python", "python3"):
        exe = sys.executable
    opts: list[str] = []
    rest = list(command[1:])
    while rest and rest[0].startswith("-") and rest[0] not in ("-", "-c", "-m"):
        opt = rest.pop(0)
        opts.append(opt)
        if opt in _WITH_ARGUMENT and rest:
            opts.append(rest.pop(0))
    if not rest:
        raise InputError("the Python command names no script, -m module or -c code",
                         field="command")
    return exe, opts, rest


def child_command(
    obj: str | os.PathLike,
    programs: Sequence[str],
    command: Sequence[str],
    *,
    engine: str = "interpreter",
    updates: Sequence[tuple[str, str, str]] = (),
    show_maps: bool = False,
) -> list[str]:
    """The child's command line for ``pybpf exec OBJ --program P ... -- COMMAND``."""
    exe, opts, rest = split_python_command(command)
    argv = [exe, *opts, "-m", "pybpf.hooks.policy", os.fspath(obj), "--engine", engine]
    for name in programs:
        argv += ["--program", name]
    for name, key, value in updates:
        argv += ["--update", name, key, value]
    if show_maps:
        argv.append("--show-maps")
    return [*argv, "--", *rest]


def _number(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise InputError(f"not a number: {text!r}", field="update") from None


def _maps_json(obj) -> dict:
    out = {}
    for name, m in obj.maps.items():
        try:
            out[name] = {str(k): v for k, v in m.items()}
        except Exception as exc:  # a map family without items(): say so, keep going
            out[name] = f"<{type(exc).__name__}>"
    return out


def _parse_int(text: str, size: int) -> bytes:
    return (_number(text) & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def cgroup2_root() -> Path | None:
    """The first cgroup v2 mount point (``/proc/self/mounts``), or ``None``."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


def run_in_cgroup(
    obj_path: str | os.PathLike,
    programs: Sequence[str],
    command: Sequence[str],
    *,
    updates: Sequence[tuple[str, str, str]] = (),
    show_maps: bool = False,
) -> int:
    """Run ``command`` in a cgroup of its own with the object's cgroup socket programs
    attached in the kernel (see the module docstring); its exit status.

    Raises :class:`~pybpf.errors.NotSupportedError` without a cgroup v2 hierarchy,
    :class:`~pybpf.errors.InputError` for unknown programs, maps or hooks, and
    :class:`~pybpf.errors.SyscallError` as the kernel refuses.
    """
    import subprocess

    from pybpf import syscall as sc
    from pybpf.hooks.socket import SOCKET_ATTACH_TYPES
    from pybpf.objects import Object

    root = cgroup2_root()
    if root is None:
        raise NotSupportedError("no cgroup v2 hierarchy is mounted", feature="cgroup")
    argv = list(command)
    if os.path.basename(argv[0]) in ("python", "python3"):
        argv[0] = sys.executable
    obj = Object.open(obj_path).load(backend="kernel")
    cgroup = root / f"pybpf-exec-{os.getpid()}"
    links: list = []
    try:
        for name, key, value in updates:
            if name not in obj.maps:
                raise InputError(f"no map {name!r} in the object", field="update")
            m = obj.maps[name]
            m.update(_parse_int(key, m.spec.key_size), _parse_int(value, m.value_size))
        try:
            cgroup.mkdir()
        except OSError as exc:
            raise NotSupportedError(f"cannot make {cgroup}: {exc.strerror}",
                                    feature="cgroup") from exc
        fd = sc.Fd(os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY), "cgroup")
        links.append(fd)
        for name in programs or list(obj.programs):
            prog = obj.programs.get(name)
            if prog is None:
                raise InputError(f"no program {name!r} in the object", field="program")
            if prog.attach_type not in SOCKET_ATTACH_TYPES or not prog.attach_type.is_linux:
                raise InputError(f"{name} is not a Linux cgroup socket program",
                                 field="attach_type", program=name)
            links.append(sc.link_create(prog.kernel.fd, fd, prog.attach_type))
        procs = os.fspath(cgroup / "cgroup.procs")

        def enter_cgroup() -> None:  # in the child, before exec
            with open(procs, "w") as out:
                out.write("0")

        try:
            status = subprocess.call(argv, preexec_fn=enter_cgroup)
        except (OSError, subprocess.SubprocessError) as exc:
            raise InputError(f"cannot run {argv[0]}: {exc}", field="command") from exc
    finally:
        for link in reversed(links):
            link.close()
        if show_maps:
            print(json.dumps(_kernel_maps_json(obj)), file=sys.stderr)
        obj.close()
        try:
            cgroup.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:  # processes the command left behind
            print(f"Warning: {cgroup} not removed: {exc.strerror}", file=sys.stderr)
    return 128 - status if status < 0 else status


def _kernel_maps_json(obj) -> dict:
    out = {}
    for name, m in obj.maps.items():
        try:
            out[name] = {
                str(int.from_bytes(k, "little")): int.from_bytes(m.lookup(k) or b"", "little")
                for k in m.keys()
            }
        except Exception as exc:  # a map the kernel will not walk: say so, keep going
            out[name] = f"<{type(exc).__name__}>"
    return out


def _run_target(rest: list[str]) -> int:
    """Run ``script ARGS`` / ``-m module ARGS`` / ``-c code ARGS`` as ``__main__``."""
    try:
        if rest[0] == "-c":
            sys.argv = ["-c", *rest[2:]]
            code = compile(rest[1], "<string>", "exec")
            exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
        elif rest[0] == "-m":
            sys.argv = [rest[1], *rest[2:]]
            runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(rest)
            sys.path[0] = os.path.dirname(os.path.abspath(rest[0]))
            runpy.run_path(rest[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def run(argv: Sequence[str]) -> int:
    """The child: load, attach, run the program, detach; returns its exit status."""
    from pybpf.hooks.socket import attach_socket
    from pybpf.objects import Object

    parser = argparse.ArgumentParser(prog="pybpf exec")
    parser.add_argument("object")
    parser.add_argument("--engine", default="interpreter")
    parser.add_argument("--program", action="append", default=[])
    parser.add_argument("--update", nargs=3, action="append", default=[])
    parser.add_argument("--show-maps", action="store_true")
    args_list = list(argv)
    split = args_list.index("--") if "--" in args_list else len(args_list)
    ns = parser.parse_args(args_list[:split])
    rest = args_list[split + 1 :]
    if not rest:
        raise InputError("no Python program to run", field="command")
    obj = Object.open(ns.object).load(engine=ns.engine)
    links = []
    try:
        for name, key, value in ns.update:
            if name not in obj.maps:
                raise InputError(f"no map {name!r} in the object", field="update")
            obj.maps[name][_number(key)] = _number(value)
        names = ns.program or list(obj.programs)
        for name in names:
            if name not in obj.programs:
                raise InputError(f"no program {name!r} in the object", field="program")
            links.append(attach_socket(obj.programs[name]))
        try:
            status = _run_target(rest)
        except BaseException as exc:  # the script's own error: Python's report, status 1
            if isinstance(exc, KeyboardInterrupt):
                raise
            import traceback

            tb = exc.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
                tb = tb.tb_next  # the script's frames only, as python prints them
            traceback.print_exception(type(exc), exc, tb)
            status = 1
    finally:
        for link in reversed(links):
            link.detach()
        if ns.show_maps:
            sys.stdout.flush()
            print(json.dumps(_maps_json(obj), default=str), file=sys.stderr)
        obj.close()
    return status


def _main() -> None:
    from pybpf.errors import PybpfError

    try:
        status = run(sys.argv[1:])
    except PybpfError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        status = 2 if isinstance(exc, InputError) else 255
    sys.stdout.flush()
    sys.exit(status)


if __name__ == "__main__":
    _main()
