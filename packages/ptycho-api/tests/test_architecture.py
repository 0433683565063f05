"""Network layout and canonical weight names shared by both backends (B 7, B 15, parity.md 1)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ptycho_api.architecture import (
    canonical_weight_shapes,
    check_canonical_weights,
    conv_weight_count,
    network_layout,
)
from ptycho_api.config import ModelConfig
from ptycho_api.errors import ConfigError


@pytest.mark.parametrize(
    ("N", "gridsize", "expected"),
    [(64, 1, 2_331_772), (64, 2, 2_340_208), (128, 1, 4_661_212)],
)
def test_conv_weight_counts_match_golden_values(N, gridsize, expected):
    # B 15 golden values (n_filters_scale 2, object_big, probe_big, pad_object): exact integers.
    assert conv_weight_count(ModelConfig(N=N, gridsize=gridsize)) == expected


def test_layout_shapes_for_default_n64():
    layout = network_layout(ModelConfig())
    assert [p[1].out_channels for p in layout.encoder] == [64, 128, 256]
    amp = layout.decoder_amp
    assert [p[1].out_channels for p in amp.trunk] == [128, 64]
    assert amp.head.in_channels == 60 and amp.head.out_channels == 1
    assert amp.border is not None and amp.border[0].in_channels == 4
    assert amp.border[1].out_channels == 64  # nfs * 2048 / N


def test_object_big_sets_head_channels():
    assert network_layout(ModelConfig(gridsize=2)).out_channels == 4
    assert network_layout(ModelConfig(gridsize=2, object_big=False)).out_channels == 1


def test_canonical_names_are_unique_and_typed():
    shapes = canonical_weight_shapes(ModelConfig(gridsize=2))
    assert shapes["encoder/block0/conv0/kernel"][0] == (3, 3, 4, 64)
    assert shapes["decoder_phase/border/head/bias"][0] == (4,)
    assert shapes["physics/probe"] == ((64, 64), np.dtype(np.complex64))
    assert shapes["physics/log_intensity_scale"] == ((), np.dtype(np.float32))
    kernels = [k for k in shapes if k.endswith("/kernel")]
    assert len(kernels) == len(set(kernels)) == len([k for k in shapes if k.endswith("/bias")])


@pytest.mark.parametrize(
    ("probe_big", "pad_object"), list(itertools.product([True, False], [True, False]))
)
def test_head_variants(probe_big, pad_object):
    shapes = canonical_weight_shapes(ModelConfig(probe_big=probe_big, pad_object=pad_object))
    assert any("/border/" in k for k in shapes) == (probe_big and pad_object)
    assert any("/up/" in k for k in shapes) == (not pad_object)


def test_unsupported_n_is_a_config_error_at_build_time():
    with pytest.raises(ConfigError, match=r"supports patch sizes \[64, 128, 256\]; found 96"):
        network_layout(ModelConfig(N=96))


def _weights(cfg):
    return {k: np.zeros(s, d) for k, (s, d) in canonical_weight_shapes(cfg).items()}


def test_check_canonical_weights_is_strict():
    cfg = ModelConfig()
    w = _weights(cfg)
    check_canonical_weights(w, cfg)
    with pytest.raises(ConfigError, match=r"missing \['encoder/block0/conv0/kernel'\]"):
        check_canonical_weights(
            {k: v for k, v in w.items() if k != "encoder/block0/conv0/kernel"}, cfg
        )
    with pytest.raises(ConfigError, match=r"unexpected \['extra/kernel'\]"):
        check_canonical_weights({**w, "extra/kernel": np.zeros(1, np.float32)}, cfg)
    bad = dict(w, **{"decoder_amp/head/kernel": np.zeros((3, 3, 60, 2), np.float32)})
    with pytest.raises(
        ConfigError, match=r"'decoder_amp/head/kernel': expected shape \(3, 3, 60, 1\)"
    ):
        check_canonical_weights(bad, cfg)
    bad = dict(w, **{"physics/probe": np.zeros((64, 64), np.complex128)})
    with pytest.raises(ConfigError, match="expected dtype complex64; found complex128"):
        check_canonical_weights(bad, cfg)
