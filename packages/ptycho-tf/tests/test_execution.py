"""The shared execution options (``ptycho_api.execution``) on the TensorFlow backend, on CPU.

XLA compilation is bounded by float32 reassociation; TF32 and channels-last leave CPU results
exact (a CPU has no TF32 units; Keras convolutions are NHWC already); bfloat16 and a missing
GPU are refused with an error that says what to do instead.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ptycho_api.config import InferenceConfig, ModelConfig
from ptycho_api.errors import BackendError
from ptycho_api.execution import ExecutionOptions
from ptycho_api.normalization import intensity_scale
from ptycho_api.simulation import simulate_dataset
from ptycho_api.workflows import as_container
from ptycho_tf.backend import Backend

REASSOCIATION = 1e-5
"""Float32 results of the same network summed in another order (XLA's fused kernels): ~15
layers in depth, each adding a few ulps (6e-8) relative: under 1e-6; a dropped or misplaced op
differs at order 1."""


@pytest.fixture(scope="module")
def setup():
    raw = simulate_dataset(n_images=64, N=64, seed=2)
    scale = intensity_scale(1e9, 64)
    container = as_container(
        raw, InferenceConfig(model=ModelConfig(N=64, gridsize=1)), nphotons=1e9
    )
    x = container.X * np.float32(scale)
    backend = Backend()
    backend.apply_execution(ExecutionOptions(device="cpu"))
    model = backend.build_model(ModelConfig(N=64, gridsize=1), container.probe, scale, seed=3)
    reference = backend.predict(model, x, container.local_offsets)
    return backend, model, x, container.local_offsets, reference


def _predict(setup, **options) -> np.ndarray:
    backend, model, x, offsets, _ = setup
    backend.apply_execution(ExecutionOptions(device="cpu", **options))
    try:
        return backend.predict(model, x, offsets)
    finally:
        backend.apply_execution(ExecutionOptions(device="cpu"))


@pytest.mark.parametrize("option", [{"compile": "max-autotune"}, {"kernels": "fused"}])
def test_xla_compiled_inference_equals_eager(setup, option):
    """Fused kernels on TensorFlow are XLA's: the same float32 physics, reassociated."""
    backend = setup[0]
    backend.apply_execution(ExecutionOptions(device="cpu", **option))
    assert backend.jit_compile
    got = _predict(setup, **option)
    assert not backend.jit_compile  # reset by the default options
    error = float(np.linalg.norm(got - setup[4]) / np.linalg.norm(setup[4]))
    assert error <= REASSOCIATION


def test_tf32_and_channels_last_leave_cpu_float32_exact(setup):
    np.testing.assert_array_equal(_predict(setup, precision="tf32", channels_last=True), setup[4])
    setup[0].apply_execution(ExecutionOptions(precision="tf32"))
    assert tf.config.experimental.tensor_float_32_execution_enabled()
    setup[0].apply_execution(ExecutionOptions(precision="32"))
    assert not tf.config.experimental.tensor_float_32_execution_enabled()


def test_bf16_is_refused_with_the_alternatives(setup):
    with pytest.raises(BackendError, match="bf16-mixed: expected 32 or tf32 .* PyTorch backend"):
        setup[0].apply_execution(ExecutionOptions(precision="bf16-mixed"))


def test_auto_precision_is_float32(setup):
    setup[0].apply_execution(ExecutionOptions(precision="auto"))
    assert setup[0].options.precision == "32"
    assert not tf.config.experimental.tensor_float_32_execution_enabled()


def test_device_gpu_needs_a_gpu_and_batch_size_follows_the_device():
    backend = Backend()
    if tf.config.list_logical_devices("GPU"):
        backend.apply_execution(ExecutionOptions(device="gpu"))
        assert backend.auto_batch_size(64) == 1024
    else:
        with pytest.raises(BackendError, match="--device gpu: expected a GPU visible"):
            backend.apply_execution(ExecutionOptions(device="gpu"))
        backend.apply_execution(ExecutionOptions(device="auto"))
        assert backend.auto_batch_size(64) == 64
