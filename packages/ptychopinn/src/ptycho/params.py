"""The original ``ptycho.params``: the process-wide legacy dict ``cfg`` and its accessors.

The very same dict as ``ptycho_api.params.cfg``, so values set here are seen by the workflows and
the backends, and an archive's parameters restored there are read back here.
"""

from ptycho_api.params import (
    cfg,
    get,
    get_bigN,
    get_padded_size,
    get_padding_size,
    params,
    reset,
    set,  # noqa: A004 - the original module's public name
)

__all__ = [
    "cfg",
    "get",
    "set",
    "reset",
    "params",
    "get_bigN",
    "get_padding_size",
    "get_padded_size",
]
