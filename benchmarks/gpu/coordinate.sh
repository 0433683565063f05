#!/usr/bin/env bash
# Coordinate (random-scan, nearest-neighbour) mode on one GPU, at the setup of the quality issue:
# a simulated pair of 2,048 training and 1,024 test positions (seed 7), then trainings with the
# PyTorch backend on 2,048 groups for all of 60 epochs (seed 1; early stopping off, as in the
# issue), all at once, each reconstructing and scoring the test scan (TF32, as in quality.sh).
# Each trained model also reconstructs a second scan of the same test object with as many
# positions as the training scan, whose groups have the training scan's spacing, and its own
# training scan (does it reproduce the object it trained on? docs/quality.md, "Coordinate mode
# on a CPU"), and reconstructs the test scan once more with the original's plain M x M crop
# stitching (`--stitch crop`, columns "crop"), as the issue's baseline was scored; the other
# columns use the default probe-weighted stitching. The reported baseline
# used a measured probe (Run1084) that is not distributed; the built-in experimental-like probe
# stands in for it (PROBE=disk for the idealised one). Self-contained like quality.sh: build the
# wheels first,
#
#   pip wheel --no-deps -w .whl packages/ptycho-api packages/ptycho-bundle packages/ptycho-torch
#
# then, on the GPU machine, from the repository root:  bash benchmarks/gpu/coordinate.sh
# RUNS chooses the trainings: ';'-separated "name gridsize [square] [ptycho train arguments]", by
# default the issue's pair "gs1 1;gs2 2"; "square" trains and scores on the same scans with
# square groups (`ptycho group --gridsize G`). The follow-ups of docs/quality.md are
#
#   RUNS="gs1 1;gs2 2;gs2-square 2 square --config benchmarks/gpu/configs/small-object.yaml;gs2-square-big 2 square"
#
# Results: $OUT (or bench-results/) coordinate-<name>.json, coordinate-<name>-dense.json and
# coordinate-<name>-train.json and coordinate-<name>-crop.json (metrics.json of the four
# reconstructions),
# coordinate-<name>.png, coordinate-<name>.log and
# coordinate.md (the table). EPOCHS, N_IMAGES and N_TEST shrink the run for a smoke test on a
# CPU; arguments go to every `ptycho train`.
source "$(dirname "$0")/install_wheels.sh"
probe="${PROBE:-defocused}"
epochs="${EPOCHS:-60}"
n_images="${N_IMAGES:-2048}"
IFS=';' read -ra specs <<< "${RUNS:-gs1 1;gs2 2}"
work=$(mktemp -d)
ptycho simulate --pair --n-images "$n_images" --n-test "${N_TEST:-1024}" --probe "$probe" \
  --seed 7 --output-dir "$work/data" -q
# The same training scan and test object (the test set's seed is always seed + 1), with a test
# scan as dense as the training scan.
ptycho simulate --pair --n-images "$n_images" --n-test "$n_images" --probe "$probe" \
  --seed 7 --output-dir "$work/dense" -q
names=()
pids=()
for spec in "${specs[@]}"; do
  read -r name g rest <<< "$spec"
  read -ra extra <<< "$rest"
  names+=("$name")
  log="$out/coordinate-$name.log"
  start=$(date +%s)
  train="$work/data/train_data.npz" test="$work/data/test_data.npz" dense="$work/dense/test_data.npz"
  if [ "${extra[0]:-}" = square ]; then
    # The same scans with square groups (`ptycho group`), made once per gridsize.
    extra=("${extra[@]:1}")
    sq="$work/square$g"
    if [ ! -d "$sq" ]; then
      for f in train test dense; do
        src="$work/data/${f}_data.npz"
        [ "$f" = dense ] && src="$work/dense/test_data.npz"
        ptycho group "$src" "$sq/${f}_data.npz" --gridsize "$g" -q
      done
    fi
    train="$sq/train_data.npz" test="$sq/test_data.npz" dense="$sq/dense_data.npz"
  fi
  ( ptycho train --backend torch --train-data "$train" \
      --test-data "$test" --gridsize "$g" --n-groups "$n_images" \
      --epochs "$epochs" --no-early-stopping --seed 1 --precision tf32 \
      --output-dir "$work/$name" "${extra[@]}" \
      "$@" > "$log" 2>&1 &&
    ptycho reconstruct --backend torch --model "$work/$name" \
      --data "$dense" --n-groups "$n_images" --precision tf32 \
      --output-dir "$work/$name-dense" >> "$log" 2>&1 &&
    ptycho reconstruct --backend torch --model "$work/$name" \
      --data "$train" --n-groups "$n_images" --precision tf32 \
      --output-dir "$work/$name-train" >> "$log" 2>&1 &&
    ptycho reconstruct --backend torch --model "$work/$name" \
      --data "$test" --stitch crop --precision tf32 \
      --output-dir "$work/$name-crop" >> "$log" 2>&1
    status=$?
    echo "wall_seconds $(( $(date +%s) - start ))" >> "$log"
    exit $status ) &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  name=${names[$i]}
  if wait "${pids[$i]}"; then
    cp "$work/$name/metrics.json" "$out/coordinate-$name.json"
    cp "$work/$name-dense/metrics.json" "$out/coordinate-$name-dense.json"
    cp "$work/$name-train/metrics.json" "$out/coordinate-$name-train.json"
    cp "$work/$name-crop/metrics.json" "$out/coordinate-$name-crop.json"
    cp "$work/$name/reconstruction.png" "$out/coordinate-$name.png"
  else
    status=1; echo "$name failed:"; tail -20 "$out/coordinate-$name.log"
  fi
done
python3 - "$out" "$probe" "$epochs" "$n_images" "${names[@]}" <<'PY' | tee "$out/coordinate.md"
import json, re, sys
from pathlib import Path
out, probe, epochs, n, names = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
print(f"Coordinate mode, probe {probe}, {n} training positions and groups, {epochs} epochs (PyTorch)")
print("amplitude metrics of the test scan; 'dense': the same object scanned at the training density;")
print("'train': the training scan, the object the model trained on; 'crop': the test scan stitched")
print("with the original's plain M x M crops (--stitch crop), as the issue's baseline was scored")
print()
print("| run | SSIM | MS-SSIM | FRC50 | MAE | SSIM dense | FRC50 dense | SSIM train | FRC50 train "
      "| SSIM crop | FRC50 crop | wall (s) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for name in names:
    wall = re.findall(r"wall_seconds (\d+)", (out / f"coordinate-{name}.log").read_text())
    wall = wall[-1] if wall else "-"
    kinds = ("", "-dense", "-train", "-crop")
    paths = [out / f"coordinate-{name}{kind}.json" for kind in kinds]
    if not all(p.is_file() for p in paths):
        print(f"| {name} | failed | | | | | | | | | | {wall} |")
        continue
    m, d, tr, c = (json.loads(p.read_text()) for p in paths)
    print(f"| {name} | {m['ssim'][0]:.3f} | {m['ms_ssim'][0]:.3f} | {m['frc50'][0]:.1f} | "
          f"{m['mae'][0]:.3f} | {d['ssim'][0]:.3f} | {d['frc50'][0]:.1f} | "
          f"{tr['ssim'][0]:.3f} | {tr['frc50'][0]:.1f} | {c['ssim'][0]:.3f} | "
          f"{c['frc50'][0]:.1f} | {wall} |")
PY
exit $status
