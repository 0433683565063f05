"""Training with Lightning: smoke runs, trainable flags, checkpoints and resuming, determinism,
the Keras learning-rate schedule, the validation split (physics.md B 8; decisions 4, 9, 10)."""

from __future__ import annotations

import io
import math
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.container import create_ptycho_data_container
from ptycho_api.schedule import SCHEDULE
from ptycho_torch.config import ExecutionConfig
from ptycho_torch.lightning_module import KerasAdam, PtychoLightningModule, keras_plateau_scheduler
from ptycho_torch.model import build_model
from ptycho_torch.training import train_model
from ptycho_torch.weights import export_weights
from ptycho_torch.workflows.components import train_cdi_model_torch

CPU = ExecutionConfig(accelerator="cpu", enable_progress_bar=False)


def _saturated_nll(container) -> float:
    """The NLL's lower bound on the training split: I_pred = I_obs (decision 9, float64)."""
    n_train = SCHEDULE.n_train(len(container))
    observed = (container.X[:n_train].astype(np.float64) * container.intensity_scale) ** 2
    return float(np.mean(observed - observed * np.log(observed + 1e-12)))


@pytest.fixture(scope="module", params=[1, 2], ids=["gridsize1", "gridsize2"])
def smoke(request, scan_256, tmp_path_factory):
    """3 epochs on 256 simulated patterns (N=64, n_filters_scale 1).

    gridsize 1 trains with the default flags (lambda trained, probe fixed), gridsize 2 with both
    flipped (lambda fixed, probe trained), so decision 4 is checked both ways. gridsize 2 groups
    the 256 patterns into 128 groups of 4 neighbours.
    """
    gridsize = request.param
    flipped = gridsize == 2
    config = TrainingConfig(
        model=ModelConfig(N=64, gridsize=gridsize, n_filters_scale=1),
        nepochs=3,
        batch_size=16 if gridsize == 1 else 8,
        n_groups=256 if gridsize == 1 else 64,
        seed=11,
        intensity_scale_trainable=not flipped,
        probe_trainable=flipped,
        output_dir=tmp_path_factory.mktemp(f"smoke_g{gridsize}"),
    )
    container = create_ptycho_data_container(scan_256, config)
    model = build_model(config.model, container.probe, container.intensity_scale, seed=config.seed)
    before = export_weights(model)
    history, trainer = train_model(model, container, config, execution=CPU)
    return {
        "config": config,
        "container": container,
        "before": before,
        "after": export_weights(model),
        "history": history,
        "trainer": trainer,
        "flipped": flipped,
    }


def test_smoke_history_records_loss_val_loss_and_lr_per_epoch(smoke):
    history = smoke["history"]
    assert sorted(history) == ["loss", "lr", "val_loss"]
    assert all(len(v) == 3 for v in history.values())
    assert all(math.isfinite(v) for v in history["loss"] + history["val_loss"])
    assert history["lr"][0] == pytest.approx(1e-3, rel=1e-12)
    assert all(1e-4 <= lr <= 1e-3 for lr in history["lr"])


def test_smoke_final_training_loss_is_below_0_8_of_the_first(smoke):
    # The Poisson NLL without its log-factorial term is negative here (counts ~1e3-1e6), so "loss"
    # is read as its excess over the saturated NLL (I_pred = I_obs), the quantity training drives
    # to zero: final excess < 0.8 x first-epoch excess.
    floor = _saturated_nll(smoke["container"])
    first, final = (v - floor for v in (smoke["history"]["loss"][0], smoke["history"]["loss"][-1]))
    assert first > 0 and final > 0
    assert final < 0.8 * first, (first, final)


def test_smoke_trainable_flags_follow_decision_4(smoke):
    before, after = smoke["before"], smoke["after"]
    lam_changed = not np.array_equal(
        before["physics/log_intensity_scale"], after["physics/log_intensity_scale"]
    )
    probe_changed = not np.array_equal(before["physics/probe"], after["physics/probe"])
    assert lam_changed is not smoke["flipped"]
    assert probe_changed is smoke["flipped"]
    assert not np.array_equal(
        before["encoder/block0/conv0/kernel"], after["encoder/block0/conv0/kernel"]
    )


def test_smoke_writes_checkpoints_and_csv_logs(smoke):
    out = smoke["config"].output_dir
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert len(list((out / "checkpoints").glob("best-*.ckpt"))) == 1
    csv = list((out / "lightning_logs").rglob("metrics.csv"))
    assert len(csv) == 1 and "val_loss" in csv[0].read_text().splitlines()[0]


@pytest.mark.parametrize("smoke", [1], indirect=True, ids=["gridsize1"])
def test_resuming_continues_from_the_saved_epoch(smoke):
    config = replace(smoke["config"], nepochs=4)
    container = smoke["container"]
    # Fresh weights: everything must come back from last.ckpt.
    model = build_model(config.model, container.probe, container.intensity_scale, seed=99)
    resume = replace(CPU, resume_from="last")
    history, trainer = train_model(model, container, config, execution=resume)
    assert len(history["loss"]) == 4
    # The three saved epochs come back from the checkpoint unchanged; only epoch 4 is new.
    assert history["loss"][:3] == smoke["history"]["loss"]
    assert trainer.current_epoch == 4
    # Epoch 4 starts from the trained weights, not from the fresh ones (whose first epoch is
    # epoch 1's): its excess loss stays below the first epoch's.
    floor = _saturated_nll(container)
    excess = [v - floor for v in history["loss"]]
    assert excess[3] < excess[0]


def test_same_seed_twice_with_deterministic_gives_identical_weights_and_history(scan_64, tmp_path):
    results = []
    for run in ("a", "b"):
        config = TrainingConfig(
            model=ModelConfig(N=64, gridsize=1, n_filters_scale=1),
            nepochs=2,
            batch_size=8,
            n_groups=32,
            seed=5,
            output_dir=tmp_path / run,
        )
        execution = replace(CPU, deterministic=True)
        out = train_cdi_model_torch(scan_64, None, config, execution_config=execution)
        results.append((out["history"], export_weights(out["model"])))
    (h1, w1), (h2, w2) = results
    assert h1 == h2
    assert all(np.array_equal(w1[k], w2[k]) for k in w1)


def test_keras_plateau_semantics():
    """Reduce after 2 epochs without improving best - 1e-4 (absolute), halve, floor at 1e-4."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=1e-3, eps=SCHEDULE.epsilon)
    scheduler = keras_plateau_scheduler(optimizer)
    # best 10 -> 9.99995 (not better by 1e-4: bad 1) -> 9.99991 (bad 2: reduce) -> 5 (better)
    # -> 5, 5 (reduce) -> 4, then plateaus hit the floor.
    values = [10.0, 9.99995, 9.99991, 5.0, 5.0, 5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    lrs = []
    for value in values:
        scheduler.step(value)
        lrs.append(optimizer.param_groups[0]["lr"])
    expected = [
        1e-3,
        1e-3,
        5e-4,
        5e-4,
        5e-4,
        2.5e-4,
        2.5e-4,
        2.5e-4,
        1.25e-4,
        1.25e-4,
        1e-4,
        1e-4,
        1e-4,
        1e-4,
        1e-4,
    ]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_adam_uses_keras_epsilon():
    model = build_model(ModelConfig(N=64, n_filters_scale=1), np.ones((64, 64), np.complex64), 1.0)
    optimizer = PtychoLightningModule(model).configure_optimizers()
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"]) == (1e-3, (0.9, 0.999), 1e-7)
    assert isinstance(optimizer, KerasAdam)


@pytest.mark.parametrize("fused", [False, True])
def test_keras_adam_follows_the_keras_update_rule(fused):
    """Keras: w -= lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps); tiny gradients expose the eps.

    The fused kernel (what CUDA training uses) runs on the CPU too, so both paths are checked.
    """
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=50)
    param = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    optimizer = KerasAdam([param], lr=1e-3, betas=(0.9, 0.999), eps=1e-7, fused=fused)
    w, m, v = w0.copy(), np.zeros(50), np.zeros(50)
    for t in range(1, 4):
        g = rng.choice([-1.0, 1.0], 50) * 10.0 ** rng.uniform(-9, 2, 50)
        param.grad = torch.tensor(g)
        optimizer.step()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - 1e-3 * math.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-7)
        np.testing.assert_allclose(param.detach().numpy(), w, rtol=0, atol=1e-12)
    assert optimizer.param_groups[0]["eps"] == 1e-7


def test_keras_adam_step_count_survives_a_state_dict_round_trip():
    """A resumed optimizer continues Keras' epsilon schedule at the step where it stopped."""
    grads = [torch.tensor([1e-8, 1.0], dtype=torch.float64) * k for k in (1.0, -2.0, 3.0, 0.5)]
    straight = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = KerasAdam([straight], lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    for g in grads:
        straight.grad = g.clone()
        opt.step()
    resumed = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    first = KerasAdam([resumed], lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    for g in grads[:2]:
        resumed.grad = g.clone()
        first.step()
    second = KerasAdam([resumed], lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    second.load_state_dict(first.state_dict())
    for g in grads[2:]:
        resumed.grad = g.clone()
        second.step()
    # Same arithmetic in the same order: identical to the last bit.
    assert torch.equal(resumed.detach(), straight.detach())
    assert second.param_groups[0]["keras_step"] == 4


def test_adam_is_fused_only_on_cuda_by_default():
    param = torch.nn.Parameter(torch.zeros(3))
    assert not KerasAdam.from_schedule([param]).defaults["fused"]
    assert KerasAdam.from_schedule([param], fused=True).defaults["fused"]


@pytest.mark.parametrize(
    ("n", "n_train"), [(256, 243), (20, 19), (19, 18), (10, 9), (2, 1), (1, 1)]
)
def test_validation_split_is_keras_validation_split(n, n_train):
    assert SCHEDULE.n_train(n) == n_train


def test_progress_and_cancellation(scan_64, tmp_path):
    config = TrainingConfig(
        model=ModelConfig(N=64, n_filters_scale=1),
        nepochs=5,
        batch_size=8,
        n_groups=24,
        seed=1,
        output_dir=tmp_path,
    )
    container = create_ptycho_data_container(scan_64, config)
    model = build_model(config.model, container.probe, container.intensity_scale, seed=1)
    seen = []
    history, _ = train_model(
        model,
        container,
        config,
        execution=CPU,
        progress=lambda epoch, total, logs: seen.append((epoch, total, sorted(logs))),
        should_stop=lambda: len(seen) >= 1,
    )
    # Stops after the first batch of epoch 2: one complete epoch was reported.
    assert seen[0] == (1, 5, ["loss", "lr", "val_loss"])
    assert len(history["loss"]) <= 2


def test_backend_train_applies_the_config_flags_and_returns_history(scan_64, tmp_path):
    from ptycho_api.backend import select_backend

    backend = select_backend("pytorch")
    backend.execution = CPU
    config = TrainingConfig(
        model=ModelConfig(N=64, n_filters_scale=1),
        nepochs=1,
        batch_size=8,
        n_groups=16,
        seed=2,
        probe_trainable=True,
        intensity_scale_trainable=False,
        output_dir=tmp_path,
    )
    container = create_ptycho_data_container(scan_64, config)
    # Built with the protocol's defaults (lambda trained, probe fixed); train() applies the config.
    model = backend.build_model(config.model, container.probe, container.intensity_scale)
    history = backend.train(model, container, None, config)
    assert [len(history[k]) for k in ("loss", "val_loss", "lr")] == [1, 1, 1]
    assert model.probe_trainable and not model.intensity_scale_trainable


@pytest.mark.parametrize(("tty", "expected"), [(False, False), (True, True)])
def test_progress_bar_by_default_only_on_a_terminal(scan_64, tmp_path, monkeypatch, tty, expected):
    class Stdout(io.StringIO):
        def isatty(self) -> bool:
            return tty

    monkeypatch.setattr(sys, "stdout", Stdout())
    _, trainer = _train_one_epoch(scan_64, tmp_path)
    assert (trainer.progress_bar_callback is not None) is expected


def _train_one_epoch(scan, output_dir, **fields):
    """One epoch on 16 groups (N=64, n_filters_scale 1, seed 3) on the CPU; -> (history, trainer)."""
    config = TrainingConfig(
        model=ModelConfig(N=64, n_filters_scale=1),
        nepochs=1,
        batch_size=8,
        n_groups=16,
        seed=3,
        output_dir=output_dir,
        **fields,
    )
    container = create_ptycho_data_container(scan, config)
    model = build_model(config.model, container.probe, container.intensity_scale, seed=3)
    return train_model(model, container, config, execution=ExecutionConfig(accelerator="cpu"))


@pytest.mark.parametrize("early_stopping", [True, False])
def test_early_stopping_follows_the_config(scan_64, tmp_path, early_stopping):
    # early_stopping false (ptycho train --no-early-stopping) trains every epoch: no EarlyStopping.
    _, trainer = _train_one_epoch(scan_64, tmp_path, early_stopping=early_stopping)
    assert (trainer.early_stopping_callback is not None) is early_stopping
    # The plateau rule stays either way.
    from ptycho_torch.lightning_module import KerasReduceLROnPlateau

    assert any(isinstance(cb, KerasReduceLROnPlateau) for cb in trainer.callbacks)
