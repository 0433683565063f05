"""Training with Lightning (physics.md B 8; decisions 4, 9, 10); mirrors ``ptycho_tf.training``.

One ``LightningModule`` with automatic optimisation (Poisson NLL + MAE of decision 9), Adam,
Keras-semantics ReduceLROnPlateau on the validation loss and EarlyStopping on the training loss,
all with the numbers of ``ptycho_api.schedule.SCHEDULE``; ``ModelCheckpoint`` (last and best)
and a CSV logger under the output directory. Checkpoints are written atomically and read back
safely (``ptycho_torch.checkpoint_io``). The training set is reshuffled every epoch in an order
fixed by the seed and the epoch (``ptycho_torch.sampling``), so a resumed run continues exactly
as the uninterrupted one would have.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from ptycho_api.backend import TrainingHistory
from ptycho_api.config import TrainingConfig
from ptycho_api.container import PtychoDataContainer
from ptycho_api.errors import ConfigError
from ptycho_api.schedule import SCHEDULE
from ptycho_api.supervised import supervised_targets
from ptycho_torch.checkpoint_io import (
    AtomicCheckpointIO,
    check_resume_checkpoint,
    remove_stale_temporaries,
)
from ptycho_torch.config import ExecutionConfig
from ptycho_torch.lightning_module import (
    HistoryCallback,
    KerasAdam,
    KerasReduceLROnPlateau,
    PtychoLightningModule,
    make_dataloaders,
)
from ptycho_torch.model import PtychoPINN

__all__ = [
    "make_optimizer",
    "make_trainer",
    "schedule_callbacks",
    "seed_everything",
    "train_model",
]

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "history.json"


def make_optimizer(parameters: Any) -> torch.optim.Optimizer:
    """Adam with the settings of ``ptycho_api.schedule.SCHEDULE`` and Keras' epsilon convention."""
    return KerasAdam.from_schedule(parameters)


def make_trainer(
    model: PtychoPINN,
    nll_weight: float = 1.0,
    mae_weight: float = 0.0,
    *,
    model_type: str = "pinn",
) -> PtychoLightningModule:
    """The ``LightningModule`` that trains ``model`` (Lightning's ``fit`` drives it).

    ``model_type`` "pinn": the decision 9 loss; "supervised": ``ptycho_api.supervised``'s
    real-space loss (nll/mae weights unused).
    """
    return PtychoLightningModule(model, nll_weight, mae_weight, model_type)


def schedule_callbacks(has_validation: bool, early_stopping: bool = True) -> list[Callback]:
    """ReduceLROnPlateau (Keras semantics) and (with ``early_stopping``) EarlyStopping per ``SCHEDULE``."""
    plateau: list[Callback] = [KerasReduceLROnPlateau(SCHEDULE.plateau_monitor(has_validation))]
    if not early_stopping:
        return plateau
    return [
        *plateau,
        EarlyStopping(
            monitor="loss",
            patience=SCHEDULE.early_stopping_patience,
            min_delta=SCHEDULE.early_stopping_min_delta,
            mode="min",
            check_on_train_epoch_end=True,
        ),
    ]


def seed_everything(seed: int | None) -> None:
    """With a seed: seed Python, numpy and torch (process-wide, data-loader workers included)."""
    if seed is not None:
        L.seed_everything(seed, workers=True, verbose=False)


def _resume_path(execution: ExecutionConfig, output_dir: Path) -> str | None:
    if execution.resume_from is None:
        return None
    if str(execution.resume_from) == "last":
        path = output_dir / CHECKPOINT_DIR / "last.ckpt"
    else:
        path = Path(execution.resume_from)
    if not path.is_file():
        raise ConfigError(f"execution.resume_from: checkpoint {str(path)!r} does not exist")
    return str(path)


def resident_device(execution: ExecutionConfig) -> torch.device | None:
    """The one GPU a single-device run trains on, where its data then stay; else None (host).

    Several devices (DDP) shard the data per process, and DataLoader workers cannot hand out
    CUDA tensors, so those runs keep the data on the host and Lightning copies each batch.
    """
    single = execution.strategy == "auto" and execution.devices in (1, "1", [0])
    wants_gpu = execution.accelerator in ("gpu", "cuda") or (
        execution.accelerator == "auto" and torch.cuda.is_available()
    )
    if single and wants_gpu and execution.num_workers == 0 and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return None


def train_model(
    model: PtychoPINN,
    train: PtychoDataContainer,
    config: TrainingConfig,
    *,
    execution: ExecutionConfig | None = None,
    progress: Callable[[int, int, Mapping[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    extra_callbacks: Sequence[Callback] = (),
) -> tuple[TrainingHistory, L.Trainer]:
    """Fit ``model`` on ``train`` per ``config`` with Lightning; returns ``(history, trainer)``.

    ``extra_callbacks`` are added to the Trainer's (e.g. for profiling).
    ``config.model.model_type`` "supervised" trains on ``ptycho_api.supervised``'s real-space
    loss against the ground truth of ``train`` (``DataError`` without it).
    lambda and the probe become trained or constant per ``config``'s flags (decision 4).
    Checkpoints (``last.ckpt`` and the best by the monitored loss) go to
    ``<output_dir>/checkpoints``, CSV logs to ``<output_dir>/lightning_logs``.
    ``execution.resume_from`` restores weights, optimiser, schedule and callback states and the
    epoch; an empty, truncated, corrupt or other model's checkpoint raises ``BundleError`` before
    training starts.
    """
    execution = (execution or ExecutionConfig()).validate()
    config.validate()
    seed_everything(config.seed)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    resume = _resume_path(execution, output_dir)
    remove_stale_temporaries(output_dir / CHECKPOINT_DIR)
    targets = (
        supervised_targets(train, config.model) if config.model.model_type == "supervised" else None
    )
    train_loader, val_loader = make_dataloaders(
        train,
        config.batch_size,
        config.seed,
        execution.num_workers,
        targets=targets,
        device=resident_device(execution),
    )
    monitor = SCHEDULE.plateau_monitor(val_loader is not None)
    history_cb = HistoryCallback(config.nepochs, output_dir / HISTORY_FILE, progress, should_stop)
    callbacks: list[Callback] = [
        history_cb,
        *schedule_callbacks(val_loader is not None, config.early_stopping),
        ModelCheckpoint(
            dirpath=output_dir / CHECKPOINT_DIR,
            filename="best-{epoch:03d}",
            monitor=monitor,
            mode="min",
            save_top_k=1,
            save_last=True,
            save_on_train_epoch_end=True,
        ),
        *extra_callbacks,
    ]
    model.set_trainable(
        probe=config.probe_trainable, intensity_scale=config.intensity_scale_trainable
    )
    if execution.channels_last:
        model.to(memory_format=torch.channels_last)
    model.fused_physics = execution.fused_physics
    if execution.compile_mode is not None:
        model.compile(mode=execution.compile_mode)
    module = make_trainer(
        model, config.nll_weight, config.mae_weight, model_type=config.model.model_type
    )
    if resume is not None:
        check_resume_checkpoint(resume, module.state_dict())
    trainer = L.Trainer(
        max_epochs=config.nepochs,
        accelerator=execution.accelerator,
        devices=execution.devices,
        strategy=execution.strategy,
        precision=execution.precision,
        deterministic=execution.deterministic,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        logger=CSVLogger(save_dir=str(output_dir), name="lightning_logs"),
        enable_progress_bar=(
            sys.stdout.isatty()
            if execution.enable_progress_bar is None
            else execution.enable_progress_bar
        ),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(
        module,
        train_dataloaders=train_loader,
        val_dataloaders=val_loader,
        ckpt_path=resume,
    )
    history = history_cb.history
    if not history["loss"] and (output_dir / HISTORY_FILE).is_file():
        # ddp_spawn trains in child processes; rank 0 left the history on disk.
        history = json.loads((output_dir / HISTORY_FILE).read_text(encoding="utf-8"))
    return history, trainer
