"""spec: plain, editable data for an object file: ObjectSpec, ProgramSpec, MapSpec, and linking.

Specs are what :mod:`pybpf.elf` reads from bytes and what the loader, verifier and kernel
backend consume. They hold no host state: the same bytes give equal specs everywhere.
"""

from pybpf.spec.link import LinkedProgram, link
from pybpf.spec.map import MapKind, MapSpec, Pinning
from pybpf.spec.object import ExternKind, ExternSpec, ObjectSpec, VariableSpec
from pybpf.spec.program import ProgramSpec, Reference, RefKind

__all__ = [
    "ExternKind",
    "ExternSpec",
    "LinkedProgram",
    "MapKind",
    "MapSpec",
    "ObjectSpec",
    "Pinning",
    "ProgramSpec",
    "RefKind",
    "Reference",
    "VariableSpec",
    "link",
]
