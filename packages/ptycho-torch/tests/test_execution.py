"""The shared execution options (``ptycho_api.execution``) on the PyTorch backend, on CPU.

Each option is applied through ``Backend.apply_execution`` and its numerical effect on the
predicted object patches of one seeded model is bounded: bf16 autocast by
``BF16_REL_TOLERANCE`` (derived there from bfloat16's unit roundoff), the layout and
compilation options by float32 reassociation (below), TF32 exactly (a CPU has no TF32 units).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ptycho_api.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_api.errors import BackendError
from ptycho_api.execution import BF16_REL_TOLERANCE, ExecutionOptions
from ptycho_api.normalization import intensity_scale
from ptycho_api.workflows import as_container
from ptycho_torch.backend import Backend
from ptycho_torch.lightning_module import make_dataloaders
from ptycho_torch.sampling import EpochSeededSampler

REASSOCIATION = 1e-5
"""Float32 results of the same network summed in another order (other convolution kernels, a
compiled graph): ~15 layers in depth, each adding a few ulps (6e-8) relative: under 1e-6; a
wrong layout or a dropped op differs at order 1."""


def _norm_rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@pytest.fixture(scope="module")
def setup(scan_64):
    scale = intensity_scale(1e9, 64)
    container = as_container(
        scan_64, InferenceConfig(model=ModelConfig(N=64, gridsize=1)), nphotons=1e9
    )
    x = container.X * np.float32(scale)
    backend = Backend()
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


def test_bf16_inference_is_bounded_and_really_bf16(setup):
    got = _predict(setup, precision="bf16-mixed")
    error = _norm_rel(got, setup[4])
    assert error <= BF16_REL_TOLERANCE
    # Below bfloat16's unit roundoff / 8 nothing would have been computed in bfloat16.
    assert error > 2.0**-12, "bf16-mixed changed nothing: autocast did not apply"


def test_channels_last_inference_equals_the_default(setup):
    assert _norm_rel(_predict(setup, channels_last=True), setup[4]) <= REASSOCIATION


def test_compiled_inference_equals_eager(setup):
    assert _norm_rel(_predict(setup, compile="default"), setup[4]) <= REASSOCIATION


def test_tf32_switches_pytorch_flags_and_leaves_cpu_float32_exact(setup):
    backend = setup[0]
    backend.apply_execution(ExecutionOptions(precision="tf32"))
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    got = _predict(setup, precision="tf32")
    np.testing.assert_array_equal(got, setup[4])
    backend.apply_execution(ExecutionOptions(precision="32"))
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_device_gpu_needs_a_gpu_and_batch_size_follows_the_device():
    backend = Backend()
    if torch.cuda.is_available():
        backend.apply_execution(ExecutionOptions(device="gpu"))
        assert backend.predict_device().type == "cuda" and backend.auto_batch_size(64) >= 64
    else:
        with pytest.raises(BackendError, match="--device gpu: expected a CUDA GPU"):
            backend.apply_execution(ExecutionOptions(device="gpu"))
        backend.apply_execution(ExecutionOptions(device="auto"))
        assert backend.predict_device().type == "cpu" and backend.auto_batch_size(64) == 64


def _cpu_flags() -> set[str]:
    """The CPU's feature flags as the Linux kernel reports them (independent of PyTorch)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("needs /proc/cpuinfo (Linux) to know the CPU's flags independently")
    line = next(x for x in cpuinfo.read_text().splitlines() if x.startswith("flags"))
    return set(line.split(":", 1)[1].split())


def test_auto_precision_is_bfloat16_exactly_where_the_cpu_has_bfloat16_units():
    backend = Backend()
    backend.apply_execution(ExecutionOptions(device="cpu", precision="auto"))
    native = bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    assert backend.options.precision == ("bf16-mixed" if native else "32")
    assert backend.execution.precision == ("bf16-mixed" if native else "32-true")
    assert not torch.backends.cuda.matmul.allow_tf32


def test_bf16_mixed_training_runs_in_bfloat16(scan_64, tmp_path):
    """Lightning's bf16-mixed precision: one epoch trains to a finite loss."""
    backend = Backend()
    backend.apply_execution(ExecutionOptions(device="cpu", precision="bf16-mixed"))
    config = TrainingConfig(
        model=ModelConfig(N=64, gridsize=1, n_filters_scale=1),
        nepochs=1,
        batch_size=16,
        n_groups=64,
        seed=1,
        output_dir=tmp_path,
    )
    container = as_container(scan_64, config)
    model = backend.build_model(config.model, container.probe, container.intensity_scale, seed=1)
    history = backend.train(model, container, None, config)
    assert backend.last_trainer.precision == "bf16-mixed"
    assert np.isfinite(history["loss"]).all()


def test_batched_loader_yields_the_per_sample_batches(scan_64):
    """``BatchedTensors`` gathers each batch at once: the same values, in the same seeded order,
    as ``TensorDataset`` with default collation (exact: a gather copies values)."""
    config = TrainingConfig(model=ModelConfig(N=64, gridsize=1), n_groups=64, seed=4)
    container = as_container(scan_64, config)
    train, val = make_dataloaders(container, 16, seed=4)
    x = torch.from_numpy(container.X * np.float32(container.intensity_scale))
    o = torch.from_numpy(container.local_offsets)
    reference = TensorDataset(x[:60], o[:60])
    expected = DataLoader(reference, batch_size=16, sampler=EpochSeededSampler(reference, 4))
    for epoch in (0, 1):
        train.sampler.set_epoch(epoch)
        expected.sampler.set_epoch(epoch)
        for got, want in zip(train, expected, strict=True):
            assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
    ((vx, vo),) = list(val)
    assert torch.equal(vx, x[60:]) and torch.equal(vo, o[60:])
