"""The address space TensorFlow needs, checked before a run so that a limit gives an error, not a crash.

Under ``ulimit -v`` (``RLIMIT_AS``) below these figures TensorFlow aborts (``std::bad_alloc``),
segfaults inside oneDNN or stalls, whatever the input. Measured with ``VmPeak`` on a 2-core CPU
(TensorFlow 2.21, glibc malloc): importing TensorFlow reserves 1.4 GiB; reconstructing a
512-pattern scan peaks at 2.25 GiB (and fails in OpenBLAS under a 2.5 GiB limit), training on
1,024 patterns (n_filters_scale 2) at 3.4 GiB (64 patterns fail under 3 GiB), most of it
per-thread malloc arenas and thread stacks that are reserved, not used (the resident peak is
1.4 GiB).
"""

from __future__ import annotations

from ptycho_api.errors import BackendError
from ptycho_api.rawdata import address_space_limit

__all__ = ["NEEDS", "require_address_space"]

GIB = 2**30
NEEDS = {"run": 3 * GIB, "train": 4 * GIB}
"""Bytes of address space for a run of any kind and for training (the measured peaks with headroom)."""


def require_address_space(task: str) -> None:
    """Raise ``BackendError`` when the address-space limit is below what ``task`` needs (``NEEDS``)."""
    limit = address_space_limit()
    need = NEEDS[task]
    if limit is not None and limit < need:
        raise BackendError(
            f"tensorflow backend: the address space of this process is limited to "
            f"{limit / GIB:.3g} GiB (ulimit -v); TensorFlow needs at least {need / GIB:.3g} GiB "
            f"to {task} (most of it reserved for its threads, not used); raise the limit or use "
            "the PyTorch backend (--backend pytorch), which runs in 2 GiB"
        )
