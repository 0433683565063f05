"""The Lightning pieces that ``ptycho_torch.training`` assembles (PyTorch only).

``PtychoLightningModule`` (loss of decision 9, Adam with Keras' epsilon), the Keras-semantics
plateau callback, the history callback and the seeded data loaders. Every number comes from
``ptycho_api.schedule.SCHEDULE``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset

from ptycho_api.atomic import atomic_write_text
from ptycho_api.backend import TrainingHistory
from ptycho_api.container import PtychoDataContainer
from ptycho_api.schedule import SCHEDULE
from ptycho_api.supervised import SupervisedTargets
from ptycho_torch.losses import supervised_loss, total_loss
from ptycho_torch.model import PtychoPINN
from ptycho_torch.sampling import EpochSeededSampler

__all__ = [
    "KerasAdam",
    "PtychoLightningModule",
    "KerasReduceLROnPlateau",
    "keras_plateau_scheduler",
    "HistoryCallback",
    "make_dataloaders",
    "BatchedTensors",
]

logger = logging.getLogger(__name__)

KERAS_STEP = "keras_step"
"""Param-group key of ``KerasAdam``'s step count (saved with the optimizer's state)."""


class KerasAdam(torch.optim.Adam):
    """``torch.optim.Adam`` with Keras' epsilon convention (decision 10, parity.md section 3).

    Keras adds ``eps`` to ``sqrt(v)`` before bias correction ("epsilon hat" of Kingma and Ba):
    ``w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``; torch adds it after:
    ``w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``. The two agree when torch's
    eps is ``eps / sqrt(1 - b2^t)`` (31.6x larger at step 1), which ``step`` uses; ``eps`` in the
    param groups stays the Keras value (1e-7). Without this, elements with gradients below
    ~1e-5 (e.g. the phase decoder's probe_big border branch) moved up to 25x further than in
    Keras on the first step. All parameters of a group share one step count, as in Keras.
    """

    @classmethod
    def from_schedule(cls, parameters: Any, fused: bool | None = None) -> KerasAdam:
        """Adam with the learning rate, betas and epsilon of ``SCHEDULE``.

        ``fused`` None: torch's fused Adam kernel (one launch per step for all parameters) when
        every parameter is on a CUDA device, else the default implementation.
        """
        params = list(parameters)
        if fused is None:
            fused = bool(params) and all(p.device.type == "cuda" for p in params)
        return cls(
            params,
            lr=SCHEDULE.learning_rate,
            betas=(SCHEDULE.beta_1, SCHEDULE.beta_2),
            eps=SCHEDULE.epsilon,
            fused=fused or None,
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One Adam step with the per-step torch epsilon matching Keras' epsilon hat."""
        keras_eps = []
        for group in self.param_groups:
            keras_eps.append(group["eps"])
            # The step count is kept in the group as a Python int: reading torch's own counter
            # would copy it from the device on every step under the fused kernel.
            if KERAS_STEP not in group:
                group[KERAS_STEP] = self._restored_step(group)
            if any(p.grad is not None for p in group["params"]):
                group[KERAS_STEP] += 1
            t = max(group[KERAS_STEP], 1)
            group["eps"] = group["eps"] / math.sqrt(1.0 - group["betas"][1] ** t)
        try:
            return super().step(closure)
        finally:
            for group, eps in zip(self.param_groups, keras_eps, strict=True):
                group["eps"] = eps

    def _restored_step(self, group: dict[str, Any]) -> int:
        """Steps already taken by ``group`` (from torch's state after ``load_state_dict``)."""
        for p in group["params"]:
            state = self.state.get(p)
            if state and "step" in state:
                return int(state["step"])
        return 0


class PtychoLightningModule(L.LightningModule):
    """Trains a ``PtychoPINN`` with the loss of decision 9 and Adam(1e-3, eps 1e-7).

    ``model_type`` "supervised": ``ptycho_api.supervised``'s real-space loss instead, on batches
    ``(s*X, offsets, amplitude target, phase target)`` (``make_dataloaders(targets=...)``).
    """

    def __init__(
        self,
        model: PtychoPINN,
        nll_weight: float = 1.0,
        mae_weight: float = 0.0,
        model_type: str = "pinn",
    ) -> None:
        super().__init__()
        self.model = model
        self.nll_weight = float(nll_weight)
        self.mae_weight = float(mae_weight)
        self.supervised = model_type == "supervised"

    def forward(
        self, x_scaled: torch.Tensor, local_offsets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The autoencoder's three outputs (B 7.1)."""
        return self.model(x_scaled, local_offsets)

    def _loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if self.supervised:
            x_scaled, _, amplitude_target, phase_target = batch
            amplitude, phase = self.model.object_heads(x_scaled)
            return supervised_loss(amplitude, phase, amplitude_target, phase_target)
        x_scaled, offsets = batch
        _, pred_amp_scaled, _ = self(x_scaled, offsets)
        return total_loss(pred_amp_scaled, x_scaled, self.nll_weight, self.mae_weight)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """Loss of one batch; the epoch's ``loss`` is the sample-weighted mean (as Keras reports)."""
        loss = self._loss(batch)
        self.log(
            "loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch[0]),
            sync_dist=True,
        )
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        """Validation loss of one batch, averaged into ``val_loss``."""
        loss = self._loss(batch)
        self.log(
            "val_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch[0]),
            sync_dist=True,
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam as Keras configures it (decision 10); the plateau schedule is a callback."""
        return KerasAdam.from_schedule(self.parameters())


def keras_plateau_scheduler(
    optimizer: torch.optim.Optimizer,
) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """torch ReduceLROnPlateau configured to act like Keras' (factor 0.5, patience 2, min_lr 1e-4,
    absolute min_delta 1e-4, cooldown 0): Keras patience p is torch patience p - 1."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="min",
        factor=SCHEDULE.plateau_factor,
        patience=SCHEDULE.plateau_patience - 1,
        threshold=SCHEDULE.plateau_min_delta,
        threshold_mode="abs",
        cooldown=0,
        min_lr=SCHEDULE.plateau_min_lr,
    )


class KerasReduceLROnPlateau(Callback):
    """ReduceLROnPlateau with Keras semantics (decision 10), stepped at the end of each epoch.

    Keras reduces once ``patience`` consecutive epochs fail to beat ``best - min_delta``; torch's
    scheduler reduces when the count of bad epochs *exceeds* its patience, so Keras patience 2 is
    torch patience 1. Stepping here (before ``ModelCheckpoint`` runs) keeps the scheduler state
    in each checkpoint consistent with the epoch it ends, so a resumed run continues exactly.
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self._pending_state: dict[str, Any] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Attach the plateau scheduler to the optimiser (restoring a resumed run's state)."""
        self.scheduler = keras_plateau_scheduler(trainer.optimizers[0])
        if self._pending_state is not None:
            self.scheduler.load_state_dict(self._pending_state)
            self._pending_state = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Step on the monitored epoch metric."""
        value = trainer.callback_metrics.get(self.monitor)
        if self.scheduler is not None and value is not None:
            self.scheduler.step(float(value))

    def state_dict(self) -> dict[str, Any]:
        """Scheduler state for checkpoints."""
        return {"scheduler": self.scheduler.state_dict() if self.scheduler else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the scheduler state when resuming (applied once training starts)."""
        self._pending_state = state_dict.get("scheduler")


class HistoryCallback(Callback):
    """Per-epoch ``loss``, ``val_loss`` (NaN without validation) and ``lr`` (the lr of that epoch).

    Reports ``progress(epoch, nepochs, logs)``, honours ``should_stop()`` after each batch, and
    (global rank 0) writes ``history.json`` so a ``ddp_spawn`` parent can read it back.
    """

    def __init__(
        self,
        nepochs: int,
        path: Path | None = None,
        progress: Callable[[int, int, Mapping[str, float]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.nepochs = nepochs
        self.path = path
        self.progress = progress
        self.should_stop = should_stop
        self.history: TrainingHistory = {"loss": [], "val_loss": [], "lr": []}
        self._epoch_lr = math.nan
        self._validated = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Remember the learning rate this epoch trains with."""
        self._epoch_lr = float(trainer.optimizers[0].param_groups[0]["lr"])
        self._validated = False

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Note that this epoch's validation ran (a cancelled epoch may end without it)."""
        self._validated = True

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        """Stop cleanly after this batch when the caller asks to."""
        if self.should_stop is not None and self.should_stop():
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record this epoch's metrics."""
        metrics = trainer.callback_metrics
        logs = {
            "loss": float(metrics["loss"]),
            "val_loss": float(metrics["val_loss"]) if self._validated else math.nan,
            "lr": self._epoch_lr,
        }
        for key, value in logs.items():
            self.history[key].append(value)
        epoch = len(self.history["loss"])
        logger.info(
            "epoch %d/%d: loss %.6g, val_loss %.6g, lr %.3g",
            epoch,
            self.nepochs,
            logs["loss"],
            logs["val_loss"],
            logs["lr"],
        )
        if trainer.is_global_zero and self.path is not None:
            atomic_write_text(self.path, json.dumps(self.history, allow_nan=True))
        if self.progress is not None:
            self.progress(epoch, self.nepochs, logs)

    def state_dict(self) -> dict[str, Any]:
        """History so far (checkpointed, so a resumed run keeps the earlier epochs)."""
        return {"history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the history of the interrupted run."""
        self.history = {k: list(v) for k, v in state_dict["history"].items()}


class BatchedTensors(Dataset):
    """Equal-length tensors fetched a batch at a time: one gather per tensor per batch.

    ``TensorDataset`` with the default collation indexes every sample and stacks them (a
    kernel launch per sample and tensor on a GPU); ``__getitems__`` takes the whole batch's
    indices at once and returns the stacked batch, the same values in the same order.
    """

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        rows = torch.as_tensor(indices, dtype=torch.long, device=self.tensors[0].device)
        return tuple(t.index_select(0, rows) for t in self.tensors)


def _as_batch(batch: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """The collate function of ``BatchedTensors``: the batch is already stacked."""
    return list(batch)


def make_dataloaders(
    container: PtychoDataContainer,
    batch_size: int,
    seed: int | None,
    num_workers: int = 0,
    targets: SupervisedTargets | None = None,
    device: torch.device | None = None,
) -> tuple[DataLoader, DataLoader | None]:
    """Training and validation loaders of ``(s*X (B,N,N,C), local_offsets (B,1,2,C))`` float32,
    with ``targets`` (supervised mode) also its amplitude and phase ``(B,N,N,C)`` float32.

    Validation = the last groups in array order (none if ``B - int(0.95 B) == 0``); the training
    loader reshuffles every epoch, epoch k's order a function of ``seed`` and k alone
    (``EpochSeededSampler``, so a resumed run replays it; None: nondeterministic). ``device``
    (with ``num_workers`` 0) holds the data there for the whole run: batches are gathered on
    it and never copied from the host.
    """
    x_scaled = torch.from_numpy(container.X * np.float32(container.intensity_scale))
    offsets = torch.from_numpy(np.ascontiguousarray(container.local_offsets, dtype=np.float32))
    tensors = [x_scaled, offsets]
    if targets is not None:
        tensors += [torch.from_numpy(targets.amplitude), torch.from_numpy(targets.phase)]
    if device is not None and num_workers == 0:
        tensors = [t.to(device) for t in tensors]
    n_train = SCHEDULE.n_train(len(container))
    train_set = BatchedTensors(*(t[:n_train] for t in tensors))
    train_loader = DataLoader(
        train_set,
        batch_size=batch_size,
        sampler=EpochSeededSampler(train_set, seed),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=_as_batch,
    )
    val_loader = None
    if n_train < len(container):
        val_loader = DataLoader(
            BatchedTensors(*(t[n_train:] for t in tensors)),
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            collate_fn=_as_batch,
        )
    return train_loader, val_loader
