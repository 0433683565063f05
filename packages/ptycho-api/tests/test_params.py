"""The legacy ``params.cfg`` dict: defaults, derived values, get/set (physics.md B 3.1)."""

from __future__ import annotations

import pytest

from ptycho_api import params
from ptycho_api.config import ModelConfig, TrainingConfig, update_legacy_dict


@pytest.fixture(autouse=True)
def _fresh_cfg():
    params.reset()
    yield
    params.reset()


def test_dataclass_defaults_win_legacy_defaults_fill_the_rest():
    cfg = params.cfg
    # Keys the dataclasses set: dataclass defaults (Part A decision 5).
    assert cfg["N"] == 64 and cfg["gridsize"] == 1 and cfg["nepochs"] == 50
    assert cfg["probe.big"] is True and cfg["probe.mask"] is False and cfg["probe_scale"] == 4.0
    assert cfg["n_groups"] == 512 and cfg["intensity_scale.trainable"] is True
    # Keys only the legacy dict has: B 3.1 defaults.
    assert cfg["offset"] == 4 and cfg["max_position_jitter"] == 10
    assert cfg["default_probe_scale"] == 0.7 and cfg["data_source"] == "generic"
    assert cfg["h5_path"] == "wts.h5" and cfg["tv_weight"] == 0.0


@pytest.mark.parametrize(
    ("n", "gridsize", "big_n", "padding", "padded"),
    [(64, 1, 64, 10, 74), (64, 2, 68, 14, 78), (128, 1, 128, 10, 138)],
)
def test_derived_sizes(n, gridsize, big_n, padding, padded):
    update_legacy_dict(params.cfg, TrainingConfig(model=ModelConfig(N=n, gridsize=gridsize)))
    assert params.get("bigN") == big_n
    assert params.get("padding_size") == padding
    assert params.get("padded_size") == padded
    assert params.params()["padded_size"] == padded


def test_get_unknown_key_names_close_matches():
    with pytest.raises(KeyError, match=r"no key 'nphoton'; did you mean 'nphotons'"):
        params.get("nphoton")
    assert params.get("nphoton", 5) == 5
    assert params.get("intensity_scale", None) is None


def test_set_known_unknown_and_validated_keys():
    params.set("intensity_scale", 988.2118)
    assert params.get("intensity_scale") == 988.2118
    params.set("data_source", "lines")
    assert params.cfg["data_source"] == "lines"
    with pytest.raises(KeyError, match=r"no key 'gridsze'; did you mean 'gridsize'"):
        params.set("gridsze", 2)
    with pytest.raises(ValueError, match=r"data_source.*found 'stripes'"):
        params.set("data_source", "stripes")
    with pytest.raises(ValueError, match=r"'N'.*non-negative integer"):
        params.set("N", "64")
    with pytest.raises(KeyError, match="derived"):
        params.set("padded_size", 80)


def test_cfg_is_a_plain_shared_dict_and_reset_keeps_identity():
    same = params.cfg
    same.update({"N": 128, "intensity_scale": 1.0})
    assert params.get("N") == 128
    params.reset()
    assert params.cfg is same and params.cfg["N"] == 64 and "intensity_scale" not in params.cfg
