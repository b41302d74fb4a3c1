"""progtypes: the ONE table of program types (ids, names) and the section prefixes that give them.

``match_section("kprobe/sys_execve")`` says which program type and attach type a section
implies, under libbpf 1.x's names, the older prefix rules, or eBPF for Windows';
``ProgType.from_name("sched_cls")`` reads bpftool's names. Context layouts, return ranges
and allowed helpers join these rows with the verifier.
"""

from pybpf.progtypes.ids import WINDOWS_BASE, AttachType, ProgType
from pybpf.progtypes.sections import (
    SECTION_RULES,
    Loader,
    SectionMatch,
    SectionRule,
    match_section,
    prevail_program_type,
)

__all__ = [
    "WINDOWS_BASE",
    "AttachType",
    "ProgType",
    "SECTION_RULES",
    "Loader",
    "SectionMatch",
    "SectionRule",
    "match_section",
    "prevail_program_type",
]
