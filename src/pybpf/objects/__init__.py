"""objects: eBPF object files for loader programs: ``Object.open`` and, later, load/attach."""

from pybpf.objects.object import Object

__all__ = ["Object"]
