"""Map base: what every map family shares (lifetime, pinning, the dict API, the entries).

Every map has three faces, all over the same buffer (:mod:`pybpf.maps.buffer`):

- **user space, raw** (Linux's ``bpf()`` map commands, bytes in and out):
  :meth:`Map.lookup_raw`, :meth:`Map.update_raw`, :meth:`Map.delete_raw`,
  :meth:`Map.get_next_key`, :meth:`Map.lookup_and_delete_raw`. Per-CPU values are
  ``ncpus`` values each padded to 8 bytes, as in Linux. Failures raise
  :class:`~pybpf.errors.MapError` with Linux's errno; a missing key is ``None``.
- **user space, Pythonic**: ``m[k]``, ``m[k] = v``, ``del m[k]``, ``k in m``, ``len(m)``,
  iteration, ``keys()``, ``values()``, ``items()``, ``get()``, ``update(k, v, flags=)``,
  ``pop()``, ``clear()``, batches (``update_batch``, ``lookup_batch``, ``delete_batch``),
  ``atomic_add()`` on a value in place, with keys and values decoded by ``key_codec`` /
  ``value_codec`` (:mod:`pybpf.maps.codec`); per-CPU maps give lists (one per CPU).
  A missing key raises :class:`KeyError`.
- **programs** (what the runtime's helpers call; keys and values are bytes the helper
  read from program memory, results are Linux's): :meth:`Map.elem_lookup` returns the
  *address* of the value (stable while the element exists; 0 when missing),
  :meth:`Map.elem_update` / :meth:`Map.elem_delete` return 0 or a negative errno.

``handle`` is what a program's ``lddw`` of the map loads; ``regions`` are the parts of the
buffer programs may touch (values read-write, keys read-only), to add to an execution's
:class:`~pybpf.memory.AddressSpace`.

Values with special fields (``definition.special_fields``: a ``struct bpf_spin_lock``,
...): plain copies skip them and lookups return them zeroed; ``BPF_F_LOCK`` (hash and
array maps whose value has a lock) copies under the value's lock, the same 32-bit word
:mod:`pybpf.runtime.locks` takes for programs (:meth:`Map._value_lock`).

Create maps with :func:`pybpf.maps.create_map`, open pins with :func:`pybpf.maps.open_pinned`.
"""

from __future__ import annotations

import errno
import os
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from pybpf.errors import InputError, NotSupportedError
from pybpf.maps import registry
from pybpf.maps.buffer import LOCK_OFFSET, MapBuffer
from pybpf.maps.codec import BYTES, Codec, codec
from pybpf.maps.definition import BPF_ANY, BPF_F_LOCK, MapDefinition, fail, round8
from pybpf.maptypes import MapFlag, MapType
from pybpf.memory import Region
from pybpf.memory.lock import SharedLock
from pybpf.state import StateDirectory

__all__ = ["Map"]

_ENOTSUPP = 524  # Linux's internal ENOTSUPP, which bpf() returns for some map types


class _ClosedLock:
    """Stands in for a closed map's lock: every acquire fails with EBADF."""

    recovered = 0

    def __init__(self, name: str) -> None:
        self.name = name

    def acquire(self) -> None:
        raise fail(errno.EBADF, "map is closed", "lock", self.name)

    def release(self) -> None:
        pass

    def current_token(self) -> int:
        raise fail(errno.EBADF, "map is closed", "lock", self.name)

    def __enter__(self) -> _ClosedLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _release(regions: list[Region], buffer: MapBuffer) -> None:
    for region in regions:
        region.close()
    buffer.close()


class Map:
    """A live map over one shared buffer (see the module docstring).

    Not built directly: :func:`pybpf.maps.create_map` and :func:`pybpf.maps.open_pinned`
    pick the family class by type.
    """

    TYPES: ClassVar[tuple[MapType, ...]] = ()

    def __init__(
        self, buffer: MapBuffer, definition: MapDefinition, *, fresh: bool, params: dict
    ) -> None:
        self._buf = buffer
        self.definition = definition
        self.type: MapType = definition.type
        self.key_size = definition.key_size
        self.value_size = definition.value_size
        self.max_entries = definition.max_entries
        self.flags = definition.flags
        self.name = definition.name
        self.ncpus = definition.ncpus if definition.percpu else 1
        self.percpu = definition.percpu
        self.handle = buffer.address
        self.lock = SharedLock(buffer.address + LOCK_OFFSET, recover=self._recover_locked)
        self._wronly = bool(definition.flags & MapFlag.WRONLY)
        self._rdonly = bool(definition.flags & MapFlag.RDONLY)
        self._header = buffer.view[: LOCK_OFFSET + 8 + 64].cast("I")  # frozen at u32 #26
        self.spin_lock_offset = definition.spin_lock_offset
        self._spans = definition.special_spans
        stride = round8(definition.value_size)
        self._user_spans = (
            tuple((c * stride + o, n) for c in range(self.ncpus) for o, n in self._spans)
            if self.percpu
            else self._spans
        )
        self.key_codec: Codec = BYTES
        self.value_codec: Codec = BYTES
        self._fault: Any = None  # tests: called with a step name inside mutations
        self.closed = False
        self._setup(params)
        if fresh:
            self._init_fresh(params)
        self.regions: list[Region] = self._make_regions()
        self.id = registry.register(self)
        self._finalizer = weakref.finalize(self, _release, self.regions, buffer)

    # ---- family hooks ----------------------------------------------------------------------
    @classmethod
    def check(cls, d: MapDefinition, params: dict) -> None:
        """Linux's creation checks for the family (raise MapError)."""

    @classmethod
    def buffer_size(cls, d: MapDefinition, params: dict) -> int:
        """The buffer size a definition needs."""
        raise NotImplementedError

    def _setup(self, params: dict) -> None:
        """Compute offsets and views (new and opened buffers alike)."""

    def _init_fresh(self, params: dict) -> None:
        """Initialise a new, zeroed buffer beyond the common header."""

    def _recover(self) -> None:
        """Rebuild what a dead lock holder may have left half done (lock held)."""

    def _make_regions(self) -> list[Region]:
        """The buffer parts programs may touch."""
        return []

    def _recover_locked(self) -> None:
        self._recover()

    # ---- derived facts ---------------------------------------------------------------------
    @property
    def value_stride(self) -> int:
        """Bytes between two CPUs' copies of a per-CPU value (round8(value_size))."""
        return round8(self.value_size)

    @property
    def user_value_size(self) -> int:
        """Size of a value in user-space views (per-CPU: ncpus * round8(value_size))."""
        return self.ncpus * round8(self.value_size) if self.percpu else self.value_size

    @property
    def path(self) -> Path | None:
        """The backing file (``None``: anonymous memory, which cannot be pinned)."""
        return self._buf.path

    @property
    def frozen(self) -> bool:
        """True once :meth:`freeze` was called (by any process)."""
        return self._buf.frozen

    # ---- user-space permission checks ------------------------------------------------------
    def _can_read(self, op: str) -> None:
        if self._wronly:
            raise fail(errno.EPERM, "map is write-only for user space", op, self.name)

    def _can_write(self, op: str) -> None:
        if self._rdonly or self._header[26]:  # BPF_F_RDONLY, or frozen (header offset 104)
            raise fail(errno.EPERM, "map is read-only for user space", op, self.name)

    def _check_lock_flag(self, flags: int, op: str) -> None:
        """``BPF_F_LOCK`` on a map whose value has no ``bpf_spin_lock``: EINVAL."""
        if flags & BPF_F_LOCK and self.spin_lock_offset < 0:
            raise fail(errno.EINVAL, "BPF_F_LOCK needs a bpf_spin_lock", op, self.name)

    @contextmanager
    def _value_lock(self, value_address: int) -> Iterator[None]:
        """Hold the ``bpf_spin_lock`` of the value at ``value_address`` (0 when free, 1
        when held: :mod:`pybpf.runtime.locks`' protocol), as ``copy_map_value_locked``."""
        from pybpf.memory import atomics

        word = value_address + self.spin_lock_offset
        attempts = 0
        while atomics.cmpxchg_at(word, 4, 0, 1) != 0:
            attempts += 1
            time.sleep(0 if attempts < 64 else 0.0001)
        try:
            yield
        finally:
            atomics.store_at(word, 4, 0)

    def _check_key(self, key: bytes) -> bytes:
        if len(key) != self.key_size:
            raise InputError(f"key has {len(key)} bytes, the map wants {self.key_size}")
        return key

    def _check_value(self, value: bytes) -> bytes:
        if len(value) != self.user_value_size:
            raise InputError(f"value has {len(value)} bytes, the map wants {self.user_value_size}")
        return value

    # ---- raw user-space operations (Linux's bpf() commands) --------------------------------
    def lookup_raw(self, key: bytes, flags: int = 0) -> bytes | None:
        """``BPF_MAP_LOOKUP_ELEM``: the value (user-space layout), or ``None`` (ENOENT).

        ``flags``: ``BPF_F_LOCK`` copies under the value's lock (hash and array maps
        whose value has one; EINVAL otherwise), other bits are EINVAL."""
        raise fail(errno.EINVAL, "lookup is not supported by this map type", "lookup", self.name)

    def update_raw(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        """``BPF_MAP_UPDATE_ELEM``; raises MapError with Linux's errno."""
        raise fail(errno.EINVAL, "update is not supported by this map type", "update", self.name)

    def delete_raw(self, key: bytes) -> None:
        """``BPF_MAP_DELETE_ELEM``; raises MapError (ENOENT when missing)."""
        raise fail(errno.EINVAL, "delete is not supported by this map type", "delete", self.name)

    def lookup_and_delete_raw(self, key: bytes, flags: int = 0) -> bytes | None:
        """``BPF_MAP_LOOKUP_AND_DELETE_ELEM``: the value, removed; ``None`` when missing.

        ``flags``: ``BPF_F_LOCK`` copies the value out under its ``bpf_spin_lock`` (hash
        maps whose value has one; the lock reads as zero), other bits are EINVAL, as is
        ``BPF_F_LOCK`` on a value without a lock; map types without the command: ENOTSUPP
        (524) after those checks (:meth:`_pop_checks`)."""
        self._pop_checks(flags)
        raise fail(
            _ENOTSUPP, "lookup-and-delete is not supported here", "lookup_and_delete", self.name
        )

    def _pop_checks(self, flags: int) -> None:
        """``map_lookup_and_delete_elem``'s checks, in Linux's order: flag bits other than
        ``BPF_F_LOCK`` (EINVAL), the map open (EBADF), readable and writable (EPERM), then
        ``BPF_F_LOCK`` without a ``bpf_spin_lock`` (EINVAL)."""
        op = "lookup_and_delete"
        if flags & ~BPF_F_LOCK:
            raise fail(errno.EINVAL, f"bad lookup-and-delete flags {flags:#x}", op, self.name)
        self._alive(op)
        self._can_read(op)
        self._can_write(op)
        self._check_lock_flag(flags, op)

    def get_next_key(self, key: bytes | None) -> bytes | None:
        """``BPF_MAP_GET_NEXT_KEY``: the key after ``key`` (first for ``None``); ``None`` at
        the end."""
        raise fail(errno.EINVAL, "this map type has no keys", "get_next_key", self.name)

    def keys_raw(self) -> list[bytes]:
        """Every key (bytes), in iteration order, as one snapshot."""
        out = []
        key = self.get_next_key(None)
        while key is not None:
            out.append(key)
            key = self.get_next_key(key)
        return out

    # ---- program entries (helpers) ---------------------------------------------------------
    def elem_lookup(self, key: bytes, cpu: int = 0) -> int:
        """``bpf_map_lookup_elem`` from a program: the value's address (``cpu``'s copy for
        per-CPU maps), or 0."""
        return 0

    def elem_update(self, key: bytes, value: bytes, flags: int, cpu: int = 0) -> int:
        """``bpf_map_update_elem`` from a program (``value`` is one CPU's value): 0 or
        -errno."""
        return -errno.EINVAL

    def elem_delete(self, key: bytes) -> int:
        """``bpf_map_delete_elem`` from a program: 0 or -errno."""
        return -errno.EINVAL

    def elem_slots(self) -> list[int] | None:
        """The elements now, as slot numbers for :meth:`slot_addresses` (for
        ``bpf_for_each_map_elem``); ``None`` when the type cannot be iterated so."""
        return None

    def slot_addresses(self, slot: int, cpu: int = 0) -> tuple[int, int] | None:
        """``(key address, value address)`` of ``slot`` if it still holds an element (a key
        address of 0: the key is the slot number itself, as for arrays)."""
        return None

    def elem_lookup_percpu(self, key: bytes, cpu: int) -> int:
        """``bpf_map_lookup_percpu_elem``: ``cpu``'s copy (0 if missing or cpu out of range)."""
        if not self.percpu or not 0 <= cpu < self.ncpus:
            return 0
        return self.elem_lookup(key, cpu)

    # ---- Pythonic API ----------------------------------------------------------------------
    def set_codecs(self, key: Any = None, value: Any = None) -> Map:
        """Set ``key_codec`` / ``value_codec`` (``"bytes"``, ``"uint"``, ``"int"``, a codec);
        returns the map."""
        self.key_codec = codec(key)
        self.value_codec = codec(value)
        return self

    def _key(self, key: Any) -> bytes:
        return self.key_codec.encode(key, self.key_size)

    def _value(self, value: Any) -> bytes:
        """A Python value as the user-space bytes (per-CPU: one value for every CPU, a list
        of ``ncpus`` values, or the raw padded bytes)."""
        if not self.percpu:
            return self.value_codec.encode(value, self.value_size)
        stride = round8(self.value_size)
        if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == stride * self.ncpus:
            return bytes(value)
        if isinstance(value, (list, tuple)):
            if len(value) != self.ncpus:
                raise InputError(f"per-CPU value needs {self.ncpus} entries, got {len(value)}")
            parts = [self.value_codec.encode(v, self.value_size) for v in value]
        else:
            parts = [self.value_codec.encode(value, self.value_size)] * self.ncpus
        pad = bytes(stride - self.value_size)
        return b"".join(p + pad for p in parts)

    def _decode_value(self, raw: bytes) -> Any:
        if not self.percpu:
            return self.value_codec.decode(raw)
        stride = round8(self.value_size)
        n = self.value_size
        return [self.value_codec.decode(raw[i : i + n]) for i in range(0, len(raw), stride)]

    def __getitem__(self, key: Any) -> Any:
        raw = self.lookup_raw(self._key(key))
        if raw is None:
            raise KeyError(key)
        return self._decode_value(raw)

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        raw = self.lookup_raw(self._key(key))
        return default if raw is None else self._decode_value(raw)

    def lookup(self, key: Any, flags: int = 0) -> Any:
        """The value of ``key``, or ``None``; ``flags=BPF_F_LOCK`` reads it under its
        ``bpf_spin_lock``."""
        if not flags:
            return self.get(key)
        if flags & ~BPF_F_LOCK:
            raise fail(errno.EINVAL, f"bad lookup flags {flags:#x}", "lookup", self.name)
        self._check_lock_flag(flags, "lookup")  # (only families with locks take flags)
        raw = self.lookup_raw(self._key(key), flags)
        return None if raw is None else self._decode_value(raw)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update_raw(self._key(key), self._value(value), BPF_ANY)

    def update(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        """Store ``value`` under ``key`` with ``BPF_ANY``/``BPF_NOEXIST``/``BPF_EXIST``
        (``| BPF_F_LOCK``: under the value's ``bpf_spin_lock``)."""
        self.update_raw(self._key(key), self._value(value), flags)

    def __delitem__(self, key: Any) -> None:
        try:
            self.delete_raw(self._key(key))
        except OSError as err:
            if err.errno == errno.ENOENT:
                raise KeyError(key) from None
            raise

    def delete(self, key: Any) -> None:
        """Remove ``key`` (MapError with ENOENT when missing)."""
        self.delete_raw(self._key(key))

    def pop(self, key: Any, *default: Any, flags: int = 0) -> Any:
        """Remove ``key`` and return its value (``BPF_MAP_LOOKUP_AND_DELETE_ELEM``;
        ``flags=BPF_F_LOCK`` reads it under its ``bpf_spin_lock``)."""
        raw = (
            self.lookup_and_delete_raw(self._key(key), flags)
            if flags
            else self.lookup_and_delete_raw(self._key(key))
        )
        if raw is None:
            if default:
                return default[0]
            raise KeyError(key)
        return self._decode_value(raw)

    def __contains__(self, key: Any) -> bool:
        return self.lookup_raw(self._key(key)) is not None

    def __iter__(self) -> Iterator[Any]:
        decode = self.key_codec.decode
        return iter([decode(k) for k in self.keys_raw()])

    def keys(self) -> list[Any]:
        """Every key, decoded (a snapshot)."""
        return list(self)

    def items(self) -> list[tuple[Any, Any]]:
        """Every ``(key, value)`` pair, decoded (keys deleted meanwhile are skipped)."""
        out = []
        decode = self.key_codec.decode
        for k in self.keys_raw():
            raw = self.lookup_raw(k)
            if raw is not None:
                out.append((decode(k), self._decode_value(raw)))
        return out

    def values(self) -> list[Any]:
        """Every value, decoded."""
        return [v for _, v in self.items()]

    def __len__(self) -> int:
        return len(self.keys_raw())

    def clear(self) -> None:
        """Remove every element (arrays: zero every value)."""
        for k in self.keys_raw():
            try:
                self.delete_raw(k)
            except OSError as err:
                if err.errno != errno.ENOENT:
                    raise

    # ---- batches (BPF_MAP_*_BATCH: in order, stopping at the first failure) ------------------
    def update_batch(self, items: Any, flags: int = BPF_ANY) -> int:
        """Store ``(key, value)`` pairs (or a mapping) in order; returns how many.

        The first failure raises its MapError with ``count`` (pairs stored before it), as
        ``BPF_MAP_UPDATE_BATCH`` reports them.
        """
        pairs = items.items() if hasattr(items, "items") else items
        done = 0
        for key, value in pairs:
            try:
                self.update_raw(self._key(key), self._value(value), flags)
            except OSError as err:
                err.count = done
                raise
            done += 1
        return done

    def delete_batch(self, keys: Any) -> int:
        """Delete ``keys`` in order; returns how many (MapError with ``count`` on failure)."""
        done = 0
        for key in keys:
            try:
                self.delete_raw(self._key(key))
            except OSError as err:
                err.count = done
                raise
            done += 1
        return done

    def lookup_batch(self, keys: Any = None) -> list[tuple[Any, Any]]:
        """``(key, value)`` for ``keys`` that exist (every element for ``None``), decoded."""
        if keys is None:
            return self.items()
        out = []
        for key in keys:
            raw = self.lookup_raw(self._key(key))
            if raw is not None:
                out.append((key, self._decode_value(raw)))
        return out

    def freeze(self) -> None:
        """``BPF_MAP_FREEZE``: user-space writes fail with EPERM from now on."""
        self._buf.freeze()

    # ---- atomics on values -----------------------------------------------------------------
    def value_address(self, key: Any, cpu: int = 0) -> int:
        """The address of ``key``'s value (``cpu``'s copy), or KeyError. Stable while the
        element exists (for arrays: for the map's life)."""
        address = self.elem_lookup_quiet(self._key(key), cpu)
        if not address:
            raise KeyError(key)
        return address

    def elem_lookup_quiet(self, key: bytes, cpu: int = 0) -> int:
        """Like :meth:`elem_lookup` without marking the element used (LRU)."""
        return self.elem_lookup(key, cpu)

    def atomic_add(self, key: Any, delta: int, *, offset: int = 0, size: int = 8, cpu: int = 0):
        """Atomically add ``delta`` to the ``size``-byte integer at ``offset`` in ``key``'s
        value (what a program's ``lock xadd`` does); returns the old value."""
        from pybpf.memory import atomics

        if not 0 <= offset <= self.value_size - size:
            raise InputError(f"{offset}+{size} is outside a {self.value_size}-byte value")
        return atomics.rmw_at(self.value_address(key, cpu) + offset, size, "add", delta)

    # ---- pinning ---------------------------------------------------------------------------
    def pin(self, path: str | os.PathLike, state: StateDirectory | None = None) -> Path:
        """Pin the map at ``path`` (``/sys/fs/bpf/...`` or relative to the state directory's
        bpffs); returns the file. Other processes open it with ``open_pinned``."""
        if self._buf.path is None:
            raise NotSupportedError(
                "this map lives in anonymous memory and cannot be pinned: create it with "
                "backing='file' (the default when the state directory is usable)",
                feature="pin",
            )
        state = state or StateDirectory()
        target = state.prepare_pin(path)
        try:
            os.link(self._buf.path, target)
        except FileExistsError:
            raise fail(errno.EEXIST, f"{target} is already pinned", "pin", self.name) from None
        except FileNotFoundError:
            raise fail(
                errno.ENOENT, "the map's backing file was removed", "pin", self.name
            ) from None
        return target

    def unpin(self, path: str | os.PathLike, state: StateDirectory | None = None) -> None:
        """Remove the pin at ``path`` (the map itself lives on)."""
        try:
            (state or StateDirectory()).unpin(path)
        except FileNotFoundError:
            raise fail(errno.ENOENT, f"nothing pinned at {path}", "unpin", self.name) from None

    # ---- lifetime --------------------------------------------------------------------------
    def _alive(self, op: str) -> None:
        if self.closed:
            raise fail(errno.EBADF, "map is closed", op, self.name)

    def close(self) -> None:
        """Release this process's mapping (the data lives on while pinned). Idempotent."""
        if self.closed:
            return
        self.closed = True
        registry.unregister(self)
        self.lock = _ClosedLock(self.name)  # nothing may touch the unmapped lock word
        self._header.release()
        self._close_views()
        self._finalizer()

    def _close_views(self) -> None:
        """Drop family views of the buffer (before it is unmapped)."""

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return (
            f"<{type(self).__name__} {self.type.type_name} {self.name!r} id={self.id} "
            f"key={self.key_size} value={self.value_size} max={self.max_entries}{state}>"
        )
