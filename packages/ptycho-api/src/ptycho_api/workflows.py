"""Backend-dispatching workflow functions with the names Ptychodus and the original code use.

Each function selects a backend (explicit ``backend=`` argument, then the config's ``backend``
field, then ``PTYCHO_BACKEND``, then what is installed; see ``ptycho_api.backend``), applies the
CONFIG-001 bridge first, and drives the backend through the ``Backend`` protocol only, so the
same code path serves TensorFlow and PyTorch. The backends' seed-compatible
``workflows/components.py`` are thin adapters over these functions, so results and errors are
the same whichever backend runs.

The model last trained or loaded here is remembered (as the original's module-level model was),
so ``reassemble_cdi_image`` without ``model=`` and the legacy ``model_manager.save`` work.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_api import params
from ptycho_api.atomic import atomic_path
from ptycho_api.backend import select_backend
from ptycho_api.config import (
    InferenceConfig,
    TrainingConfig,
    model_config_from_legacy_dict,
    update_legacy_dict,
)
from ptycho_api.container import PtychoDataContainer, create_ptycho_data_container
from ptycho_api.errors import ConfigError, DataError
from ptycho_api.probe import normalize_probe
from ptycho_api.rawdata import RawData
from ptycho_api.stitching import STITCH_MODES, apply_stitch_options, reassemble_weighted
from ptycho_api.supervised import require_ground_truth

__all__ = [
    "as_container",
    "train_cdi_model",
    "run_cdi_example",
    "reassemble_cdi_image",
    "load_inference_bundle",
    "predict_patches",
    "stitch_patches",
    "current_model",
    "restore_params",
    "save_model",
    "save_outputs",
]

logger = logging.getLogger(__name__)

DataLike = RawData | PtychoDataContainer | dict

_current: dict[str, Any] = {"backend": None, "model": None, "config": None, "history": None}


def _remember(backend: Any, model: Any, config: TrainingConfig | None, history: Any = None) -> None:
    _current.update(backend=backend, model=model, config=config, history=history)


def current_model() -> tuple[Any, Any, TrainingConfig | None]:
    """``(backend, model, training config)`` last trained or loaded in this process (or Nones)."""
    return _current["backend"], _current["model"], _current["config"]


def restore_params(snapshot: dict[str, Any]) -> None:
    """CONFIG-001 after a load: copy an archive's params snapshot into ``params.cfg``."""
    params.cfg.update(snapshot)


def _backend(backend: Any, config: TrainingConfig | InferenceConfig | None) -> Any:
    if backend is None or isinstance(backend, str):
        return select_backend(backend, config)
    return backend


def as_container(
    data: DataLike,
    config: TrainingConfig | InferenceConfig,
    *,
    nphotons: float | None = None,
    evaluation: bool = False,
) -> PtychoDataContainer:
    """Group and normalise ``data`` (RawData or grouped dict) into a container; pass containers through.

    ``evaluation``: a test scan, grouped with at most one group per scan position.
    """
    if isinstance(data, PtychoDataContainer):
        return data
    if isinstance(data, RawData | dict):
        return create_ptycho_data_container(data, config, nphotons=nphotons, evaluation=evaluation)
    raise DataError(
        f"workflow data: expected RawData, a grouped-data dict or PtychoDataContainer; "
        f"found {type(data).__name__}"
    )


def train_cdi_model(
    train_data: DataLike,
    test_data: DataLike | None,
    config: TrainingConfig,
    *,
    backend: Any = None,
    save: bool = True,
    progress: Callable[[int, int, Mapping[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train a model and write ``<config.output_dir>/wts.h5.zip``: -> results dict.

    ``progress(epoch, nepochs, logs)`` is handed to the backend's ``train`` (after each epoch).

    ``results`` holds ``history`` (per-epoch loss, val_loss, lr), ``model``, ``backend`` (the
    backend object), ``train_container``, ``test_container`` (or None), ``intensity_scale``
    (s = sqrt(nphotons) / (N / 2)) and ``archive`` (path, when ``save``).
    """
    impl = _backend(backend, config)
    update_legacy_dict(params.cfg, config)
    if config.model.model_type == "supervised":
        require_ground_truth(train_data)
    train = as_container(train_data, config)
    test = as_container(test_data, config, evaluation=True) if test_data is not None else None
    if train.N != config.model.N:
        raise ConfigError(
            f"model.N: expected the training patterns' size {train.N}; found {config.model.N}"
        )
    scale = float(train.intensity_scale)
    params.cfg["intensity_scale"] = scale
    # The original kept the normalised probe in the global dict; legacy callers read it there.
    params.cfg["probe"] = normalize_probe(train.probe, config.model.probe_scale)[..., None]
    logger.info(
        "training on %d groups (%d test) with the %s backend",
        len(train),
        len(test or []),
        impl.name,
    )
    model = impl.build_model(
        config.model,
        train.probe,
        scale,
        seed=config.seed,
        probe_trainable=config.probe_trainable,
        intensity_scale_trainable=config.intensity_scale_trainable,
    )
    history = impl.train(model, train, test, config, progress=progress)
    _remember(impl, model, config, history)
    results: dict[str, Any] = {
        "history": history,
        "model": model,
        "backend": impl,
        "train_container": train,
        "test_container": test,
        "intensity_scale": scale,
    }
    if save:
        results["archive"] = impl.save_archive(model, config.output_dir, config, history=history)
        logger.debug("model archive written to %s", results["archive"])
    return results


def predict_patches(
    backend: Any,
    model: Any,
    container: PtychoDataContainer,
    scale: float,
    *,
    batch_size: int = 64,
) -> np.ndarray:
    """Object patches ``(B, N, N, 1)`` complex64 for a container, with model input s * X."""
    x_scaled = (container.X * np.float32(scale)).astype(np.float32, copy=False)
    return backend.predict(model, x_scaled, container.local_offsets, batch_size=batch_size)


def stitch_patches(
    backend: Any,
    patches: np.ndarray,
    global_offsets: np.ndarray,
    *,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int = 20,
    coord_scale: float = 1.0,
    probe: np.ndarray | None = None,
    local_offsets: np.ndarray | None = None,
) -> np.ndarray:
    """Stitch patches into the ``(S, S, 1)`` complex64 canvas with the options of B 9.

    With ``probe`` ``(N, N)`` and the groups' ``local_offsets`` ``(B, 1, 2, C)``, every patch
    pixel is weighted by the illumination its group received there (``reassemble_weighted``);
    without, the backend's uniform central ``M x M`` crop (the original's stitching).
    """
    patches, offsets = apply_stitch_options(
        patches,
        global_offsets,
        flip_x=flip_x,
        flip_y=flip_y,
        transpose=transpose,
        coord_scale=coord_scale,
    )
    if probe is None:
        return backend.reassemble_position(patches, offsets, M)
    if local_offsets is None:
        raise ValueError("stitch_patches: probe weighting needs the groups' local_offsets")
    probe = np.asarray(probe)
    local = np.asarray(local_offsets, dtype=np.float64)
    if transpose:  # the window must follow the patches' swapped axes
        probe, local = probe.T, local[:, :, ::-1, :]
    return reassemble_weighted(patches, offsets, probe, local, M).astype(np.complex64, copy=False)


def stitch_container(
    backend: Any,
    patches: np.ndarray,
    container: PtychoDataContainer,
    *,
    M: int = 20,
    stitch: str = "probe",
) -> np.ndarray:
    """Stitch a container's predicted patches: ``stitch`` ``"probe"`` (weighted) or ``"crop"``: -> ``(S, S, 1)``."""
    if stitch not in STITCH_MODES:
        raise ConfigError(f"stitch: expected one of {list(STITCH_MODES)}; found {stitch!r}")
    if stitch == "crop":
        return stitch_patches(backend, patches, container.global_offsets, M=M)
    return stitch_patches(
        backend,
        patches,
        container.global_offsets,
        M=M,
        probe=container.probe,
        local_offsets=container.local_offsets,
    )


def reassemble_cdi_image(
    test_data: DataLike,
    config: TrainingConfig | InferenceConfig,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int = 20,
    coord_scale: float = 1.0,
    *,
    model: Any = None,
    backend: Any = None,
    scale: float | None = None,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predict and stitch ``test_data``: -> (amplitude ``(S, S)`` f32, phase ``(S, S)`` f32 rad, patches).

    ``patches`` are the ``(B, N, N, 1)`` complex64 object patches as stitched (after ``transpose``).

    ``model`` defaults to the one last trained or loaded here (with its backend). ``scale``
    defaults to the data scale s the model carries, else ``params.cfg['intensity_scale']``.
    ``flip_x`` / ``flip_y`` negate x / y of the global offsets, which are then multiplied by
    ``coord_scale``; ``transpose`` swaps the spatial axes of every patch.
    """
    if model is None:
        if _current["model"] is None:
            raise RuntimeError(
                "reassemble_cdi_image: no model; train one (train_cdi_model) or load one "
                "(load_inference_bundle) first, or pass model="
            )
        model = _current["model"]
        backend = backend if backend is not None else _current["backend"]
    impl = _backend(backend, config)
    update_legacy_dict(params.cfg, config)
    if scale is None:
        scale = getattr(model, "intensity_scale", None)
    if scale is None:
        if "intensity_scale" not in params.cfg:
            raise ConfigError(
                "intensity_scale: expected params.cfg['intensity_scale'] (set by training or by "
                "loading an archive); found none"
            )
        scale = float(params.cfg["intensity_scale"])
    container = as_container(test_data, config)
    patches = predict_patches(impl, model, container, scale, batch_size=batch_size)
    patches, offsets = apply_stitch_options(
        patches,
        container.global_offsets,
        flip_x=flip_x,
        flip_y=flip_y,
        transpose=transpose,
        coord_scale=coord_scale,
    )
    canvas = impl.reassemble_position(patches, offsets, M)
    image = np.squeeze(canvas, axis=-1)
    return (
        np.abs(image).astype(np.float32),
        np.angle(image).astype(np.float32),
        patches,
    )


def run_cdi_example(
    train_data: DataLike,
    test_data: DataLike | None,
    config: TrainingConfig,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int = 20,
    do_stitching: bool = False,
    *,
    backend: Any = None,
    save: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """Train, save the archive (unless ``save=False``) and reconstruct: -> (amp, phase, results).

    The test scan is stitched when given; ``do_stitching=True`` without test data stitches the
    training scan; otherwise the images are None. ``results`` is ``train_cdi_model``'s plus, when
    stitched, ``patches`` ``(B, N, N, 1)`` complex64 and their ``global_offsets``.
    """
    results = train_cdi_model(train_data, test_data, config, backend=backend, save=save)
    amp = phase = None
    scan = results["test_container"]
    if scan is None and do_stitching:
        scan = results["train_container"]
    if scan is not None:
        amp, phase, patches = reassemble_cdi_image(
            scan,
            config,
            flip_x,
            flip_y,
            transpose,
            M,
            model=results["model"],
            backend=results["backend"],
            scale=results["intensity_scale"],
        )
        results["patches"] = patches
        results["global_offsets"] = scan.global_offsets
    return amp, phase, results


def load_inference_bundle(
    model_dir: str | os.PathLike[str], *, backend: Any = None
) -> tuple[Any, dict[str, Any]]:
    """Load ``<model_dir>/wts.h5.zip`` (or an archive path) and restore ``params.cfg``: -> (model, params).

    The model is the backend's own object; it is remembered for ``reassemble_cdi_image``.
    """
    impl = _backend(backend, None)
    model, snapshot = impl.load_archive(Path(model_dir))
    restore_params(snapshot)
    _remember(impl, model, None)
    return model, snapshot


def save_model(out_dir: str | os.PathLike[str]) -> Path:
    """Write the model last trained or loaded in this process to ``<out_dir>/wts.h5.zip``: -> path.

    The archive records the training config of that model (when it was trained here) or the
    model settings in ``params.cfg`` (when it was loaded), and its training history.
    """
    impl, model, config = current_model()
    if model is None:
        raise RuntimeError(
            "save_model: no model has been trained or loaded in this process; run "
            "train_cdi_model / run_cdi_example or load_inference_bundle first"
        )
    if config is None:
        config = TrainingConfig(model=model_config_from_legacy_dict(params.cfg))
    return impl.save_archive(model, Path(out_dir), config, history=_current["history"])


def save_outputs(
    amplitude: np.ndarray | None,
    phase: np.ndarray | None,
    results: Mapping[str, Any],
    output_prefix: str | os.PathLike[str],
) -> list[Path]:
    """Write a run's outputs into the directory ``output_prefix``: -> the files written.

    ``history.json``, ``history.csv`` and ``loss.png`` from ``results['history']``; with
    ``amplitude`` and ``phase`` (``(H, W)`` float, phase in radians; a trailing singleton axis
    is dropped) also ``reconstruction.npz`` (keys ``amplitude``, ``phase``) and
    ``reconstruction.png``. Every file is written atomically.
    """
    from ptycho_api.cli.console import write_history
    from ptycho_api.plots import plot_reconstruction, plot_training_history

    directory = Path(output_prefix)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    history = results.get("history")
    if history:
        written.extend(write_history(directory, history))
        curves = {k: v for k, v in history.items() if k != "lr"}
        written.append(plot_training_history(directory / "loss.png", curves))
    if amplitude is not None and phase is not None:
        amp = np.squeeze(np.asarray(amplitude, dtype=np.float32))
        phi = np.squeeze(np.asarray(phase, dtype=np.float32))
        if amp.ndim != 2 or amp.shape != phi.shape:
            raise DataError(
                f"save_outputs: expected 2-D amplitude and phase of one shape; found "
                f"{amp.shape} and {phi.shape}"
            )
        path = directory / "reconstruction.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, amplitude=amp, phase=phi)
        written.append(path)
        written.append(plot_reconstruction(directory / "reconstruction.png", amp, phi))
    logger.info("wrote %s", ", ".join(p.name for p in written) or "nothing")
    return written
