"""Fixtures: the arguments of a complete ``save_bundle`` call and an archive written from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bundle_helpers import sample_params, sample_weights

from ptycho_api.config import TrainingConfig, config_to_dict
from ptycho_bundle import save_bundle


@pytest.fixture
def model_args() -> dict[str, Any]:
    """Keyword arguments of a complete ``save_bundle`` call."""
    return {
        "backend": "pytorch",
        "config": config_to_dict(TrainingConfig()),
        "params": sample_params(),
        "weights": sample_weights(),
        "history": {"loss": [3.0, 2.5, 2.25], "val_loss": [3.1, 2.6, 2.4]},
        "native": {
            "autoencoder": {"model.pth": b"placeholder"},
            "diffraction_to_obj": {"model.pth": bytes(range(256)) * 4},
        },
        "versions": {"ptycho-torch": "0.1.0", "torch": "2.13.0"},
    }


@pytest.fixture
def archive(tmp_path: Path, model_args: dict[str, Any]) -> Path:
    """A valid format-2 archive at ``tmp_path/model/wts.h5.zip``."""
    return save_bundle(tmp_path / "model", **model_args)
