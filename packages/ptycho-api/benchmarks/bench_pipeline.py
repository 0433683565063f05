"""Time and memory of the numpy data pipeline at scale (not part of the test suite).

Usage (peak memory of the whole process via GNU time):

    /usr/bin/time -v python packages/ptycho-api/benchmarks/bench_pipeline.py group
    /usr/bin/time -v python packages/ptycho-api/benchmarks/bench_pipeline.py stitch

``group``: ``RawData`` of 100,000 random positions, grouped into 100,000 groups at gridsize 2
(K = 4): neighbour search, member draw, coordinate keys, pattern gather, normalisation. The
patterns are ``--N`` pixels (default 8) so that the input itself stays small; the gathered
``(B, N, N, 4)`` arrays scale as N^2 (at N = 64 they alone would be 6.5 GB each).
``stitch``: ``reassemble_position`` of 20,000 complex64 patches (N = 64, M = 20) on a
142 x 142 raster scan with 5-pixel steps plus sub-pixel jitter; the input patches alone are
655 MB (20,000 x 64 x 64 x 8 bytes), the stitching's own working memory is a few tens of MB.

Prints one JSON line: the timed operation's wall time and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

from ptycho_api import RawData, reassemble_position


def bench_group(n_positions: int, N: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    side = 5.0 * np.sqrt(n_positions)
    raw = RawData.from_coords_without_pc(
        rng.uniform(0, side, n_positions),
        rng.uniform(0, side, n_positions),
        rng.uniform(0, 1, (n_positions, N, N)).astype(np.float32),
        np.ones((N, N), dtype=np.complex64),
        None,
    )
    start = time.perf_counter()
    grouped = raw.generate_grouped_data(N, K=4, nsamples=n_positions, gridsize=2, seed=seed)
    elapsed = time.perf_counter() - start
    assert grouped["nn_indices"].shape == (n_positions, 4)
    return {"groups": n_positions, "N": N, "seconds": elapsed}


def bench_stitch(n_patches: int, N: int, M: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    per_side = int(np.ceil(np.sqrt(n_patches)))
    xs, ys = np.meshgrid(np.arange(per_side) * 5.0, np.arange(per_side) * 5.0)
    positions = np.column_stack([xs.ravel(), ys.ravel()])[:n_patches]
    positions += rng.uniform(-0.5, 0.5, positions.shape)
    patches = np.empty((n_patches, N, N, 1), dtype=np.complex64)
    # Filled in blocks so the generator's temporaries stay small next to the 655 MB input.
    for lo in range(0, n_patches, 1000):
        block = patches[lo : lo + 1000]
        block.real = rng.random(block.shape, dtype=np.float32) + 0.5
        block.imag = rng.random(block.shape, dtype=np.float32) - 0.5
    start = time.perf_counter()
    image = reassemble_position(patches, positions[:, None, :, None], M=M)
    elapsed = time.perf_counter() - start
    return {"patches": n_patches, "N": N, "M": M, "canvas": image.shape[0], "seconds": elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["group", "stitch"])
    parser.add_argument("--n", type=int, help="positions (group) or patches (stitch)")
    parser.add_argument("--N", type=int, help="pattern size (group: 8, stitch: 64)")
    parser.add_argument("--M", type=int, default=20, help="stitching crop size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.what == "group":
        result = bench_group(args.n or 100_000, args.N or 8, args.seed)
    else:
        result = bench_stitch(args.n or 20_000, args.N or 64, args.M, args.seed)
    # ru_maxrss is in KiB on Linux.
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
