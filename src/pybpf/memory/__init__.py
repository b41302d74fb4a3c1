"""memory: native regions, the address space that checks every access, and atomics.

Everything an eBPF program touches is native memory and its pointers are real 64-bit
addresses (design.md, "Memory model"). :class:`Region` is one buffer, :class:`AddressSpace`
the live set one execution may touch (and the bounds/permission check), and the functions
of :mod:`pybpf.memory.atomics` the atomic primitives.
"""

from pybpf.memory.atomics import atomic_rmw, cmpxchg, load_acquire, store_release
from pybpf.memory.region import Region
from pybpf.memory.space import AddressSpace

__all__ = [
    "AddressSpace",
    "Region",
    "atomic_rmw",
    "cmpxchg",
    "load_acquire",
    "store_release",
]
