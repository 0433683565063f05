"""The original ``ptycho.model_manager.save``: write the current model's ``wts.h5.zip``."""

from __future__ import annotations

import os
from pathlib import Path

from ptycho_api.workflows import save_model

__all__ = ["save"]


def save(out_dir: str | os.PathLike[str]) -> Path:
    """Write the model last trained or loaded in this process to ``<out_dir>/wts.h5.zip``: -> path."""
    return save_model(out_dir)
