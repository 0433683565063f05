"""Grid simulation of the original's published ``lines`` protocol (physics.md B 11.3).

Each object image is covered by overlapping *outer windows* of ``bigN = N + (gridsize - 1) *
offset`` pixels placed every ``outer_offset / 2`` pixels (row-major); inside every window a
``gridsize x gridsize`` grid of N x N patches ``offset`` pixels apart makes one group (channels
row-major). Patch amplitudes are divided by ``norm_Y_I`` (the mean over groups of each group's
largest amplitude), illuminated by the *model* probe (``normalize_probe``-d, as the original's
grid path does), propagated to the far field and sampled with Poisson noise at ``nphotons``
expected counts per pattern on average.

Conventions: positions are ``[x, y]`` object pixels with the scan point at patch pixel
``(N/2, N/2)`` (physics.md B 1), so the window whose top-left pixel is ``t`` has its centre
(the group centre m) at ``t + bigN / 2`` and member ``(a, b)`` (row a, column b) sits at
``t + (b * offset, a * offset) + N / 2``. Stitching the central ``outer_offset/2`` square of
each group's reconstruction at m tiles the scanned region exactly as the original's grid
stitching does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptycho_api.errors import ConfigError
from ptycho_api.grouping import square_offsets
from ptycho_api.objects import OBJECT_KINDS, make_object
from ptycho_api.physics import extract_patches
from ptycho_api.probe import normalize_probe
from ptycho_api.rawdata import RawData
from ptycho_api.simulation import SIMULATION_SCHEMA, illuminate_and_diffract

__all__ = [
    "GridLayout",
    "GridSimulation",
    "MAX_GRID_BYTES",
    "simulate_grid",
    "simulate_grid_pair",
    "grid_layout",
    "object_groups",
]

MAX_GRID_BYTES = 8 * 2**30
"""Most memory a grid simulation may plan for (bytes; the NPZ load limit's default). The
published gridsize-2 training layout (2 objects of 392 px, 53,792 patterns of 64 x 64) plans
about 6.6 GiB."""

_BYTES_PER_PIXEL = 32
"""Planned bytes per pattern pixel: the complex64 patches, their normalised complex128 copy, the
complex64 ``Y`` kept in the scan and the float32 pattern."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GridLayout:
    """Geometry of one grid-scanned object image (all lengths in pixels)."""

    N: int
    gridsize: int
    offset: int
    outer_offset: int
    size: int

    @property
    def big_n(self) -> int:
        """Side of an outer window: ``N + (gridsize - 1) * offset``."""
        return self.N + (self.gridsize - 1) * self.offset

    @property
    def stride(self) -> int:
        """Distance between neighbouring outer windows: ``outer_offset // 2``."""
        return self.outer_offset // 2

    @property
    def windows_per_side(self) -> int:
        """Outer windows along each axis: ``(size - bigN) // stride + 1``."""
        return (self.size - self.big_n) // self.stride + 1

    @property
    def n_groups(self) -> int:
        """Groups (outer windows) per object image."""
        return self.windows_per_side**2

    def group_centres(self) -> np.ndarray:
        """``(G, 2)`` float64 ``[x, y]`` window centres, row-major over the windows."""
        idx = np.arange(self.windows_per_side) * self.stride + self.big_n / 2
        rows, cols = np.meshgrid(idx, idx, indexing="ij")
        return np.column_stack([cols.ravel(), rows.ravel()]).astype(np.float64)

    def member_offsets(self) -> np.ndarray:
        """``(C, 2)`` float64 ``[x, y]`` positions of the members relative to the group centre.

        Channel ``c = a * gridsize + b`` (row a, column b) is at
        ``((b - (g - 1) / 2) * offset, (a - (g - 1) / 2) * offset)``: the ``r - m`` of B 4.
        """
        return square_offsets(self.gridsize, self.offset)

    def member_positions(self) -> np.ndarray:
        """``(G, C, 2)`` float64 ``[x, y]`` scan positions of every member of every group."""
        return self.group_centres()[:, None, :] + self.member_offsets()[None, :, :]

    def validate(self) -> None:
        """Raise ``ConfigError`` unless the layout describes at least one window."""
        for name in ("N", "gridsize", "offset", "outer_offset", "size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"grid.{name}: expected an integer >= 1; found {value!r}")
        if self.outer_offset < 2 or self.outer_offset % 2:
            raise ConfigError(
                f"grid.outer_offset: expected an even integer >= 2; found {self.outer_offset}"
            )
        if self.size < self.big_n:
            raise ConfigError(
                f"grid.size: expected at least one window of {self.big_n} px "
                f"(N + (gridsize - 1) * offset); found size {self.size}"
            )


def grid_layout(
    N: int = 64, gridsize: int = 1, offset: int = 4, outer_offset: int = 8, size: int = 392
) -> GridLayout:
    """A validated ``GridLayout`` (defaults: the published training layout)."""
    layout = GridLayout(N, gridsize, offset, outer_offset, size)
    layout.validate()
    return layout


@dataclass
class GridSimulation:
    """A simulated grid scan of one or more object images."""

    raw: RawData
    """Patterns ``(G * C * n_objects, N, N)``, member positions, fixed ``groups`` ``(B, C)``."""
    layout: GridLayout
    objects: np.ndarray
    """``(n_objects, size, size)`` complex64 objects divided by ``norm_Y_I`` (what a model sees)."""
    norm_Y_I: float
    """Mean over groups of each group's largest patch amplitude (before division)."""
    intensity_scale: float
    """``s_sim``: ``sqrt(nphotons / mean sum |Y P|^2)``, from the training set when given."""


def simulate_grid(
    layout: GridLayout,
    probe: np.ndarray,
    *,
    n_objects: int = 2,
    nphotons: float = 1e9,
    probe_scale: float = 4.0,
    seed: int | None = 1,
    obj: str = "lines",
    intensity_scale: float | None = None,
    set_phi: bool = False,
    gap: int | None = None,
) -> GridSimulation:
    """Simulate ``n_objects`` grid-scanned objects (B 11.3): -> ``GridSimulation``.

    The objects (``obj``, a kind of ``OBJECT_KINDS``, side ``layout.size``) are placed side by
    side on one ``objectGuess`` canvas, ``gap`` (default N) zero pixels apart, so positions of
    object k are shifted by ``k * (size + gap)`` in x; ``scan_index`` holds k. ``probe`` is the
    prepared (un-normalised) ``(N, N)`` probe written as ``probeGuess``; the patterns are
    simulated with ``normalize_probe(probe, probe_scale)``, which is what the model uses.
    ``intensity_scale``: ``s_sim`` to reuse (the test set takes the training set's), else
    computed from these patches. Everything random comes from ``numpy.random.default_rng(seed)``:
    objects first, then the Poisson noise.
    """
    layout.validate()
    probe = np.asarray(probe)
    N = layout.N
    if probe.shape != (N, N):
        raise ConfigError(f"grid.probe: expected an ({N}, {N}) array; found shape {probe.shape}")
    if obj not in OBJECT_KINDS:
        raise ConfigError(f"grid.object: expected one of {list(OBJECT_KINDS)}; found {obj!r}")
    if isinstance(n_objects, bool) or not isinstance(n_objects, int) or n_objects < 1:
        raise ConfigError(f"grid.n_objects: expected an integer >= 1; found {n_objects!r}")
    if not nphotons > 0:
        raise ConfigError(f"grid.nphotons: expected a number > 0; found {nphotons!r}")
    gap = N if gap is None else gap
    G, C = layout.n_groups, layout.gridsize**2
    planned = n_objects * G * C * N * N * _BYTES_PER_PIXEL
    if planned > MAX_GRID_BYTES:
        raise ConfigError(
            f"grid: {n_objects} objects x {G} groups x {C} patterns of {N} x {N} need about "
            f"{planned / 2**30:.1f} GiB; expected at most {MAX_GRID_BYTES / 2**30:.0f} GiB "
            "(smaller --size, larger --outer-offset or fewer --n-objects)"
        )
    members = layout.member_positions()
    rng = np.random.default_rng(seed)
    objects = np.stack(
        [make_object(obj, layout.size, rng, set_phi=set_phi) for _ in range(n_objects)]
    )

    patches = np.stack(
        [extract_patches(o, members.reshape(-1, 2), N).reshape(G, C, N, N) for o in objects]
    )
    # Normalise by the mean over groups of each group's largest amplitude (B 11.3).
    norm = float(np.mean(np.abs(patches).max(axis=(2, 3, 4))))
    patches = patches / norm
    objects = (objects / norm).astype(np.complex64)
    model_probe = normalize_probe(probe, probe_scale)
    flat = patches.reshape(-1, N, N).astype(np.complex64)
    diff3d, intensity_scale = illuminate_and_diffract(
        flat, model_probe, nphotons, rng, scale=intensity_scale
    )

    shift = (layout.size + gap) * np.arange(n_objects, dtype=np.float64)
    positions = members[None].repeat(n_objects, axis=0)
    positions[..., 0] += shift[:, None, None]
    positions = positions.reshape(-1, 2)
    canvas = np.zeros((layout.size, n_objects * layout.size + (n_objects - 1) * gap), np.complex64)
    for k, o in enumerate(objects):
        x0 = int(shift[k])
        canvas[:, x0 : x0 + layout.size] = o
    scan_index = np.repeat(np.arange(n_objects), G * C)
    metadata: dict[str, Any] = {
        "schema_version": SIMULATION_SCHEMA,
        "physics_parameters": {"nphotons": float(nphotons), "N": N, "gridsize": layout.gridsize},
        "simulation": {
            "generator": "ptycho_api.grid.simulate_grid",
            "scan": "grid",
            "object": obj,
            "n_objects": n_objects,
            "size": layout.size,
            "offset": layout.offset,
            "outer_offset": layout.outer_offset,
            "gap": gap,
            "seed": seed,
            "norm_Y_I": norm,
            "s_sim": intensity_scale,
            "probe_scale": probe_scale,
            "set_phi": bool(set_phi),
        },
    }
    raw = RawData(
        positions[:, 0],
        positions[:, 1],
        None,
        None,
        diff3d,
        probe,
        scan_index,
        canvas,
        flat,
        metadata=metadata,
        groups=np.arange(len(flat), dtype=np.int64).reshape(-1, C),
        source="<grid simulation>",
    )
    logger.info(
        "grid simulation: %d objects x %d groups of %d patterns (N=%d, offset %d, outer "
        "offset %d, nphotons %.3g)",
        n_objects,
        G,
        C,
        N,
        layout.offset,
        layout.outer_offset,
        nphotons,
    )
    return GridSimulation(raw, layout, objects, norm, float(intensity_scale))


def simulate_grid_pair(
    gridsize: int,
    probe: np.ndarray,
    *,
    N: int = 64,
    size: int = 392,
    offset: int = 4,
    outer_offset_train: int = 8,
    outer_offset_test: int = 20,
    n_objects_train: int = 2,
    n_objects_test: int = 2,
    nphotons: float = 1e9,
    probe_scale: float = 4.0,
    seed: int = 1,
    obj: str = "lines",
    set_phi: bool = False,
) -> tuple[GridSimulation, GridSimulation]:
    """The published train/test pair (B 11.3): -> (train, test) ``GridSimulation``.

    The training scan (groups ``outer_offset_train / 2`` px apart, ``seed``) sets ``s_sim``;
    the test scan (``outer_offset_test / 2`` px apart, ``seed + 1``, other objects) reuses it.
    ``set_phi`` gives the objects a phase (``make_object``); the published runs have none.
    """
    train = simulate_grid(
        grid_layout(N, gridsize, offset, outer_offset_train, size),
        probe,
        n_objects=n_objects_train,
        nphotons=nphotons,
        probe_scale=probe_scale,
        seed=seed,
        obj=obj,
        set_phi=set_phi,
    )
    test = simulate_grid(
        grid_layout(N, gridsize, offset, outer_offset_test, size),
        probe,
        n_objects=n_objects_test,
        nphotons=nphotons,
        probe_scale=probe_scale,
        seed=seed + 1,
        obj=obj,
        intensity_scale=train.intensity_scale,
        set_phi=set_phi,
    )
    return train, test


def object_groups(raw: RawData, nn_indices: np.ndarray, object_index: int = 0) -> np.ndarray:
    """Boolean ``(B,)``: which groups of a grouped grid scan lie on object ``object_index``."""
    return raw.scan_index[np.asarray(nn_indices)[:, 0]] == object_index
