"""The training schedule both backends follow (decision 10): optimiser, plateau, early stopping, split.

One frozen object, :data:`SCHEDULE`, holds every number; each backend translates it into its
framework's objects (Keras callbacks, Lightning callbacks) and nothing else. Semantics are
Keras': the plateau rule reduces the rate once ``plateau_patience`` consecutive epochs fail to
beat the best monitored loss by ``plateau_min_delta`` (absolute); early stopping watches the
training loss; Adam's epsilon is Keras' "epsilon hat" (added to ``sqrt(v)`` before bias
correction).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrainingSchedule", "SCHEDULE"]


@dataclass(frozen=True)
class TrainingSchedule:
    """Optimiser and schedule settings of decision 10 (learning rates in 1/step, losses in counts)."""

    learning_rate: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    """Keras' epsilon hat; PyTorch's Adam default (1e-8, added after bias correction) differs."""
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    plateau_min_lr: float = 1e-4
    plateau_min_delta: float = 1e-4
    early_stopping_patience: int = 3
    early_stopping_min_delta: float = 0.0
    validation_fraction: float = 0.05
    """The last groups in array order validate (Keras ``validation_split``)."""

    def n_train(self, n_groups: int) -> int:
        """Training groups out of ``n_groups``: ``int(n * (1 - fraction))``; the rest validate.

        A single group, where that rule would train on nothing, trains without validation.
        """
        if n_groups < 0:
            raise ValueError(f"n_groups: expected >= 0; found {n_groups}")
        return max(int(n_groups * (1.0 - self.validation_fraction)), min(n_groups, 1))

    def plateau_monitor(self, has_validation: bool) -> str:
        """The loss the plateau rule watches: ``val_loss``, or ``loss`` without validation."""
        return "val_loss" if has_validation else "loss"


SCHEDULE = TrainingSchedule()
"""The schedule every training run uses."""
