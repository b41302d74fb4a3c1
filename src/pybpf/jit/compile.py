"""Compile: LLVM IR to native code (target machine, optimisation, MCJIT), owned until close().

:func:`compile_module` parses an ``llvmlite.ir`` module into the LLVM library, verifies it,
runs the new pass manager's pipeline at the requested speed level (0-3) and hands it to an
MCJIT engine built on its own target machine (MCJIT takes ownership of the target machine:
sharing one between engines crashes once an engine is freed). The result,
:class:`NativeCode`, holds the engine and the entry point's address; :meth:`NativeCode.close`
frees the machine code, after which the address must not be called.

LLVM aborts the process on some malformed input instead of raising, so everything handed
to this module has already been checked in Python (:mod:`pybpf.jit.blocks`); an IR
verification failure here is a pybpf bug (:class:`~pybpf.errors.InternalError`).
"""

from __future__ import annotations

import threading
import time

from pybpf.errors import InternalError, NotSupportedError

try:  # the JIT is optional
    from llvmlite import binding as llvm
except ImportError:  # pragma: no cover - exercised only where llvmlite is missing
    llvm = None  # type: ignore[assignment]

__all__ = [
    "NativeCode",
    "compile_module",
    "runtime_address",
    "llvm_version",
    "unavailable_reason",
]

_lock = threading.RLock()  # one LLVM context: compile one module at a time
_ready = False


def unavailable_reason() -> str | None:
    """Why the JIT cannot run here, or ``None`` when it can."""
    if llvm is None:
        return "llvmlite is not installed (pip install 'pybpf[jit]')"
    return None


def llvm_version() -> str:
    """The version of the LLVM library llvmlite bundles (``"22.1.0"``), or ``""``."""
    if llvm is None:
        return ""
    return ".".join(str(part) for part in llvm.llvm_version_info)


def _initialise() -> None:
    global _ready
    if not _ready:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _ready = True


_features: str | None = None


def _host_features() -> str:
    global _features
    if _features is None:
        try:
            _features = llvm.get_host_cpu_features().flatten()
        except RuntimeError:  # not every host can list its features
            _features = ""
    return _features


class NativeCode:
    """The machine code of one compiled module: ``address(name)``, ``assembly()``, ``close()``.

    ``compile_seconds`` is the time from IR text to callable code (parse, verify,
    optimise, code generation).
    """

    def __init__(self, engine, target_machine, module, compile_seconds: float) -> None:
        self._engine = engine
        self._tm = target_machine
        self._module = module
        self.compile_seconds = compile_seconds
        self.closed = False

    def address(self, name: str) -> int:
        """The native address of function ``name``."""
        if self.closed:
            raise InternalError("native code is closed")
        address = self._engine.get_function_address(name)
        if not address:
            raise InternalError(f"compiled module has no function {name!r}")
        return address

    def assembly(self) -> str:
        """The optimised module as native assembly text (for ``dump jited``)."""
        if self.closed:
            raise InternalError("native code is closed")
        with _lock:
            return self._tm.emit_assembly(self._module)

    def optimised_ir(self) -> str:
        """The optimised module as LLVM IR text."""
        if self.closed:
            raise InternalError("native code is closed")
        return str(self._module)

    def close(self) -> None:
        """Free the machine code (idempotent); its addresses become invalid."""
        if self.closed:
            return
        self.closed = True
        with _lock:
            self._engine.close()
        self._engine = self._module = self._tm = None

    def __enter__(self) -> NativeCode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compile_module(module, *, opt_level: int = 2) -> NativeCode:
    """Compile an ``llvmlite.ir`` module for this host at ``opt_level`` (0-3)."""
    if llvm is None:
        raise NotSupportedError(unavailable_reason() or "no LLVM", feature="jit")
    if opt_level not in (0, 1, 2, 3):
        raise NotSupportedError(f"optimisation level must be 0-3, not {opt_level}", feature="jit")
    start = time.perf_counter()
    with _lock:
        _initialise()
        target = llvm.Target.from_default_triple()
        tm = target.create_target_machine(
            cpu=llvm.get_host_cpu_name(),
            features=_host_features(),
            opt=opt_level,
        )
        module.triple = llvm.get_process_triple()
        module.data_layout = str(tm.target_data)
        try:
            parsed = llvm.parse_assembly(str(module))
            parsed.verify()
        except RuntimeError as exc:  # pragma: no cover - a lowering bug
            raise InternalError(f"LLVM refused the generated IR: {exc}") from exc
        if opt_level:
            options = llvm.create_pipeline_tuning_options(speed_level=opt_level)
            builder = llvm.create_pass_builder(tm, options)
            builder.getModulePassManager().run(parsed, builder)
        engine = llvm.create_mcjit_compiler(parsed, tm)
        engine.finalize_object()
    return NativeCode(engine, tm, parsed, time.perf_counter() - start)


_runtime: dict[str, NativeCode] = {}  # shared modules by the name of their function


def _shared_module(name: str):
    from pybpf.jit.batchloop import BATCH, batch_module
    from pybpf.jit.lower import ACCESS_OK, runtime_module

    builders = {ACCESS_OK: runtime_module, BATCH: batch_module}
    if name not in builders:
        raise InternalError(f"no shared runtime function {name!r}")
    return builders[name]()


def runtime_address(name: str) -> int:
    """The address of shared runtime function ``name``, compiled on first use.

    Shared functions (the debug checks' ``pybpf_access_ok`` of
    :func:`pybpf.jit.lower.runtime_module`, the batch loop of
    :func:`pybpf.jit.batchloop.batch_module`) are compiled once per process, each in its
    own module, and stay loaded for the life of the process, so their addresses may be
    stored in any program's context block.
    """
    with _lock:
        code = _runtime.get(name)
        if code is None:
            code = _runtime[name] = compile_module(_shared_module(name), opt_level=2)
        return code.address(name)
