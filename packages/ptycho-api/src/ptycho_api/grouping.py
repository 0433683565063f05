"""Grouping of scan points into neighbourhoods of gridsize^2 members (physics.md B 4, decision 8).

Randomness comes from a local ``numpy.random.Generator`` seeded by ``seed``; the global numpy
state is never read or changed. Exact upstream draws are not reproduced; for a given seed the
groups are.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ptycho_api import params
from ptycho_api.errors import DataError
from ptycho_api.normalization import normalize_data
from ptycho_api.physics import extract_patches

if TYPE_CHECKING:
    from ptycho_api.rawdata import RawData

__all__ = [
    "select_groups",
    "select_fixed_groups",
    "square_groups",
    "square_offsets",
    "group_raw_data",
    "GROUPED_KEYS",
]

logger = logging.getLogger(__name__)

GROUPED_KEYS = (
    "diffraction",
    "X_full",
    "coords_nn",
    "coords_offsets",
    "coords_relative",
    "coords_start_nn",
    "coords_start_offsets",
    "coords_start_relative",
    "nn_indices",
    "Y",
    "objectGuess",
    "probeGuess",
)
"""Keys of the dict returned by ``group_raw_data``."""


def _neighbours(points: np.ndarray, seeds: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` nearest other points of each seed ``(m, k)`` (the seed itself only if n <= k)."""
    # Imported here: scipy.spatial costs about a quarter second, and only grouping needs it.
    from scipy.spatial import cKDTree

    _, idx = cKDTree(points).query(points[seeds], k=min(k + 1, len(points)))
    idx = idx.reshape(len(seeds), -1)
    # With k+1 results the first is the seed itself (distance 0) and is dropped (B 4 step 4).
    return idx[:, 1:] if idx.shape[1] > k else idx[:, :k]


def select_groups(
    xcoords: np.ndarray,
    ycoords: np.ndarray,
    C: int,
    K: int = 4,
    nsamples: int | None = None,
    seed: int | None = None,
    sequential_sampling: bool = False,
    enable_oversampling: bool = False,
    neighbor_pool_size: int | None = None,
    source: str = "<arrays>",
) -> np.ndarray:
    """Member indices of each group: ``(B, C)`` int64, B = ``nsamples`` (None: one per point).

    C == 1: each group is one scan point (random points without replacement, or the first ones
    in ``sequential_sampling``). C > 1: for each seed point, C distinct members drawn at random
    among its K nearest neighbours (the seed itself excluded, so it is usually not a member;
    member order = draw order). ``sequential_sampling`` takes the first points as seeds and uses
    ``seed`` (default 0) for the member draw. More groups than points are capped at one group
    per point with a warning, for every C; with C > 1 and ``enable_oversampling`` they are
    instead drawn from the C-combinations of each seed's ``neighbor_pool_size`` (default K)
    nearest neighbours (B 4 oversampling path).
    Raises ``DataError`` when K < C or when there are fewer than C points.
    """
    points = np.column_stack(
        [np.asarray(xcoords, dtype=np.float64), np.asarray(ycoords, dtype=np.float64)]
    )
    n = len(points)
    if C < 1:
        raise DataError(f"{source}: gridsize**2: expected >= 1 members per group; found {C}")
    if n < C:
        raise DataError(
            f"{source}: grouping needs at least C = gridsize**2 = {C} scan positions; found {n}"
        )
    if K < C:
        raise DataError(
            f"{source}: K (neighbor_count): expected K >= C = gridsize**2 = {C} neighbours to "
            f"draw a group from; found K = {K}"
        )
    if nsamples is None:
        nsamples = n
    if isinstance(nsamples, bool) or not isinstance(nsamples, int | np.integer) or nsamples < 1:
        raise DataError(
            f"{source}: nsamples (n_groups): expected an integer >= 1; found {nsamples!r}"
        )
    nsamples = int(nsamples)

    if nsamples > n and C > 1 and enable_oversampling:
        pool = neighbor_pool_size or K
        if pool < C:
            raise DataError(
                f"{source}: neighbor_pool_size: expected >= C = {C} for oversampling; found {pool}"
            )
        return _oversampled_groups(points, C, pool, nsamples, np.random.default_rng(seed))

    m = min(nsamples, n)
    if m < nsamples:
        # The same rule for every gridsize: one group per seed position, capped, not refused.
        hint = " (enable_oversampling draws more groups)" if C > 1 else ""
        logger.warning(
            "%s: %d groups requested but only %d scan positions; using %d%s",
            source,
            nsamples,
            n,
            m,
            hint,
        )
    if sequential_sampling:
        seeds = np.arange(m)
        rng = np.random.default_rng(0 if seed is None else seed)
    else:
        rng = np.random.default_rng(seed)
        seeds = rng.choice(n, m, replace=False) if m < n else np.arange(n)
    if C == 1:
        return seeds.astype(np.int64)[:, None]
    candidates = _neighbours(points, seeds, K)
    # C distinct candidates per row, in random order: the first C of a random permutation.
    order = np.argsort(rng.random(candidates.shape), axis=1)[:, :C]
    return np.take_along_axis(candidates, order, axis=1).astype(np.int64)


def select_fixed_groups(
    groups: np.ndarray,
    C: int,
    nsamples: int | None = None,
    seed: int | None = None,
    sequential_sampling: bool = False,
    source: str = "<arrays>",
) -> np.ndarray:
    """Draw ``nsamples`` of a scan's fixed groups ``(B, C)`` (e.g. a grid scan): -> ``(m, C)`` int64.

    ``sequential_sampling`` keeps the first groups in file order; otherwise the groups are drawn
    without replacement in random order (seeded), so the validation split (the last 5 %) is a
    random subset, as the original's shuffled grid training set is. More groups than the scan
    holds are capped with a warning. Raises ``DataError`` when the groups do not have C members.
    """
    groups = np.asarray(groups)
    if groups.ndim != 2 or groups.shape[1] != C:
        raise DataError(
            f"{source}: key 'groups': expected groups of C = gridsize**2 = {C} patterns (the "
            f"model's gridsize); found groups of shape {groups.shape}. Train with the gridsize "
            "the scan was grouped for, or remove 'groups' to group by nearest neighbours"
        )
    n = len(groups)
    m = n if nsamples is None else int(nsamples)
    if m < 1:
        raise DataError(f"{source}: nsamples (n_groups): expected an integer >= 1; found {m}")
    if m > n:
        logger.warning("%s: %d groups requested but the scan holds %d; using %d", source, m, n, n)
        m = n
    if sequential_sampling:
        return groups[:m].astype(np.int64)
    return groups[np.random.default_rng(seed).permutation(n)[:m]].astype(np.int64)


def square_offsets(gridsize: int, spacing: float) -> np.ndarray:
    """Member c = a * gridsize + b of a square group sits here from its centre: ``(C, 2)`` px [x, y].

    ``((b - (g - 1) / 2) * spacing, (a - (g - 1) / 2) * spacing)``: raster order, x = column,
    the layout of the grid protocol's groups (``ptycho_api.grid``).
    """
    row, col = np.divmod(np.arange(gridsize * gridsize), gridsize)
    centre = (gridsize - 1) / 2
    return np.stack([(col - centre) * spacing, (row - centre) * spacing], axis=1).astype(float)


def square_groups(
    xcoords: np.ndarray,
    ycoords: np.ndarray,
    gridsize: int,
    spacing: float = 4.0,
    source: str = "<arrays>",
) -> np.ndarray:
    """One square-shaped group per scan position: ``(M, gridsize**2)`` int64 pattern indices.

    The group of position p holds, for each member c in raster order, the position nearest to
    p + ``square_offsets(gridsize, spacing)[c]`` px that the group does not hold yet. On a random
    scan denser than ``spacing`` this gives every group the same in-group geometry, a square as
    in the published grid protocol, where nearest-neighbour groups vary in shape and order
    (docs/quality.md, "Coordinate mode on a CPU"). Raises ``DataError`` for a non-positive or
    non-finite ``spacing``, a gridsize below 1, or fewer positions than members.
    """
    from scipy.spatial import cKDTree

    points = np.column_stack(
        [np.asarray(xcoords, dtype=np.float64), np.asarray(ycoords, dtype=np.float64)]
    )
    if isinstance(gridsize, bool) or not isinstance(gridsize, int | np.integer) or gridsize < 1:
        raise DataError(f"{source}: gridsize: expected an integer >= 1; found {gridsize!r}")
    C = int(gridsize) * int(gridsize)
    if not (isinstance(spacing, int | float | np.number) and np.isfinite(spacing) and spacing > 0):
        raise DataError(
            f"{source}: spacing: expected a finite distance > 0 px between a square group's "
            f"members; found {spacing!r}"
        )
    n = len(points)
    if n < C:
        raise DataError(
            f"{source}: square groups need at least C = gridsize**2 = {C} scan positions; found {n}"
        )
    tree = cKDTree(points)
    groups = np.empty((n, C), dtype=np.int64)
    rows = np.arange(n)
    for c, step in enumerate(square_offsets(int(gridsize), float(spacing))):
        # C candidates always hold one the group has not taken (it holds c < C members).
        _, candidates = tree.query(points + step, k=C, workers=-1)
        candidates = candidates.reshape(n, C)
        taken = (candidates[:, :, None] == groups[:, None, :c]).any(axis=2)
        groups[:, c] = candidates[rows, np.argmax(~taken, axis=1)]
    return groups


def _oversampled_groups(
    points: np.ndarray, C: int, pool: int, nsamples: int, rng: np.random.Generator
) -> np.ndarray:
    """B 4 oversampling: C-combinations of each seed's ``pool`` nearest neighbours, then a draw."""
    n = len(points)
    n_seeds = min(2 * math.ceil(nsamples / math.comb(pool, C)), n)
    seeds = rng.choice(n, n_seeds, replace=False) if n_seeds < n else np.arange(n)
    neighbours = _neighbours(points, seeds, pool)
    combos = itertools.chain.from_iterable(
        itertools.combinations(row.tolist(), C) for row in neighbours
    )
    # Enumerate in order and stop once the pool holds twice the groups needed.
    table = np.asarray(list(itertools.islice(combos, 2 * nsamples)), dtype=np.int64)
    picks = rng.choice(len(table), nsamples, replace=len(table) < nsamples)
    logger.info(
        "oversampling: %d groups drawn from %d neighbour combinations", nsamples, len(table)
    )
    return table[picks]


def _group_coords(x: np.ndarray, y: np.ndarray, nn: np.ndarray) -> tuple[np.ndarray, ...]:
    """``coords_nn`` (B,1,2,C), ``coords_offsets`` (B,1,2,1) and ``coords_relative`` = m - r."""
    coords_nn = np.stack([x[nn], y[nn]], axis=1)[:, None]
    offsets = coords_nn.mean(axis=3, keepdims=True)
    return coords_nn, offsets, offsets - coords_nn


def group_raw_data(
    raw: RawData,
    N: int,
    K: int = 4,
    nsamples: int | None = None,
    gridsize: int | None = None,
    seed: int | None = None,
    sequential_sampling: bool = False,
    enable_oversampling: bool = False,
    neighbor_pool_size: int | None = None,
) -> dict[str, Any]:
    """Group a scan and assemble the dataset of B 4: a dict with the keys of ``GROUPED_KEYS``.

    ``diffraction`` (B,N,N,C) float32 file amplitudes; ``X_full`` (B,N,N,C) float32 normalised
    (B 5.1); ``coords_nn`` / ``coords_start_nn`` (B,1,2,C) float64 member positions [x, y];
    ``coords_offsets`` / ``coords_start_offsets`` (B,1,2,1) float64 group means m;
    ``coords_relative`` / ``coords_start_relative`` (B,1,2,C) float64 = m - r; ``nn_indices``
    (B,C) int64; ``Y`` (B,N,N,C) complex64 ground-truth patches centred on each member's own
    point (decision 3; from ``raw.Y``, else cut from ``objectGuess``, else None);
    ``objectGuess`` and ``probeGuess`` passed through. ``gridsize`` None reads
    ``params.cfg['gridsize']`` (the legacy CONFIG-001 path); ``N`` must equal the pattern size.
    See ``select_groups`` for the sampling parameters.
    """
    if gridsize is None:
        gridsize = int(params.get("gridsize"))
        logger.info("gridsize not given; using params.cfg['gridsize'] = %d", gridsize)
    if N != raw.N:
        raise DataError(
            f"{raw.source}: N: expected the pattern size of the data ({raw.N}); found N = {N}"
        )
    if raw.groups is not None:
        nn = select_fixed_groups(
            raw.groups, gridsize * gridsize, nsamples, seed, sequential_sampling, raw.source
        )
    else:
        nn = select_groups(
            raw.xcoords,
            raw.ycoords,
            gridsize * gridsize,
            K=K,
            nsamples=nsamples,
            seed=seed,
            sequential_sampling=sequential_sampling,
            enable_oversampling=enable_oversampling,
            neighbor_pool_size=neighbor_pool_size,
            source=raw.source,
        )
    diffraction = np.ascontiguousarray(np.moveaxis(raw.diff3d[nn], 1, -1))
    coords_nn, coords_offsets, coords_relative = _group_coords(raw.xcoords, raw.ycoords, nn)
    start_nn, start_offsets, start_relative = _group_coords(
        raw.xcoords_start, raw.ycoords_start, nn
    )
    if raw.Y is not None:
        ground_truth = np.moveaxis(raw.Y[nn], 1, -1)
    elif raw.objectGuess is not None:
        positions = np.stack([raw.xcoords[nn].ravel(), raw.ycoords[nn].ravel()], axis=1)
        patches = extract_patches(raw.objectGuess, positions, N).reshape(nn.shape + (N, N))
        ground_truth = np.moveaxis(patches, 1, -1)
    else:
        ground_truth = None
    return {
        "diffraction": diffraction,
        "X_full": normalize_data(diffraction),
        "coords_nn": coords_nn,
        "coords_offsets": coords_offsets,
        "coords_relative": coords_relative,
        "coords_start_nn": start_nn,
        "coords_start_offsets": start_offsets,
        "coords_start_relative": start_relative,
        "nn_indices": nn,
        "Y": None if ground_truth is None else np.ascontiguousarray(ground_truth, np.complex64),
        "objectGuess": raw.objectGuess,
        "probeGuess": raw.probeGuess,
    }
