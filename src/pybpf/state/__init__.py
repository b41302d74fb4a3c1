"""state: the state directory, where pinned objects live (the portable backend's bpffs).

:class:`StateDirectory` maps Linux pin paths (``/sys/fs/bpf/x``) to files inside the
per-user directory (``$PYBPF_STATE`` overrides it), keeps it owner-only and refuses paths
that would leave it; :func:`state_directory` is the one configured now; :func:`allocate_id`
gives map and program ids unique in it across processes.
"""

from pybpf.state.directory import BPFFS_ROOT, StateDirectory, state_directory
from pybpf.state.ids import allocate_id, last_id

__all__ = ["BPFFS_ROOT", "StateDirectory", "allocate_id", "last_id", "state_directory"]
