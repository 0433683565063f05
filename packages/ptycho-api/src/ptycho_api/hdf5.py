"""Beamline input: read a ptychographic scan from HDF5 into ``RawData`` (``ptycho convert``).

Datasets are named by the caller (defaults: the NPZ contract's keys). Positions may be given in
metres and are turned into object pixels with the far-field object pixel size
dx = wavelength * distance / (N * detector pixel). A bad-pixel mask zeroes the masked detector
pixels in every pattern and is kept for the NPZ (key ``bad_pixels``). Needs h5py, the
``ptycho-api[hdf5]`` extra; every declared dataset size is checked against the load budget of
``rawdata.load_budget`` before anything is read.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ptycho_api.errors import DataError
from ptycho_api.plausibility import resolve_data_kind
from ptycho_api.rawdata import MAX_LOAD_BYTES_ENV, RawData, load_budget, memory_limit_note

__all__ = [
    "HDF5_EXTRA",
    "POSITION_UNITS",
    "HC_EV_M",
    "HDF5Scan",
    "require_h5py",
    "wavelength_from_energy",
    "object_pixel_size",
    "read_hdf5_scan",
]

HDF5_EXTRA = "ptycho-api[hdf5]"
"""The optional dependency set that installs h5py."""
POSITION_UNITS = ("px", "m")
"""Units of the position datasets: object pixels, or metres (needs the pixel-size geometry)."""
HC_EV_M = 1.239841984e-6
"""h c in eV * m (CODATA 2018): wavelength [m] = HC_EV_M / photon energy [eV]."""


def require_h5py(source: str | os.PathLike[str]) -> ModuleType:
    """Import h5py, or raise ``DataError`` naming the file and the extra that installs it."""
    try:
        import h5py
    except ImportError as exc:
        raise DataError(
            f"{source}: reading HDF5 needs h5py: expected it installed; found none "
            f"({exc}). Install it with: pip install '{HDF5_EXTRA}'"
        ) from exc
    return h5py


def wavelength_from_energy(energy_ev: float) -> float:
    """Photon wavelength in metres of a photon ``energy_ev`` in eV (> 0)."""
    if not energy_ev > 0:
        raise DataError(f"energy: expected a photon energy > 0 eV; found {energy_ev!r}")
    return HC_EV_M / energy_ev


def object_pixel_size(
    wavelength_m: float, distance_m: float, detector_pixel_m: float, N: int
) -> float:
    """Object-plane pixel in metres of an ``N x N`` far-field pattern: lambda z / (N p)."""
    for name, value in (
        ("wavelength", wavelength_m),
        ("detector distance", distance_m),
        ("detector pixel size", detector_pixel_m),
    ):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise DataError(f"{name}: expected a finite length > 0 in metres; found {value!r}")
    return wavelength_m * distance_m / (N * detector_pixel_m)


@dataclass
class HDF5Scan:
    """A scan read from HDF5: the validated ``raw`` data, the ``(N, N)`` bool ``bad_pixels``
    mask (or None), the object pixel size in metres (or None), the mean counts per pattern
    (or None for amplitude data)."""

    raw: RawData
    bad_pixels: np.ndarray | None
    object_pixel_m: float | None
    mean_counts: float | None


def _dataset(h5: Any, path: Path, key: str, h5py: ModuleType) -> Any:
    """The dataset ``key`` of an open file, checked to hold plain numbers; else ``DataError``."""
    node = h5.get(key)
    if node is None or not isinstance(node, h5py.Dataset):
        names: list[str] = []
        h5.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
        what = "no such node" if node is None else f"a {type(node).__name__}, not a dataset"
        raise DataError(
            f"{path}: dataset '{key}': expected a dataset of numbers; found {what} "
            f"(datasets in the file: {shown or 'none'})"
        )
    if node.dtype.kind not in "iufc" or node.dtype.hasobject:
        raise DataError(
            f"{path}: dataset '{key}': expected numbers (integer, float or complex); "
            f"found dtype {node.dtype}"
        )
    return node


def _check_stored(node: Any, path: Path, key: str, nbytes: int) -> None:
    """Refuse a dataset whose file holds none, or (uncompressed) only part, of the bytes it declares.

    Chunks never written read back as the fill value: a scan cut short, or a tiny file that
    declares gigabytes. Virtual and external datasets keep their bytes elsewhere and pass.
    """
    if nbytes == 0 or node.is_virtual or node.external:
        return
    stored = node.id.get_storage_size()
    filtered = node.id.get_create_plist().get_nfilters() > 0
    if stored == 0 or (not filtered and stored < nbytes):
        raise DataError(
            f"{path}: dataset '{key}': expected the {nbytes:,} bytes its shape {node.shape} "
            f"{node.dtype} declares; found {stored:,} bytes written in the file (an unallocated "
            "or incomplete dataset, whose missing frames would read as fill values)"
        )


def read_hdf5_scan(
    path: str | os.PathLike[str],
    *,
    diffraction_key: str = "diff3d",
    x_key: str = "xcoords",
    y_key: str = "ycoords",
    probe_key: str = "probeGuess",
    mask_key: str | None = None,
    positions_unit: str = "px",
    wavelength_m: float | None = None,
    energy_ev: float | None = None,
    distance_m: float | None = None,
    detector_pixel_m: float | None = None,
    data_kind: str = "auto",
    max_bytes: int | None = None,
) -> HDF5Scan:
    """Read a scan from an HDF5 file: patterns ``(M, N, N)``, positions ``(M,)``, probe ``(N, N)``.

    ``mask_key`` names an ``(N, N)`` bad-pixel mask (non-zero = bad); those pixels are set to 0
    in every pattern. ``positions_unit`` ``"m"`` divides the positions by the object pixel
    lambda z / (N p), from ``wavelength_m`` (or ``energy_ev``), ``distance_m`` and
    ``detector_pixel_m``; ``"px"`` keeps them. ``data_kind`` as ``RawData``. The declared
    dataset sizes must fit ``rawdata.load_budget(max_bytes)`` bytes; any violation raises
    ``DataError`` naming the file, dataset, expected and found.
    """
    path = Path(path)
    if positions_unit not in POSITION_UNITS:
        raise DataError(
            f"{path}: positions unit: expected one of {', '.join(POSITION_UNITS)}; "
            f"found {positions_unit!r}"
        )
    if wavelength_m is not None and energy_ev is not None:
        raise DataError(
            f"{path}: wavelength: expected either a wavelength or a photon energy; found both"
        )
    h5py = require_h5py(path)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise DataError(
            f"{path}: cannot read the file: expected a readable HDF5 file; "
            f"found {exc.strerror or exc}"
        ) from exc
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: expected a regular HDF5 file; found something else")
    if not h5py.is_hdf5(path):
        raise DataError(f"{path}: expected an HDF5 file; found a file that is not one")
    keys = {"diffraction": diffraction_key, "x": x_key, "y": y_key, "probe": probe_key}
    if mask_key is not None:
        keys["mask"] = mask_key
    try:
        with h5py.File(path, "r") as h5:
            nodes = {role: _dataset(h5, path, key, h5py) for role, key in keys.items()}
            budget = load_budget(max_bytes)
            sizes = {
                role: math.prod(node.shape) * node.dtype.itemsize for role, node in nodes.items()
            }
            if sum(sizes.values()) > budget:
                role = max(sizes, key=sizes.__getitem__)
                node = nodes[role]
                raise DataError(
                    f"{path}: dataset '{keys[role]}': expected datasets of at most {budget:,} "
                    f"bytes in all (${MAX_LOAD_BYTES_ENV} raises the limit); found "
                    f"{sum(sizes.values()):,} bytes declared, {sizes[role]:,} of them for "
                    f"shape {node.shape} {node.dtype}"
                )
            for role, node in nodes.items():
                _check_stored(node, path, keys[role], sizes[role])
            arrays = {}
            for role, node in nodes.items():
                try:
                    arrays[role] = node[()]
                except MemoryError:
                    arrays.clear()
                    raise DataError(
                        f"{path}: dataset '{keys[role]}': expected a dataset that fits in this "
                        f"process's memory; found {sizes[role]:,} bytes (shape {node.shape} "
                        f"{node.dtype}) that could not be allocated{memory_limit_note()}"
                    ) from None
    except OSError as exc:
        raise DataError(
            f"{path}: expected a readable HDF5 file; found an unreadable or damaged one ({exc})"
        ) from exc

    patterns = np.asarray(arrays["diffraction"])
    if patterns.ndim != 3 or patterns.shape[1] != patterns.shape[2]:
        raise DataError(
            f"{path}: dataset '{diffraction_key}': expected (M, N, N) patterns; "
            f"found shape {patterns.shape}"
        )
    N = int(patterns.shape[1])
    bad = None
    if "mask" in arrays:
        mask = np.asarray(arrays["mask"])
        if mask.shape != (N, N):
            raise DataError(
                f"{path}: dataset '{mask_key}': expected an ({N}, {N}) bad-pixel mask (the "
                f"pattern size); found shape {mask.shape}"
            )
        bad = mask != 0
        if bad.all():
            raise DataError(
                f"{path}: dataset '{mask_key}': expected some good pixels; found all {N * N} "
                "pixels marked bad"
            )
        patterns[:, bad] = 0  # in place: the array was just read from the file

    pixel_m = None
    wavelength = wavelength_from_energy(energy_ev) if energy_ev is not None else wavelength_m
    geometry = (wavelength, distance_m, detector_pixel_m)
    if positions_unit == "m" or all(v is not None for v in geometry):
        if any(v is None for v in geometry):
            raise DataError(
                f"{path}: positions in metres: expected the wavelength (or photon energy), the "
                "detector distance and the detector pixel size to find the object pixel "
                f"(lambda z / (N p)); found wavelength {wavelength}, distance {distance_m}, "
                f"detector pixel {detector_pixel_m}"
            )
        pixel_m = object_pixel_size(
            float(wavelength), float(distance_m), float(detector_pixel_m), N
        )
    x = np.asarray(arrays["x"], dtype=np.float64)
    y = np.asarray(arrays["y"], dtype=np.float64)
    if positions_unit == "m":
        x, y = x / pixel_m, y / pixel_m

    metadata: dict[str, Any] = {
        "source": {"format": "hdf5", "file": str(path), "datasets": keys},
        "positions_unit": positions_unit,
    }
    if pixel_m is not None:
        metadata["physics_parameters"] = {
            "wavelength_m": float(wavelength),
            "distance_m": float(distance_m),
            "detector_pixel_m": float(detector_pixel_m),
            "object_pixel_m": pixel_m,
        }
    if bad is not None:
        metadata["bad_pixels"] = int(bad.sum())
    kind = resolve_data_kind(patterns, data_kind, source=str(path), key=diffraction_key)
    mean_counts = None
    if kind == "counts":
        # nphotons of measured data: the mean total counts per pattern (bad pixels excluded),
        # which the model's Poisson likelihood needs; amplitudes or intensities of unknown
        # scale say nothing about it.
        mean_counts = float(np.mean(np.sum(patterns, axis=(1, 2), dtype=np.float64)))
        metadata.setdefault("physics_parameters", {})["nphotons"] = mean_counts
    raw = RawData(
        x,
        y,
        None,
        None,
        patterns,
        arrays["probe"],
        None,
        metadata=metadata,
        source=path,
        diffraction_key=diffraction_key,
        data_kind=kind,
    )
    return HDF5Scan(raw, bad, pixel_m, mean_counts)
