"""domains: the verifier's abstract domains (intervals, zone, word arithmetic, types, stack).

The product of them is :class:`~pybpf.verifier.domains.state.State`.
"""
