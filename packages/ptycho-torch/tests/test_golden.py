"""Golden archives written by each real backend (tests-parity/golden), read by this one.

The tensorflow archive is the cross-backend check: this backend must load what the other one
wrote and predict what the writer predicted. The pytorch archive pins this backend's own format.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ptycho_torch.backend import Backend

GOLDEN = Path(__file__).resolve().parents[3] / "tests-parity" / "golden"
PREDICTION_TOL = 1e-5
"""Relative max error of the object patches. Measured 3e-7 across backends (float32 summation
order) and 0 for the writer itself; a 1 % error in the data scale s moves the patches by ~1e-2,
and a transposed kernel or a wrong canvas by O(1), so either fails the check by orders."""


@pytest.mark.parametrize("writer", ["tensorflow", "pytorch"])
def test_golden_archive_loads_and_predicts_what_its_writer_predicted(writer):
    path = GOLDEN / writer / "wts.h5.zip"
    stored = np.load(GOLDEN / writer / "outputs.npz")
    backend = Backend()
    model, snapshot = backend.load_archive(path)
    # The archive records the data scale s; the trained lambda is a weight and differs from it.
    assert snapshot["intensity_scale"] == float(stored["intensity_scale"])
    weights = backend.export_weights(model)
    assert not math.isclose(
        float(weights["physics/log_intensity_scale"]), math.log(snapshot["intensity_scale"])
    )
    got = backend.predict(model, stored["x_scaled"], stored["local_offsets"])
    want = stored["patches"]
    assert got.shape == want.shape and got.dtype == np.complex64
    assert np.max(np.abs(got - want)) <= PREDICTION_TOL * np.max(np.abs(want))
