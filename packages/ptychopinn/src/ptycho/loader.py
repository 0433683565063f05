"""The original ``ptycho.loader``: grouped data -> ``PtychoDataContainer`` for a model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ptycho_api import params
from ptycho_api.config import InferenceConfig, model_config_from_legacy_dict
from ptycho_api.container import PtychoDataContainer, create_ptycho_data_container

__all__ = ["PtychoDataContainer", "load"]


def load(
    cb: Callable[[], Any],
    probeGuess: np.ndarray,
    which: str | None = None,
    create_split: bool = False,
) -> PtychoDataContainer:
    """Package ``cb()``'s grouped dict (``RawData.generate_grouped_data``) into a container.

    ``probeGuess`` ``(N, N)`` complex. N and gridsize come from ``params.cfg`` (set from the
    config by ``update_legacy_dict`` or restored from an archive), as in the original.
    ``create_split=True`` (the original's fraction-based train/test split of one dataset) is not
    supported: group the training and test scans separately instead.
    """
    if create_split:
        raise ValueError(
            "loader.load: create_split=True is not supported; group the training and test "
            "scans separately and call load() once for each (which=None)"
        )
    grouped = cb()
    if not isinstance(grouped, Mapping):
        raise TypeError(
            f"loader.load: cb() must return the grouped-data dict of generate_grouped_data; "
            f"found {type(grouped).__name__}"
        )
    config = InferenceConfig(model=model_config_from_legacy_dict(params.cfg))
    return create_ptycho_data_container(grouped, config, probe=np.asarray(probeGuess))
