"""kernel: the Linux kernel backend: ObjectSpecs loaded into the kernel through pybpf's own bpf().

``KernelObject.load(spec)`` does what libbpf's ``bpf_object__load`` does with an opened
object (BTF, maps, relocations, programs, initial values) using :mod:`pybpf.syscall`, no
libbpf. Importing this package works everywhere; loading needs Linux.

>>> from pybpf.objects import Object
>>> from pybpf.kernel import KernelObject
>>> with KernelObject.load(Object.open("xdp_counter.o").spec) as obj:     # doctest: +SKIP
...     obj.program("xdp_count").test_run(packet).retval
"""

from pybpf.kernel.btf import ObjectBTF, loadable_spec
from pybpf.kernel.core import apply_core_relos, calc_relo
from pybpf.kernel.maps import KernelMap, create_map, internal_map_name, kernel_map_spec
from pybpf.kernel.object import KernelObject
from pybpf.kernel.programs import KernelProgram, load_program, relocate
from pybpf.kernel.vmlinux import kernel_btf

__all__ = [
    "KernelMap",
    "KernelObject",
    "KernelProgram",
    "ObjectBTF",
    "apply_core_relos",
    "calc_relo",
    "create_map",
    "internal_map_name",
    "kernel_btf",
    "kernel_map_spec",
    "load_program",
    "loadable_spec",
    "relocate",
]
