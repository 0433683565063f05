"""Rows 7 and 8 of parity.md section 2: archive cross-loading and full-training quality parity.

Cross-loading: a model trained briefly by one backend is saved with that backend's
``save_archive``, loaded by the other backend's ``load_archive``, and both predict the same
groups; the reader's patches match the writer's own predictions to rel <= 1e-4.

Archives record the data scale s of the training container (not the trained lambda), whoever
writes them.

Training parity: both backends train the same start on the same simulated scan with the same
schedule (fixed seeds, different RNG streams); the stitched amplitude MS-SSIM, amplitude SSIM
and phase SSIM of a held-out scan agree within their tolerances, and training improved the
amplitude scores by several tolerances in both backends (README: measured values).
"""

from __future__ import annotations

import numpy as np
import pytest
from parity_helpers import (
    TF,
    TOL_ARCHIVE,
    TOL_SSIM,
    TORCH,
    check,
    check_rel,
    model_config,
    rel,
    simulated_container,
)

from ptycho_api.config import TrainingConfig
from ptycho_api.container import create_ptycho_data_container
from ptycho_api.metrics import align_for_evaluation, eval_reconstruction
from ptycho_api.simulation import simulate_dataset

pytestmark = pytest.mark.slow

BACKENDS = {"tensorflow": TF, "pytorch": TORCH}


@pytest.mark.parametrize("gridsize", [1, 2])
@pytest.mark.parametrize(
    ("writer", "reader"), [("tensorflow", "pytorch"), ("pytorch", "tensorflow")]
)
def test_archive_cross_loading(writer, reader, gridsize, tmp_path):
    cfg = model_config(gridsize, n_filters_scale=1)
    container = simulated_container(cfg, n_images=40, seed=21)
    config = TrainingConfig(
        model=cfg, batch_size=8, nepochs=1, n_groups=40, seed=4, output_dir=tmp_path / "out"
    )
    w, r = BACKENDS[writer], BACKENDS[reader]
    model = w.build_model(cfg, container.probe, container.intensity_scale, seed=4)
    history = w.train(model, container, None, config)
    assert np.isfinite(history["loss"]).all()
    path = w.save_archive(model, tmp_path / "archive", config, history=history)
    loaded, params = r.load_archive(path)
    # Every archive records the data scale s of the training container (the model input is
    # s * X), not the trained lambda (a weight, physics/log_intensity_scale). s is stored as a
    # float64; 1e-9 allows its decimal round trip, while one epoch moves lambda by ~1e-3.
    check(
        "archive: recorded intensity scale vs the training data scale s",
        rel(float(params["intensity_scale"]), float(container.intensity_scale)),
        1e-9,
        writer,
    )
    lam = float(w.export_weights(model)["physics/log_intensity_scale"])
    assert rel(np.exp(lam), float(container.intensity_scale)) > 1e-6, "lambda did not train"
    xs = (container.X * np.float32(container.intensity_scale)).astype(np.float32)
    offsets = container.local_offsets.astype(np.float32)
    expected = w.predict(model, xs, offsets, batch_size=16)
    got = r.predict(loaded, xs, offsets, batch_size=16)
    check_rel(
        "archive cross-load (reader vs writer)", got, expected, TOL_ARCHIVE, f"{writer}->{reader}"
    )
    assert int(params["gridsize"]) == gridsize


N_TRAIN, N_TEST, NEPOCHS, BATCH, SEED = 256, 512, 16, 8, 7
TOL_MS_SSIM = 0.05
"""Amplitude MS-SSIM difference after full training (README: measured spread and gain)."""


def _initial_weights(exported: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Backend-neutral start: Glorot-uniform kernels from a numpy generator, zero biases (the
    shared initialisation rule), and the model's own physics weights (log s, normalised probe)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, value in exported.items():
        if key.endswith("/kernel"):
            kh, kw, cin, cout = value.shape
            limit = np.sqrt(6.0 / (kh * kw * (cin + cout)))
            out[key] = rng.uniform(-limit, limit, value.shape).astype(np.float32)
        elif key.endswith("/bias"):
            out[key] = np.zeros_like(value)
        else:
            out[key] = value
    return out


def _quality(backend, model, test, obj) -> dict[str, float]:
    """Amplitude SSIM, amplitude MS-SSIM and phase SSIM of the stitched held-out scan."""
    xs = (test.X * np.float32(test.intensity_scale)).astype(np.float32)
    patches = backend.predict(model, xs, test.local_offsets.astype(np.float32))
    stitched = backend.reassemble_position(patches, test.global_offsets, 20)
    image, truth = align_for_evaluation(stitched, obj, test.global_offsets, 20)
    metrics = eval_reconstruction(image, truth)
    return {
        "amplitude SSIM": metrics["ssim"][0],
        "amplitude MS-SSIM": metrics["ms_ssim"][0],
        "phase SSIM": metrics["ssim"][1],
    }


def test_full_training_quality_parity(tmp_path):
    """Both backends train the same start (identical weights) on the same scan with the same
    schedule; only their RNG streams (shuffling) and rounding differ. On a held-out scan of
    another object (512 positions, so that the stitched image has few holes), the amplitude
    quality of the two trained models agrees within its tolerance, and training improved it by
    several tolerances in both backends, so that the comparison certifies learned quality.

    Tolerances (README: 9 paired runs measured, other seeds and starts): amplitude MS-SSIM 0.05
    (worst difference 0.032 where both ran all epochs; gain >= 0.45, asserted >= 3x); amplitude
    SSIM 0.03 (parity.md; worst 0.038; gain >= 0.065, asserted >= 2x); phase SSIM 0.03
    (parity.md). The simulated objects have zero phase, so an untrained model (phase 0) already
    scores ~0.99 and training can only lose phase SSIM: that row checks that both keep the phase
    equally flat and certifies no learning. Early stopping (training loss, patience 3) can cut
    one run short after a loss spike (seen at one other seed: 10 vs 15 epochs, MS-SSIM
    difference 0.11); the failure message then names the epochs each backend ran.
    """
    cfg = model_config(1, n_filters_scale=1)
    train_raw = simulate_dataset(n_images=N_TRAIN, N=cfg.N, seed=42)
    train = create_ptycho_data_container(
        train_raw, TrainingConfig(model=cfg, n_groups=N_TRAIN, seed=42)
    )
    raw = simulate_dataset(n_images=N_TEST, N=cfg.N, seed=43)
    test = create_ptycho_data_container(raw, TrainingConfig(model=cfg, n_groups=N_TEST, seed=43))
    start = None
    scores, epochs = {}, {}
    for name, backend in BACKENDS.items():
        config = TrainingConfig(
            model=cfg,
            batch_size=BATCH,
            nepochs=NEPOCHS,
            n_groups=N_TRAIN,
            seed=SEED,
            output_dir=tmp_path / name,
        )
        model = backend.build_model(cfg, train.probe, train.intensity_scale, seed=SEED)
        if start is None:
            start = _initial_weights(backend.export_weights(model), SEED)
        backend.import_weights(model, start)
        untrained = _quality(backend, model, test, raw.objectGuess)
        history = backend.train(model, train, None, config)
        trained = _quality(backend, model, test, raw.objectGuess)
        print(name, "untrained", untrained, "trained", trained, "loss", history["loss"])
        assert history["loss"][-1] < history["loss"][0], name
        scores[name] = (untrained, trained)
        epochs[name] = len(history["loss"])
    (u_tf, t_tf), (u_pt, t_pt) = scores["tensorflow"], scores["pytorch"]
    for metric, tolerance, power in (
        ("amplitude MS-SSIM", TOL_MS_SSIM, 3.0),
        ("amplitude SSIM", TOL_SSIM, 2.0),
        ("phase SSIM", TOL_SSIM, None),
    ):
        check(
            f"full training: {metric} difference",
            abs(t_tf[metric] - t_pt[metric]),
            tolerance,
            f"epochs run (early stopping): {epochs}",
        )
        if power is None:
            continue
        # The same start scores the same in both backends (identical weights).
        assert abs(u_tf[metric] - u_pt[metric]) <= 1e-4, metric
        for name, (untrained, trained) in scores.items():
            gain = trained[metric] - untrained[metric]
            assert gain >= power * tolerance, (
                f"{name}: {metric} gain {gain:.3f} < {power} x tolerance {tolerance}: the "
                "comparison would not certify learned quality"
            )
