"""probes: where tracing programs attach: tracefs, tracepoint ids, probe PMUs, uprobe file offsets.

libbpf finds a tracepoint's id in tracefs (``events/<category>/<name>/id``), the dynamic
PMU types of kprobes and uprobes in ``/sys/bus/event_source/devices/<pmu>/``, and a
uprobe's target as a file offset in an ELF binary (the symbol's address turned into an
offset through the loadable segment holding it). Legacy kprobes are created by writing
``p:``/``r:`` lines to tracefs's ``kprobe_events``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from pybpf.errors import InputError, NotSupportedError

__all__ = [
    "tracefs_root",
    "tracepoint_id",
    "pmu_type",
    "pmu_retprobe_bit",
    "symbol_offset",
    "add_legacy_kprobe",
    "remove_legacy_kprobe",
]

_PMU_ROOT = Path("/sys/bus/event_source/devices")
_TRACEFS_GUESSES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def tracefs_root() -> Path:
    """A mounted tracefs: the first ``tracefs`` in ``/proc/self/mounts``, else the usual
    paths; :class:`NotSupportedError` when none is mounted."""
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2] == "tracefs":
                return Path(fields[1])
    except OSError:
        pass
    for guess in _TRACEFS_GUESSES:
        if (Path(guess) / "events").is_dir():
            return Path(guess)
    raise NotSupportedError("no tracefs is mounted (mount -t tracefs nodev DIR)", feature="tracefs")


def tracepoint_id(category: str, name: str, tracefs: str | os.PathLike[str] | None = None) -> int:
    """The id of tracepoint ``category/name`` (:class:`InputError` if it does not exist)."""
    root = Path(tracefs) if tracefs is not None else tracefs_root()
    path = root / "events" / category / name / "id"
    try:
        return int(path.read_text())
    except FileNotFoundError:
        raise InputError(f"no tracepoint {category}/{name}", path=str(path)) from None


def pmu_type(pmu: str) -> int:
    """The perf type number of dynamic PMU ``pmu`` (``kprobe``, ``uprobe``)."""
    try:
        return int((_PMU_ROOT / pmu / "type").read_text())
    except (OSError, ValueError):
        raise NotSupportedError(f"this kernel has no {pmu} PMU", feature=pmu) from None


def pmu_retprobe_bit(pmu: str) -> int:
    """The ``config`` bit of the PMU's ``retprobe`` format (``config:0`` gives 0)."""
    try:
        text = (_PMU_ROOT / pmu / "format" / "retprobe").read_text().strip()
        return int(text.split(":", 1)[1])
    except (OSError, ValueError, IndexError):
        raise NotSupportedError(f"the {pmu} PMU has no retprobe format", feature=pmu) from None


_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_PHDR = struct.Struct("<IIQQQQQQ")
_SYM = struct.Struct("<IBBHQQ")
_SHT_SYMTAB, _SHT_DYNSYM, _PT_LOAD = 2, 11, 1


def symbol_offset(path: str | os.PathLike[str], symbol: str) -> int:
    """The file offset of function ``symbol`` in the 64-bit little-endian ELF at ``path``
    (``.symtab`` then ``.dynsym``), as a uprobe wants it."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise InputError("not a 64-bit little-endian ELF file", path=str(path))
    e = _EHDR.unpack_from(data)
    phoff, shoff, phentsize, phnum, shentsize, shnum = e[5], e[6], e[9], e[10], e[11], e[12]
    sections = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    address = None
    for kind in (_SHT_SYMTAB, _SHT_DYNSYM):
        for sh in sections:
            if sh[1] != kind:
                continue
            strtab = sections[sh[6]]
            for pos in range(sh[4], sh[4] + sh[5], sh[9] or _SYM.size):
                name_off, info, _other, shndx, value, _size = _SYM.unpack_from(data, pos)
                if shndx == 0 or (info & 0xF) not in (2, 10):  # FUNC, GNU_IFUNC
                    continue
                start = strtab[4] + name_off
                end = data.index(b"\0", start)
                if data[start:end] == symbol.encode():
                    address = value
                    break
            if address is not None:
                break
        if address is not None:
            break
    if address is None:
        raise InputError(f"no function {symbol!r} in {path}", path=str(path))
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz, _memsz, _align = _PHDR.unpack_from(
            data, phoff + i * phentsize
        )
        if p_type == _PT_LOAD and p_vaddr <= address < p_vaddr + p_filesz:
            return address - p_vaddr + p_offset
    return address


def add_legacy_kprobe(
    name: str, function: str, offset: int = 0, retprobe: bool = False, tracefs=None
) -> int:
    """Create kprobe event ``kprobes/<name>`` on ``function+offset`` through tracefs's
    ``kprobe_events`` (kernels without the kprobe PMU); returns its tracepoint id."""
    root = Path(tracefs) if tracefs is not None else tracefs_root()
    line = f"{'r' if retprobe else 'p'}:kprobes/{name} {function}+{offset}\n"
    if not (root / "kprobe_events").is_file():
        raise NotSupportedError("this kernel has no kprobes", feature="kprobe")
    try:
        with open(root / "kprobe_events", "a") as fh:
            fh.write(line)
    except FileNotFoundError:
        raise NotSupportedError("this kernel has no kprobes", feature="kprobe") from None
    except OSError as exc:
        raise InputError(f"cannot probe {function}: {exc.strerror}", path=function) from None
    return tracepoint_id("kprobes", name, root)


def remove_legacy_kprobe(name: str, tracefs=None) -> None:
    """Remove kprobe event ``kprobes/<name>`` (ignores one already gone)."""
    root = Path(tracefs) if tracefs is not None else tracefs_root()
    try:
        with open(root / "kprobe_events", "a") as fh:
            fh.write(f"-:kprobes/{name}\n")
    except OSError:
        pass
