"""Loader: an ObjectSpec made live on the portable backend: maps created, programs bound and built.

:func:`load_portable` takes libbpf's ``bpf_object__load`` steps on pybpf's own maps and
engines:

1. every map is created from its :class:`~pybpf.spec.MapSpec` (libbpf's fix-ups: global
   data maps named ``<object prefix>.<section>``, ring buffer sizes rounded up to a
   power-of-two number of pages, perf event arrays sized to the CPUs). Maps pinned by
   name (``LIBBPF_PIN_BY_NAME``, iproute2's ``PIN_GLOBAL_NS``) are reopened from
   ``<pin_root>/<name>`` in the state directory when a matching pin exists (a pin with a
   different definition fails with :class:`~pybpf.errors.MapError`, ``field`` set) and
   pinned there otherwise. New global data maps get their initial value and ``.rodata``
   / ``.kconfig`` are frozen; map-in-maps get their initial inner maps. Keys and values
   are decoded from BTF where the map has BTF types (:mod:`pybpf.objects.values`), and
   the special fields of a value's BTF type (a ``struct bpf_spin_lock``, also a global
   one in ``.bss``) go into its definition
   (:meth:`~pybpf.maps.MapDefinition.with_value_type`);
2. each entry program is linked with its subprograms (:func:`pybpf.spec.link`), checked
   for what the portable backend cannot run (CO-RE relocations, kernel symbols, helpers
   it does not provide, GPL-only helpers in a non-GPL program) and built by its engine
   with ``MAP_IDX``/``MAP_IDX_VALUE`` bound to the live maps and function addresses to
   :class:`~pybpf.objects.callbacks.Callback` tokens. Building load-checks it
   (:mod:`pybpf.runtime.loadcheck`). On the JIT, a program the verifier accepted is
   compiled without memory checks (map lookups inlined, frames zeroed to the verifier's
   stack depth); every other program (``verify=False``, types whose context is not
   rewritten, programs beyond the verifier, callbacks) keeps the checks compiled in.
   JIT code comes from the on-disk code cache when it holds it
   (:func:`pybpf.jit.cache.default_cache`; ``PYBPF_JIT_CACHE=0`` turns it off);
3. prog arrays get their initial programs.

Anything created is closed again when a step fails.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import os
from collections.abc import Iterable
from typing import Any

from pybpf.config import settings
from pybpf.errors import InputError, NotSupportedError, PybpfError, VerifierError
from pybpf.helpers import lookup
from pybpf.isa import AluOp, CallKind, Class, Instruction, Mode, Pseudo, Source
from pybpf.isa.opcodes import FRAME_POINTER
from pybpf.maps import Map, MapDefinition, create_map, open_pinned
from pybpf.maps.buffer import PAGE_SIZE
from pybpf.maptypes import MapType
from pybpf.memory.atomics import backend as atomics_backend
from pybpf.objects.callbacks import Callback, callback_helpers
from pybpf.objects.context import rewrite_context_accesses, runtime_context_for
from pybpf.objects.program import Program, tail_call_target
from pybpf.objects.values import BTFCodec
from pybpf.runtime import HelperRegistry
from pybpf.spec import LinkedProgram, MapSpec, ObjectSpec, Pinning, link
from pybpf.state import StateDirectory
from pybpf.vm import Interpreter

__all__ = ["load_portable", "map_definition", "internal_map_name", "gpl_compatible", "ENGINES"]

ENGINES = ("interpreter", "jit")
TAIL_CALL = 12
_NAME_LEN = 15  # BPF_OBJ_NAME_LEN - 1
_M32 = (1 << 32) - 1
_GPL_LICENSES = {
    "GPL",
    "GPL v2",
    "GPL and additional rights",
    "Dual BSD/GPL",
    "Dual MIT/GPL",
    "Dual MPL/GPL",
}
_KEYED = {MapType.PROG_ARRAY, MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS}
_NO_CODEC = {MapType.RINGBUF, MapType.USER_RINGBUF, MapType.PERF_EVENT_ARRAY}
_CALLBACK_ENTRY = (1, 2, 3, 4, 5, 10)
_TAIL_GROUPS = itertools.count(1)


def gpl_compatible(license: str) -> bool:
    """Linux's ``license_is_gpl_compatible``."""
    return license in _GPL_LICENSES


def internal_map_name(object_name: str, section: str) -> str:
    """libbpf's name for a global data map: ``"xdp_coun.rodata"`` for ``.rodata``."""
    obj = object_name.split(".", 1)[0]
    suffix = max(7, len(section))
    prefix = 0 if "." in section[1:] else max(0, min(_NAME_LEN - suffix, len(obj)))
    name = (obj[:prefix] + section)[:_NAME_LEN]
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name)


def _ringbuf_size(size: int) -> int:
    n = PAGE_SIZE
    while n < size:
        n *= 2
    return n


def map_definition(spec: MapSpec, object_name: str = "", btf: Any = None) -> MapDefinition:
    """The maps layer's definition for ``spec`` (see the module docstring's fix-ups); with
    the object's ``btf``, the special fields of the value type (a ``bpf_spin_lock``, ...:
    :meth:`~pybpf.maps.MapDefinition.with_value_type`)."""
    if spec.is_global_data:
        name = internal_map_name(object_name, spec.name)
    else:
        name = "".join(c if c.isalnum() or c in "_." else "_" for c in spec.name[:_NAME_LEN])
    key_size, value_size, max_entries = spec.key_size, spec.value_size, spec.max_entries
    if spec.type == MapType.PERF_EVENT_ARRAY:
        key_size = value_size = 4
        max_entries = max_entries or max(1, settings().ncpus)
    elif spec.type in _KEYED and value_size == 0:
        value_size = 4
    elif spec.type in (MapType.RINGBUF, MapType.USER_RINGBUF):
        key_size = value_size = 0
        max_entries = _ringbuf_size(max_entries)
    inner = map_definition(spec.inner, object_name, btf) if spec.inner is not None else None
    d = MapDefinition(
        type=spec.type,
        key_size=key_size,
        value_size=value_size,
        max_entries=max_entries,
        flags=spec.flags,
        name=name,
        inner=inner,
        map_extra=spec.map_extra,
    )
    if btf is not None and spec.value_type_id:
        d = d.with_value_type(btf, spec.value_type_id)
    return d


# ---- maps ---------------------------------------------------------------------------------
def _set_codecs(m: Map, spec: MapSpec, obj: ObjectSpec) -> None:
    btf = obj.btf
    if btf is None or spec.type in _NO_CODEC:
        return
    key = value = None
    try:
        if spec.key_type_id and btf.size_of(spec.key_type_id) == m.key_size:
            key = BTFCodec(btf, spec.key_type_id)
        if (
            spec.value_type_id
            and spec.type not in _KEYED
            and btf.size_of(spec.value_type_id) == m.value_size
        ):
            value = BTFCodec(btf, spec.value_type_id)
    except InputError:
        return
    if key is not None:
        m.key_codec = key
    if value is not None:
        m.value_codec = value


def _pin_path(spec: MapSpec, pin_root: str | os.PathLike[str] | None) -> str | None:
    if pin_root is None or spec.pinning not in (Pinning.BY_NAME, Pinning.GLOBAL_NS):
        return None
    return f"{os.fspath(pin_root).rstrip('/')}/{spec.name}"


def create_maps(
    obj: ObjectSpec,
    pin_root: str | os.PathLike[str] | None,
    state: StateDirectory | None,
) -> tuple[dict[str, Map], set[str]]:
    """Every map of ``obj`` (see the module docstring); returns the maps and the names of
    those reopened from a pin (left as they were)."""
    maps: dict[str, Map] = {}
    reused: set[str] = set()
    try:
        for name, spec in obj.maps.items():
            try:
                d = map_definition(spec, obj.name, obj.btf)
            except PybpfError as err:
                if err.section is None:
                    err.section = spec.section or None
                raise
            pin = _pin_path(spec, pin_root)
            try:
                if pin is None:
                    m = create_map(d, state=state)
                else:
                    m, was_pinned = _open_or_create(d, pin, state)
                    if was_pinned:
                        reused.add(name)
            except PybpfError as err:
                if err.section is None:
                    err.section = spec.section or None
                if getattr(err, "map_name", None) in (None, ""):
                    err.map_name = name
                raise
            maps[name] = m
            _set_codecs(m, spec, obj)
            if name in reused:
                continue
            if spec.is_global_data and spec.contents is not None:
                m.update_raw(bytes(m.key_size), spec.initial_value())
            if spec.frozen:
                m.freeze()
        for name, spec in obj.maps.items():
            if not spec.type.is_map_in_map or name in reused:
                continue
            for index, inner in spec.values:
                if inner not in maps:
                    raise InputError(
                        f"map {name!r} slot {index} names missing map {inner!r}",
                        section=spec.section,
                    )
                maps[name].update_raw(
                    index.to_bytes(4, "little"), maps[inner].id.to_bytes(4, "little")
                )
    except BaseException:
        for m in maps.values():
            m.close()
        raise
    return maps, reused


def _open_or_create(d: MapDefinition, pin: str, state: StateDirectory | None) -> tuple[Map, bool]:
    """libbpf's pin-by-name: ``(the pinned map, True)`` if a matching pin exists, else
    ``(a new map pinned there, False)``."""
    for _ in range(3):
        try:
            return open_pinned(pin, d, state=state), True
        except OSError as err:
            if err.errno != errno.ENOENT:
                raise
        try:
            return create_map(d, pin=pin, state=state), False
        except OSError as err:
            if err.errno != errno.EEXIST:
                raise  # another process pinned it meanwhile: open theirs
    return open_pinned(pin, d, state=state), True


# ---- programs -----------------------------------------------------------------------------
def _check(
    linked: LinkedProgram, section: str, engine: str, helpers: HelperRegistry, license: str
) -> None:
    where = {"program": linked.name, "section": section}
    if linked.core_relos:
        r = linked.core_relos[0]
        raise NotSupportedError(
            f"CO-RE relocation {r.kind.name} (type {r.type_id}, access {r.access}) needs "
            "target BTF: load this program with backend='kernel'",
            feature="core_relo",
            pc=r.insn_index,
            **where,
        )
    if linked.ksyms:
        pc, name = linked.ksyms[0]
        raise NotSupportedError(
            f"kernel symbol {name!r} exists only on the kernel backend",
            feature="ksym",
            pc=pc,
            **where,
        )
    gpl = gpl_compatible(license)
    pc = 0
    for insn in linked.instructions:
        if insn.is_call and insn.src == CallKind.HELPER:
            _check_helper(insn.imm, pc, engine, helpers, gpl, where)
        pc += insn.slots


def _check_helper(
    helper_id: int, pc: int, engine: str, helpers: HelperRegistry, gpl: bool, where: dict
) -> None:
    row = lookup(helper_id)
    label = f"bpf_{row.name}#{helper_id}" if row is not None and row.id else f"helper #{helper_id}"
    if helper_id == TAIL_CALL:
        pass  # every engine runs bpf_tail_call (tail_call_target)
    elif helper_id not in helpers:
        raise NotSupportedError(
            f"{label} is not available on the portable backend",
            feature=row.name if row is not None and row.id else f"helper {helper_id}",
            pc=pc,
            **where,
        )
    if row is not None and row.gpl_only and not gpl:
        raise VerifierError(
            f"cannot call GPL-restricted function {label} from non-GPL compatible program",
            pc=pc,
            **where,
        )


def _uses_legacy_packet(insns: Iterable[Instruction]) -> bool:
    return any(i.cls == Class.LD and i.mode in (Mode.ABS, Mode.IND) for i in insns)


def _beyond_verifier(result: Any) -> bool:
    """The verifier stopped only at constructs it does not model (kfuncs, ...): every
    diagnostic carries the ``unsupported`` flag. Such a program loads as before context
    rewrites (r1 = the packet buffer) rather than fail; a proven violation still refuses."""
    return result.unsupported


def _terminates(verified: Any) -> bool:
    """Whether the verifier proved every loop of the program bounded (``terminates`` on its
    result; results without the field prove nothing)."""
    return bool(getattr(verified, "terminates", False))


def _stack_bound(insns: tuple[Instruction, ...], verified: Any) -> int | None:
    """How many bytes below r10 a verified program's frames must start zeroed: the
    verifier's stack depth (its loads and stores), or deeper where the program passes
    ``r10 - N`` on (``rX = r10; rX += -N``: a buffer a helper may fill in part and another
    read whole, as the interpreter's zeroed frames give). ``None``: not verified."""
    if verified is None:
        return None
    depth = int(verified.stack_depth)
    for first, second in zip(insns, insns[1:], strict=False):
        if (
            first.cls == Class.ALU64
            and first.alu_op == AluOp.MOV
            and first.source == Source.X
            and first.src == FRAME_POINTER
            and second.cls == Class.ALU64
            and second.alu_op == AluOp.ADD
            and second.source == Source.K
            and second.dst == first.dst
            and second.imm < 0
        ):
            depth = max(depth, -second.imm)
    return depth


class _Builder:
    """Builds the engines of one object's programs and callbacks."""

    def __init__(
        self, obj: ObjectSpec, maps: dict[str, Map], engine: str, verify: bool = True
    ) -> None:
        self.obj = obj
        self.verify = verify
        self.maps = maps
        self.engine = engine
        self.helpers = callback_helpers()
        self.callbacks: dict[str, Callback] = {}
        self.tail_group = next(_TAIL_GROUPS)  # JIT programs of one object tail-call natively
        # native tail calls stay within the object (its tail_group): only an object with a
        # prog array can make them, so only its programs need a native tail entry
        self.tail_targets = any(m.type == MapType.PROG_ARRAY for m in maps.values())
        self.code_cache: Any = False
        if engine == "jit":  # compiled code on disk, unless PYBPF_JIT_CACHE=0
            from pybpf.jit.cache import default_cache

            self.code_cache = default_cache() or False

    def resolver(self, linked: LinkedProgram):
        """The ``lddw`` resolver of one linked program."""
        starts = {pc: name for name, pc in linked.functions}

        def resolve(insn: Instruction, pc: int) -> int:
            if insn.src in (Pseudo.MAP_IDX, Pseudo.MAP_IDX_VALUE):
                m = self.maps[linked.maps[insn.imm]]
                if insn.src == Pseudo.MAP_IDX:
                    return m.handle
                offset = insn.imm_hi & _M32
                address = m.elem_lookup_quiet(bytes(m.key_size))
                if not address or offset >= m.value_size:
                    raise InputError(
                        f"offset {offset} is outside the value of map {m.name!r}",
                        program=linked.name,
                        pc=pc,
                    )
                return address + offset
            if insn.src == Pseudo.FUNC:
                name = starts.get(pc + 1 + insn.imm)
                if name is None:
                    raise InputError(
                        "function address names no function", program=linked.name, pc=pc
                    )
                return self.callback(name).token
            raise NotSupportedError(f"lddw with pseudo source {insn.src}", feature="lddw", pc=pc)

        return resolve

    def callback(self, name: str) -> Callback:
        """The callback for function ``name`` (built once per object)."""
        found = self.callbacks.get(name)
        if found is None:
            linked = link(self.obj, name)
            found = self.callbacks[name] = Callback(name, None)
            if self.engine == "jit":  # JIT programs' callbacks are JIT code too
                from pybpf.jit import JitProgram

                found.engine = JitProgram(
                    linked.instructions,
                    helpers=self.helpers,
                    entry_registers=_CALLBACK_ENTRY,
                    debug_checks=True,
                    lddw_resolver=self.resolver(linked),
                    tail_call_targets=tail_call_target,
                    tail_group=self.tail_group,
                    cache=self.code_cache,
                )
            else:
                found.engine = self.interpreter(linked, _CALLBACK_ENTRY)
        return found

    def interpreter(self, linked: LinkedProgram, entry: tuple[int, ...]) -> Interpreter:
        """An interpreter for ``linked`` (tail calls and callbacks bound)."""
        return Interpreter(
            linked.instructions,
            helpers=self.helpers,
            entry_registers=entry,
            lddw_resolver=self.resolver(linked),
            legacy_packet=_uses_legacy_packet(linked.instructions),
            tail_call_targets=tail_call_target,
        )

    def program(self, name: str, engine: str) -> Program:
        """Link, check and build program ``name``."""
        spec = self.obj.program(name)
        linked = link(self.obj, name)
        _check(linked, spec.section, engine, self.helpers, linked.license or self.obj.license)
        entry = (1, 10) if linked.type is not None else (1, 2, 10)
        source = linked
        verified: Any = None  # the verifier's result when it accepted the program
        runtime = runtime_context_for(linked.type) if self.verify else None
        if runtime is not None:
            from pybpf.verifier import verify_object

            result = verify_object(self.obj, name, linked.type)
            if not result.accepted and _beyond_verifier(result):
                runtime = None  # today's behaviour: r1 = the packet buffer
            else:
                result.raise_for_errors()
                insns = rewrite_context_accesses(
                    linked.instructions, result.ctx_accesses, runtime.runtime, program=name
                )
                linked = dataclasses.replace(linked, instructions=insns)
                verified = result
        try:
            if engine == "interpreter":
                runner: Any = self.interpreter(linked, entry)
            else:
                from pybpf.jit import JitProgram

                runner = JitProgram(
                    linked.instructions,
                    helpers=self.helpers,
                    entry_registers=entry,
                    # verified: raw accesses, map lookups inlined, frames zeroed to the
                    # verifier's stack depth; unverified: every access checked
                    debug_checks=verified is None,
                    # the verifier runs without its termination check here: loops it
                    # accepted still charge the budget at their heads, so none runs forever
                    loop_budget=verified is not None and not _terminates(verified),
                    stack_depth=_stack_bound(linked.instructions, verified),
                    lddw_resolver=self.resolver(linked),
                    legacy_packet=_uses_legacy_packet(linked.instructions),
                    tail_call_targets=tail_call_target,
                    tail_group=self.tail_group,
                    tail_target=self.tail_targets,
                    cache=self.code_cache,
                )
        except PybpfError as err:
            if err.program is None:
                err.program = name
            if err.section is None:
                err.section = spec.section
            raise
        return Program(
            spec,
            linked,
            engine,
            runner,
            [self.maps[m] for m in linked.maps],
            reachable=list(self.maps.values()),
            interpreter=lambda: self.interpreter(linked, entry),
            license=linked.license or self.obj.license,
            runtime_context=runtime,
            source=source,
            verified=verified is not None,
        )

    def close(self) -> None:
        """Free the callbacks' engines."""
        for cb in self.callbacks.values():
            if cb.engine is not None:
                cb.close()
        self.callbacks.clear()


def _select(obj: ObjectSpec, programs: Iterable[str] | None) -> list[str]:
    if programs is not None:
        names = list(programs)
        for name in names:
            obj.program(name)  # InputError when missing
        return names
    if not obj.entry_programs and len(obj.programs) == 1:
        return list(obj.programs)  # libbpf: a lone .text function is a program
    return [n for n, p in obj.entry_programs.items() if p.autoload]


def load_portable(
    obj: ObjectSpec,
    *,
    engine: str = "interpreter",
    programs: Iterable[str] | None = None,
    pin_root: str | os.PathLike[str] | None = "/sys/fs/bpf",
    state: StateDirectory | None = None,
    verify: bool = True,
) -> tuple[dict[str, Program], dict[str, Map], list[Callback]]:
    """Load ``obj`` on the portable backend (see the module docstring).

    Returns the programs and maps by name, and the callbacks the programs use (to close
    with them). Raises :class:`~pybpf.errors.InputError` (bad spec or argument),
    :class:`~pybpf.errors.NotSupportedError` (what the portable backend cannot do, named
    in ``feature``), :class:`~pybpf.errors.VerifierError` (GPL-only helpers; with
    ``verify``, programs whose context type is rewritten to the runtime's layout
    (:mod:`pybpf.objects.context`: ``xdp``) are verified first and a rejection raises),
    :class:`~pybpf.errors.MapError` (map creation, pins).
    """
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    names = _select(obj, programs)
    maps, reused = create_maps(obj, pin_root, state)
    if maps:
        # Choose (and compile, once per process) the atomics backend now, so that the first
        # test_run's duration is the program's time, not the native code's compilation.
        atomics_backend()
    builder = _Builder(obj, maps, engine, verify)
    loaded: dict[str, Program] = {}
    try:
        for name in names:
            loaded[name] = builder.program(name, engine)
        for name, spec in obj.maps.items():
            if spec.type != MapType.PROG_ARRAY or name in reused:
                continue
            for index, prog_name in spec.values:
                prog = loaded.get(prog_name)
                if prog is not None:
                    maps[name].update_raw(
                        index.to_bytes(4, "little"), prog.id.to_bytes(4, "little")
                    )
    except BaseException:
        for prog in loaded.values():
            prog.close()
        builder.close()
        for m in maps.values():
            m.close()
        raise
    return loaded, maps, list(builder.callbacks.values())
