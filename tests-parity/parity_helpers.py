"""Shared helpers of the parity suite (spec/parity.md): data, paired models, metrics, bookkeeping.

Both backends are built from one ``ModelConfig``; the PyTorch model then receives the TensorFlow
model's canonical weights, so the two start from identical numbers. Every comparison uses
``rel(a, b) = max|a - b| / max|b|`` (parity.md section 2) and is recorded with ``check`` so the
session prints the worst value per row of the tolerance table.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
import torch

from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.container import PtychoDataContainer, create_ptycho_data_container
from ptycho_api.probe import default_probe
from ptycho_api.schedule import SCHEDULE
from ptycho_api.simulation import simulate_dataset
from ptycho_tf import losses as tf_losses
from ptycho_tf import training as tf_training
from ptycho_tf.backend import Backend as TFBackend
from ptycho_tf.config import ExecutionConfig as TFExecution
from ptycho_tf.model import PtychoPINN as TFModel
from ptycho_torch import losses as torch_losses
from ptycho_torch import training as torch_training
from ptycho_torch.backend import Backend as TorchBackend
from ptycho_torch.config import ExecutionConfig as TorchExecution
from ptycho_torch.model import PtychoPINN as TorchModel

TF = TFBackend(TFExecution(jit_compile=False, verbose=0))
TORCH = TorchBackend(
    TorchExecution(accelerator="cpu", deterministic=True, enable_progress_bar=False)
)

# Tolerances of parity.md section 2 (float32 on CPU).
TOL_OP = 1e-5
TOL_FORWARD = 1e-4
TOL_LOSS = 1e-5
TOL_GRAD = 1e-3
TOL_HEAD_GRAD = 1e-2
"""dL/dz of a conv whose bias has one element (replaces that bias's gradient; README)."""
TOL_STEP = 1e-4
TOL_CURVE = 1e-2
TOL_ARCHIVE = 1e-4
TOL_SSIM = 0.03

RESULTS: dict[str, dict[str, float]] = {}
"""Row of the tolerance table -> worst measured value and its tolerance (printed at the end)."""


def rel(a: Any, b: Any) -> float:
    """``max|a - b| / max|b|`` (parity.md section 2); complex arrays use the complex modulus."""
    a = np.asarray(a)
    b = np.asarray(b)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    wide = np.complex128 if np.iscomplexobj(a) or np.iscomplexobj(b) else np.float64
    diff = float(np.max(np.abs(a.astype(wide) - b.astype(wide))))
    scale = float(np.max(np.abs(b.astype(wide))))
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def check(row: str, value: float, tolerance: float, what: str = "") -> None:
    """Record ``value`` for table row ``row`` and assert ``value <= tolerance``."""
    entry = RESULTS.setdefault(row, {"worst": 0.0, "tolerance": tolerance})
    entry["worst"] = max(entry["worst"], float(value))
    assert value <= tolerance, f"{row}{' / ' + what if what else ''}: {value:.3g} > {tolerance:g}"


def check_rel(row: str, a: Any, b: Any, tolerance: float, what: str = "") -> float:
    """``check(row, rel(a, b), tolerance)``; returns the measured rel."""
    value = rel(a, b)
    check(row, value, tolerance, what)
    return value


# ---------------------------------------------------------------- data


def complex_probe(N: int, seed: int = 3) -> np.ndarray:
    """The default disk probe with a smooth random phase (a real probe would hide sign errors)."""
    rng = np.random.default_rng(seed)
    idx = (np.arange(N) - N / 2) / N
    yy, xx = np.meshgrid(idx, idx, indexing="ij")
    a, b, c = rng.uniform(-3.0, 3.0, size=3)
    phase = a * xx + b * yy + c * (xx**2 + yy**2) * 8
    return (default_probe(N) * np.exp(1j * phase)).astype(np.complex64)


def model_config(
    gridsize: int = 1,
    *,
    N: int = 64,
    n_filters_scale: int = 1,
    object_big: bool = True,
    probe_big: bool = True,
    **extra: Any,
) -> ModelConfig:
    """A validated ``ModelConfig`` (small by default: N 64, n_filters_scale 1)."""
    return ModelConfig(
        N=N,
        gridsize=gridsize,
        n_filters_scale=n_filters_scale,
        object_big=object_big,
        probe_big=probe_big,
        **extra,
    ).validate()


def simulated_container(
    cfg: ModelConfig,
    *,
    n_images: int = 48,
    n_groups: int | None = None,
    seed: int = 11,
    probe: np.ndarray | None = None,
) -> PtychoDataContainer:
    """A seeded simulated scan (``lines`` object, Poisson noise) grouped for ``cfg``."""
    raw = simulate_dataset(n_images=n_images, N=cfg.N, seed=seed, probe=probe)
    config = TrainingConfig(model=cfg, n_groups=n_groups or n_images, seed=seed)
    return create_ptycho_data_container(raw, config)


def scaled_batch(
    container: PtychoDataContainer, start: int = 0, size: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """``(s*X, local_offsets)`` float32 of groups ``start : start + size``."""
    sl = slice(start, start + size)
    xs = (container.X[sl] * np.float32(container.intensity_scale)).astype(np.float32)
    return xs, np.ascontiguousarray(container.local_offsets[sl], dtype=np.float32)


# ---------------------------------------------------------------- models


@dataclass
class Pair:
    """One model per backend with identical canonical weights."""

    tf: TFModel
    torch: TorchModel
    config: ModelConfig


def paired_models(
    cfg: ModelConfig,
    *,
    probe: np.ndarray | None = None,
    intensity_scale: float = 988.2118,
    probe_trainable: bool = False,
    intensity_scale_trainable: bool = True,
    seed: int = 0,
) -> Pair:
    """Build both models from ``cfg``; copy the TF model's canonical weights into the torch one."""
    probe = complex_probe(cfg.N) if probe is None else probe
    flags = {
        "probe_trainable": probe_trainable,
        "intensity_scale_trainable": intensity_scale_trainable,
    }
    tf_models = TF.build_model(cfg, probe, intensity_scale, seed=seed, **flags)
    torch_model = TORCH.build_model(cfg, probe, intensity_scale, seed=seed + 1, **flags)
    TORCH.import_weights(torch_model, TF.export_weights(tf_models))
    return Pair(tf_models, torch_model, cfg)


def tf_forward(models: TFModel, xs: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """The autoencoder's three outputs as numpy (trimmed_obj, pred_amp_scaled, pred_intensity)."""
    outputs = models.autoencoder([tf.constant(xs), tf.constant(offsets)], training=False)
    return [np.asarray(o) for o in outputs]


def torch_forward(model: TorchModel, xs: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """The torch autoencoder's three outputs as numpy."""
    with torch.no_grad():
        outputs = model(torch.from_numpy(xs), torch.from_numpy(offsets))
    return [o.detach().cpu().numpy() for o in outputs]


def tf_object_patches(models: TFModel, xs: np.ndarray) -> np.ndarray:
    """The decoders' combined object patches ``(B, N, N, K)`` complex64 (before the canvas)."""
    import keras

    layer = models.autoencoder.get_layer("object_patches")
    sub = keras.Model(models.autoencoder.inputs[0], layer.output)
    return np.asarray(sub(tf.constant(xs)))


def tf_object_heads(models: TFModel) -> Any:
    """Keras model ``[s*X, offsets]`` -> the decoders' ``[amplitude, phase]`` ``(B, N, N, K)``."""
    import keras

    amplitude, phase = models.autoencoder.get_layer("object_patches").input
    return keras.Model(models.autoencoder.inputs, [amplitude, phase])


def torch_object_heads(model: TorchModel, xs: np.ndarray) -> list[np.ndarray]:
    """The torch decoders' amplitude and phase ``(B, N, N, K)`` float32 (channels-last)."""
    with torch.no_grad():
        return [t.cpu().numpy() for t in model.object_heads(torch.from_numpy(xs))]


def torch_object_patches(model: TorchModel, xs: np.ndarray) -> np.ndarray:
    """The torch object patches as ``(B, N, N, K)`` complex64 (channels-last like TF)."""
    with torch.no_grad():
        re, im = model.object_patches(torch.from_numpy(xs))
    patches = torch.complex(re, im).permute(0, 2, 3, 1)
    return patches.cpu().numpy()


def tf_trainable(models: TFModel) -> dict[str, tf.Variable]:
    """Canonical name -> trainable TF variable (the probe as ``physics/probe_real``/``_imag``)."""
    out: dict[str, tf.Variable] = {}
    for conv, layer in models.conv_layers():
        out[f"{conv.name}/kernel"] = layer.kernel
        out[f"{conv.name}/bias"] = layer.bias
    out["physics/log_intensity_scale"] = models.scaler.log_scale
    out["physics/probe_real"] = models.probe_layer.probe_real
    out["physics/probe_imag"] = models.probe_layer.probe_imag
    trainable = {id(v) for v in models.autoencoder.trainable_variables}
    return {k: v for k, v in out.items() if id(v) in trainable}


def torch_trainable(model: TorchModel) -> dict[str, torch.nn.Parameter]:
    """Canonical name -> torch parameter (kernels still OIHW)."""
    out: dict[str, Any] = {}
    for name, conv in model.convs().items():
        out[f"{name}/kernel"] = conv.weight
        out[f"{name}/bias"] = conv.bias
    out["physics/log_intensity_scale"] = model.log_intensity_scale
    out["physics/probe_real"] = model.probe_real
    out["physics/probe_imag"] = model.probe_imag
    params = {id(p) for p in model.parameters() if p.requires_grad}
    return {k: v for k, v in out.items() if id(v) in params}


Targets = tuple[np.ndarray, np.ndarray] | None
"""Supervised mode's amplitude and phase targets ``(B, N, N, C)`` of a batch; None: PINN loss."""


def _tf_loss(
    models: TFModel,
    xs: np.ndarray,
    offsets: np.ndarray,
    nll_weight: float,
    mae_weight: float,
    targets: Targets,
) -> tf.Tensor:
    """The TF training loss of one batch: decision 9 or, with ``targets``, supervised mode's."""
    inputs = [tf.constant(xs), tf.constant(offsets)]
    if targets is not None:
        amplitude, phase = tf_object_heads(models)(inputs, training=True)
        return tf_losses.supervised_loss(amplitude, phase, *map(tf.constant, targets))
    _, amp, _ = models.autoencoder(inputs, training=True)
    return tf_losses.total_loss(amp, tf.constant(xs), nll_weight, mae_weight)


def tf_loss_and_gradients(
    models: TFModel,
    xs: np.ndarray,
    offsets: np.ndarray,
    nll_weight: float = 1.0,
    mae_weight: float = 0.0,
    targets: Targets = None,
) -> tuple[float, dict[str, np.ndarray]]:
    """TF loss (``ptycho_tf.losses``) and its gradient per canonical name (HWIO); weights the
    loss does not reach (the probe in supervised mode) are left out."""
    variables = tf_trainable(models)
    with tf.GradientTape() as tape:
        loss = _tf_loss(models, xs, offsets, nll_weight, mae_weight, targets)
    grads = tape.gradient(loss, list(variables.values()))
    return float(loss), {
        k: np.asarray(g) for k, g in zip(variables, grads, strict=True) if g is not None
    }


def torch_loss_and_gradients(
    model: TorchModel,
    xs: np.ndarray,
    offsets: np.ndarray,
    nll_weight: float = 1.0,
    mae_weight: float = 0.0,
    targets: Targets = None,
) -> tuple[float, dict[str, np.ndarray]]:
    """Torch loss (``ptycho_torch.losses.loss_terms``, or ``supervised_loss`` with ``targets``)
    and gradients, kernels converted to HWIO; parameters without a gradient are left out."""
    params = torch_trainable(model)
    dtype = model.log_intensity_scale.dtype
    model.zero_grad(set_to_none=True)
    x_t = torch.from_numpy(xs).to(dtype)
    if targets is not None:
        amplitude, phase = model.object_heads(x_t)
        loss = torch_losses.supervised_loss(amplitude, phase, *map(torch.from_numpy, targets))
    else:
        _, amp, _ = model(x_t, torch.from_numpy(offsets).to(dtype))
        nll, mae = torch_losses.loss_terms(amp, x_t)
        loss = nll_weight * nll + mae_weight * mae
    loss.backward()
    out = {}
    for name, p in params.items():
        if p.grad is None:
            continue
        g = p.grad.detach().cpu().numpy()
        out[name] = g.transpose(2, 3, 1, 0) if name.endswith("/kernel") else g
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), out


def tf_conv_output_gradients(
    models: TFModel,
    names: list[str],
    xs: np.ndarray,
    offsets: np.ndarray,
    nll_weight: float = 1.0,
    mae_weight: float = 0.0,
    targets: Targets = None,
) -> dict[str, np.ndarray]:
    """``dL/dz`` ``(B, H, W, out)`` for each conv in ``names``: the gradient of the TF training loss
    with respect to the conv's pre-activation output z = conv(x) + bias.

    Keras fuses a conv's activation into its layer, so z is taken where the layer hands it to its
    activation: each layer's ``activation`` is wrapped (for this one forward pass) by a function
    that keeps its argument and then applies the layer's own activation unchanged.
    """
    layers = {conv.name: layer for conv, layer in models.conv_layers() if conv.name in names}
    assert set(layers) == set(names), f"no such conv: {set(names) - set(layers)}"
    kept: dict[str, tf.Tensor] = {}
    originals = {name: layer.activation for name, layer in layers.items()}

    def keep(name: str, activation: Any) -> Any:
        def wrapped(z: tf.Tensor) -> tf.Tensor:
            kept[name] = z
            return activation(z)

        return wrapped

    try:
        for name, layer in layers.items():
            layer.activation = keep(name, originals[name])
        with tf.GradientTape() as tape:
            loss = _tf_loss(models, xs, offsets, nll_weight, mae_weight, targets)
        grads = tape.gradient(loss, [kept[name] for name in names])
    finally:
        for name, layer in layers.items():
            layer.activation = originals[name]
    return {name: np.asarray(g) for name, g in zip(names, grads, strict=True)}


def torch_conv_output_gradients(
    model: TorchModel,
    names: list[str],
    xs: np.ndarray,
    offsets: np.ndarray,
    nll_weight: float = 1.0,
    mae_weight: float = 0.0,
    targets: Targets = None,
) -> dict[str, np.ndarray]:
    """``dL/dz`` for each conv in ``names`` (torch: the conv module's output, before the
    activation), channels-last ``(B, H, W, out)`` like TF; taken with forward and tensor hooks."""
    convs = model.convs()
    kept: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Any:
        def hook(module: Any, inputs: Any, output: torch.Tensor) -> None:
            output.register_hook(lambda grad: kept.__setitem__(name, grad))

        return hook

    handles = [convs[name].register_forward_hook(keep(name)) for name in names]
    try:
        torch_loss_and_gradients(model, xs, offsets, nll_weight, mae_weight, targets)
    finally:
        for handle in handles:
            handle.remove()
    return {name: kept[name].permute(0, 2, 3, 1).cpu().numpy() for name in names}


def relu_branch_flips(pair: Pair, xs: np.ndarray, offsets: np.ndarray) -> dict[str, np.ndarray]:
    """Per conv with a fused ReLU: ``|z|`` (TF's, as a fraction of the layer's ``max|z|``) of each
    unit whose pre-activation ``z`` is positive in one backend and not in the other; layers
    without such a unit are left out. Pre-activations are taken as in the ``dL/dz`` helpers."""
    layers = {
        conv.name: layer
        for conv, layer in pair.tf.conv_layers()
        if getattr(layer.activation, "__name__", "") == "relu"
    }
    z_tf: dict[str, np.ndarray] = {}
    originals = {name: layer.activation for name, layer in layers.items()}

    def keep(name: str, activation: Any) -> Any:
        def wrapped(z: tf.Tensor) -> tf.Tensor:
            z_tf[name] = np.asarray(z)
            return activation(z)

        return wrapped

    try:
        for name, layer in layers.items():
            layer.activation = keep(name, originals[name])
        tf_forward(pair.tf, xs, offsets)
    finally:
        for name, layer in layers.items():
            layer.activation = originals[name]
    convs = pair.torch.convs()
    z_torch: dict[str, np.ndarray] = {}

    def hook(name: str) -> Any:
        def keep_output(module: Any, inputs: Any, output: torch.Tensor) -> None:
            z_torch[name] = output.detach().permute(0, 2, 3, 1).cpu().numpy()

        return keep_output

    handles = [convs[name].register_forward_hook(hook(name)) for name in layers]
    try:
        torch_forward(pair.torch, xs, offsets)
    finally:
        for handle in handles:
            handle.remove()
    flips = {}
    for name in layers:
        a, b = z_tf[name], z_torch[name]
        flipped = (a > 0) != (b > 0)
        if flipped.any():
            flips[name] = np.abs(a[flipped]) / np.max(np.abs(a))
    return flips


def kink_free_start(
    pair: Pair, container: PtychoDataContainer, start: int = 0, size: int = 4, tries: int = 8
) -> int:
    """The first batch start (``start``, ``start + size``, ...) at which no ReLU unit takes a
    different branch in the two backends.

    ReLU has no derivative at 0. A unit whose pre-activation is within float32 rounding of 0 can
    be on (gradient passed) in one backend and off (gradient 0) in the other: both are valid
    subgradients, and the one unit moves every upstream gradient by up to ~1e-3 (measured: one
    of 262,144 units of encoder/block1/conv1 at 6e-11 of its layer's max|z|, bias gradient rel
    1.25e-3). Gradients are compared where they are defined in both backends: on a batch with no
    such unit. Every branch disagreement met on the way must be at rounding level (within the
    forward tolerance of 0), else the forward passes disagree and the test fails here.
    """
    n = len(container.X)
    for k in range(tries):
        s = (start + k * size) % (n - size + 1)
        flips = relu_branch_flips(pair, *scaled_batch(container, s, size))
        for name, where in flips.items():
            assert where.max() <= TOL_FORWARD, (
                f"{name}: a ReLU unit on opposite branches at {where.max():.2g} of max|z|, "
                f"beyond the forward tolerance {TOL_FORWARD:g}"
            )
        if not flips:
            return s
    raise AssertionError(f"each of {tries} batches has a ReLU unit within rounding of 0")


def gradient_rel(a: np.ndarray, b: np.ndarray) -> float:
    """``max|a - b| / max(max|b|, epsilon)``, epsilon being Adam's (``SCHEDULE.epsilon``).

    Adam moves a weight by ``lr * m / (sqrt(v) + epsilon)``: a gradient error ``d`` changes a
    step by at most ``lr * d / max(|g|, epsilon)`` (first step: ``lr * g / (|g| + epsilon /
    sqrt(1 - beta_2))``, a larger denominator still). So a relative error of TOL_GRAD changes no
    step by more than ``lr * TOL_GRAD``, and for a tensor whose whole gradient is below epsilon
    the same holds for an absolute error of ``TOL_GRAD * epsilon``. Such tensors exist: with
    probe_mask and smoothing, the phase decoder's border branch only reaches the loss through the
    Gaussian's tails, its gradients are ~1e-11 (1e-16 of the loss's largest) and carry float32
    cancellation of a few 1e-3 relative (measured: bias rel 1.1e-3 to 1.5e-3 on an AVX2 CPU),
    moving its weights by ~1e-4 lr per step. Every tensor above epsilon is compared by ``rel``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), SCHEDULE.epsilon))


def check_gradients(
    pair: Pair,
    xs: np.ndarray,
    offsets: np.ndarray,
    grads_tf: Mapping[str, np.ndarray],
    grads_torch: Mapping[str, np.ndarray],
    nll_weight: float = 1.0,
    mae_weight: float = 0.0,
    targets: Targets = None,
) -> None:
    """``gradient_rel`` <= 1e-3 per tensor with more than one element. A one-element bias (the
    K = 1 heads) is the sum of B*H*W values of dL/dz of its conv, terms of both signs that nearly cancel, so
    its float32 rounding is not bounded by its own size (README); its conv's dL/dz itself is
    compared instead (rel <= TOL_HEAD_GRAD), and the bias gradients must have the same sign.
    ``targets``: the gradients are of supervised mode's loss."""
    one_element = [
        n[: -len("/bias")] for n, g in grads_tf.items() if n.endswith("/bias") and g.size == 1
    ]
    for name, g_tf in grads_tf.items():
        assert np.any(g_tf != 0), f"zero gradient for {name}"
        if not (name.endswith("/bias") and g_tf.size == 1):
            check("gradient per weight", gradient_rel(grads_torch[name], g_tf), TOL_GRAD, name)
            continue
        assert np.sign(grads_torch[name]) == np.sign(g_tf), f"{name}: {grads_torch[name]} vs {g_tf}"
    if not one_element:
        return
    args = (xs, offsets, nll_weight, mae_weight, targets)
    dz_tf = tf_conv_output_gradients(pair.tf, one_element, *args)
    dz_torch = torch_conv_output_gradients(pair.torch, one_element, *args)
    for name in one_element:
        assert np.any(dz_tf[name] != 0), f"zero dL/dz for {name}"
        check_rel(
            "dL/dz of a conv with a one-element bias",
            dz_torch[name],
            dz_tf[name],
            TOL_HEAD_GRAD,
            name,
        )


class TorchStepper:
    """Drives the torch backend's own optimisation step: the Lightning module's ``training_step``
    and ``configure_optimizers`` (what Lightning's automatic optimisation runs per batch)."""

    def __init__(
        self,
        model: TorchModel,
        nll_weight: float = 1.0,
        mae_weight: float = 0.0,
        model_type: str = "pinn",
    ):
        import warnings

        self.module = torch_training.make_trainer(
            model, nll_weight, mae_weight, model_type=model_type
        )
        self.optimizer = self.module.configure_optimizers()
        self._warnings = warnings

    def step(self, xs: np.ndarray, offsets: np.ndarray, targets: Targets = None) -> float:
        """One Adam step on the batch (supervised mode: with ``targets``); returns the loss
        before the step."""
        self.module.train()
        self.optimizer.zero_grad()
        batch = tuple(torch.from_numpy(a) for a in (xs, offsets, *(targets or ())))
        with self._warnings.catch_warnings():
            # training_step logs through self.log, which only warns outside a Trainer.
            self._warnings.simplefilter("ignore")
            loss = self.module.training_step(batch, 0)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


class TFStepper:
    """Drives the TF backend's own optimisation step: ``make_trainer(...).train_on_batch``."""

    def __init__(
        self,
        models: TFModel,
        nll_weight: float = 1.0,
        mae_weight: float = 0.0,
        model_type: str = "pinn",
    ):
        self.trainer = tf_training.make_trainer(
            models, nll_weight, mae_weight, model_type=model_type, jit_compile=False
        )

    def step(self, xs: np.ndarray, offsets: np.ndarray, targets: Targets = None) -> float:
        """One Adam step on the batch (supervised mode: with ``targets``); returns the loss
        before the step."""
        y = xs if targets is None else targets
        loss = self.trainer.train_on_batch([xs, offsets], y, return_dict=False)
        return float(np.ravel(loss)[0])


def align_unresolved_steps(
    pair: Pair, grads_tf: Mapping[str, np.ndarray], grads_torch: Mapping[str, np.ndarray]
) -> None:
    """Adam's first step is about ``lr * sign(g)``: an element whose gradient is below float32
    rounding (the two backends disagree on its sign) steps by +lr in one and -lr in the other.
    Such elements (a handful out of ~10^6, README) get TF's post-step value in torch; every other
    element is compared as computed."""
    after_tf = TF.export_weights(pair.tf)
    after_torch = TORCH.export_weights(pair.torch)
    n_unresolved = n_total = 0
    for name, g_tf in grads_tf.items():
        if not name.endswith(("/kernel", "/bias")):
            continue
        g_torch = grads_torch[name]
        unresolved = np.sign(g_tf) != np.sign(g_torch)
        n_total += g_tf.size
        if unresolved.any():
            # Their gradients are rounding noise: tiny against the tensor's largest entry.
            ratio = float(np.max(np.abs(g_tf[unresolved])) / np.max(np.abs(g_tf)))
            assert ratio <= 1e-5, f"{name}: a sign disagreement at {ratio:.2g} of the tensor's max"
            n_unresolved += int(unresolved.sum())
            after_torch[name] = np.where(unresolved, after_tf[name], after_torch[name])
    check(
        "one Adam step: elements with unresolved gradient sign (fraction)",
        n_unresolved / n_total,
        1e-5,
    )
    TORCH.import_weights(pair.torch, after_torch)


def weights_rel(
    a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]
) -> Iterator[tuple[str, float]]:
    """``(name, rel)`` for every canonical weight of two exports."""
    assert set(a) == set(b)
    for key in a:
        yield key, rel(a[key], b[key])
