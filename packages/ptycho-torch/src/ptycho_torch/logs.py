"""What the CLI may hide of PyTorch's and Lightning's output unless ``-v`` (``ptycho.log_filters``).

Plain data only: this module imports no framework, so a front end reads it before PyTorch and
Lightning are imported.
"""

from __future__ import annotations

from ptycho_api.backend import LogFilters

__all__ = ["LOG_FILTERS"]

LOG_FILTERS = LogFilters(
    # Lightning sets these to INFO when imported: device summaries, tips and "fit stopped"
    # notes; the CLI's own per-epoch line says enough.
    quiet_loggers=("lightning", "lightning.pytorch", "lightning.fabric"),
    # Deprecation notices meant for developers of PyTorch and Lightning code.
    warning_modules=("torch", "lightning"),
)
"""The PyTorch backend's log filters (also ``ptycho_torch.backend.Backend.log_filters``)."""
