"""Beamline input end to end (issue 16): an HDF5 scan with positions in metres, raw uint16 counts
and a bad-pixel mask, written here, converted by ``ptycho convert`` and reconstructed by
``ptycho reconstruct`` gives the same image as the equivalent hand-made NPZ, on either backend.

The model is the committed golden archive of each backend (N 64, gridsize 2), so no training
runs. Tolerance: rel 1e-5 of the stitched object; the only difference between the two inputs is
the positions' round trip through metres (a relative error of about 1e-16).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptycho_api.hdf5 import object_pixel_size
from ptycho_api.simulation import simulate_dataset

h5py = pytest.importorskip("h5py")

GOLDEN = Path(__file__).parent / "golden"
N = 64
WAVELENGTH, DISTANCE, DETECTOR_PIXEL = 1.5e-10, 2.0, 75e-6
"""Metres: 8.27 keV photons, a 2 m flight tube, 75 um detector pixels."""
pytestmark = pytest.mark.slow


def ptycho(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ptycho", path=str(Path(sys.executable).parent))
    assert exe, "the ptycho console script is not installed next to this interpreter"
    env = {k: v for k, v in os.environ.items() if k != "PTYCHO_BACKEND"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=900, env=env
    )


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    """``scan.h5`` (metres, uint16 counts with hot masked pixels, mask), its conversion
    ``converted.npz`` and ``equivalent.npz`` (pixel positions, masked uint16 counts)."""
    root = tmp_path_factory.mktemp("hdf5")
    raw = simulate_dataset(40, N=N, nphotons=1e4, seed=21)
    s = raw.metadata["simulation"]["s_sim"]
    counts = np.round((raw.diff3d.astype(np.float64) * s) ** 2).astype(np.uint16)
    mask = np.zeros((N, N), dtype=bool)
    mask[3, 60] = mask[N // 2 + 5, N // 2] = mask[50:52, 10] = True
    pixel = object_pixel_size(WAVELENGTH, DISTANCE, DETECTOR_PIXEL, N)
    with h5py.File(root / "scan.h5", "w") as f:
        hot = counts.copy()
        hot[:, mask] = 65535
        f["data"] = hot
        f["x_m"] = raw.xcoords * pixel
        f["y_m"] = raw.ycoords * pixel
        f["probe"] = raw.probeGuess
        f["mask"] = mask.astype(np.uint8)
    counts[:, mask] = 0
    np.savez(
        root / "equivalent.npz",
        diff3d=counts,
        xcoords=raw.xcoords,
        ycoords=raw.ycoords,
        probeGuess=raw.probeGuess,
    )
    res = ptycho(
        "convert",
        "scan.h5",
        "converted.npz",
        "--diffraction-key",
        "data",
        "--x-key",
        "x_m",
        "--y-key",
        "y_m",
        "--probe-key",
        "probe",
        "--mask-key",
        "mask",
        "--positions-unit",
        "m",
        "--wavelength-m",
        str(WAVELENGTH),
        "--distance-m",
        str(DISTANCE),
        "--detector-pixel-m",
        str(DETECTOR_PIXEL),
        cwd=root,
    )
    assert res.returncode == 0, res.stderr
    return root


@pytest.mark.parametrize("backend", ["tensorflow", "pytorch"])
def test_converted_hdf5_reconstructs_like_the_equivalent_npz(scans, backend):
    images = {}
    for name in ("converted", "equivalent"):
        out = f"recon-{backend}-{name}"
        res = ptycho(
            "reconstruct",
            "--model",
            str(GOLDEN / backend),
            "--data",
            f"{name}.npz",
            "--backend",
            backend,
            "--seed",
            "3",
            "--output-dir",
            out,
            "-q",
            cwd=scans,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        with np.load(scans / out / "reconstruction.npz") as npz:
            images[name] = npz["object"]
    got, want = images["converted"], images["equivalent"]
    assert got.shape == want.shape
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
