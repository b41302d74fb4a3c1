"""helpers: the ONE table of Linux helper prototypes, by id and by name.

``helper(1)`` and ``helper("map_lookup_elem")`` return the same :class:`HelperPrototype`
(id, name, return and argument types in Linux's vocabulary, ``gpl_only``, ...). Helper
*implementations* live in :mod:`pybpf.runtime`, bound to this table by id.
"""

from pybpf.helpers.ids import HELPER_IDS, HELPER_NAMES, MAX_HELPER_ID
from pybpf.helpers.table import (
    HELPERS,
    HelperPrototype,
    helper,
    helper_by_id,
    helper_by_name,
    lookup,
)
from pybpf.helpers.types import ArgSpec, ArgType, RetSpec, RetType, TypeFlag

__all__ = [
    "ArgSpec",
    "ArgType",
    "HELPERS",
    "HELPER_IDS",
    "HELPER_NAMES",
    "HelperPrototype",
    "MAX_HELPER_ID",
    "RetSpec",
    "RetType",
    "TypeFlag",
    "helper",
    "helper_by_id",
    "helper_by_name",
    "lookup",
]
