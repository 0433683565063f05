"""Streaming inference (ptycho_api.streaming): chunked reads of NPZ and HDF5 scans, the
statistics pass, and the chunked reconstruction against the in-memory path.

The network is replaced by a deterministic numpy function of its input (``_ExactPredictor``):
these tests certify the reading, normalisation, ordering and stitching around ``predict``, which
the real backends' CLI tests (tests-parity) then run with real models. Equalities are exact
(``array_equal``) where both paths perform the same float operations in the same order; the one
tolerance is stated where they do not.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from ptycho_api.cli.reconstruct import _read_whole
from ptycho_api.config import InferenceConfig, ModelConfig
from ptycho_api.errors import DataError
from ptycho_api.normalization import normalization_factor
from ptycho_api.rawdata import RawData
from ptycho_api.simulation import simulate_dataset
from ptycho_api.stitching import (
    StitchCanvas,
    reassemble_position,
    reassemble_weighted,
    stitch_geometry,
)
from ptycho_api.streaming import (
    StreamUnsupported,
    open_scan,
    reconstruct_stream,
    scan_statistics,
    write_npz_streamed,
)
from ptycho_api.workflows import as_container, predict_patches

N = 16


@pytest.fixture(scope="module")
def raw() -> RawData:
    return simulate_dataset(n_images=70, N=N, nphotons=1e6, seed=11, object_size=64)


def _arrays(raw: RawData, patterns: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "diff3d": patterns,
        "xcoords": raw.xcoords,
        "ycoords": raw.ycoords,
        "probeGuess": raw.probeGuess,
        "objectGuess": raw.objectGuess,
    }


def _write(path: Path, kind: str, arrays: dict[str, np.ndarray]) -> Path:
    path = path.with_suffix(".h5" if kind == "hdf5" else ".npz")
    if kind == "stored":
        np.savez(path, **arrays)
    elif kind == "deflated":
        np.savez_compressed(path, **arrays)
    elif kind == "streamed":
        small = {k: v for k, v in arrays.items() if k != "diff3d"}
        d = arrays["diff3d"]
        write_npz_streamed(path, small, "diff3d", d.shape, d.dtype, iter(np.array_split(d, 7)))
    else:
        with h5py.File(path, "w") as h5:
            for key, value in arrays.items():
                h5.create_dataset(key, data=value, chunks=key == "diff3d" or None)
    return path


FORMATS = ("stored", "deflated", "streamed", "hdf5")


@pytest.mark.parametrize("kind", FORMATS)
def test_chunks_reassemble_the_stored_array(tmp_path, raw, kind):
    path = _write(tmp_path / f"scan.{kind}", kind, _arrays(raw, raw.diff3d))
    with open_scan(path) as scan:
        assert (scan.n_patterns, scan.N, scan.key) == (70, N, "diff3d")
        parts = [chunk for _, chunk in scan.chunks(9)]
        assert [len(p) for p in parts] == [9] * 7 + [7]
        np.testing.assert_array_equal(np.concatenate(parts), raw.diff3d)
        np.testing.assert_array_equal(scan.read(33, 35), raw.diff3d[33:35])  # backwards
        np.testing.assert_array_equal(scan.xcoords, raw.xcoords)
        np.testing.assert_array_equal(scan.probeGuess, raw.probeGuess)
        np.testing.assert_array_equal(scan.objectGuess, raw.objectGuess)


def _counts(raw: RawData) -> np.ndarray:
    return np.random.default_rng(2).poisson(raw.diff3d.astype(np.float64) ** 2).astype(np.int32)


@pytest.mark.parametrize("values", ["amplitudes", "counts"])
def test_alpha_is_the_in_memory_factor_bit_for_bit(tmp_path, raw, values):
    """alpha of the statistics pass == normalization_factor of the grouped in-memory set."""
    patterns = raw.diff3d if values == "amplitudes" else _counts(raw)
    path = _write(tmp_path / "scan.npz", "stored", _arrays(raw, patterns))
    in_memory = RawData.from_file(path)
    expected = normalization_factor(in_memory.diff3d[:, :, :, None])
    with open_scan(path) as scan:
        stats = scan_statistics(scan, chunk=8, progress=False)
    assert stats.kind == values
    assert stats.alpha == expected


def test_float_counts_are_refused_as_in_memory(tmp_path, raw):
    path = _write(tmp_path / "scan.npz", "stored", _arrays(raw, _counts(raw).astype(np.float32)))
    with pytest.raises(DataError) as whole:
        RawData.from_file(path)
    with open_scan(path) as scan, pytest.raises(DataError) as streamed:
        scan_statistics(scan, chunk=8, progress=False)
    assert str(streamed.value) == str(whole.value)
    with open_scan(path) as scan:
        assert scan_statistics(scan, data_kind="counts", progress=False).kind == "counts"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.nan, "expected finite values; found nan at index (41, 3, 5)"),
        (-1.0, "expected non-negative amplitudes or counts; found value -1.0 at pattern 41"),
    ],
)
def test_a_bad_value_is_named_by_its_index_in_the_file(tmp_path, raw, value, message):
    patterns = raw.diff3d.copy()
    patterns[41, 3, 5] = value
    path = _write(tmp_path / "scan.npz", "deflated", _arrays(raw, patterns))
    with open_scan(path) as scan, pytest.raises(DataError, match=r"scan\.npz: key 'diff3d'") as e:
        scan_statistics(scan, chunk=8, progress=False)
    assert message in str(e.value)


def test_all_zero_patterns_are_refused(tmp_path, raw):
    path = _write(tmp_path / "scan.npz", "stored", _arrays(raw, np.zeros_like(raw.diff3d)))
    with open_scan(path) as scan, pytest.raises(DataError, match="70 all-zero patterns"):
        scan_statistics(scan, progress=False)


def test_header_checks_apply_before_reading(tmp_path, raw):
    arrays = _arrays(raw, raw.diff3d)
    del arrays["probeGuess"]
    with pytest.raises(DataError, match="missing required key.*'probeGuess'"):
        with open_scan(_write(tmp_path / "a.npz", "stored", arrays)):
            pass
    arrays = _arrays(raw, raw.diff3d[:, :, :12])
    with pytest.raises(DataError, match="expected square patterns"):
        with open_scan(_write(tmp_path / "b.h5", "hdf5", arrays)):
            pass
    arrays = _arrays(raw, raw.diff3d)
    arrays["xcoords"] = raw.xcoords[:-1]
    with pytest.raises(DataError, match="'xcoords': expected length M = 70"):
        with open_scan(_write(tmp_path / "c.npz", "stored", arrays)):
            pass


def test_a_truncated_member_is_named(tmp_path, raw):
    path = _write(tmp_path / "scan.npz", "streamed", _arrays(raw, raw.diff3d))
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    cut = tmp_path / "cut.npz"
    with zipfile.ZipFile(cut, "w") as zf:
        for name, data in members.items():
            # A header that declares 70 patterns over the bytes of 60.
            zf.writestr(name, data[: -10 * N * N * 4] if name == "diff3d.npy" else data)
    with pytest.raises(DataError, match="'diff3d': expected the .* bytes its header declares"):
        with open_scan(cut):
            pass


def test_fortran_order_is_not_streamed(tmp_path, raw):
    path = _write(tmp_path / "scan.npz", "stored", _arrays(raw, np.asfortranarray(raw.diff3d)))
    with pytest.raises(StreamUnsupported, match="Fortran order"):
        with open_scan(path):
            pass


def test_canvas_chunks_equal_one_pass():
    rng = np.random.default_rng(5)
    patches = (rng.standard_normal((50, N, N, 1)) + 1j * rng.standard_normal((50, N, N, 1))).astype(
        np.complex64
    )
    offsets = rng.uniform(0, 40, size=(50, 1, 2, 1))
    canvas = StitchCanvas(stitch_geometry(offsets, 8), 8)
    for lo in (0, 13, 26, 39):
        canvas.add(patches[lo : lo + 13], lo)
    np.testing.assert_array_equal(canvas.image(), reassemble_position(patches, offsets, 8))


class _ExactPredictor:
    """A numpy stand-in for a network: patch = sqrt(s X) e^{i s X / 100}, deterministic."""

    name = "numpy"

    def predict(self, model, x_scaled, local_offsets, *, batch_size=64):
        assert not local_offsets.any()  # gridsize 1: every group is centred on its position
        x = x_scaled[..., :1].astype(np.float64)
        return (np.sqrt(x) * np.exp(1j * x / 100)).astype(np.complex64)


@pytest.mark.parametrize("stitch", ["probe", "crop"])
@pytest.mark.parametrize("kind", ["deflated", "hdf5"])
def test_streamed_reconstruction_equals_the_in_memory_one(tmp_path, raw, kind, stitch):
    """Same inputs to predict (bit for bit) and the same canvas as grouping + reassemble_position.

    The canvas sums are float64 in both paths but accumulated in a different order (chunks of
    9 here, of 1,024 there), so they agree to float64 rounding, far below complex64 output
    precision: rtol 1e-6.
    """
    scale = 988.2
    path = _write(tmp_path / f"scan.{kind}", kind, _arrays(raw, _counts(raw)))
    predictor = _ExactPredictor()
    with open_scan(path) as scan:
        streamed = reconstruct_stream(
            predictor, None, scan, scale, M=8, stitch=stitch, chunk=9, progress=False
        )
    config = InferenceConfig(model=ModelConfig(N=N, gridsize=1))
    container = as_container(
        RawData.from_file(_write(tmp_path / "w.npz", "stored", _arrays(raw, _counts(raw)))),
        config,
        nphotons=1e6,
    )
    patches = predict_patches(predictor, None, container, scale)
    expected = (
        reassemble_position(patches, container.global_offsets, 8)
        if stitch == "crop"
        else reassemble_weighted(
            patches, container.global_offsets, container.probe, container.local_offsets, 8
        )
    )
    np.testing.assert_array_equal(streamed.global_offsets, container.global_offsets)
    assert streamed.canvas.shape == expected.shape and streamed.kind == "counts"
    np.testing.assert_allclose(streamed.canvas, expected, rtol=1e-6, atol=0)


def test_a_contract_hdf5_is_read_whole_like_its_npz(tmp_path, raw):
    """What ``ptycho reconstruct`` loads when it cannot stream (gridsize > 1, ``--n-groups``)."""
    arrays = _arrays(raw, _counts(raw))
    from_h5 = _read_whole(_write(tmp_path / "scan", "hdf5", arrays), "auto")
    from_npz = _read_whole(_write(tmp_path / "scan", "stored", arrays), "auto")
    np.testing.assert_array_equal(from_h5.diff3d, from_npz.diff3d)
    np.testing.assert_array_equal(from_h5.xcoords, from_npz.xcoords)
    np.testing.assert_array_equal(from_h5.probeGuess, from_npz.probeGuess)
