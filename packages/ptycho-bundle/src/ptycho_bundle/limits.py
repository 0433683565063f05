"""Size and count limits applied to every archive before any member is read (bundle.md part 2)."""

from __future__ import annotations

import dataclasses

__all__ = ["BundleLimits", "DEFAULT_LIMITS", "GiB", "MiB"]

MiB = 1024**2
GiB = 1024**3


@dataclasses.dataclass(frozen=True)
class BundleLimits:
    """Limits on declared sizes (the ZIP central directory) and on unpickling legacy ``.dill`` members."""

    max_members: int = 1000
    max_member_size: int = 2 * GiB
    max_total_size: int = 4 * GiB
    max_ratio: float = 200.0
    ratio_min_size: int = 1 * MiB
    # A legacy params.cfg pickle takes a few hundred operations, nests 3-4 levels and holds a
    # probe of some 32 KiB; the budgets leave a hundredfold margin and keep a hostile pickle to
    # about a second and a few hundred MiB.
    max_pickle_ops: int = 100_000
    """Pickle operations in one legacy member."""
    max_pickle_nodes: int = 1_000_000
    """Objects in one legacy member, counting every shared reference as a copy (what ``repr`` visits)."""
    max_pickle_depth: int = 100
    """Nesting depth of containers in one legacy member."""
    max_pickle_bytes: int = 256 * MiB
    """Bytes of one legacy member plus what unpickling it allocates for bytes, arrays and scalars."""

    def __post_init__(self) -> None:
        """Reject non-positive limits (a limit of zero would reject every archive)."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(
                    f"BundleLimits.{field.name}: expected a positive number; found {value!r}"
                )


DEFAULT_LIMITS = BundleLimits()
