"""The shared training schedule (decision 10): one set of numbers, Keras' validation split."""

from __future__ import annotations

import dataclasses

import pytest

from ptycho_api.schedule import SCHEDULE, TrainingSchedule


def test_schedule_holds_the_decision_10_numbers():
    assert (SCHEDULE.learning_rate, SCHEDULE.beta_1, SCHEDULE.beta_2, SCHEDULE.epsilon) == (
        1e-3,
        0.9,
        0.999,
        1e-7,
    )
    assert (SCHEDULE.plateau_factor, SCHEDULE.plateau_patience) == (0.5, 2)
    assert (SCHEDULE.plateau_min_lr, SCHEDULE.plateau_min_delta) == (1e-4, 1e-4)
    assert SCHEDULE.early_stopping_patience == 3 and SCHEDULE.validation_fraction == 0.05


def test_schedule_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SCHEDULE.learning_rate = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("n_groups", "n_train"),
    [(0, 0), (1, 1), (2, 1), (19, 18), (20, 19), (64, 60), (256, 243)],
)
def test_validation_split_is_keras_with_the_single_group_rule(n_groups, n_train):
    # Keras: int(n * 0.95) train; one group alone trains (Keras would train on nothing).
    assert SCHEDULE.n_train(n_groups) == n_train


def test_plateau_monitor_falls_back_to_the_training_loss():
    assert SCHEDULE.plateau_monitor(True) == "val_loss"
    assert SCHEDULE.plateau_monitor(False) == "loss"
    assert TrainingSchedule(validation_fraction=0.5).n_train(10) == 5
    with pytest.raises(ValueError, match="n_groups"):
        SCHEDULE.n_train(-1)
