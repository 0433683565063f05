"""The ``pytorch`` backend object registered under the ``ptycho.backends`` entry point."""

from __future__ import annotations

from typing import Any

import torch

import ptycho_torch

__all__ = ["PyTorchBackend"]

_PENDING = "arrives with the PyTorch backend issue"


class PyTorchBackend:
    """PyTorch + Lightning implementation of ``ptycho_api.backend.Backend``."""

    name = "pytorch"
    package_version = ptycho_torch.__version__

    def framework_version(self) -> str:
        """PyTorch's version string."""
        return str(torch.__version__)

    def devices(self) -> list[str]:
        """Devices PyTorch can use: ``["cpu"]`` plus ``cuda:i`` for each visible GPU."""
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    def _pending(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"PyTorchBackend.{what} {_PENDING}")

    def build_model(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the PyTorch backend issue)."""
        raise self._pending("build_model")

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the PyTorch backend issue)."""
        raise self._pending("train")

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the PyTorch backend issue)."""
        raise self._pending("predict")

    def reassemble_position(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the PyTorch backend issue)."""
        raise self._pending("reassemble_position")

    def export_weights(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the PyTorch backend issue)."""
        raise self._pending("export_weights")

    def import_weights(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the PyTorch backend issue)."""
        raise self._pending("import_weights")

    def save_archive(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the PyTorch backend issue)."""
        raise self._pending("save_archive")

    def load_archive(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the PyTorch backend issue)."""
        raise self._pending("load_archive")
