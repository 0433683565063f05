"""Training smoke tests (issue 5): history, loss decrease, trainable lambda, determinism, cancel."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.container import create_ptycho_data_container
from ptycho_api.schedule import SCHEDULE
from ptycho_tf.backend import Backend as TFBackend
from ptycho_tf.config import ExecutionConfig
from ptycho_tf.training import schedule_callbacks


def _config(gridsize: int, **kwargs) -> TrainingConfig:
    """256 patterns of N=64, n_filters_scale 1, 3 epochs."""
    values = {"n_groups": 256 // gridsize**2, "nepochs": 3, "batch_size": 16, "seed": 7}
    values.update(kwargs)
    return TrainingConfig(model=ModelConfig(N=64, gridsize=gridsize, n_filters_scale=1), **values)


def _train(raw, config: TrainingConfig, **kwargs):
    backend = TFBackend(ExecutionConfig(verbose=0))
    data = create_ptycho_data_container(raw, config)
    models = backend.build_model(
        config.model,
        data.probe,
        data.intensity_scale,
        seed=config.seed,
        intensity_scale_trainable=config.intensity_scale_trainable,
    )
    before = float(models.scaler.log_scale.numpy())
    history = backend.train(models, data, None, config, **kwargs)
    return backend, models, data, history, before


def _nll_floor(data, n_train: int) -> float:
    """Smallest reachable NLL on the training groups: I_pred = I_obs everywhere (float64)."""
    observed = (data.X[:n_train].astype(np.float64) * data.intensity_scale) ** 2
    return float(np.mean(observed - observed * np.log(observed + 1e-12)))


@pytest.fixture(scope="module")
def trained_g2(raw_train):
    return _train(raw_train, _config(2))


@pytest.mark.parametrize("gridsize", [1, 2])
def test_training_smoke(raw_train, trained_g2, gridsize):
    progress = []
    if gridsize == 2:
        _, models, data, history, before = trained_g2
    else:
        _, models, data, history, before = _train(
            raw_train, _config(1), progress=lambda e, n, logs: progress.append((e, n, dict(logs)))
        )
        assert [p[:2] for p in progress] == [(1, 3), (2, 3), (3, 3)]
        assert progress[-1][2]["loss"] == history["loss"][-1]
    assert set(history) == {"loss", "val_loss", "lr"}
    assert all(len(v) == 3 for v in history.values())
    assert all(math.isfinite(v) for key in ("loss", "val_loss") for v in history[key])
    assert history["lr"] == pytest.approx([1e-3] * 3)  # no plateau can trigger in 3 epochs
    # The NLL has no log-factorial term, so it is a large negative number and "below 0.8 x the
    # first" would hold trivially; the check is on the excess over its floor (I_pred = I_obs),
    # which measured 0.24 x after 3 epochs for both gridsizes.
    floor = _nll_floor(data, SCHEDULE.n_train(len(data)))
    excess = [loss - floor for loss in history["loss"]]
    assert excess[0] > 0 and excess[-1] < 0.8 * excess[0]
    assert history["loss"][-1] < history["loss"][0]
    # intensity_scale_trainable (the default): lambda moved.
    assert float(models.scaler.log_scale.numpy()) != before


def test_fixed_intensity_scale_does_not_change(raw_train):
    config = _config(2, n_groups=32, nepochs=1, intensity_scale_trainable=False)
    _, models, _, _, before = _train(raw_train, config)
    assert float(models.scaler.log_scale.numpy()) == before  # exact: never updated


def test_same_seed_gives_identical_weights_and_history(raw_train, trained_g2):
    backend, models, _, history, _ = trained_g2
    backend2, models2, _, history2, _ = _train(raw_train, _config(2))
    assert history2 == history  # exact: deterministic ops, same seed
    first, second = backend.export_weights(models), backend2.export_weights(models2)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_cancellation_stops_after_the_current_batch(raw_train):
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return True

    config = _config(2, n_groups=64, nepochs=5)
    _, _, _, history, _ = _train(raw_train, config, should_stop=should_stop)
    assert len(calls) == 1 and len(history["loss"]) == 1


def test_validation_is_the_last_five_percent():
    # Keras validation_split semantics: int(B * 0.95) training groups, the rest validate.
    assert [SCHEDULE.n_train(b) for b in (1, 20, 64, 256)] == [1, 19, 60, 243]


def _run_schedule(
    losses: list[float], early_stopping: bool = True
) -> tuple[list[float], int | None]:
    """Feed a loss sequence to the decision 10 callbacks; -> (lr per epoch, stop epoch)."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-7), loss="mse")
    callbacks = schedule_callbacks(has_validation=True, early_stopping=early_stopping)
    for cb in callbacks:
        cb.set_model(model)
        cb.on_train_begin()
    rates, stopped = [], None
    for epoch, loss in enumerate(losses):
        rates.append(float(model.optimizer.learning_rate.numpy()))
        for cb in callbacks:
            cb.on_epoch_end(epoch, {"loss": loss, "val_loss": loss})
        if model.stop_training:
            stopped = epoch
            break
    return rates, stopped


def test_schedule_has_keras_plateau_and_early_stopping_semantics():
    # Improvements smaller than min_delta 1e-4 do not count: the 2nd consecutive such epoch
    # (Keras patience 2) halves the rate for the next epoch.
    rates, stopped = _run_schedule([10.0, 9.99995, 9.99990, 9.0, 8.0])
    assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4])
    assert stopped is None
    # The rate never goes below 1e-4; EarlyStopping (patience 3, min_delta 0 on loss) stops at
    # the 3rd epoch without improvement.
    rates, stopped = _run_schedule([1.0] + [2.0] * 12)
    assert stopped == 3
    rates, _ = _run_schedule([float(10 - 1e-5 * i) for i in range(12)])
    assert min(rates) == pytest.approx(1e-4) and rates[-1] == pytest.approx(1e-4)


def test_without_early_stopping_every_epoch_runs_and_the_plateau_rule_stays():
    # config.early_stopping false: the sequence that stops at epoch 3 above runs to its end,
    # with the rate still halved every 2 epochs without improvement down to 1e-4.
    rates, stopped = _run_schedule([1.0] + [2.0] * 12, early_stopping=False)
    assert stopped is None and len(rates) == 13
    assert rates[:5] == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4])
    assert rates[-1] == pytest.approx(1e-4)


def test_probe_trains_iff_probe_trainable(raw_train):
    # Flags come from the TrainingConfig at training time (decision 4), whatever the build said.
    config = _config(2, n_groups=16, nepochs=1, batch_size=8, probe_trainable=True)
    backend = TFBackend(ExecutionConfig(verbose=0))
    data = create_ptycho_data_container(raw_train, config)
    models = backend.build_model(config.model, data.probe, data.intensity_scale, seed=1)
    before = models.probe_layer.get_probe()
    backend.train(models, data, None, config)
    assert not np.array_equal(models.probe_layer.get_probe(), before)
    assert models.probe_layer.get_config()["probe_trainable"] is True


@pytest.mark.parametrize("early_stopping", [True, False])
def test_training_passes_early_stopping_from_the_config(raw_train, monkeypatch, early_stopping):
    # The real callbacks, recorded on their way into fit: EarlyStopping iff config.early_stopping.
    import ptycho_tf.training as training

    seen: list[list[keras.callbacks.Callback]] = []

    def recording(*args, **kwargs):
        seen.append(schedule_callbacks(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(training, "schedule_callbacks", recording)
    config = _config(1, n_groups=16, nepochs=1, batch_size=8, early_stopping=early_stopping)
    _train(raw_train, config)
    assert len(seen) == 1
    stops = [cb for cb in seen[0] if isinstance(cb, keras.callbacks.EarlyStopping)]
    assert len(stops) == int(early_stopping)
    assert any(isinstance(cb, keras.callbacks.ReduceLROnPlateau) for cb in seen[0])
