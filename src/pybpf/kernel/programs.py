"""programs: linked programs relocated against live maps and the running kernel, then loaded.

:func:`relocate` finishes what :func:`pybpf.spec.link` leaves open, in libbpf's order:
CO-RE relocations against the kernel's BTF, then ``lddw`` map references (``MAP_IDX`` to
``BPF_PSEUDO_MAP_FD`` and ``MAP_IDX_VALUE`` to ``BPF_PSEUDO_MAP_VALUE``, with the map's
fd), then kernel symbols. :func:`load_program` gives the kernel the program type and
expected attach type from the section, the attach BTF id of tracing and LSM programs,
license, kernel version, flags and the BTF func/line info; a refusal is a
:class:`~pybpf.errors.SyscallError` that carries the verifier log.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pybpf.btf import Spec as BTFSpec
from pybpf.errors import InputError, NotSupportedError, SyscallError
from pybpf.isa import Instruction, Pseudo, encode
from pybpf.kernel.btf import ObjectBTF
from pybpf.kernel.core import apply_core_relos
from pybpf.kernel.externs import resolve_ksyms
from pybpf.kernel.maps import KernelMap, object_name
from pybpf.kernel.vmlinux import attach_btf_id, kernel_version_code
from pybpf.progtypes import AttachType, ProgType
from pybpf.spec import LinkedProgram, ObjectSpec
from pybpf.syscall import (
    Fd,
    ProgInfo,
    TestRunResult,
    obj_pin,
    prog_info,
    prog_load,
    prog_test_run,
)

if TYPE_CHECKING:
    from pybpf.kernel.link import KernelLink

__all__ = ["KernelProgram", "relocate", "load_program", "needs_attach_btf"]

_ATTACH_BTF_TYPES = frozenset({ProgType.TRACING, ProgType.LSM, ProgType.EXT})


def needs_attach_btf(prog_type: ProgType | None) -> bool:
    """True for the program types the kernel loads against a BTF id (fentry, lsm, ...)."""
    return prog_type in _ATTACH_BTF_TYPES


def relocate(
    prog: LinkedProgram,
    obj: ObjectSpec,
    maps: Mapping[str, KernelMap],
    kernel_btf: Callable[[], BTFSpec],
) -> list[Instruction]:
    """The instructions of ``prog`` as the kernel is given them (see the module docstring).

    ``kernel_btf`` is called only when CO-RE relocations or kernel symbols need it; a
    program with CO-RE relocations and no object BTF is a :class:`NotSupportedError`.
    """
    insns = list(prog.instructions)
    if prog.core_relos:
        if obj.btf is None:
            raise NotSupportedError(
                "CO-RE relocations without the object's BTF", feature="CO-RE", program=prog.name
            )
        try:
            target = kernel_btf()
        except NotSupportedError as exc:
            first = prog.core_relos[0]
            raise NotSupportedError(
                f"CO-RE relocation {first.kind.name} {first.access!r} needs the kernel's BTF: "
                f"{exc.message}",
                feature="CO-RE",
                program=prog.name,
                pc=first.insn_index,
            ) from None
        insns = apply_core_relos(insns, prog.core_relos, obj.btf, target, program=prog.name)
    pc = 0
    for i, insn in enumerate(insns):
        if insn.is_lddw and insn.src in (Pseudo.MAP_IDX, Pseudo.MAP_IDX_VALUE):
            if not 0 <= insn.imm < len(prog.maps):
                raise InputError(f"map index {insn.imm} out of range", program=prog.name, pc=pc)
            kmap = maps[prog.maps[insn.imm]]
            fd = kmap.fd.fileno()
            if insn.src == Pseudo.MAP_IDX:
                insns[i] = dataclasses.replace(insn, src=int(Pseudo.MAP_FD), imm=fd, imm_hi=0)
            else:
                insns[i] = dataclasses.replace(insn, src=int(Pseudo.MAP_VALUE), imm=fd)
        pc += insn.slots
    return resolve_ksyms(insns, prog, obj, kernel_btf)


def _slots(insns: list[Instruction]) -> list[bool]:
    out: list[bool] = []
    for insn in insns:
        out.append(True)
        if insn.slots == 2:
            out.append(False)
    return out


@dataclasses.dataclass(eq=False)
class KernelProgram:
    """A program the kernel accepted: its fd, the verifier log and what was loaded.

    ``instructions`` are the relocated instructions given to the kernel; ``linked`` the
    program before relocation.
    """

    name: str
    kernel_name: str
    section: str
    type: ProgType
    attach_type: AttachType | None
    fd: Fd
    log: str
    linked: LinkedProgram
    instructions: tuple[Instruction, ...]
    attach_btf_id: int = 0
    attach_to: str = ""

    def test_run(
        self,
        data: bytes = b"",
        *,
        ctx: bytes | None = None,
        repeat: int = 1,
        data_size_out: int | None = None,
        ctx_size_out: int | None = None,
        flags: int = 0,
    ) -> TestRunResult:
        """``BPF_PROG_TEST_RUN`` on packet ``data`` (and context ``ctx``)."""
        return prog_test_run(
            self.fd,
            data,
            ctx_in=ctx,
            repeat=repeat,
            data_size_out=data_size_out,
            ctx_size_out=ctx_size_out,
            flags=flags,
        )

    def attach(self, target: Any = None, **options: Any) -> KernelLink:
        """Attach the program where its type says (:func:`pybpf.kernel.link.attach`)."""
        from pybpf.kernel.link import attach

        return attach(self, target, **options)

    def info(self) -> ProgInfo:
        """The kernel's description of the program (``bpftool prog show``'s data)."""
        return prog_info(self.fd)

    @property
    def id(self) -> int:
        """The kernel's id of the program."""
        return self.info().id

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the program at ``path`` in a bpffs."""
        obj_pin(self.fd, path)

    def close(self) -> None:
        """Release the program's fd."""
        self.fd.close()

    def __enter__(self) -> KernelProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_program(
    prog: LinkedProgram,
    obj: ObjectSpec,
    maps: Mapping[str, KernelMap],
    btf: ObjectBTF | None,
    kernel_btf: Callable[[], BTFSpec],
    *,
    section: str = "",
    attach_to: str = "",
    log_level: int = 0,
) -> KernelProgram:
    """Relocate and load ``prog`` (linked from ``obj``) into the kernel.

    ``section`` and ``attach_to`` are the entry program's (for errors and the attach BTF
    id). Raises :class:`NotSupportedError` for programs without a Linux program type and
    :class:`~pybpf.errors.SyscallError` (``log``: the verifier's) when the kernel refuses.
    """
    if prog.type is None:
        raise NotSupportedError(
            f"section {section!r} gives no program type (set it with set_program_type)",
            feature="program type",
            program=prog.name,
            section=section,
        )
    if not prog.type.is_linux:
        raise NotSupportedError(
            f"{prog.type.name} programs exist only on eBPF for Windows",
            feature="program type",
            program=prog.name,
            section=section,
        )
    insns = relocate(prog, obj, maps, kernel_btf)
    btf_id = 0
    if needs_attach_btf(prog.type):
        try:
            btf_id = attach_btf_id(prog.type, prog.attach_type, attach_to, kernel_btf())
        except NotSupportedError as exc:
            exc.program, exc.section = prog.name, section
            raise
    func_info = line_info = b""
    if btf is not None and btf.loaded:
        func_info = btf.func_info(prog)
        if func_info:
            line_info = btf.line_info(prog, _slots(insns))
    kernel_name = object_name(prog.name)
    try:
        fd, log = prog_load(
            prog.type,
            encode(insns),
            prog.license or obj.license,
            log_level=log_level,
            name=kernel_name,
            expected_attach_type=int(prog.attach_type) if prog.attach_type is not None else 0,
            prog_flags=prog.flags,
            kern_version=obj.kernel_version or kernel_version_code(),
            prog_btf_fd=btf.fd if func_info and btf is not None else None,
            func_info=func_info,
            line_info=line_info,
            attach_btf_id=btf_id,
        )
    except SyscallError as err:
        err.program, err.section = prog.name, section
        raise
    return KernelProgram(
        prog.name,
        kernel_name,
        section,
        prog.type,
        prog.attach_type,
        fd,
        log,
        prog,
        tuple(insns),
        btf_id,
        attach_to,
    )
