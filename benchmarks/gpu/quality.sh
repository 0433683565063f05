#!/usr/bin/env bash
# The published quality protocol (4 cases, 60 epochs) with the PyTorch backend on one GPU,
# sized to fit one 10-minute run on an H200. Self-contained: the machine has PyTorch, Lightning,
# numpy, scipy, scikit-image, matplotlib and h5py but no package index, so our three packages
# come as wheels built beforehand (from the repository root, on a machine with pip):
#
#   pip wheel --no-deps -w .whl packages/ptycho-api packages/ptycho-bundle packages/ptycho-torch
#
# Then, on the GPU machine, from the repository root:  bash benchmarks/gpu/quality.sh
# The four cases run as four concurrent processes (a batch of 16 leaves the GPU mostly idle),
# with TF32 convolutions and matrix products, as TensorFlow (the published runs) uses by default.
# SCALE (default paper) and CASES (default all four) choose the run: the full schedule does not
# fit one 10-minute call with four cases at once (about 18 min), so it is run a case at a time,
# e.g.  SCALE=full CASES=gs2_ideal bash benchmarks/gpu/quality.sh
# Results: $OUT (or bench-results/) quality-pytorch-$SCALE-<case>.json and quality-pytorch-$SCALE.md.
source "$(dirname "$0")/install_wheels.sh"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
scale="${SCALE:-paper}"
read -ra cases <<< "${CASES:-gs1_ideal gs1_exp gs2_ideal gs2_exp}"
pids=()
for c in "${cases[@]}"; do
  python3 benchmarks/quality.py --backend pytorch --scale "$scale" --cases "$c" --tag "$c" \
    --precision tf32 --out "$out" --no-doc "$@" > "$out/quality-$c.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { status=1; echo "case ${cases[$i]} failed:"; tail -20 "$out/quality-${cases[$i]}.log"; }
done
python3 benchmarks/quality.py --merge "$out"/quality-pytorch-"$scale"-*.json --out "$out" |
  tee "$out/quality-pytorch-$scale.md"
exit $status
