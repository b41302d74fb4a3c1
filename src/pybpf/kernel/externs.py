"""externs: ``.kconfig`` values read from the running kernel and ``__ksym`` symbols resolved in it.

libbpf fills what an object leaves to the kernel it loads on: ``LINUX_KERNEL_VERSION``
from ``uname``, ``CONFIG_*`` values from ``/proc/config.gz`` (or ``/boot/config-$(uname
-r)``), typed kernel variables and kfuncs from the kernel's BTF (``lddw`` with
``BPF_PSEUDO_BTF_ID``, ``call`` with ``BPF_PSEUDO_KFUNC_CALL``) and typeless ones from
``/proc/kallsyms``. Values given at open time (``Object.open(kconfig=...)``) win; an
unresolved weak extern is zero, an unresolved strong one an error.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from pybpf.btf import Array, Enum, Func, Int, Var, Void
from pybpf.btf import Spec as BTFSpec
from pybpf.errors import InputError, NotSupportedError
from pybpf.isa import CallKind, Instruction, Pseudo
from pybpf.kernel.core import poison
from pybpf.kernel.vmlinux import kernel_version_code
from pybpf.spec import ExternKind, LinkedProgram, ObjectSpec

__all__ = [
    "kernel_config",
    "kallsyms",
    "fill_kconfig",
    "resolve_ksyms",
]

_CONFIG_PATHS = (Path("/proc/config.gz"),)
_KALLSYMS = Path("/proc/kallsyms")
_TRISTATE = {"y": 1, "n": 0, "m": 2}  # libbpf's enum libbpf_tristate


def kernel_config() -> dict[str, str]:
    """The running kernel's ``CONFIG_*`` values as text (``"y"``, ``"m"``, ``"1000"``,
    ``'"string"'``); empty when the kernel publishes no config."""
    paths = [*_CONFIG_PATHS]
    if hasattr(os, "uname"):
        paths.append(Path(f"/boot/config-{os.uname().release}"))
    for path in paths:
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        if path.suffix == ".gz":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError):
                continue
        out = {}
        for line in raw.decode("utf-8", "replace").splitlines():
            name, sep, value = line.partition("=")
            if sep and name.startswith("CONFIG_"):
                out[name] = value
        return out
    return {}


def kallsyms() -> dict[str, int]:
    """Kernel symbol addresses from ``/proc/kallsyms`` (first address of each name)."""
    out: dict[str, int] = {}
    try:
        text = _KALLSYMS.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            out.setdefault(fields[2], int(fields[0], 16))
    return out


def _kconfig_bytes(btf: BTFSpec, type_id: int, size: int, text: str) -> bytes | None:
    """libbpf's set_kcfg_value_*: the bytes of a CONFIG_ value for an extern of ``type_id``."""
    t = btf.resolve(type_id)
    if isinstance(t, Array):
        if not (text.startswith('"') and text.endswith('"')):
            return None
        raw = text[1:-1].encode()[: size - 1] + b"\0"
        return raw + bytes(size - len(raw))
    if text in _TRISTATE:
        if isinstance(t, Int) and t.is_bool:
            number = 1 if text in ("y", "m") else 0
        elif isinstance(t, Enum) or (isinstance(t, Int) and text != "m"):
            number = _TRISTATE[text]
        else:
            return None
    else:
        try:
            number = int(text, 0)
        except ValueError:
            return None
    signed = number < 0
    try:
        return number.to_bytes(size, "little", signed=signed)
    except OverflowError:
        return None


def fill_kconfig(obj: ObjectSpec, config: Mapping[str, str] | None = None) -> ObjectSpec:
    """A copy of ``obj`` whose ``.kconfig`` externs without a value get the running
    kernel's (``LINUX_KERNEL_VERSION``, ``LINUX_HAS_*``, ``CONFIG_*``); ``obj`` itself is
    returned when there is nothing to fill."""
    missing = [e for e in obj.externs.values() if e.kind == ExternKind.KCONFIG and e.value is None]
    if not missing or obj.btf is None or ".kconfig" not in obj.maps:
        return obj
    values = dict(config if config is not None else kernel_config())
    values.setdefault("LINUX_KERNEL_VERSION", str(kernel_version_code()))
    values.setdefault("LINUX_HAS_BPF_COOKIE", "y")
    values.setdefault("LINUX_HAS_SYSCALL_WRAPPER", "y")
    out = obj.copy()
    kmap = out.maps[".kconfig"]
    image = bytearray(kmap.initial_value())
    for ext in missing:
        text = values.get(ext.name)
        if text is None:
            continue
        raw = _kconfig_bytes(obj.btf, ext.type_id, ext.size, text)
        if raw is None:
            raise InputError(
                f"kconfig value {text!r} does not suit extern {ext.name!r}", field="kconfig"
            )
        image[ext.offset : ext.offset + ext.size] = raw
        out.externs[ext.name] = dataclasses.replace(ext, value=raw)
    kmap.contents = bytes(image)
    return out


def resolve_ksyms(
    insns: list[Instruction],
    prog: LinkedProgram,
    obj: ObjectSpec,
    kernel_btf: Callable[[], BTFSpec],
) -> list[Instruction]:
    """``insns`` with each ``__ksym`` reference of ``prog`` bound to the running kernel.

    ``kernel_btf`` is called only when a typed ksym or kfunc needs the kernel's BTF.
    """
    if not prog.ksyms:
        return insns
    by_pc: dict[int, int] = {}
    pc = 0
    for i, insn in enumerate(insns):
        by_pc[pc] = i
        pc += insn.slots
    symbols: dict[str, int] | None = None
    out = list(insns)
    for pc, name in prog.ksyms:
        ext = obj.externs.get(name)
        i = by_pc.get(pc)
        if ext is None or i is None:
            raise InputError(
                f"reference to unknown kernel symbol {name!r}", program=prog.name, pc=pc
            )
        insn = out[i]
        local = obj.btf.resolve(ext.type_id) if obj.btf is not None and ext.type_id else Void()
        if ext.kind == ExternKind.KFUNC:
            found = kernel_btf().find(name, Func)
            if found is None:
                if not ext.weak:
                    raise NotSupportedError(
                        f"the kernel has no kfunc {name!r}", feature="kfunc", program=prog.name
                    )
                out[i] = poison()
                continue
            out[i] = dataclasses.replace(insn, src=int(CallKind.KFUNC), imm=found.id, off=0)
        elif not isinstance(local, Void):
            found = kernel_btf().find(name, Var)
            if found is None:
                if not ext.weak:
                    raise NotSupportedError(
                        f"the kernel's BTF has no variable {name!r}",
                        feature="ksym",
                        program=prog.name,
                    )
                out[i] = dataclasses.replace(insn, src=int(Pseudo.IMM64), imm=0, imm_hi=0)
                continue
            out[i] = dataclasses.replace(insn, src=int(Pseudo.BTF_ID), imm=found.id, imm_hi=0)
        else:
            if symbols is None:
                symbols = kallsyms()
            address = symbols.get(name)
            if address is None and not ext.weak:
                raise NotSupportedError(
                    f"the kernel has no symbol {name!r}", feature="ksym", program=prog.name
                )
            address = address or 0
            lo, hi = address & 0xFFFFFFFF, address >> 32
            out[i] = dataclasses.replace(
                insn,
                src=int(Pseudo.IMM64),
                imm=lo - (1 << 32) if lo & 0x80000000 else lo,
                imm_hi=hi - (1 << 32) if hi & 0x80000000 else hi,
            )
    return out
