"""Compile: LLVM IR to native code (target machine, optimisation, MCJIT), owned until close().

Two steps, so that compiled code can be cached (:mod:`pybpf.jit.cache`):
:func:`compile_object` parses an ``llvmlite.ir`` module into the LLVM library, verifies it,
runs the new pass manager's pipeline at the requested speed level (0-3) and generates
object code for this host (a :class:`CompiledObject`: plain bytes);
:func:`load_object` links such object code into the process with an MCJIT engine built on
its own target machine (MCJIT takes ownership of the target machine: sharing one between
engines crashes once an engine is freed). :func:`compile_module` does both. The result,
:class:`NativeCode`, holds the engine and gives function and global addresses;
:meth:`NativeCode.close` frees the machine code, after which no address may be used.
:func:`host_identity` says what object code depends on besides the IR (LLVM version,
triple, CPU name and features).

LLVM aborts the process on some malformed input instead of raising, so everything handed
to this module has already been checked in Python (:mod:`pybpf.jit.blocks`); an IR
verification failure here is a pybpf bug (:class:`~pybpf.errors.InternalError`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from pybpf.errors import InternalError, NotSupportedError

try:  # the JIT is optional
    from llvmlite import binding as llvm
except ImportError:  # pragma: no cover - exercised only where llvmlite is missing
    llvm = None  # type: ignore[assignment]

__all__ = [
    "CompiledObject",
    "NativeCode",
    "compile_module",
    "compile_object",
    "load_object",
    "host_identity",
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


def host_identity() -> dict[str, str]:
    """What compiled code depends on besides the program: LLVM, target triple, CPU, features."""
    if llvm is None:
        return {}
    with _lock:
        _initialise()
        return {
            "llvm": llvm_version(),
            "triple": llvm.get_process_triple(),
            "cpu": _host_cpu(),
            "features": _host_features(),
        }


_cpu_name: str | None = None


def _host_cpu() -> str:
    global _cpu_name
    if _cpu_name is None:
        _cpu_name = llvm.get_host_cpu_name()
    return _cpu_name


def _target_machine(opt_level: int):
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=_host_cpu(), features=_host_features(), opt=opt_level)


@dataclass(frozen=True)
class CompiledObject:
    """A compiled module as bytes: the relocatable object code and the optimised bitcode.

    ``object_code`` is what runs (loaded by :func:`load_object`); ``bitcode`` is kept so
    the assembly and the optimised IR can be shown later. Both can be stored on disk
    (:mod:`pybpf.jit.cache`) and loaded again in another process.
    """

    object_code: bytes
    bitcode: bytes
    opt_level: int


class NativeCode:
    """The machine code of one compiled module: ``address(name)``, ``assembly()``, ``close()``.

    ``compile_seconds`` is the time to callable code: from IR text (parse, verify,
    optimise, code generation, loading) or, for code from a cache, loading alone.
    ``compiled`` is the :class:`CompiledObject` it was loaded from.
    """

    def __init__(self, engine, compiled: CompiledObject, compile_seconds: float) -> None:
        self._engine = engine
        self.compiled = compiled
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

    def global_address(self, name: str) -> int:
        """The native address of global variable ``name`` (0 when there is none)."""
        if self.closed:
            raise InternalError("native code is closed")
        return self._engine.get_global_value_address(name)

    def assembly(self) -> str:
        """The optimised module as native assembly text (for ``dump jited``)."""
        if self.closed:
            raise InternalError("native code is closed")
        with _lock:
            module = llvm.parse_bitcode(self.compiled.bitcode)
            return _target_machine(self.compiled.opt_level).emit_assembly(module)

    def optimised_ir(self) -> str:
        """The optimised module as LLVM IR text."""
        if self.closed:
            raise InternalError("native code is closed")
        with _lock:
            return str(llvm.parse_bitcode(self.compiled.bitcode))

    def close(self) -> None:
        """Free the machine code (idempotent); its addresses become invalid."""
        if self.closed:
            return
        self.closed = True
        with _lock:
            self._engine.close()
        self._engine = None

    def __enter__(self) -> NativeCode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_level(opt_level: int) -> None:
    if llvm is None:
        raise NotSupportedError(unavailable_reason() or "no LLVM", feature="jit")
    if opt_level not in (0, 1, 2, 3):
        raise NotSupportedError(f"optimisation level must be 0-3, not {opt_level}", feature="jit")


def compile_object(module, *, opt_level: int = 2) -> CompiledObject:
    """Optimise an ``llvmlite.ir`` module for this host at ``opt_level`` (0-3) and generate
    its object code."""
    _check_level(opt_level)
    with _lock:
        _initialise()
        tm = _target_machine(opt_level)
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
        return CompiledObject(tm.emit_object(parsed), parsed.as_bitcode(), opt_level)


def load_object(compiled: CompiledObject) -> NativeCode:
    """Link object code into this process (an MCJIT engine of its own) and return it.

    Raises :class:`~pybpf.errors.InternalError` when LLVM cannot load it.
    """
    _check_level(compiled.opt_level)
    start = time.perf_counter()
    with _lock:
        _initialise()
        empty = llvm.parse_assembly("")
        empty.triple = llvm.get_process_triple()
        engine = llvm.create_mcjit_compiler(empty, _target_machine(compiled.opt_level))
        try:
            engine.add_object_file(llvm.ObjectFileRef.from_data(compiled.object_code))
            engine.finalize_object()
        except (RuntimeError, OSError) as exc:
            engine.close()
            raise InternalError(f"LLVM could not load the object code: {exc}") from exc
    return NativeCode(engine, compiled, time.perf_counter() - start)


def compile_module(module, *, opt_level: int = 2) -> NativeCode:
    """Compile an ``llvmlite.ir`` module for this host at ``opt_level`` (0-3) and load it."""
    start = time.perf_counter()
    code = load_object(compile_object(module, opt_level=opt_level))
    code.compile_seconds = time.perf_counter() - start
    return code


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
