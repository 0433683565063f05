"""Scale-out: one epoch with Lightning's ``strategy="ddp"`` on two CPU processes (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

from ptycho_torch.archive import load_archive

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from ptycho_api.config import ModelConfig, TrainingConfig
    from ptycho_api.simulation import simulate_dataset
    from ptycho_torch.config import ExecutionConfig
    from ptycho_torch.workflows.components import run_cdi_example_torch

    raw = simulate_dataset(n_images=40, N=64, seed=3)
    config = TrainingConfig(
        model=ModelConfig(N=64, n_filters_scale=1), nepochs=1, batch_size=8, seed=1,
        output_dir=Path(sys.argv[1]),
    )
    execution = ExecutionConfig(
        accelerator="cpu", devices=2, strategy="ddp", enable_progress_bar=False
    )
    _, _, results = run_cdi_example_torch(raw, None, config, execution_config=execution)
    trainer = results["backend"].last_trainer
    print(f"RANK {trainer.global_rank} WORLD {trainer.world_size} "
          f"BACKEND {trainer.strategy.process_group_backend} EPOCHS {len(results['history']['loss'])}")
    """
)


def test_two_process_ddp_on_cpu_trains_and_writes_a_valid_archive(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    # Lightning's "ddp" launcher re-runs this script for rank 1, so it must be a real file.
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    proc = subprocess.run(
        [sys.executable, str(script), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "RANK 0 WORLD 2 BACKEND gloo EPOCHS 1" in proc.stdout, proc.stdout
    assert "RANK 1 WORLD 2 BACKEND gloo" in proc.stdout, proc.stdout
    model, snapshot = load_archive(out)
    assert snapshot["N"] == 64
    from ptycho_torch.inference import predict_patches

    x = np.full((2, 64, 64, 1), 400.0, np.float32)
    patches = predict_patches(model, x, np.zeros((2, 1, 2, 1), np.float32))
    assert np.all(np.isfinite(patches))
