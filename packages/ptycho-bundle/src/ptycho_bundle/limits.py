"""Size and count limits applied to every archive before any member is read (bundle.md part 2)."""

from __future__ import annotations

import dataclasses

__all__ = ["BundleLimits", "DEFAULT_LIMITS", "GiB", "MiB"]

MiB = 1024**2
GiB = 1024**3


@dataclasses.dataclass(frozen=True)
class BundleLimits:
    """Limits checked against the archive's declared sizes (the ZIP central directory)."""

    max_members: int = 1000
    max_member_size: int = 2 * GiB
    max_total_size: int = 4 * GiB
    max_ratio: float = 200.0
    ratio_min_size: int = 1 * MiB

    def __post_init__(self) -> None:
        """Reject non-positive limits (a limit of zero would reject every archive)."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(
                    f"BundleLimits.{field.name}: expected a positive number; found {value!r}"
                )


DEFAULT_LIMITS = BundleLimits()
