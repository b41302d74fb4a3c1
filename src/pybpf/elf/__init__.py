"""elf: eBPF object files (ELF) read into plain :class:`~pybpf.spec.ObjectSpec` data.

``read_object(data)`` parses sections, symbols and relocations (``container``), legacy and
BTF-defined maps, global data and externs, splits and decodes the code into programs and
binds their relocations; eBPF-for-Windows objects are recognised and translated.
"""

from pybpf.elf.container import ElfFile
from pybpf.elf.reader import read_object

__all__ = ["ElfFile", "read_object"]
