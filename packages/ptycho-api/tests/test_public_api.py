"""The data pipeline's public names are importable from ``ptycho_api`` without any DL framework."""

from __future__ import annotations

import subprocess
import sys

import ptycho_api

PIPELINE_NAMES = (
    "RawData",
    "PtychoDataContainer",
    "create_ptycho_data_container",
    "reassemble_position",
    "eval_reconstruction",
    "align_for_evaluation",
    "simulate_dataset",
    "simulate_to_file",
    "make_train_test_pair",
)


def test_pipeline_names_are_exported() -> None:
    for name in PIPELINE_NAMES:
        assert name in ptycho_api.__all__, name
        assert callable(getattr(ptycho_api, name)), name


def test_pipeline_modules_import_no_framework() -> None:
    code = (
        "import sys, ptycho_api, ptycho_api.plots, ptycho_api.forward, ptycho_api.objects\n"
        "bad = [m for m in ('tensorflow', 'keras', 'torch', 'lightning') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == ""
