"""Cache: compiled programs on disk, keyed by everything that shapes their machine code.

A :class:`CodeCache` is a directory (default: ``jit-cache`` in the state directory,
``pybpf.config.settings().state_dir``) of compiled programs
(:class:`~pybpf.jit.compile.CompiledObject`), one file per key. :meth:`CodeCache.key`
hashes (SHA-256) what the object code depends on:

- the program's bytes (:func:`pybpf.isa.encode`) and the helper ids it calls;
- the JIT options that change the code (``debug_checks``, ``opt_level``) and any
  ``extra`` the caller adds (map shapes, for code that inlines map lookups);
- pybpf's version and a digest of the sources of the JIT and the ISA (so a changed
  lowering never meets stale code), llvmlite's version, and the host
  (:func:`~pybpf.jit.compile.host_identity`: LLVM version, triple, CPU name and features).

Values resolved at load time (``lddw`` map addresses) are not part of the key: the code
reads them from a table the program fills (:mod:`pybpf.jit.lower`).

The directory is bounded: after each store, entries beyond ``max_bytes`` (default
``settings().jit_cache_bytes``, ``PYBPF_JIT_CACHE_SIZE``) are deleted least recently used
first (a hit refreshes an entry's time). :func:`default_cache` is the cache the loader
uses (``None`` when ``PYBPF_JIT_CACHE=0`` turned it off).

An entry is ``MAGIC | format | opt level | sizes | key | object code | bitcode | SHA-256
of all before``. Anything wrong with an entry (truncated, flipped bits, another key,
unreadable, not owned by this user) makes :meth:`CodeCache.load` return ``None`` and
delete it, so the caller recompiles: a bad cache never crashes a program. Entries are
written to a temporary file and renamed into place (concurrent writers are safe); the
directory is created owner-only and refused (no caching) when another user owns it or
may write to it, since its files become code.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import sys
import tempfile
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

from pybpf.config import settings
from pybpf.isa import CallKind, Instruction, encode
from pybpf.jit.compile import CompiledObject, host_identity

__all__ = ["CodeCache", "FORMAT", "default_cache", "default_cache_dir"]

FORMAT = 1
MAGIC = b"PYBPFJIT"
_HEADER = struct.Struct("<8sIIQQ64s")  # magic, format, opt level, object size, bitcode size, key
_DIGEST = 32
_POSIX = sys.platform != "win32"


def default_cache_dir() -> Path:
    """``jit-cache`` in the configured state directory."""
    return settings().state_dir / "jit-cache"


_defaults: dict[tuple[Path, int], CodeCache] = {}


def default_cache() -> CodeCache | None:
    """The loader's code cache: ``jit-cache`` in the state directory, bounded by
    ``settings().jit_cache_bytes``; ``None`` when ``settings().jit_cache`` is off
    (``PYBPF_JIT_CACHE=0``). One object per directory and bound, so its counters add up."""
    config = settings()
    if not config.jit_cache:
        return None
    where = (config.state_dir / "jit-cache", config.jit_cache_bytes)
    found = _defaults.get(where)
    if found is None:
        found = _defaults[where] = CodeCache(where[0], max_bytes=where[1])
    return found


@cache
def _code_version() -> str:
    """A digest of the sources that decide what machine code a program gets."""
    import pybpf.isa
    import pybpf.jit

    digest = hashlib.sha256()
    for package in (pybpf.jit, pybpf.isa):
        for path in sorted(Path(package.__file__).parent.glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@cache
def _environment() -> str:
    from llvmlite import __version__ as llvmlite_version

    from pybpf import __version__

    identity = {
        "format": FORMAT,
        "pybpf": __version__,
        "sources": _code_version(),
        "llvmlite": llvmlite_version,
        **host_identity(),
    }
    return json.dumps(identity, sort_keys=True)


def _helper_ids(insns: Iterable[Instruction]) -> list[int]:
    return sorted({i.imm for i in insns if i.is_call and i.call_kind == CallKind.HELPER})


class CodeCache:
    """Compiled programs in ``directory`` (see the module docstring).

    ``hits``, ``misses``, ``stored``, ``rejected`` (bad entries dropped) and ``evicted``
    (entries deleted to stay within ``max_bytes``) count this object's work. I/O problems
    never raise: the cache then just misses.
    """

    def __init__(
        self, directory: str | os.PathLike | None = None, *, max_bytes: int | None = None
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.directory = self.directory.expanduser()
        self.max_bytes = settings().jit_cache_bytes if max_bytes is None else int(max_bytes)
        self.hits = self.misses = self.stored = self.rejected = self.evicted = 0
        self._usable: bool | None = None

    # ---- keys ----------------------------------------------------------------------------
    def key(
        self,
        insns: Iterable[Instruction],
        *,
        debug_checks: bool,
        opt_level: int,
        extra: Mapping[str, object] | None = None,
    ) -> str:
        """The hex SHA-256 key of a program compiled with these options on this host."""
        insns = list(insns)
        options = {
            "helpers": _helper_ids(insns),
            "debug_checks": bool(debug_checks),
            "opt_level": int(opt_level),
            "extra": dict(extra or {}),
        }
        digest = hashlib.sha256(_environment().encode())
        digest.update(json.dumps(options, sort_keys=True, default=repr).encode())
        digest.update(b"\0" + encode(insns))
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        """The file of entry ``key``."""
        return self.directory / f"{key}.jit"

    # ---- the directory -------------------------------------------------------------------
    def _ready(self) -> bool:
        if self._usable is None:
            self._usable = self._prepare()
        return self._usable

    def _prepare(self) -> bool:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.directory.stat()
            if _POSIX:
                if info.st_uid != os.getuid():
                    return False
                if stat.S_IMODE(info.st_mode) & 0o022:
                    os.chmod(self.directory, 0o700)
        except OSError:
            return False
        return True

    # ---- entries -------------------------------------------------------------------------
    def load(self, key: str) -> CompiledObject | None:
        """The entry for ``key``, or ``None`` (missing, or bad and now deleted)."""
        if not self._ready():
            self.misses += 1
            return None
        path = self.path(key)
        try:
            info = path.lstat()
        except OSError:
            self.misses += 1
            return None
        compiled = None
        if stat.S_ISREG(info.st_mode) and (not _POSIX or info.st_uid == os.getuid()):
            try:
                compiled = _decode(path.read_bytes(), key)
            except OSError:
                compiled = None
        if compiled is None:
            self.reject(key)
            self.misses += 1
            return None
        self.hits += 1
        try:
            os.utime(path)  # recently used: evicted last
        except OSError:
            pass
        return compiled

    def store(self, key: str, compiled: CompiledObject) -> bool:
        """Write entry ``key`` (atomically); False when the cache is not usable."""
        if not self._ready():
            return False
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".jit")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(_encode(key, compiled))
                os.replace(tmp, self.path(key))
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            return False
        self.stored += 1
        self.evict(keep=key)
        return True

    def size(self) -> int:
        """Bytes the entries take now."""
        return sum(size for _, size, _ in self._listing())

    def _listing(self) -> list[tuple[float, int, Path]]:
        rows = []
        try:
            for path in self.directory.glob("*.jit"):
                try:
                    info = path.stat()
                except OSError:
                    continue
                rows.append((info.st_mtime, info.st_size, path))
        except OSError:
            return []
        return rows

    def evict(self, *, keep: str | None = None) -> int:
        """Delete the least recently used entries until the rest fit in ``max_bytes``
        (entry ``keep``, just written, stays); returns how many went."""
        rows = sorted(self._listing(), key=lambda row: row[0])
        total = sum(size for _, size, _ in rows)
        removed = 0
        for _, size, path in rows:
            if total <= self.max_bytes:
                break
            if keep is not None and path.stem == keep:
                continue
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
            removed += 1
        self.evicted += removed
        return removed

    def reject(self, key: str) -> None:
        """Delete entry ``key`` (a bad one: it failed to decode or to load)."""
        self.rejected += 1
        try:
            self.path(key).unlink()
        except OSError:
            pass

    def entries(self) -> list[str]:
        """The keys stored now."""
        try:
            return sorted(p.stem for p in self.directory.glob("*.jit"))
        except OSError:
            return []

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        removed = 0
        for key in self.entries():
            try:
                self.path(key).unlink()
                removed += 1
            except OSError:
                pass
        return removed

    def __repr__(self) -> str:
        return (
            f"<CodeCache {str(self.directory)!r}: {self.hits} hits, {self.misses} misses, "
            f"{self.rejected} rejected>"
        )


def _encode(key: str, compiled: CompiledObject) -> bytes:
    header = _HEADER.pack(
        MAGIC,
        FORMAT,
        compiled.opt_level,
        len(compiled.object_code),
        len(compiled.bitcode),
        key.encode("ascii"),
    )
    body = header + compiled.object_code + compiled.bitcode
    return body + hashlib.sha256(body).digest()


def _decode(data: bytes, key: str) -> CompiledObject | None:
    """The entry in ``data``, or ``None`` when anything about it is wrong."""
    if len(data) < _HEADER.size + _DIGEST:
        return None
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        return None
    magic, version, opt_level, nobject, nbitcode, stored_key = _HEADER.unpack_from(body)
    if magic != MAGIC or version != FORMAT or stored_key != key.encode("ascii"):
        return None
    if opt_level not in (0, 1, 2, 3) or _HEADER.size + nobject + nbitcode != len(body):
        return None
    start = _HEADER.size
    object_code = body[start : start + nobject]
    bitcode = body[start + nobject :]
    if not object_code:
        return None
    return CompiledObject(object_code, bitcode, opt_level)
