"""Reconstruction outputs written by ``train``, ``reconstruct`` and ``demo``."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_api.atomic import atomic_path
from ptycho_api.cli.console import package_versions, write_json
from ptycho_api.config import TrainingConfig
from ptycho_api.errors import OutputError
from ptycho_api.metrics import align_for_evaluation, eval_reconstruction, has_phase_structure
from ptycho_api.plausibility import check_reconstruction
from ptycho_api.plots import plot_reconstruction
from ptycho_api.stitching import crop_margin, reassemble_position

__all__ = [
    "RECONSTRUCTION_NPZ",
    "write_reconstruction",
    "coverage_mask",
    "evaluate_against",
    "prepare_output_dir",
    "claim_output_dir",
    "TRAIN_RUN_FILES",
    "RECONSTRUCT_RUN_FILES",
    "output_errors",
    "PROVENANCE_JSON",
    "UNTRAINED_METRICS_JSON",
    "file_record",
    "provenance_record",
]

RECONSTRUCTION_NPZ = "reconstruction.npz"
PROVENANCE_JSON = "provenance.json"
UNTRAINED_METRICS_JSON = "metrics_untrained.json"

RECONSTRUCT_RUN_FILES = (RECONSTRUCTION_NPZ, "reconstruction.png", "metrics.json")
"""What ``ptycho reconstruct`` writes: a previous run's copies are refused, or removed by --overwrite."""

TRAIN_RUN_FILES = (
    "wts.h5.zip",
    "checkpoints",
    "lightning_logs",
    "history.json",
    "history.csv",
    "loss.png",
    UNTRAINED_METRICS_JSON,
    *RECONSTRUCT_RUN_FILES,
)
"""What a training run leaves that a second run would mix with its own (archive, checkpoints,
logs, history, test reconstruction); ``--overwrite`` removes these names and nothing else."""

# Errors only a write can cause: wherever they come from, they are about the outputs.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def _cause(exc: OSError) -> str:
    """One line saying what went wrong: the OS message and the file it concerns."""
    text = str(exc).strip()
    what = exc.strerror or (text.splitlines()[0] if text else type(exc).__name__)
    return f"{what} ({exc.filename})" if exc.filename else what


def refuse_existing_file(path: Path, overwrite: bool) -> None:
    """Raise ``OutputError`` when the output file ``path`` exists and ``--overwrite`` was not given."""
    if path.exists() and not overwrite:
        raise OutputError(
            f"{path}: expected a new output file; found an existing one (--overwrite replaces it)"
        )


def prepare_output_dir(directory: Path) -> Path:
    """Create ``directory`` and write, sync and remove a probe file in it; else ``OutputError``.

    Run before a backend is imported or data are read, so that a read-only, full or misnamed
    output directory stops a run at once, not after training.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".ptycho-write-check-", dir=directory)
        try:
            os.write(fd, b"ptycho")
            os.fsync(fd)  # a full disk may accept the bytes into the cache and refuse them here
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        raise OutputError(
            f"{directory}: output directory: expected a directory that can be created and "
            f"written; found {_cause(exc)}"
        ) from exc
    return directory


def claim_output_dir(
    directory: Path, markers: Sequence[str], clear: Sequence[str], *, overwrite: bool, command: str
) -> None:
    """Refuse (``OutputError``) a directory holding any of ``markers``; with ``overwrite``, delete ``clear``.

    Only the names in ``clear`` directly under ``directory`` are removed, never other files.
    """
    directory = Path(directory)
    found = [name for name in markers if (directory / name).exists()]
    if not found:
        return
    if not overwrite:
        raise OutputError(
            f"{directory}: output directory already holds a previous {command} run "
            f"({', '.join(found)}); pass --overwrite to replace it or choose another --output-dir"
        )
    try:
        for name in clear:
            path = directory / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    except OSError as exc:
        raise OutputError(
            f"{directory}: cannot remove the previous run's outputs for --overwrite: {_cause(exc)}"
        ) from exc


@contextlib.contextmanager
def output_errors(directory: Path) -> Iterator[None]:
    """Turn an OSError from writing into ``directory`` (or a full or read-only disk) into ``OutputError``."""
    try:
        yield
    except OSError as exc:
        root = Path(directory).resolve()
        name = exc.filename
        target = Path(os.fsdecode(name)).resolve() if isinstance(name, str | bytes) else None
        if exc.errno not in _WRITE_ERRNOS and (target is None or not target.is_relative_to(root)):
            raise
        raise OutputError(
            f"{directory}: cannot write the outputs: expected a writable directory with free "
            f"space; found {_cause(exc)}"
        ) from exc


def evaluate_against(
    image: np.ndarray, ground_truth: np.ndarray, global_offsets: np.ndarray, M: int
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Crop both to the scanned region and compute B 12 metrics: -> (metrics, image, truth)."""
    crop, truth = align_for_evaluation(image, ground_truth, global_offsets, M)
    return eval_reconstruction(crop, truth), crop, truth


def coverage_mask(global_offsets: np.ndarray, M: int, support: int | None = None) -> np.ndarray:
    """Boolean ``(S, S)`` canvas mask (the canvas of crop M): True where some patch's stitched box landed.

    ``support``: the side of the central box each patch contributed (``weighted_support`` for
    probe-weighted stitching); default M, the crop of plain stitching.
    """
    offsets = np.asarray(global_offsets, dtype=np.float64)
    K = M if support is None else support
    ones = np.ones((len(offsets), K, K), dtype=np.float32)
    return crop_margin(np.asarray(reassemble_position(ones, offsets, K)), K, M) > 0.5


def write_reconstruction(
    directory: Path,
    canvas: np.ndarray,
    global_offsets: np.ndarray,
    M: int,
    *,
    ground_truth: np.ndarray | None = None,
    title: str | None = None,
    amplitude_max: float | None = None,
    support: int | None = None,
) -> dict[str, Any]:
    """Write ``reconstruction.npz`` + ``.png`` (and ``metrics.json`` with ground truth).

    ``canvas`` is the ``(S, S[, 1])`` complex stitched image; ``support`` as in
    ``coverage_mask``. Returns paths and metrics.
    Amplitudes above ``amplitude_max`` (the model's bounded range, if any) and uncovered holes
    inside the scanned region are warned about (``plausibility.check_reconstruction``).
    """
    image = np.squeeze(np.asarray(canvas)).astype(np.complex64)
    coverage = coverage_mask(global_offsets, M, support)
    if coverage.shape != image.shape:
        raise ValueError(f"coverage {coverage.shape} does not match the image {image.shape}")
    out: dict[str, Any] = {}
    npz = directory / RECONSTRUCTION_NPZ
    check_reconstruction(
        image, coverage, global_offsets, M, amplitude_max=amplitude_max, source=str(npz)
    )
    with atomic_path(npz, suffix=".npz") as tmp:
        np.savez_compressed(
            tmp,
            object=image,
            amplitude=np.abs(image).astype(np.float32),
            phase=np.angle(image).astype(np.float32),
            global_offsets=np.asarray(global_offsets, dtype=np.float64),
            M=np.int64(M),
            coverage=coverage,
        )
    out["npz"] = npz
    if ground_truth is not None:
        metrics, crop, truth = evaluate_against(image, ground_truth, global_offsets, M)
        out["metrics"] = metrics
        out["truth_has_phase"] = has_phase_structure(truth)
        out["metrics_json"] = write_json(directory / "metrics.json", metrics)
        out["png"] = plot_reconstruction(
            directory / "reconstruction.png",
            np.abs(crop),
            np.angle(crop),
            ground_truth=truth,
            title=title,
        )
    else:
        out["png"] = plot_reconstruction(
            directory / "reconstruction.png", np.abs(image), np.angle(image), title=title
        )
    return out


def file_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A data file's absolute path, size in bytes and SHA-256 (hex), read in one pass."""
    resolved = Path(path).resolve()
    with open(resolved, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size  # of the file hashed, not of a later replacement
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return {"path": str(resolved), "size_bytes": size, "sha256": digest}


def provenance_record(config: TrainingConfig, command: Sequence[str]) -> dict[str, Any]:
    """What ``provenance.json`` holds: the command, data files, package versions, time.

    The config schema has no place for checksums (a saved ``config.yaml`` must load again with
    ``--config``), so they are kept in this separate record.
    """
    files = {
        name: file_record(path)
        for name in ("train_data_file", "test_data_file")
        if (path := getattr(config, name)) is not None
    }
    return {
        "command": list(command),
        "data_files": files,
        "packages": {**package_versions(), "numpy": np.__version__},
        "python": platform.python_version(),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
