"""The two backends mirror each other module by module (Keras 3's backend split is the model).

Same file names, and in every mirrored module the same public names (``__all__``), so a reader
finds, say, the archive code of either backend in ``archive.py``. Read from the sources (no
framework import needed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "tensorflow": ROOT / "packages" / "ptycho-tf" / "src" / "ptycho_tf",
    "pytorch": ROOT / "packages" / "ptycho-torch" / "src" / "ptycho_torch",
}
MIRRORED = (
    "archive.py",
    "backend.py",
    "config.py",
    "inference.py",
    "logs.py",
    "losses.py",
    "model.py",
    "physics.py",
    "training.py",
    "weights.py",
)
"""Modules with equal ``__all__`` in both backends."""
FACADES = ("model_manager.py", "workflows/components.py")
"""Present in both, with the original's backend-specific public names (seed compatibility)."""
BACKEND_ONLY = {
    # TensorFlow reserves more address space than a 2 GiB limit allows: it refuses such limits
    # before a run (PyTorch runs within them and needs no such check).
    "tensorflow": {"address_space.py", "layers.py"},
    # Lightning's checkpoints (atomic writes, safe reads) and its per-epoch sampler: TensorFlow
    # trains through Keras' fit and writes no resumable checkpoints. Hand-written Triton kernels
    # for the physics: TensorFlow's counterpart is XLA fusing the same ops (``--kernels fused``).
    "pytorch": {
        "checkpoint_io.py",
        "kernels.py",
        "lightning_module.py",
        "modules.py",
        "sampling.py",
        "wrapper.py",
    },
}
"""Framework-specific building blocks that have no counterpart in the other backend."""


def _modules(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    }


def _public_names(path: Path) -> set[str]:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"{path}: no __all__")


def test_both_backends_have_the_same_modules():
    found = {name: _modules(root) - BACKEND_ONLY[name] for name, root in PACKAGES.items()}
    assert found["tensorflow"] == found["pytorch"]
    assert set(MIRRORED) | set(FACADES) <= found["tensorflow"]


@pytest.mark.parametrize("module", MIRRORED)
def test_mirrored_module_exports_the_same_names(module):
    tf_names, torch_names = (_public_names(root / module) for root in PACKAGES.values())
    assert tf_names == torch_names, (
        f"{module}: only TensorFlow {sorted(tf_names - torch_names)}, "
        f"only PyTorch {sorted(torch_names - tf_names)}"
    )
