"""``nn.Module`` views of one ``PtychoPINN`` (PyTorch only): object output, compiled object crop."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # model.py builds these views, so it cannot be imported here at run time
    from ptycho_torch.model import PtychoPINN

__all__ = ["DiffractionToObject", "ObjectCrop"]


class ObjectCrop(nn.Module):
    """``object_canvas_crop`` of an autoencoder as a module (what ``compile=True`` compiles)."""

    def __init__(self, autoencoder: PtychoPINN) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(
        self, x_scaled: torch.Tensor, local_offsets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B,N,N,C)`` s*X, ``(B,1,2,C)`` offsets -> real, imag ``(B, N, N)`` float32."""
        return self.autoencoder.object_canvas_crop(x_scaled, local_offsets)


class DiffractionToObject(nn.Module):
    """``diffraction_to_obj`` of B 7.1: the autoencoder's weights, object output only."""

    def __init__(self, autoencoder: PtychoPINN) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, x_scaled: torch.Tensor, local_offsets: torch.Tensor) -> torch.Tensor:
        """``(B,N,N,C)`` s*X, ``(B,1,2,C)`` offsets -> ``(B,N,N,1)`` complex64 object patches."""
        return self.autoencoder.predict_object(x_scaled, local_offsets)
