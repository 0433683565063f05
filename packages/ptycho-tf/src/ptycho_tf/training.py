"""Loss and training with Keras ``fit`` and callbacks (physics.md B 8; decisions 4, 9, 10).

The autoencoder is wrapped in a small ``keras.Model`` whose ``compute_loss`` is the decision 9
loss, so Keras drives the loop (progress output, callbacks, XLA-compiled train step) while the
saved models stay plain functional models. Supervised mode (``model.model_type``) wraps the
decoders' outputs instead and minimises ``ptycho_api.supervised``'s real-space loss.
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

from ptycho_api.architecture import PROBE_KEY
from ptycho_api.config import TrainingConfig
from ptycho_api.container import PtychoDataContainer
from ptycho_api.errors import DataError
from ptycho_api.schedule import SCHEDULE
from ptycho_api.supervised import SupervisedTargets, supervised_targets
from ptycho_tf.losses import supervised_loss, total_loss
from ptycho_tf.model import PtychoPINN, build_model
from ptycho_tf.weights import export_weights, import_weights

__all__ = [
    "make_optimizer",
    "make_trainer",
    "schedule_callbacks",
    "seed_everything",
    "train_model",
]

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, Mapping[str, float]], None]


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
        _, pred_amp_scaled, _ = y_pred
        return total_loss(pred_amp_scaled, y, self.nll_weight, self.mae_weight)


def _object_heads(autoencoder: keras.Model) -> keras.Model:
    """``[s*X, offsets]`` -> the decoders' ``[amplitude, phase]`` ``(B, N, N, K)`` float32.

    The two tensors the ``object_patches`` layer combines, in the autoencoder's own graph (shared
    layers, so training this model trains the autoencoder; offsets are not used).
    """
    amplitude, phase = autoencoder.get_layer("object_patches").input
    return keras.Model(autoencoder.inputs, [amplitude, phase], name="object_heads")


class _SupervisedTrainer(keras.Model):
    """Keras' ``fit`` on supervised mode's loss: decoder outputs vs ``(|Y|/a, angle(Y))``."""

    def __init__(self, autoencoder: keras.Model) -> None:
        super().__init__(name="ptycho_supervised_trainer")
        self.heads = _object_heads(autoencoder)

    def call(self, inputs: Any, training: bool = False) -> Any:
        return self.heads(inputs, training=training)

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> tf.Tensor:
        amplitude, phase = y_pred
        amplitude_target, phase_target = y
        return supervised_loss(amplitude, phase, amplitude_target, phase_target)


def make_optimizer() -> keras.optimizers.Adam:
    """Adam with the settings of ``ptycho_api.schedule.SCHEDULE`` (Keras' own epsilon convention)."""
    return keras.optimizers.Adam(
        learning_rate=SCHEDULE.learning_rate,
        beta_1=SCHEDULE.beta_1,
        beta_2=SCHEDULE.beta_2,
        epsilon=SCHEDULE.epsilon,
    )


def make_trainer(
    models: PtychoPINN,
    nll_weight: float = 1.0,
    mae_weight: float = 0.0,
    *,
    model_type: str = "pinn",
    jit_compile: bool = False,
) -> keras.Model:
    """The compiled Keras model that ``train_model`` fits: ``autoencoder`` + loss + Adam.

    ``model_type`` "pinn": decision 9 loss; its ``train_on_batch([s*X, offsets], s*X)`` runs
    exactly the optimiser step of ``fit`` on one batch and returns the loss, so callers (the
    parity tests) can drive training batch by batch. "supervised": ``ptycho_api.supervised``'s
    loss, ``train_on_batch([s*X, offsets], (|Y|/a, angle(Y)))``, nll/mae weights unused.
    """
    trainer: keras.Model
    if model_type == "supervised":
        trainer = _SupervisedTrainer(models.autoencoder)
    else:
        trainer = _Trainer(models.autoencoder, nll_weight, mae_weight)
    trainer.compile(optimizer=make_optimizer(), jit_compile=jit_compile)
    return trainer


class _StopWhen(keras.callbacks.Callback):
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
        logger.info(
            "epoch %d/%d: loss %.6g, val_loss %.6g, lr %.3g",
            epoch + 1,
            self.nepochs,
            row["loss"],
            row["val_loss"],
            row["lr"],
        )
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
    targets: tuple[np.ndarray, np.ndarray] | None = None,
) -> tf.data.Dataset:
    """``((s X, offsets), s X)`` batches, or with ``targets`` (supervised mode's amplitude and
    phase, ``(B, N, N, C)`` each) ``((s X, offsets), targets)``; reshuffled every epoch when
    ``shuffle``."""
    ds = tf.data.Dataset.from_tensor_slices((x, offsets, *(targets or ())))
    if shuffle:
        ds = ds.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    scale32 = np.float32(scale)

    def scaled(
        xb: tf.Tensor, ob: tf.Tensor, *tb: tf.Tensor
    ) -> tuple[tuple[tf.Tensor, tf.Tensor], Any]:
        xs = xb * scale32
        return (xs, ob), (tb if tb else xs)

    return ds.batch(batch_size).map(scaled).prefetch(tf.data.AUTOTUNE)


def _target_rows(
    targets: SupervisedTargets | None, rows: slice
) -> tuple[np.ndarray, np.ndarray] | None:
    """The amplitude and phase targets of ``rows`` (None in PINN mode)."""
    return None if targets is None else (targets.amplitude[rows], targets.phase[rows])


def _apply_trainable_flags(models: PtychoPINN, config: TrainingConfig) -> None:
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
    fresh = build_model(
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


def schedule_callbacks(
    has_validation: bool, early_stopping: bool = True
) -> list[keras.callbacks.Callback]:
    """Keras' ReduceLROnPlateau and (with ``early_stopping``) EarlyStopping per ``SCHEDULE``."""
    plateau = [
        keras.callbacks.ReduceLROnPlateau(
            monitor=SCHEDULE.plateau_monitor(has_validation),
            factor=SCHEDULE.plateau_factor,
            patience=SCHEDULE.plateau_patience,
            min_lr=SCHEDULE.plateau_min_lr,
            min_delta=SCHEDULE.plateau_min_delta,
            cooldown=0,
            mode="min",
        )
    ]
    if not early_stopping:
        return plateau
    return [
        *plateau,
        keras.callbacks.EarlyStopping(
            monitor="loss",
            patience=SCHEDULE.early_stopping_patience,
            min_delta=SCHEDULE.early_stopping_min_delta,
            mode="min",
            restore_best_weights=False,
        ),
    ]


def seed_everything(seed: int | None) -> None:
    """With a seed: seed Python, numpy and TF and make TF ops deterministic (process-wide)."""
    if seed is None:
        return
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train_model(
    models: PtychoPINN,
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

    The schedule is ``ptycho_api.schedule.SCHEDULE``: Adam, ReduceLROnPlateau on ``val_loss``
    (``loss`` without validation), EarlyStopping on ``loss`` unless ``config.early_stopping`` is
    False, the last groups validate; training groups are reshuffled every epoch with
    ``config.seed``. ``test`` is evaluated once after training
    (logged only). ``config.model.model_type`` "supervised" trains on ``ptycho_api.supervised``'s
    real-space loss against the ground truth of ``train`` (``DataError`` without it). ``verbose`` is Keras' (default: progress bar on a terminal, else one line per
    epoch).
    """
    config.validate()
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
    supervised = config.model.model_type == "supervised"
    targets = supervised_targets(train, config.model) if supervised else None
    seed_everything(config.seed)
    _apply_trainable_flags(models, config)

    n_groups = len(train)
    n_train = SCHEDULE.n_train(n_groups)
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
        targets=_target_rows(targets, slice(None, n_train)),
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
            targets=_target_rows(targets, slice(n_train, None)),
        )

    trainer = make_trainer(
        models,
        config.nll_weight,
        config.mae_weight,
        model_type=config.model.model_type,
        jit_compile=jit_compile,
    )
    history = _History(config.nepochs, progress)
    callbacks: list[keras.callbacks.Callback] = [
        history,
        *schedule_callbacks(val_ds is not None, config.early_stopping),
    ]
    stopper = _StopWhen(should_stop) if should_stop is not None else None
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
    if supervised and test is not None and not test.has_ground_truth:
        logger.info("the test set has no ground truth: no supervised test loss")
        test = None
    if test is not None and not (stopper is not None and stopper.cancelled):
        test_targets = None
        if targets is not None:
            test_targets = supervised_targets(
                test, config.model, "test data", amplitude_scale=targets.amplitude_scale
            )
        test_ds = _dataset(
            test.X,
            test.local_offsets,
            float(test.intensity_scale),
            batch_size,
            shuffle_seed=None,
            shuffle=False,
            targets=_target_rows(test_targets, slice(None)),
        )
        test_loss = trainer.evaluate(test_ds, verbose=0)
        logger.info("loss on the test set after training: %.6g", float(np.ravel(test_loss)[0]))
    return history.history
