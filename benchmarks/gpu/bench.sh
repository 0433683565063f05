#!/usr/bin/env bash
# GPU throughput of the PyTorch backend (issue 15's table, each execution option, the roofline
# fraction, a streamed reconstruction of 1,000,000 patterns), sized to fit one 10-minute run on
# one H200. Self-contained: the machine has PyTorch, Lightning, numpy, scipy and h5py but no
# package index, so our three packages come as wheels built beforehand (from the repository
# root, on a machine with pip):
#
#   pip wheel --no-deps -w .whl packages/ptycho-api packages/ptycho-bundle packages/ptycho-torch
#
# Then, on the GPU machine, from the repository root:  bash benchmarks/gpu/bench.sh
# Results: $OUT (or bench-results/) gpu-bench.json and gpu-bench.md; paste the table into
# docs/performance.md with the commit and the date.
source "$(dirname "$0")/install_wheels.sh"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
# The streamed scan is 16 GB on disk (float32, stored NPZ): it is written to the system temp dir.
python3 benchmarks/gpu/bench_gpu.py --device cuda --out "$out" "$@" 2> "$out/gpu-bench.log" \
  || { tail -40 "$out/gpu-bench.log"; exit 1; }
