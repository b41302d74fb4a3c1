"""Native atomics: the atomic primitives compiled once with llvmlite, as callable functions.

design.md: "the atomic and lock primitives (compiled once with llvmlite where it is
installed; without it pybpf runs single-process with Python locks)". :func:`native_atomics`
compiles one small LLVM module the first time it is called in a process and caches the
result (about 6 ms, plus 30 ms to import llvmlite); it returns ``None`` when llvmlite is
not installed or cannot compile for this machine, and :mod:`pybpf.memory.atomics` then
falls back to a process-wide Python lock.

Every function takes and returns unsigned 64-bit integers; the first argument is a real
address that must be aligned to the access size (callers check). For each width ``b`` in
8, 16, 32, 64 the module defines:

- ``cas{b}(addr, expected, new) -> old``: sequentially consistent compare-and-exchange;
- ``{op}{b}(addr, operand) -> old`` for ``op`` in add, or, and, xor, xchg (``atomicrmw``);
- ``load{b}(addr) -> value``: a load-acquire; ``store{b}(addr, value) -> 0``: a store-release.

Results are zero-extended; operands are truncated to the width.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NativeAtomics",
    "compile_native",
    "native_atomics",
    "WIDTHS",
    "RMW_NAMES",
    "module_ir",
]

WIDTHS = (8, 16, 32, 64)
RMW_NAMES = ("add", "or", "and", "xor", "xchg")

_U64 = ctypes.c_uint64
# PYFUNCTYPE: the calls are tiny and never block, so keep the GIL (cheaper than releasing it).
_FN3 = ctypes.PYFUNCTYPE(_U64, _U64, _U64, _U64)
_FN2 = ctypes.PYFUNCTYPE(_U64, _U64, _U64)
_FN1 = ctypes.PYFUNCTYPE(_U64, _U64)


def _narrow(bits: int, value: str, out: str) -> str:
    return f"  {out} = trunc i64 {value} to i{bits}\n" if bits < 64 else ""


def _widen(bits: int, value: str, out: str) -> str:
    if bits < 64:
        return f"  {out} = zext i{bits} {value} to i64\n  ret i64 {out}\n"
    return f"  ret i64 {value}\n"


def module_ir() -> str:
    """The LLVM IR text of the atomics module (see the module docstring)."""
    parts = []
    for b in WIDTHS:
        t = f"i{b}"
        e = "%et" if b < 64 else "%e"
        n = "%nt" if b < 64 else "%n"
        parts.append(
            f"define i64 @cas{b}(i64 %a, i64 %e, i64 %n) {{\n"
            f"  %p = inttoptr i64 %a to ptr\n"
            + _narrow(b, "%e", "%et")
            + _narrow(b, "%n", "%nt")
            + f"  %r = cmpxchg ptr %p, {t} {e}, {t} {n} seq_cst seq_cst, align {b // 8}\n"
            f"  %o = extractvalue {{{t}, i1}} %r, 0\n" + _widen(b, "%o", "%z") + "}\n"
        )
        v = "%vt" if b < 64 else "%v"
        for op in RMW_NAMES:
            parts.append(
                f"define i64 @{op}{b}(i64 %a, i64 %v) {{\n"
                f"  %p = inttoptr i64 %a to ptr\n"
                + _narrow(b, "%v", "%vt")
                + f"  %o = atomicrmw {op} ptr %p, {t} {v} seq_cst, align {b // 8}\n"
                + _widen(b, "%o", "%z")
                + "}\n"
            )
        parts.append(
            f"define i64 @load{b}(i64 %a) {{\n"
            f"  %p = inttoptr i64 %a to ptr\n"
            f"  %o = load atomic {t}, ptr %p acquire, align {b // 8}\n"
            + _widen(b, "%o", "%z")
            + "}\n"
        )
        parts.append(
            f"define i64 @store{b}(i64 %a, i64 %v) {{\n"
            f"  %p = inttoptr i64 %a to ptr\n"
            + _narrow(b, "%v", "%vt")
            + f"  store atomic {t} {v}, ptr %p release, align {b // 8}\n"
            "  ret i64 0\n}\n"
        )
    return "".join(parts)


@dataclass
class NativeAtomics:
    """The compiled primitives, by byte size (1, 2, 4, 8).

    ``cas[size](addr, expected, new)``, ``rmw[op][size](addr, operand)``,
    ``load[size](addr)``, ``store[size](addr, value)``; ``engine`` keeps the machine code
    alive.
    """

    cas: dict[int, Any] = field(default_factory=dict)
    rmw: dict[str, dict[int, Any]] = field(default_factory=dict)
    load: dict[int, Any] = field(default_factory=dict)
    store: dict[int, Any] = field(default_factory=dict)
    engine: Any = None
    llvm_version: tuple[int, ...] = ()


_LOCK = threading.Lock()
_CACHE: list[NativeAtomics | None] = []


def compile_native(ir_text: str) -> tuple[Any, tuple[int, ...]] | None:
    """``(engine, llvm_version)``: LLVM IR text compiled at O2 for this machine into an
    MCJIT engine (keep it alive while its functions are used); ``None`` without llvmlite or
    when LLVM cannot target this machine (callers then use their Python fallback)."""
    try:
        import llvmlite.binding as llvm
    except ImportError:
        return None
    try:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        module = llvm.parse_assembly(ir_text)
        module.verify()
        machine = llvm.Target.from_default_triple().create_target_machine(opt=2)
        engine = llvm.create_mcjit_compiler(module, machine)
        engine.finalize_object()
    except Exception:  # an LLVM that cannot target this machine
        return None
    return engine, tuple(llvm.llvm_version_info)


def _compile() -> NativeAtomics | None:
    compiled = compile_native(module_ir())
    if compiled is None:
        return None
    engine, llvm_version = compiled
    out = NativeAtomics(engine=engine, llvm_version=llvm_version)
    for b in WIDTHS:
        n = b // 8
        out.cas[n] = _FN3(engine.get_function_address(f"cas{b}"))
        for op in RMW_NAMES:
            out.rmw.setdefault(op, {})[n] = _FN2(engine.get_function_address(f"{op}{b}"))
        out.load[n] = _FN1(engine.get_function_address(f"load{b}"))
        out.store[n] = _FN2(engine.get_function_address(f"store{b}"))
    return out


def native_atomics() -> NativeAtomics | None:
    """The native primitives, compiled on the first call (``None`` without llvmlite)."""
    if not _CACHE:
        with _LOCK:
            if not _CACHE:
                _CACHE.append(_compile())
    return _CACHE[0]
