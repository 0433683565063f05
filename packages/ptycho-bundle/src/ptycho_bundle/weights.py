"""Canonical weights as HDF5 bytes: one dataset per slash-separated name, read back safely."""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Mapping

import h5py
import numpy as np

from ptycho_api.errors import BundleError
from ptycho_bundle.layout import FORMAT, check_weight_name
from ptycho_bundle.limits import BundleLimits

__all__ = ["weights_to_h5", "weights_from_h5", "WEIGHT_KINDS"]

WEIGHT_KINDS = "biufc"
"""Accepted dtype kinds: bool, signed/unsigned integer, float, complex."""

# Errors h5py raises for corrupt or unexpected files; anything else is a bug and propagates.
_H5_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, OverflowError)
_image_names = itertools.count()
_LINK_KINDS = {h5py.h5l.TYPE_SOFT: "soft link", h5py.h5l.TYPE_EXTERNAL: "external link"}


def _as_weight(name: str, value: object) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in WEIGHT_KINDS or array.dtype.fields is not None:
        raise BundleError(
            f"weights[{name!r}]: dtype {array.dtype} is not numeric (expected bool, integer, float or complex)"
        )
    return array


def weights_to_h5(weights: Mapping[str, object], *, backend: str) -> bytes:
    """HDF5 file bytes holding each weight as a dataset at its canonical name."""
    if not isinstance(weights, Mapping):
        raise BundleError(
            f"weights: expected a dict of name -> array; found {type(weights).__name__}"
        )
    arrays = {
        check_weight_name(name, "weights"): _as_weight(name, value)
        for name, value in weights.items()
    }
    for name in arrays:
        parts = name.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in arrays:
                raise BundleError(
                    f"weights: name {prefix!r} is both a weight and a group of {name!r}; rename one"
                )
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.attrs["format"] = f"{FORMAT} canonical weights"
        h5.attrs["backend"] = backend
        for name in sorted(arrays):
            h5.create_dataset(name, data=arrays[name])
    return buffer.getvalue()


def _read_dataset(dataset: h5py.Dataset, name: str, where: str) -> np.ndarray:
    if dataset.external or dataset.is_virtual:
        raise BundleError(f"{where}: dataset {name!r} refers to storage outside the file; refused")
    dtype = dataset.dtype
    if dtype.kind not in WEIGHT_KINDS or dtype.fields is not None:
        raise BundleError(f"{where}: dataset {name!r} has non-numeric dtype {dtype}")
    array = np.asarray(dataset[()])
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def _check_stored(
    dataset: h5py.Dataset, name: str, where: str, nbytes: int, limits: BundleLimits
) -> None:
    """Refuse a dataset that declares more bytes than the file stores for it (or can inflate to).

    Weights are written uncompressed, so a dataset's stored size equals its declared size; one
    never written (fill values) or compressed beyond ``limits.max_ratio`` is a forged file of a
    few KB asking for gigabytes.
    """
    if nbytes == 0 or dataset.external or dataset.is_virtual:
        return  # external and virtual storage are refused by _read_dataset
    stored = dataset.id.get_storage_size()
    filtered = dataset.id.get_create_plist().get_nfilters() > 0
    most = stored * limits.max_ratio if filtered else stored
    if nbytes > most:
        raise BundleError(
            f"{where}: dataset {name!r} declares {nbytes:,} bytes; found {stored:,} stored"
            f"{' (compressed)' if filtered else ''}: an unwritten or forged dataset"
        )


def _open_image(data: bytes) -> h5py.File:
    """Open HDF5 bytes read-only as an in-memory file image (core driver, no backing file, no Python I/O callbacks)."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fapl_core(backing_store=False)
    fapl.set_file_image(data)
    name = f"ptycho-bundle-weights-image-{next(_image_names)}".encode()
    return h5py.File(h5py.h5f.open(name, h5py.h5f.ACC_RDONLY, fapl=fapl))


def weights_from_h5(data: bytes, *, where: str, limits: BundleLimits) -> dict[str, np.ndarray]:
    """Read every dataset of HDF5 ``data`` into ``{name: array}``, refusing links, external storage and oversized datasets."""
    weights: dict[str, np.ndarray] = {}
    if not data:
        raise BundleError(f"{where}: empty file, not HDF5")
    try:
        with _open_image(data) as h5:
            links: list[tuple[bytes, int]] = []
            # Low-level visit: names arrive as bytes, so odd encodings cannot break the callback.
            h5.id.links.visit(lambda raw, info: links.append((raw, info.type)), info=True)
            total = 0
            for raw, kind in links:
                name = raw.decode("utf-8", errors="replace")
                if kind != h5py.h5l.TYPE_HARD:
                    link = _LINK_KINDS.get(kind, "user-defined link")
                    raise BundleError(
                        f"{where}: {name!r} is a {link}; only plain datasets are allowed"
                    )
                check_weight_name(name, where)
                obj = h5[name]
                if isinstance(obj, h5py.Group):
                    continue
                if not isinstance(obj, h5py.Dataset):
                    raise BundleError(f"{where}: {name!r} is a {type(obj).__name__}, not a dataset")
                if obj.shape is None:
                    raise BundleError(f"{where}: dataset {name!r} has no data (empty dataspace)")
                nbytes = math.prod(obj.shape) * obj.dtype.itemsize
                total += nbytes
                if nbytes > limits.max_member_size or total > limits.max_total_size:
                    raise BundleError(
                        f"{where}: dataset {name!r} declares {nbytes} bytes; over the limits "
                        f"(max_member_size {limits.max_member_size}, max_total_size {limits.max_total_size})"
                    )
                _check_stored(obj, name, where, nbytes, limits)
                try:
                    weights[name] = _read_dataset(obj, name, where)
                except MemoryError:
                    weights.clear()
                    raise BundleError(
                        f"{where}: dataset {name!r}: {nbytes:,} bytes declared could not be "
                        "allocated in this process's memory"
                    ) from None
    except _H5_ERRORS as exc:
        raise BundleError(
            f"{where}: not a readable HDF5 weights file ({type(exc).__name__}: {exc})"
        ) from exc
    return weights
