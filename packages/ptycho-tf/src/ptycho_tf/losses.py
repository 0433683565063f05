"""The training losses in TensorFlow: decision 9 (Poisson NLL, MAE) and supervised mode's MAE.

Decision 9 compares scaled amplitudes; supervised mode (``ptycho_api.supervised``) compares the
decoders' amplitude and phase with the ground truth.

Mirrors ``ptycho_torch.losses``; ``I_pred = pred**2``, ``I_obs = target**2``, means over all elements.
"""

from __future__ import annotations

import tensorflow as tf

from ptycho_api.physics import NLL_LOG_FLOOR, weighted_loss

__all__ = ["loss_terms", "total_loss", "supervised_loss"]


def loss_terms(
    pred_amp_scaled: tf.Tensor, target_amp_scaled: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Poisson NLL and MAE of decision 9 (scalars, counts and sqrt-counts), means over all elements.

    NLL = mean(I_pred - I_obs * log(I_pred + 1e-12)); MAE = mean |s A_pred - s X|.
    """
    pred_intensity = pred_amp_scaled * pred_amp_scaled
    observed = target_amp_scaled * target_amp_scaled
    nll = tf.reduce_mean(pred_intensity - observed * tf.math.log(pred_intensity + NLL_LOG_FLOOR))
    mae = tf.reduce_mean(tf.abs(pred_amp_scaled - target_amp_scaled))
    return nll, mae


def total_loss(
    pred_amp_scaled: tf.Tensor,
    target_amp_scaled: tf.Tensor,
    nll_weight: float,
    mae_weight: float,
) -> tf.Tensor:
    """``nll_weight * NLL + mae_weight * MAE`` (a term with zero weight is left out); scalar."""
    return weighted_loss(*loss_terms(pred_amp_scaled, target_amp_scaled), nll_weight, mae_weight)


def supervised_loss(
    amplitude: tf.Tensor,
    phase: tf.Tensor,
    amplitude_target: tf.Tensor,
    phase_target: tf.Tensor,
) -> tf.Tensor:
    """Supervised mode's real-space loss (``ptycho_api.supervised``); scalar.

    ``mean|A - |Y|/a| + mean|Phi - angle(Y)|`` over all elements of the ``(B, N, N, C)`` decoder
    outputs (amplitude in units of ``a``, phase in radians) and their targets.
    """
    return tf.reduce_mean(tf.abs(amplitude - amplitude_target)) + tf.reduce_mean(
        tf.abs(phase - phase_target)
    )
