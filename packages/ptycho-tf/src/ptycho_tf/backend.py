"""The ``tensorflow`` backend object registered under the ``ptycho.backends`` entry point."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

import ptycho_tf

__all__ = ["TensorFlowBackend"]

_PENDING = "arrives with the TensorFlow backend issue"


class TensorFlowBackend:
    """TensorFlow/Keras 3 implementation of ``ptycho_api.backend.Backend``."""

    name = "tensorflow"
    package_version = ptycho_tf.__version__

    def framework_version(self) -> str:
        """TensorFlow's version string."""
        return tf.__version__

    def devices(self) -> list[str]:
        """Logical devices TensorFlow sees, e.g. ``["/device:CPU:0"]``."""
        return [d.name for d in tf.config.list_logical_devices()]

    def _pending(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"TensorFlowBackend.{what} {_PENDING}")

    def build_model(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the TensorFlow backend issue)."""
        raise self._pending("build_model")

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the TensorFlow backend issue)."""
        raise self._pending("train")

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the TensorFlow backend issue)."""
        raise self._pending("predict")

    def reassemble_position(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the TensorFlow backend issue)."""
        raise self._pending("reassemble_position")

    def export_weights(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the TensorFlow backend issue)."""
        raise self._pending("export_weights")

    def import_weights(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the TensorFlow backend issue)."""
        raise self._pending("import_weights")

    def save_archive(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the TensorFlow backend issue)."""
        raise self._pending("save_archive")

    def load_archive(self, *args: Any, **kwargs: Any) -> Any:
        """Not available yet (see the TensorFlow backend issue)."""
        raise self._pending("load_archive")
