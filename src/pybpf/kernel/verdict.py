"""verdict: the kernel's verdict on one program of a spec, its reason read from the verifier log.

:func:`kernel_verdict` loads one program (with every map of its object) into the running
kernel and says whether the kernel accepted it. A refusal is classified by
:func:`classify`: ``safety`` when the verifier proved the program unsafe (invalid memory
access, uninitialised read ``!read_ok``, unbounded loop or back-edge, pointer leak, bad
helper argument type, unreleased reference) and ``other`` for everything else (unknown
helper for the program type, too many instructions or states, BTF, attach or CO-RE errors,
map creation, unsupported program or map types, return-value ranges). :func:`log_message`
is the log's last meaningful lines, the kernel's own wording of the reason.
"""

from __future__ import annotations

import errno as _errno
import re
from dataclasses import dataclass

from pybpf.errors import InputError, NotSupportedError, PybpfError, SyscallError
from pybpf.isa import Class
from pybpf.progtypes import AttachType, ProgType
from pybpf.progtypes.contexts import rules_for
from pybpf.spec import ObjectSpec

__all__ = ["KernelVerdict", "SAFETY", "OTHER", "classify", "kernel_verdict", "log_message"]

SAFETY = "safety"
OTHER = "other"

# Log lines that are not the reason: statistics, the instruction trace, source comments.
_NOISE = re.compile(
    r"^(processed \d+ insns|verification time|stack depth|mark_precise|"
    r"-- END PROG LOAD LOG --|func#\d+ @\d+|last_idx|parent |regs=|from \d+ to \d+|"
    r"\d+: \(|\d+: R\d|; |Live regs before insn|Validating |Func#|\d+:\s*$|"
    r"[0-9a-f]+: \([0-9a-f]{2}\))"
)

# (category, reason, pattern over the message), first match wins.
_RULES: list[tuple[str, str, re.Pattern[str]]] = [
    (
        OTHER,
        "complexity",
        re.compile(
            r"too large|too complex|complexity limit|too many states|BPF program is too large|"
            r"jumps is too complex|combined stack size|too many instructions|insn_cnt|"
            r"call stack of \d+ frames|the call stack of|stack depth \d+ exceeds|E2BIG"
        ),
    ),
    (OTHER, "core", re.compile(r"unknown#195896080|CO-RE|bad relo|core_relo")),
    (
        OTHER,
        "helper_unavailable",
        re.compile(
            r"unknown func|program of this type cannot use helper|cannot call GPL-restricted|"
            r"helper call is not allowed|not supported for|calling kernel function|kfunc|"
            r"cannot be called from|invalid func|helper access to the packet is not allowed|"
            r"is not allowed in this program type|unknown opcode"
        ),
    ),
    (OTHER, "btf", re.compile(r"\bBTF\b|btf|func_info|line_info|Invalid type_id")),
    (OTHER, "attach", re.compile(r"attach|Tracing programs must provide|expected_attach_type")),
    (OTHER, "return_value", re.compile(r"At program exit|should have been in")),
    (OTHER, "unreachable_code", re.compile(r"unreachable insn")),
    (
        SAFETY,
        "unbounded_loop",
        re.compile(r"back-edge|infinite loop|loop detected|jump out of range|loop is not bounded"),
    ),
    (
        SAFETY,
        "uninitialised_read",
        re.compile(
            r"!read_ok|invalid read from stack|invalid indirect read|uninit|"
            r"invalid size of register fill|read from unset stack"
        ),
    ),
    (
        SAFETY,
        "pointer_misuse",
        re.compile(
            r"leaks addr|leak|pointer comparison prohibited|pointer arithmetic.*prohibited|"
            r"partial copy of pointer|Unreleased reference|reference has not been acquired|"
            r"ptr_ to|R\d+ bitwise operator|arithmetic on ptr|math between|"
            r"pointer \S+ pointer prohibited|pointer arithmetic"
        ),
    ),
    (
        SAFETY,
        "helper_argument",
        re.compile(
            r"type=\S+ expected=|expected=|arg#?\d|Possibly NULL pointer passed|"
            r"invalid zero-sized read|R\d+ min value is negative, either use unsigned|"
            r"unacceptable|must be a known constant|invalid map_ptr|cannot pass map_type|"
            r"map_ptr|helper access to|Caller passes invalid args|expected prog array map"
        ),
    ),
    (
        SAFETY,
        "memory",
        re.compile(
            r"invalid mem access|invalid access|invalid stack|invalid write|invalid read|"
            r"invalid bpf_context|out of bounds|outside of|min value is|max value is|"
            r"cannot write into|dereference of modified|only read from|"
            r"invalid variable-offset|misaligned|R\d+ offset is outside|"
            r"value is outside|invalid unbounded|unbounded memory access|"
            r"doesn't support|R\d+ is invalid|invalid size|access beyond"
        ),
    ),
]


def log_message(log: str, lines: int = 1) -> str:
    """The last ``lines`` meaningful lines of a verifier log (statistics, the instruction
    trace and source comments dropped), joined with ``" | "``; ``""`` when none."""
    text = re.sub(r"processed \d+ insns.*", "", log)
    kept = []
    for line in text.splitlines():
        line = line.strip()
        if line and not _NOISE.match(line):
            kept.append(line)
    return " | ".join(kept[-lines:])


_VALIDATING = re.compile(r"^Validating \S+\(\) func#\d+", re.MULTILINE)
_ARG_NULL = re.compile(r"invalid mem access '(?:rdonly_)?mem_or_null'")
_CTX_ACCESS = re.compile(r"invalid bpf_context access off=(-?\d+) size=(\d+)")


_INSN_LINE = re.compile(r"^\d+: \(([0-9a-f]{2})\)", re.MULTILINE)
_STORE_CLASSES = (int(Class.ST), int(Class.STX))


def last_store(log: str) -> bool | None:
    """Whether the log's last traced instruction is a store (``None``: no instruction)."""
    found = _INSN_LINE.findall(log)
    if not found:
        return None
    return (int(found[-1], 16) & 0x07) in _STORE_CLASSES


def _context_field(message: str, prog_type: ProgType | None, store: bool | None) -> bool:
    """A refused context access within one field of the type's context struct, that is a
    read or a write of a field pybpf's layout makes writable: the field exists, but this
    program type may not use it that way (Linux's per-type ``is_valid_access`` rules, a
    capability of the type like a helper's). A write to a read-only field stays unsafe."""
    found = _CTX_ACCESS.search(message)
    if found is None or prog_type is None:
        return False
    rules = rules_for(prog_type)
    if rules is None or not rules.context.fields:
        return False
    lo = int(found.group(1))
    hi = lo + int(found.group(2))
    for f in rules.context.fields:
        if f.offset <= lo and hi <= f.end:
            return not store or f.write
    return False


def classify(message: str, prog_type: ProgType | None = None, log: str = "") -> tuple[str, str]:
    """``(category, reason)`` of a kernel refusal message: category :data:`SAFETY` or
    :data:`OTHER`; an unknown wording is ``(OTHER, "unclassified")``. With ``prog_type``,
    a refused context access inside one field of its context is ``(OTHER,
    "context_field")`` (unless ``log``'s last instruction is a store to a read-only field);
    a possibly-NULL argument dereferenced in a global function, which Linux verifies alone
    (``Validating f() func#N``) from its BTF prototype, is ``(OTHER, "global_function")``."""
    if _context_field(message, prog_type, last_store(log)):
        return OTHER, "context_field"
    if _ARG_NULL.search(message) and _VALIDATING.search(log):
        return OTHER, "global_function"
    for category, reason, pattern in _RULES:
        if pattern.search(message):
            return category, reason
    return OTHER, "unclassified"


@dataclass(frozen=True)
class KernelVerdict:
    """What the kernel said about one program.

    ``category`` is ``"accept"``, :data:`SAFETY` or :data:`OTHER`; ``reason`` the refusal's
    class (``memory``, ``uninitialised_read``, ``unbounded_loop``, ``pointer_misuse``,
    ``helper_argument``, ``complexity``, ``helper_unavailable``, ``btf``, ``attach``,
    ``core``, ``map``, ``load``, ``program_type``, ``return_value``, ``context_field``,
    ``global_function``, ``unreachable_code``, ``unclassified``); ``message`` the
    kernel's reason (the log's last meaningful line, or the error), ``log`` the whole log.
    """

    accepted: bool
    category: str
    reason: str = ""
    message: str = ""
    errno: int | None = None
    log: str = ""

    def to_json(self) -> dict:
        """JSON-ready fields (the log left out)."""
        return {
            "verdict": "accept" if self.accepted else "reject",
            "category": self.category,
            "reason": self.reason,
            "message": self.message,
            "errno": _errno.errorcode.get(self.errno, self.errno) if self.errno else None,
        }


def _from_error(err: PybpfError, prog_type: ProgType | None = None) -> KernelVerdict:
    if isinstance(err, SyscallError):
        if err.command == "BPF_PROG_LOAD":
            message = log_message(err.log)
            if message:
                category, reason = classify(message, prog_type, err.log)
            else:
                category, reason = OTHER, "load"
            if err.errno == _errno.E2BIG:
                category, reason = OTHER, "complexity"
            if not message:
                message = err.message
            return KernelVerdict(False, category, reason, message, err.errno, err.log)
        reason = {"BPF_MAP_CREATE": "map", "BPF_BTF_LOAD": "btf"}.get(err.command, "load")
        return KernelVerdict(False, OTHER, reason, str(err), err.errno, err.log)
    if isinstance(err, NotSupportedError):
        feature = (err.feature or "").lower()
        reason = "core" if "co-re" in feature else "btf" if "btf" in feature else "load"
        if "attach" in feature:
            reason = "attach"
        return KernelVerdict(False, OTHER, reason, str(err))
    return KernelVerdict(False, OTHER, "load", f"{type(err).__name__}: {err}")


def kernel_verdict(
    spec: ObjectSpec,
    name: str,
    prog_type: ProgType | None = None,
    attach_type: AttachType | None = None,
) -> KernelVerdict:
    """Load program ``name`` of ``spec`` (as ``prog_type`` when given) into the running
    kernel, with its object's maps, and release it again: the kernel's verdict.

    Errors before the verifier ran (the object's maps, BTF, CO-RE, no program type) are
    ``other`` refusals; only a missing ``bpf()`` is raised (:class:`NotSupportedError`
    from :func:`pybpf.syscall.bpf` with feature ``bpf``).
    """
    from pybpf.kernel.object import KernelObject

    if prog_type is not None:
        try:
            current = spec.program(name)
        except InputError as err:
            return _from_error(err)
        if current.type != prog_type or (attach_type and current.attach_type != attach_type):
            # A section's attach type belongs to its own program type: the new type gets
            # ``attach_type`` (None: the kernel's default for the type).
            spec = spec.copy()
            spec.set_program_type(name, prog_type)
            spec.program(name).attach_type = attach_type
    try:
        obj = KernelObject.load(spec, programs=[name])
    except NotSupportedError as err:
        if err.feature == "bpf":
            raise
        return _from_error(err, prog_type)
    except PybpfError as err:
        return _from_error(err, prog_type or spec.programs[name].type)
    except RecursionError as err:  # pragma: no cover - defensive: hostile objects
        return KernelVerdict(False, OTHER, "load", f"RecursionError: {err}")
    obj.close()
    return KernelVerdict(True, "accept")
