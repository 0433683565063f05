#!/usr/bin/env bash
# Coordinate (random-scan, nearest-neighbour) mode on one GPU, at the setup of the quality issue:
# a simulated pair of 2,048 training and 1,024 test positions (seed 7), then gridsize 1 and
# gridsize 2 trained at once with the PyTorch backend on 2,048 groups for 60 epochs (seed 1),
# each reconstructing and scoring the test scan (TF32, as in quality.sh). The reported baseline
# used a measured probe (Run1084) that is not distributed; the built-in experimental-like probe
# stands in for it (PROBE=disk for the idealised one). Self-contained like quality.sh: build the
# wheels first,
#
#   pip wheel --no-deps -w .whl packages/ptycho-api packages/ptycho-bundle packages/ptycho-torch
#
# then, on the GPU machine, from the repository root:  bash benchmarks/gpu/coordinate.sh
# Results: $OUT (or bench-results/) coordinate-gs<G>.json (metrics.json of each run),
# coordinate-gs<G>.png (reconstruction, ground truth, errors) and coordinate.md (the table).
# EPOCHS, N_IMAGES and N_TEST shrink the run for a smoke test on a CPU; arguments go to both
# `ptycho train` runs (e.g. --config with `intensity_scale_trainable: false` or `model:
# object_big: false`).
source "$(dirname "$0")/install_wheels.sh"
probe="${PROBE:-defocused}"
epochs="${EPOCHS:-60}"
n_images="${N_IMAGES:-2048}"
work=$(mktemp -d)
ptycho simulate --pair --n-images "$n_images" --n-test "${N_TEST:-1024}" --probe "$probe" \
  --seed 7 --output-dir "$work/data" -q
pids=()
for g in 1 2; do
  start=$(date +%s)
  ( ptycho train --backend torch --train-data "$work/data/train_data.npz" \
      --test-data "$work/data/test_data.npz" --gridsize "$g" --n-groups "$n_images" \
      --epochs "$epochs" --seed 1 --precision tf32 --output-dir "$work/gs$g" "$@" \
      > "$out/coordinate-gs$g.log" 2>&1
    status=$?
    echo "wall_seconds $(( $(date +%s) - start ))" >> "$out/coordinate-gs$g.log"
    exit $status ) &
  pids+=($!)
done
status=0
for i in 0 1; do
  g=$((i + 1))
  if wait "${pids[$i]}"; then
    cp "$work/gs$g/metrics.json" "$out/coordinate-gs$g.json"
    cp "$work/gs$g/reconstruction.png" "$out/coordinate-gs$g.png"
  else
    status=1; echo "gridsize $g failed:"; tail -20 "$out/coordinate-gs$g.log"
  fi
done
python3 - "$out" "$probe" "$epochs" "$n_images" <<'PY' | tee "$out/coordinate.md"
import json, re, sys
from pathlib import Path
out, probe, epochs, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
print(f"Coordinate mode, probe {probe}, {n} training positions and groups, {epochs} epochs (PyTorch)")
print()
print("| gridsize | amp SSIM | amp MS-SSIM | amp FRC50 | amp MAE | wall (s) |")
print("|---|---|---|---|---|---|")
for g in (1, 2):
    path = out / f"coordinate-gs{g}.json"
    wall = re.findall(r"wall_seconds (\d+)", (out / f"coordinate-gs{g}.log").read_text())
    if not path.is_file():
        print(f"| {g} | failed | | | | {wall[-1] if wall else '-'} |")
        continue
    m = json.loads(path.read_text())
    print(f"| {g} | {m['ssim'][0]:.3f} | {m['ms_ssim'][0]:.3f} | {m['frc50'][0]:.0f} | "
          f"{m['mae'][0]:.3f} | {wall[-1] if wall else '-'} |")
PY
exit $status
