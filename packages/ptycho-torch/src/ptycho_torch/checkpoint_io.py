"""Lightning checkpoints written atomically and read safely (issue 17).

Lightning's own ``TorchCheckpointIO`` writes through an fsspec transaction that stages the file
elsewhere and copies it in, so a kill or a full disk during the copy left a 0-byte or truncated
``last.ckpt`` / ``best-*.ckpt`` under its final name. ``AtomicCheckpointIO`` writes a temporary
file beside the target, fsyncs it, renames it onto the target and fsyncs the directory
(``ptycho_api.atomic.atomic_path``): the checkpoint directory never holds a partial file under a
final name, and the previous checkpoint stays intact until the new one is complete.

Reading uses ``torch.load(weights_only=True)`` (tensors and plain data only, never arbitrary
pickled objects) and turns every failure into a ``BundleError`` naming the file and the fault.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ptycho_api.atomic import atomic_path
from ptycho_api.errors import BundleError, OutputError

__all__ = [
    "AtomicCheckpointIO",
    "check_resume_checkpoint",
    "read_checkpoint",
    "remove_stale_temporaries",
]

logger = logging.getLogger(__name__)

_RESUME_KEYS = ("epoch", "global_step", "state_dict", "optimizer_states", "loops", "callbacks")
"""What a Lightning checkpoint must hold to resume training (not only to load weights)."""

_TMP_SUFFIX = ".tmp"
_REFUSAL_PREFIX = "WeightsUnpickler error:"


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    # torch's refusal is a page of advice; keep the line that names the refused global.
    for line in lines:
        detail = line.removeprefix(_REFUSAL_PREFIX).strip()
        if "GLOBAL" in line or (line.startswith(_REFUSAL_PREFIX) and detail):
            return detail
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def read_checkpoint(
    path: str | Path,
    map_location: Any = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; raise ``BundleError`` naming the file and fault."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BundleError(f"checkpoint {str(path)!r}: cannot read it ({_one_line(exc)})") from None
    if size == 0:
        raise BundleError(
            f"checkpoint {str(path)!r}: the file is empty (0 bytes); an interrupted write left "
            "it, delete it and resume from another checkpoint"
        )
    if not zipfile.is_zipfile(path):
        # torch.save has written zip archives since PyTorch 1.6; anything else (a legacy pickle
        # stream included) is not read at all.
        raise BundleError(
            f"checkpoint {str(path)!r} ({size} bytes): not a readable PyTorch checkpoint, "
            "truncated or corrupt (not a zip archive)"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise BundleError(
            f"checkpoint {str(path)!r}: refused to load objects other than tensors and plain "
            f"data ({_one_line(exc)})"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, AttributeError) as exc:
        raise BundleError(
            f"checkpoint {str(path)!r} ({size} bytes): not a readable PyTorch checkpoint, "
            f"truncated or corrupt ({_one_line(exc)})"
        ) from None
    except MemoryError:
        # weights_only still builds plain containers and byte arrays of any declared size.
        raise BundleError(
            f"checkpoint {str(path)!r} ({size} bytes): asks for more memory than this process "
            "may use; a corrupt or forged checkpoint"
        ) from None
    if not isinstance(checkpoint, dict):
        raise BundleError(
            f"checkpoint {str(path)!r}: expected a Lightning checkpoint (a dict); "
            f"found {type(checkpoint).__name__}"
        )
    return checkpoint


def check_resume_checkpoint(path: str | Path, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise ``BundleError`` unless ``path`` is a training checkpoint whose weights fit ``state_dict``."""
    checkpoint = read_checkpoint(path)
    missing_keys = [key for key in _RESUME_KEYS if key not in checkpoint]
    if missing_keys:
        raise BundleError(
            f"checkpoint {str(path)!r}: not a Lightning training checkpoint; missing "
            f"{', '.join(missing_keys)}"
        )
    saved = checkpoint["state_dict"]
    if not isinstance(saved, Mapping):
        raise BundleError(
            f"checkpoint {str(path)!r}: state_dict is a {type(saved).__name__}, not a mapping"
        )
    missing = sorted(set(state_dict) - set(saved))
    unexpected = sorted(set(saved) - set(state_dict))
    if missing or unexpected:
        raise BundleError(
            f"checkpoint {str(path)!r}: weights of a different model ({len(missing)} missing, "
            f"e.g. {missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )
    for key, tensor in state_dict.items():
        value = saved[key]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise BundleError(
                f"checkpoint {str(path)!r}: {key} has shape {found} in the checkpoint, "
                f"{tuple(tensor.shape)} in the model (a different N, gridsize or "
                "n_filters_scale?)"
            )


def remove_stale_temporaries(directory: str | Path) -> None:
    """Delete temporary checkpoint files that a killed writer left in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for tmp in directory.glob(f".*.ckpt.*{_TMP_SUFFIX}"):
        logger.info("removing %s, left by an interrupted checkpoint write", tmp)
        tmp.unlink(missing_ok=True)


_WRITER_FAILURES = ("inline_container", "PytorchStreamWriter")
"""Marks of torch's zip writer in the RuntimeError it raises when a write fails."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes atomically in the destination directory and reads safely."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to a temporary file beside ``path``, fsync, rename onto ``path``."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options")
        try:
            with atomic_path(path, suffix=_TMP_SUFFIX) as tmp, open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
        except RuntimeError as exc:
            # torch's zip writer reports a failed write (a full disk, a quota) as RuntimeError
            # ("[enforce fail at inline_container.cc] unexpected pos ..."); atomic_path has
            # already removed the partial file. Other RuntimeErrors are not about the disk.
            if not any(mark in str(exc) for mark in _WRITER_FAILURES):
                raise
            raise OutputError(
                f"{path}: could not write the checkpoint ({_one_line(exc)}); is the disk full?"
            ) from None
        logger.debug("saved checkpoint %s", path)

    def load_checkpoint(
        self,
        path: Any,
        map_location: Callable[..., Any] | Any = "cpu",
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Load with ``weights_only=True`` whatever ``weights_only`` says; faults are ``BundleError``."""
        return read_checkpoint(path, map_location=map_location)
