"""The Ptychodus-facing model wrapper (PyTorch only): a Keras-style ``predict`` over one model.

TensorFlow needs no such wrapper, since its ``diffraction_to_obj`` already is a ``keras.Model``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ptycho_torch.inference import predict_patches
from ptycho_torch.model import PtychoPINN
from ptycho_torch.modules import DiffractionToObject

__all__ = ["TorchModelWrapper"]


class TorchModelWrapper:
    """A loaded model with the Keras-style ``predict([X_scaled, local_offsets])`` Ptychodus calls.

    ``autoencoder`` is the full ``PtychoPINN``; ``diffraction_to_obj`` shares its weights.
    """

    def __init__(self, autoencoder: PtychoPINN, batch_size: int = 64) -> None:
        self.autoencoder = autoencoder
        self.diffraction_to_obj = DiffractionToObject(autoencoder)
        self.batch_size = batch_size

    def predict(
        self, inputs: Sequence[np.ndarray], batch_size: int | None = None, **_: object
    ) -> np.ndarray:
        """``[s*X (B,N,N,C) float32, local_offsets (B,1,2,C) float32]`` -> ``(B,N,N,1)`` complex64."""
        if len(inputs) != 2:
            raise ValueError(
                f"predict expects [X_scaled, local_offsets]; found {len(inputs)} inputs"
            )
        return predict_patches(
            self.autoencoder, inputs[0], inputs[1], batch_size=batch_size or self.batch_size
        )

    __call__ = predict

    def to(self, device: torch.device | str) -> TorchModelWrapper:
        """Move the model to ``device``; returns self."""
        self.autoencoder.to(device)
        return self
