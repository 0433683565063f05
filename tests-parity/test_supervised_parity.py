"""Supervised mode (``model.model_type='supervised'``) on both backends: same weights, same numbers.

The network and its forward pass are the PINN's; only the loss differs (``ptycho_api.supervised``:
MAE of the decoders' amplitude against ``|Y|/a`` plus MAE of their phase against ``angle(Y)``).
Checked as ``test_model_parity.py`` checks the PINN, with its tolerances and for the same
reasons (README, "Tolerances"): forward pass 1e-4, loss 1e-5, gradients 1e-3 per tensor (the
dL/dz of convs with a one-element bias at 1e-2), one Adam step then forward again 1e-4.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from parity_helpers import (
    TF,
    TOL_FORWARD,
    TOL_LOSS,
    TOL_STEP,
    TORCH,
    TFStepper,
    TorchStepper,
    align_unresolved_steps,
    check,
    check_gradients,
    check_rel,
    kink_free_start,
    model_config,
    paired_models,
    rel,
    scaled_batch,
    tf_forward,
    tf_loss_and_gradients,
    tf_object_heads,
    torch_forward,
    torch_loss_and_gradients,
    torch_object_heads,
)

from ptycho_api.architecture import PROBE_KEY
from ptycho_api.config import TrainingConfig
from ptycho_api.container import create_ptycho_data_container
from ptycho_api.simulation import simulate_dataset
from ptycho_api.supervised import SupervisedTargets, supervised_loss, supervised_targets

FLAGS = {
    "scale-trained": {"intensity_scale_trainable": True, "probe_trainable": False},
    "probe-trained": {"intensity_scale_trainable": False, "probe_trainable": True},
}
CASES = [
    pytest.param(g, pb, flags, extra, id=f"g{g}-{'pb' if pb else 'nopb'}-{flags}{tag}")
    for g, pb, flags, extra, tag in (
        (1, True, "scale-trained", {}, ""),
        (1, False, "probe-trained", {}, ""),
        (1, True, "scale-trained", {"pad_object": False, "amp_activation": "swish"}, "-nopad"),
        (2, True, "probe-trained", {}, ""),
        (2, False, "scale-trained", {}, ""),
    )
]
OUTPUTS = ("trimmed_obj", "pred_amp_scaled", "pred_intensity")

_DATA: dict[int, tuple[object, SupervisedTargets]] = {}


def _data(gridsize: int):
    """A seeded scan with a non-zero phase (``set_phi``), grouped, and its supervised targets."""
    if gridsize not in _DATA:
        cfg = model_config(gridsize, model_type="supervised")
        raw = simulate_dataset(n_images=48, N=64, seed=11, set_phi=True)
        container = create_ptycho_data_container(
            raw, TrainingConfig(model=cfg, n_groups=48, seed=11)
        )
        _DATA[gridsize] = (container, supervised_targets(container, cfg))
    return _DATA[gridsize]


def _batch(container, targets: SupervisedTargets, start: int, size: int = 4):
    xs, offsets = scaled_batch(container, start, size)
    sl = slice(start, start + size)
    return xs, offsets, (targets.amplitude[sl], targets.phase[sl])


def _heads(pair, xs, offsets):
    got_tf = [np.asarray(t) for t in tf_object_heads(pair.tf)([xs, offsets])]
    return got_tf, torch_object_heads(pair.torch, xs)


def _compare(pair, xs, offsets, row, tolerance, what=""):
    """Decoder outputs (what the loss sees) and the autoencoder's three outputs, torch vs TF."""
    heads_tf, heads_torch = _heads(pair, xs, offsets)
    for name, a, b in zip(("amplitude", "phase"), heads_torch, heads_tf, strict=True):
        check_rel(row, a, b, tolerance, f"{what}supervised {name}")
    for name, a, b in zip(
        OUTPUTS,
        torch_forward(pair.torch, xs, offsets),
        tf_forward(pair.tf, xs, offsets),
        strict=True,
    ):
        check_rel(row, a, b, tolerance, f"{what}supervised {name}")
    return heads_tf


@pytest.mark.parametrize(("gridsize", "probe_big", "flags", "extra"), CASES)
def test_supervised_forward_loss_gradients_and_one_step(gridsize, probe_big, flags, extra):
    cfg = model_config(gridsize, probe_big=probe_big, model_type="supervised", **extra)
    container, targets = _data(gridsize)
    pair = paired_models(cfg, intensity_scale=container.intensity_scale, **FLAGS[flags])
    xs, offsets, batch_targets = _batch(container, targets, kink_free_start(pair, container, 0))

    # Forward unchanged: the PINN with the same weights computes exactly the same outputs in
    # each backend (same code, same numbers: tolerance 0), and the backends agree (1e-4).
    pinn = paired_models(
        replace(cfg, model_type="pinn"), intensity_scale=container.intensity_scale, **FLAGS[flags]
    )
    for a, b in zip(
        tf_forward(pair.tf, xs, offsets), tf_forward(pinn.tf, xs, offsets), strict=True
    ):
        assert rel(a, b) == 0.0
    for a, b in zip(
        torch_forward(pair.torch, xs, offsets), torch_forward(pinn.torch, xs, offsets), strict=True
    ):
        assert rel(a, b) == 0.0
    heads_tf = _compare(pair, xs, offsets, "forward pass", TOL_FORWARD)

    # Loss value: both backends' supervised_loss, and the numpy reference on TF's heads.
    loss_tf, grads_tf = tf_loss_and_gradients(pair.tf, xs, offsets, targets=batch_targets)
    loss_torch, grads_torch = torch_loss_and_gradients(
        pair.torch, xs, offsets, targets=batch_targets
    )
    check_rel("loss value", loss_torch, loss_tf, TOL_LOSS, "supervised")
    check_rel(
        "loss value", loss_tf, supervised_loss(*heads_tf, *batch_targets), TOL_LOSS, "tf vs numpy"
    )

    # Gradients: the same set (the loss does not reach the probe, trained or not; lambda, when
    # trained, through the input scaling), each tensor as in the PINN's check.
    assert set(grads_tf) == set(grads_torch)
    assert not {"physics/probe_real", "physics/probe_imag"} & set(grads_tf)
    assert ("physics/log_intensity_scale" in grads_tf) == (flags == "scale-trained")
    check_gradients(pair, xs, offsets, grads_tf, grads_torch, targets=batch_targets)

    # One Adam step through each backend's own supervised training step, then forward again.
    probe_before = TF.export_weights(pair.tf)[PROBE_KEY]
    loss0_tf = TFStepper(pair.tf, model_type="supervised").step(xs, offsets, batch_targets)
    loss0_torch = TorchStepper(pair.torch, model_type="supervised").step(xs, offsets, batch_targets)
    check_rel("loss value", loss0_torch, loss0_tf, TOL_LOSS, "supervised, inside the train step")
    align_unresolved_steps(pair, grads_tf, grads_torch)
    xs2, offsets2, _ = _batch(container, targets, 4)
    _compare(pair, xs2, offsets2, "one Adam step", TOL_STEP)
    # The step changed the network (else the comparison above proves nothing), not the probe.
    assert rel(tf_object_heads(pair.tf)([xs, offsets])[0], heads_tf[0]) > 1e-4
    for backend, model in ((TF, pair.tf), (TORCH, pair.torch)):
        check(
            "supervised step: probe change",
            rel(backend.export_weights(model)[PROBE_KEY], probe_before),
            0.0,
        )
