"""Rows 2-6 of parity.md section 2: forward pass, loss, gradients, one Adam step, 20 steps.

Both models are built from one ``ModelConfig`` and hold identical canonical weights (the TF
model's, copied into the torch one). Inputs are batches of a seeded simulated scan. Parametrised
over gridsize 1 and 2, object_big and probe_big on and off and the two trainable-flag settings
(intensity scale trained and probe fixed, the default; and the reverse).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from parity_helpers import (
    TF,
    TOL_CURVE,
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
    simulated_container,
    tf_forward,
    tf_loss_and_gradients,
    tf_object_patches,
    torch_forward,
    torch_loss_and_gradients,
    torch_object_patches,
)

from ptycho_api import physics as ref

FLAGS = {
    "scale-trained": {"intensity_scale_trainable": True, "probe_trainable": False},
    "probe-trained": {"intensity_scale_trainable": False, "probe_trainable": True},
}
CASES = [
    pytest.param(
        g, ob, pb, flags, id=f"g{g}-{'ob' if ob else 'noob'}-{'pb' if pb else 'nopb'}-{flags}"
    )
    for g, ob, pb, flags in itertools.product((1, 2), (True, False), (True, False), FLAGS)
]
OUTPUTS = ("trimmed_obj", "pred_amp_scaled", "pred_intensity")

_CONTAINERS: dict[int, object] = {}


def _data(gridsize: int):
    if gridsize not in _CONTAINERS:
        _CONTAINERS[gridsize] = simulated_container(model_config(gridsize), n_images=48, seed=11)
    return _CONTAINERS[gridsize]


def _pair(gridsize, object_big, probe_big, flags, **extra):
    cfg = model_config(gridsize, object_big=object_big, probe_big=probe_big, **extra)
    container = _data(gridsize)
    return paired_models(cfg, intensity_scale=container.intensity_scale, **FLAGS[flags]), container


def _compare_outputs(pair, xs, offsets, row, tolerance, what=""):
    got_tf = tf_forward(pair.tf, xs, offsets)
    got_torch = torch_forward(pair.torch, xs, offsets)
    for name, a, b in zip(OUTPUTS, got_torch, got_tf, strict=True):
        check_rel(row, a, b, tolerance, f"{what}{name}")
    return got_tf, got_torch


@pytest.mark.parametrize(("gridsize", "object_big", "probe_big", "flags"), CASES)
def test_forward_loss_gradients_and_one_step(gridsize, object_big, probe_big, flags):
    pair, container = _pair(gridsize, object_big, probe_big, flags)
    xs, offsets = scaled_batch(container, kink_free_start(pair, container, 0), 4)

    # Forward: object patches and the three outputs.
    check_rel(
        "forward pass",
        torch_object_patches(pair.torch, xs),
        tf_object_patches(pair.tf, xs),
        TOL_FORWARD,
        "object patches",
    )
    got_tf, _ = _compare_outputs(pair, xs, offsets, "forward pass", TOL_FORWARD)

    # Loss value, both backends' loss functions, plus the numpy reference on TF's prediction.
    loss_tf, grads_tf = tf_loss_and_gradients(pair.tf, xs, offsets)
    loss_torch, grads_torch = torch_loss_and_gradients(pair.torch, xs, offsets)
    check_rel("loss value", loss_torch, loss_tf, TOL_LOSS)
    check_rel("loss value", loss_tf, ref.poisson_nll(got_tf[1], xs), TOL_LOSS, "tf vs numpy")

    # Gradient of every trainable canonical weight, the same set on both sides.
    assert set(grads_tf) == set(grads_torch)
    expected_extra = (
        {"physics/log_intensity_scale"}
        if flags == "scale-trained"
        else {
            "physics/probe_real",
            "physics/probe_imag",
        }
    )
    assert expected_extra <= set(grads_tf)
    check_gradients(pair, xs, offsets, grads_tf, grads_torch)

    # One Adam step through each backend's own training step, then forward again.
    loss0_tf = TFStepper(pair.tf).step(xs, offsets)
    loss0_torch = TorchStepper(pair.torch).step(xs, offsets)
    check_rel("loss value", loss0_torch, loss0_tf, TOL_LOSS, "inside the train step")
    align_unresolved_steps(pair, grads_tf, grads_torch)
    xs2, offsets2 = scaled_batch(container, 4, 4)
    after_tf, after_torch = _compare_outputs(pair, xs2, offsets2, "one Adam step", TOL_STEP)
    # The step changed the model (else the comparison above proves nothing).
    assert rel(tf_forward(pair.tf, xs, offsets)[1], got_tf[1]) > 1e-4


@pytest.mark.parametrize("gridsize", [1, 2])
def test_forward_with_probe_mask_smoothing_and_no_pad_object(gridsize):
    """The optional physics of B 6.4 / B 6.3 and the pad_object=False decoder agree as well."""
    for extra in (
        {"probe_mask": True, "gaussian_smoothing_sigma": 0.8},
        {"pad_object": False, "amp_activation": "swish"},
    ):
        pair, container = _pair(gridsize, True, True, "scale-trained", **extra)
        xs, offsets = scaled_batch(container, kink_free_start(pair, container, 8), 4)
        _compare_outputs(pair, xs, offsets, "forward pass", TOL_FORWARD, f"{extra}: ")
        loss_tf, grads_tf = tf_loss_and_gradients(pair.tf, xs, offsets, 1.0, 0.5)
        loss_torch, grads_torch = torch_loss_and_gradients(pair.torch, xs, offsets, 1.0, 0.5)
        check_rel("loss value", loss_torch, loss_tf, TOL_LOSS, f"{extra} nll+mae")
        check_gradients(pair, xs, offsets, grads_tf, grads_torch, 1.0, 0.5)


def test_weights_copied_from_torch_to_tf_give_the_same_outputs():
    """The reverse copy direction: torch-initialised weights imported into TF."""
    from parity_helpers import complex_probe

    cfg = model_config(2)
    container = _data(2)
    torch_model = TORCH.build_model(cfg, complex_probe(64), container.intensity_scale, seed=7)
    tf_models = TF.build_model(cfg, complex_probe(64), container.intensity_scale, seed=8)
    TF.import_weights(tf_models, TORCH.export_weights(torch_model))
    xs, offsets = scaled_batch(container, 0, 4)
    got_tf = tf_forward(tf_models, xs, offsets)
    got_torch = torch_forward(torch_model, xs, offsets)
    for name, a, b in zip(OUTPUTS, got_torch, got_tf, strict=True):
        check_rel("forward pass", a, b, TOL_FORWARD, f"torch-initialised {name}")


def test_adam_update_identical_on_identical_gradients():
    """Each backend's optimiser (TF ``make_optimizer``, torch ``configure_optimizers``) applied to
    the same gradients, magnitudes 1e-9 .. 1e3 of both signs, for 3 steps: the same updates.
    This pins lr, betas and Keras' epsilon-hat convention (decision 10)."""
    import tensorflow as tf
    import torch
    from parity_helpers import tf_trainable, torch_trainable

    from ptycho_tf import training as tf_training
    from ptycho_torch import training as torch_training

    pair, _ = _pair(1, True, False, "probe-trained")
    before = TF.export_weights(pair.tf)
    variables, params = tf_trainable(pair.tf), torch_trainable(pair.torch)
    assert set(variables) == set(params)
    optimizer_tf = tf_training.make_optimizer()
    optimizer_torch = torch_training.make_trainer(pair.torch).configure_optimizers()
    rng = np.random.default_rng(9)
    for _ in range(3):
        grads = {
            k: (rng.choice([-1.0, 1.0], v.shape) * 10.0 ** rng.uniform(-9, 3, v.shape)).astype(
                np.float32
            )
            for k, v in variables.items()
        }
        optimizer_tf.apply_gradients([(tf.constant(grads[k]), v) for k, v in variables.items()])
        optimizer_torch.zero_grad()
        for k, p in params.items():
            g = grads[k].transpose(3, 2, 0, 1) if k.endswith("/kernel") else grads[k]
            p.grad = torch.from_numpy(np.ascontiguousarray(g))
        optimizer_torch.step()
    after_tf, after_torch = TF.export_weights(pair.tf), TORCH.export_weights(pair.torch)
    for k in before:
        check_rel(
            "Adam update on identical gradients",
            after_torch[k] - before[k],
            after_tf[k] - before[k],
            TOL_STEP,
            k,
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("gridsize", "object_big", "probe_big", "flags"),
    [
        (1, True, True, "scale-trained"),
        (2, True, True, "probe-trained"),
        (2, False, False, "scale-trained"),
    ],
)
def test_twenty_steps_same_batch_sequence(gridsize, object_big, probe_big, flags):
    """20 Adam steps on the same batches in the same order: loss curves agree at every step."""
    pair, container = _pair(gridsize, object_big, probe_big, flags)
    order = np.random.default_rng(5).permutation(len(container.X))
    tf_step, torch_step = TFStepper(pair.tf), TorchStepper(pair.torch)
    losses_tf, losses_torch = [], []
    for step in range(20):
        idx = order[(step * 4) % len(order) :][:4]
        if len(idx) < 4:
            idx = order[:4]
        xs = (container.X[idx] * np.float32(container.intensity_scale)).astype(np.float32)
        offsets = np.ascontiguousarray(container.local_offsets[idx], dtype=np.float32)
        losses_tf.append(tf_step.step(xs, offsets))
        losses_torch.append(torch_step.step(xs, offsets))
    for step, (a, b) in enumerate(zip(losses_torch, losses_tf, strict=True)):
        check("20 training steps (loss curve)", rel(a, b), TOL_CURVE, f"step {step}")
    assert losses_tf[-1] < losses_tf[0], "training did not reduce the loss"
