"""Inference: batched object prediction and on-device stitching (physics.md B 9; decision 13).

Numpy in and out at this boundary: patches ``(B, N, N, 1)`` complex64, global offsets
``(B, 1, 2, 1)`` float64 ``[x, y]`` pixels, stitched images ``(S, S, 1)`` complex64. The same
public names, arguments and shapes as :mod:`ptycho_tf.inference`; ``reassemble_position`` also
takes a ``device``. The Ptychodus-facing model wrapper is :mod:`ptycho_torch.wrapper`.
"""

from __future__ import annotations

import logging
import weakref

import numpy as np
import torch

from ptycho_api.stitching import STITCH_DENOMINATOR_EPS, checked_geometry
from ptycho_torch.model import PtychoPINN
from ptycho_torch.modules import ObjectCrop

__all__ = ["predict_patches", "reassemble_position"]

logger = logging.getLogger(__name__)

_compiled: weakref.WeakKeyDictionary[PtychoPINN, tuple[str, ObjectCrop]] = (
    weakref.WeakKeyDictionary()
)
"""One compiled object network per model (with its mode), so repeated predictions reuse it."""


def _model_device(model: torch.nn.Module) -> torch.device:
    """The device holding the model's parameters/buffers (CPU for an empty module)."""
    for tensor in model.state_dict().values():
        return tensor.device
    return torch.device("cpu")


def _network(model: PtychoPINN, compile_mode: str | None) -> ObjectCrop:
    if compile_mode is None:
        return ObjectCrop(model)
    cached = _compiled.get(model)
    if cached is None or cached[0] != compile_mode:
        net = ObjectCrop(model)
        net.compile(mode=compile_mode)
        cached = _compiled[model] = (compile_mode, net)
    return cached[1]


def predict_patches(
    model: PtychoPINN,
    x_scaled: np.ndarray,
    local_offsets: np.ndarray,
    *,
    batch_size: int = 64,
    compiled: bool | str = False,
) -> np.ndarray:
    """Object patches ``(B, N, N, 1)`` complex64 from s*X ``(B, N, N, C)`` and offsets ``(B, 1, 2, C)``.

    ``model`` is the autoencoder ``build_model`` returns; its ``diffraction_to_obj`` part runs in
    ``torch.inference_mode`` on the model's device, ``batch_size`` groups at a time; ``compiled``
    (True or a ``torch.compile`` mode) compiles that forward once per model and mode. Under a
    caller's ``torch.autocast`` the outputs are cast back to float32.
    """
    x_scaled = np.asarray(x_scaled, dtype=np.float32)
    local_offsets = np.asarray(local_offsets, dtype=np.float32)
    if x_scaled.ndim != 4 or local_offsets.shape != (len(x_scaled), 1, 2, x_scaled.shape[3]):
        raise ValueError(
            f"predict: expected x_scaled (B, N, N, C) and local_offsets (B, 1, 2, C); found "
            f"{x_scaled.shape} and {local_offsets.shape}"
        )
    if batch_size < 1:
        raise ValueError(f"predict: batch_size must be >= 1; found {batch_size}")
    device = _model_device(model)
    mode = "default" if compiled is True else (compiled or None)
    net = _network(model, mode)
    was_training = model.training
    model.eval()
    out = np.empty((len(x_scaled), x_scaled.shape[1], x_scaled.shape[2], 1), dtype=np.complex64)
    try:
        with torch.inference_mode():
            for lo in range(0, len(x_scaled), batch_size):
                x = torch.from_numpy(x_scaled[lo : lo + batch_size]).to(device, non_blocking=True)
                o = torch.from_numpy(local_offsets[lo : lo + batch_size]).to(
                    device, non_blocking=True
                )
                re, im = net(x, o)
                patch = torch.complex(re.float(), im.float())
                out[lo : lo + len(x), ..., 0] = patch.cpu().numpy()
    finally:
        model.train(was_training)
    return out


def _shift_window(crops: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
    """Sub-pixel shift of ``(b, K, M, M)`` crops by ``frac`` ``(b, 2)`` [x, y] in [0, 1) -> ``(b, K, M+1, M+1)``.

    Output index j takes ``(1 - f) * crop[j] + f * crop[j - 1]`` per axis (missing neighbours are
    zero): bilinear sampling at ``j - f`` with per-corner zero fill (B 1.1).
    """
    fx = frac[:, 0, None, None, None]
    fy = frac[:, 1, None, None, None]
    pad = torch.nn.functional.pad
    rows = (1 - fy) * pad(crops, (0, 0, 0, 1)) + fy * pad(crops, (0, 0, 1, 0))
    return (1 - fx) * pad(rows, (0, 1, 0, 0)) + fx * pad(rows, (1, 0, 0, 0))


def reassemble_position(
    patches: np.ndarray | torch.Tensor,
    global_offsets: np.ndarray,
    M: int = 20,
    *,
    device: torch.device | str | None = None,
    chunk_size: int = 2048,
) -> np.ndarray:
    """Stitch ``(B, N, N, 1)`` complex patches at ``(B, 1, 2, 1)`` offsets -> ``(S, S, 1)`` complex64 (B 9).

    Equal to ``ptycho_api.stitching.reassemble_position``: central M x M crops, offsets centred on
    their mean, each crop translated (bilinear, per-corner zero fill) onto the canvas, divided by
    the same sum of all-ones crops + 1e-9. On ``device`` (default: CPU, or the patches' device),
    streamed ``chunk_size`` patches at a time: a translated crop is non-zero only on an
    ``(M+1) x (M+1)`` window, which is scatter-added into a float64 canvas.
    """
    if isinstance(patches, torch.Tensor):
        device = device or patches.device
    device = torch.device(device or "cpu")
    geom = checked_geometry(tuple(patches.shape), global_offsets, M)
    if patches.ndim == 4:
        patches = patches[..., 0]
    n_patches, N = patches.shape[0], patches.shape[1]
    # One spare row/column: a window can start at index S when d == +pad (its weight is 0 there).
    side = geom.size + 1
    canvas = torch.zeros(3, side * side, dtype=torch.float64, device=device)
    offsets = torch.from_numpy(geom.offsets).to(device)
    lo_px = N // 2 - M // 2
    k = torch.arange(M + 1, device=device)
    for start in range(0, n_patches, chunk_size):
        chunk = patches[start : start + chunk_size, lo_px : lo_px + M, lo_px : lo_px + M]
        crop = torch.as_tensor(chunk).to(device).to(torch.complex128)
        d = offsets[start : start + chunk_size]
        whole = torch.floor(d)
        frac = d - whole
        origin = whole.to(torch.int64) + geom.pad
        stacked = torch.stack([crop.real, crop.imag, torch.ones_like(crop.real)], dim=1)
        values = _shift_window(stacked, frac)
        index = (origin[:, 1, None, None] + k[None, :, None]) * side + (
            origin[:, 0, None, None] + k[None, None, :]
        )
        flat_index = index.reshape(-1)
        for channel in range(3):
            canvas[channel].index_add_(0, flat_index, values[:, channel].reshape(-1))
    image = torch.complex(canvas[0], canvas[1]) / (canvas[2] + STITCH_DENOMINATOR_EPS)
    image = image.reshape(side, side)[: geom.size, : geom.size]
    logger.debug(
        "stitched %d patches onto a %d x %d canvas on %s", n_patches, geom.size, geom.size, device
    )
    return image.to(torch.complex64).cpu().numpy()[..., None]
