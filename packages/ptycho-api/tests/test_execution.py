"""``ptycho_api.execution``: the shared option vocabulary and the automatic inference batch."""

from __future__ import annotations

import pytest

from ptycho_api.errors import ConfigError
from ptycho_api.execution import ExecutionOptions, auto_batch_size


def test_defaults_are_exact_and_aliases_are_normalised():
    assert ExecutionOptions().validate() == ExecutionOptions("auto", "32", "off", False, "auto")
    options = ExecutionOptions(
        device="CUDA", precision="bf16", compile="none", kernels="Fused"
    ).validate()
    assert (options.device, options.precision, options.compile) == ("gpu", "bf16-mixed", "off")
    assert options.describe() == "device gpu, precision bf16-mixed, compile off, kernels fused"
    assert ExecutionOptions(channels_last=True).describe().endswith(", channels-last")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "device",
            "tpu",
            "execution device (--device): expected one of auto, cpu, gpu; found 'tpu'",
        ),
        (
            "precision",
            "16",
            "(--precision): expected one of 32, tf32, bf16-mixed, auto; found '16'",
        ),
        ("compile", "fast", "(--compile): expected one of off, default, reduce-overhead"),
        ("channels_last", "yes", "(--channels-last): expected true or false; found 'yes'"),
        ("kernels", "cuda", "(--kernels): expected one of auto, framework, fused; found 'cuda'"),
    ],
)
def test_a_bad_option_names_the_flag_expected_and_found(field, value, message):
    with pytest.raises(ConfigError) as err:
        ExecutionOptions(**{field: value}).validate()
    assert message in str(err.value)


def test_automatic_batch_size():
    assert auto_batch_size(64, None) == 64  # a CPU
    # 139 GiB free (an H200): capped at 4,096; 1 GiB free at N=64: half of it over 4 MiB a group.
    assert auto_batch_size(64, 139 * 2**30) == 4096
    assert auto_batch_size(64, 2**30) == 128
    assert auto_batch_size(128, 2**20) == 64  # never below the CPU batch
