"""Loss and training with Keras ``fit`` and callbacks (physics.md B 8; decisions 4, 9, 10).

The autoencoder is wrapped in a small ``keras.Model`` whose ``compute_loss`` is the decision 9
loss, so Keras drives the loop (progress output, callbacks, XLA-compiled train step) while the
saved models stay plain functional models.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ptycho_api.config import TrainingConfig
from ptycho_api.container import PtychoDataContainer
from ptycho_api.errors import ConfigError, DataError
from ptycho_api.physics import NLL_LOG_FLOOR
from ptycho_tf.model import PtychoModels, build_models
from ptycho_tf.weights import PROBE_KEY, export_weights, import_weights

__all__ = [
    "VALIDATION_FRACTION",
    "poisson_nll",
    "mean_absolute_error",
    "total_loss",
    "check_loss_weights",
    "split_train_validation",
    "train_model",
    "make_optimizer",
    "make_trainer",
    "StopWhen",
    "seed_everything",
    "schedule_callbacks",
]

logger = logging.getLogger(__name__)

VALIDATION_FRACTION = 0.05
"""The last 5 % of groups (array order) validate (decision 10, Keras ``validation_split``)."""

ProgressFn = Callable[[int, int, Mapping[str, float]], None]


def poisson_nll(pred_intensity: tf.Tensor, target_amp_scaled: tf.Tensor) -> tf.Tensor:
    """Decision 9 NLL: ``mean(I_pred - I_obs * log(I_pred + 1e-12))``, ``I_obs = (s X)^2``; scalar."""
    observed = tf.square(target_amp_scaled)
    return tf.reduce_mean(pred_intensity - observed * tf.math.log(pred_intensity + NLL_LOG_FLOOR))


def mean_absolute_error(pred_amp_scaled: tf.Tensor, target_amp_scaled: tf.Tensor) -> tf.Tensor:
    """Decision 9 MAE: ``mean |s A_pred - s X|`` (sqrt-count units); scalar."""
    return tf.reduce_mean(tf.abs(pred_amp_scaled - target_amp_scaled))


def total_loss(
    pred_amp_scaled: tf.Tensor,
    pred_intensity: tf.Tensor,
    target_amp_scaled: tf.Tensor,
    nll_weight: float,
    mae_weight: float,
) -> tf.Tensor:
    """``nll_weight * NLL + mae_weight * MAE`` (terms with zero weight are not computed)."""
    loss = tf.constant(0.0, tf.float32)
    if nll_weight:
        loss += nll_weight * poisson_nll(pred_intensity, target_amp_scaled)
    if mae_weight:
        loss += mae_weight * mean_absolute_error(pred_amp_scaled, target_amp_scaled)
    return loss


def check_loss_weights(config: TrainingConfig) -> None:
    """Refuse real-space loss weights, which this project does not define yet (``ConfigError``)."""
    for name in ("realspace_weight", "realspace_mae_weight"):
        value = getattr(config, name)
        if value != 0:
            raise ConfigError(
                f"training.{name}: realspace losses are not supported yet; expected 0.0; "
                f"found {value!r}"
            )


def split_train_validation(n_groups: int) -> int:
    """Number of training groups ``int(B * 0.95)``; the rest (possibly none) validate."""
    return int(n_groups * (1.0 - VALIDATION_FRACTION))


class _Trainer(keras.Model):
    """Wraps the autoencoder so that Keras' ``fit`` minimises the decision 9 loss."""

    def __init__(self, autoencoder: keras.Model, nll_weight: float, mae_weight: float) -> None:
        super().__init__(name="ptycho_trainer")
        self.autoencoder = autoencoder
        self.nll_weight = float(nll_weight)
        self.mae_weight = float(mae_weight)

    def call(self, inputs: Any, training: bool = False) -> Any:
        return self.autoencoder(inputs, training=training)

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> tf.Tensor:
        _, pred_amp_scaled, pred_intensity = y_pred
        return total_loss(pred_amp_scaled, pred_intensity, y, self.nll_weight, self.mae_weight)


def make_optimizer() -> keras.optimizers.Adam:
    """Adam as decision 10 configures it: lr 1e-3, beta 0.9/0.999, eps 1e-7 (Keras' eps-hat)."""
    return keras.optimizers.Adam(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7)


def make_trainer(
    models: PtychoModels,
    nll_weight: float = 1.0,
    mae_weight: float = 0.0,
    *,
    jit_compile: bool = False,
) -> keras.Model:
    """The compiled Keras model that ``train_model`` fits: ``autoencoder`` + decision 9 loss + Adam.

    Its ``train_on_batch([s*X, offsets], s*X)`` runs exactly the optimiser step of ``fit`` on one
    batch and returns the loss, so callers (the parity tests) can drive training batch by batch.
    """
    trainer = _Trainer(models.autoencoder, nll_weight, mae_weight)
    trainer.compile(optimizer=make_optimizer(), jit_compile=jit_compile)
    return trainer


class StopWhen(keras.callbacks.Callback):
    """Cancellation: stops training after the current batch once ``should_stop()`` is True."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        super().__init__()
        self.should_stop = should_stop
        self.cancelled = False

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.should_stop():
            logger.info("training cancelled after batch %d", batch)
            self.cancelled = True
            self.model.stop_training = True


class _History(keras.callbacks.Callback):
    """Per-epoch ``loss``, ``val_loss`` (NaN without validation) and the ``lr`` used in the epoch."""

    def __init__(self, nepochs: int, progress: ProgressFn | None) -> None:
        super().__init__()
        self.nepochs = nepochs
        self.progress = progress
        self.history: dict[str, list[float]] = {"loss": [], "val_loss": [], "lr": []}
        self._lr = math.nan

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        # Read before ReduceLROnPlateau may lower it at this epoch's end.
        self._lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        row = {
            "loss": float(logs.get("loss", math.nan)),
            "val_loss": float(logs.get("val_loss", math.nan)),
            "lr": self._lr,
        }
        for key, value in row.items():
            self.history[key].append(value)
        if self.progress is not None:
            self.progress(epoch + 1, self.nepochs, row)


def _dataset(
    x: np.ndarray,
    offsets: np.ndarray,
    scale: float,
    batch_size: int,
    *,
    shuffle_seed: int | None,
    shuffle: bool,
) -> tf.data.Dataset:
    """``((s X, offsets), s X)`` batches; reshuffled every epoch when ``shuffle``."""
    ds = tf.data.Dataset.from_tensor_slices((x, offsets))
    if shuffle:
        ds = ds.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    scale32 = np.float32(scale)

    def scaled(xb: tf.Tensor, ob: tf.Tensor) -> tuple[tuple[tf.Tensor, tf.Tensor], tf.Tensor]:
        xs = xb * scale32
        return (xs, ob), xs

    return ds.batch(batch_size).map(scaled).prefetch(tf.data.AUTOTUNE)


def _apply_trainable_flags(models: PtychoModels, config: TrainingConfig) -> None:
    """Decision 4: lambda and the probe are trained iff the config says so.

    TF decides at variable creation whether a variable is watched by gradient tapes, so a model
    built with other flags is rebuilt in place (same canonical weights, new Keras models).
    """
    if (
        models.intensity_scale_trainable == config.intensity_scale_trainable
        and models.probe_trainable == config.probe_trainable
    ):
        return
    logger.info(
        "rebuilding the model for intensity_scale_trainable=%s, probe_trainable=%s",
        config.intensity_scale_trainable,
        config.probe_trainable,
    )
    weights = export_weights(models)
    fresh = build_models(
        models.model_config,
        weights[PROBE_KEY],
        models.intensity_scale,
        probe_trainable=config.probe_trainable,
        intensity_scale_trainable=config.intensity_scale_trainable,
        probe_is_normalized=True,
    )
    import_weights(fresh, weights)
    models.autoencoder = fresh.autoencoder
    models.diffraction_to_obj = fresh.diffraction_to_obj
    models.probe_trainable = config.probe_trainable
    models.intensity_scale_trainable = config.intensity_scale_trainable


def schedule_callbacks(has_validation: bool) -> list[keras.callbacks.Callback]:
    """Decision 10 schedule, Keras semantics: ReduceLROnPlateau and EarlyStopping.

    ReduceLROnPlateau halves the rate (not below 1e-4) when ``patience`` = 2 consecutive epochs
    fail to beat the best ``val_loss`` (``loss`` without validation) by 1e-4; EarlyStopping
    stops when the training loss has not improved for 3 epochs; no weight restore.
    """
    return [
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss" if has_validation else "loss",
            factor=0.5,
            patience=2,
            min_lr=1e-4,
            min_delta=1e-4,
            cooldown=0,
            mode="min",
        ),
        keras.callbacks.EarlyStopping(
            monitor="loss", patience=3, min_delta=0.0, mode="min", restore_best_weights=False
        ),
    ]


def seed_everything(seed: int | None) -> None:
    """With a seed: seed Python, numpy and TF and make TF ops deterministic (process-wide)."""
    if seed is None:
        return
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train_model(
    models: PtychoModels,
    train: PtychoDataContainer,
    test: PtychoDataContainer | None,
    config: TrainingConfig,
    *,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    jit_compile: bool = False,
    verbose: int | str | None = None,
) -> dict[str, list[float]]:
    """Train ``models`` on ``train`` per ``config`` (B 8, decision 10); returns the per-epoch history.

    Adam (lr 1e-3, 0.9, 0.999, eps 1e-7); ReduceLROnPlateau on ``val_loss`` (``loss`` without
    validation); EarlyStopping on ``loss``; the last 5 % of groups validate; training groups are
    reshuffled every epoch with ``config.seed``. ``test`` is evaluated once after training
    (logged only). ``verbose`` is Keras' (default: progress bar on a terminal, else one line per
    epoch).
    """
    config.validate()
    check_loss_weights(config)
    if train.N != models.model_config.N or train.n_channels != models.model_config.n_channels:
        raise DataError(
            f"training data: expected N={models.model_config.N}, C={models.model_config.n_channels} "
            f"(the model's); found N={train.N}, C={train.n_channels}"
        )
    if not math.isclose(train.intensity_scale, models.intensity_scale, rel_tol=1e-6):
        logger.warning(
            "data intensity scale %.6g differs from the model's %.6g; the data's is used",
            train.intensity_scale,
            models.intensity_scale,
        )
    seed_everything(config.seed)
    _apply_trainable_flags(models, config)

    n_groups = len(train)
    n_train = split_train_validation(n_groups)
    if n_train < 1:
        raise DataError(f"training data: need at least 1 training group; found {n_groups} groups")
    scale = float(train.intensity_scale)
    batch_size = config.batch_size
    train_ds = _dataset(
        train.X[:n_train],
        train.local_offsets[:n_train],
        scale,
        batch_size,
        shuffle_seed=config.seed,
        shuffle=True,
    )
    val_ds = None
    if n_train < n_groups:
        val_ds = _dataset(
            train.X[n_train:],
            train.local_offsets[n_train:],
            scale,
            batch_size,
            shuffle_seed=None,
            shuffle=False,
        )

    trainer = make_trainer(models, config.nll_weight, config.mae_weight, jit_compile=jit_compile)
    history = _History(config.nepochs, progress)
    callbacks: list[keras.callbacks.Callback] = [
        history,
        *schedule_callbacks(has_validation=val_ds is not None),
    ]
    stopper = StopWhen(should_stop) if should_stop is not None else None
    if stopper is not None:
        callbacks.append(stopper)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    logger.info(
        "training %d groups (%d validation), batch %d, %d epochs, XLA %s",
        n_train,
        n_groups - n_train,
        batch_size,
        config.nepochs,
        "on" if jit_compile else "off",
    )
    trainer.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.nepochs,
        shuffle=False,  # the dataset reshuffles itself, seeded
        callbacks=callbacks,
        verbose=verbose,
    )
    if test is not None and not (stopper is not None and stopper.cancelled):
        test_ds = _dataset(
            test.X,
            test.local_offsets,
            float(test.intensity_scale),
            batch_size,
            shuffle_seed=None,
            shuffle=False,
        )
        test_loss = trainer.evaluate(test_ds, verbose=0)
        logger.info("loss on the test set after training: %.6g", float(np.ravel(test_loss)[0]))
    return history.history
