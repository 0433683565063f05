"""The training losses in PyTorch: decision 9 (Poisson NLL, MAE) and supervised mode's MAE.

Decision 9 compares scaled amplitudes; supervised mode (``ptycho_api.supervised``) compares the
decoders' amplitude and phase with the ground truth.

Mirrors ``ptycho_tf.losses``; ``I_pred = pred**2``, ``I_obs = target**2``, means over all elements.
"""

from __future__ import annotations

import torch

from ptycho_api.physics import NLL_LOG_FLOOR, weighted_loss

__all__ = ["loss_terms", "total_loss", "supervised_loss"]


def loss_terms(
    pred_amp_scaled: torch.Tensor, target_amp_scaled: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Poisson NLL and MAE of decision 9 (scalars, counts and sqrt-counts), means over all elements.

    ``I_pred = pred**2``, ``I_obs = target**2``; NLL = mean(I_pred - I_obs * log(I_pred + 1e-12)).
    """
    pred_intensity = pred_amp_scaled * pred_amp_scaled
    observed = target_amp_scaled * target_amp_scaled
    nll = torch.mean(pred_intensity - observed * torch.log(pred_intensity + NLL_LOG_FLOOR))
    mae = torch.mean(torch.abs(pred_amp_scaled - target_amp_scaled))
    return nll, mae


def total_loss(
    pred_amp_scaled: torch.Tensor,
    target_amp_scaled: torch.Tensor,
    nll_weight: float,
    mae_weight: float,
) -> torch.Tensor:
    """``nll_weight * NLL + mae_weight * MAE`` (a term with zero weight is left out); scalar."""
    return weighted_loss(*loss_terms(pred_amp_scaled, target_amp_scaled), nll_weight, mae_weight)


def supervised_loss(
    amplitude: torch.Tensor,
    phase: torch.Tensor,
    amplitude_target: torch.Tensor,
    phase_target: torch.Tensor,
) -> torch.Tensor:
    """Supervised mode's real-space loss (``ptycho_api.supervised``); scalar.

    ``mean|A - |Y|/a| + mean|Phi - angle(Y)|`` over all elements of the ``(B, N, N, C)`` decoder
    outputs (amplitude in units of ``a``, phase in radians) and their targets.
    """
    return torch.mean(torch.abs(amplitude - amplitude_target)) + torch.mean(
        torch.abs(phase - phase_target)
    )
