"""objects: eBPF object files for loader programs: ``Object.open`` and, later, load/attach."""

from pybpf.objects.describe import describe, listing, read_btf
from pybpf.objects.object import Object

__all__ = ["Object", "describe", "listing", "read_btf"]
