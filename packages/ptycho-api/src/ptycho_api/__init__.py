"""PtychoPINN's framework-free core: configuration, data pipeline, reference physics, metrics, CLI.

Importing this package never imports TensorFlow, Keras, PyTorch or Lightning.
"""

from __future__ import annotations

from ptycho_api.config import (
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    dataclass_to_legacy_dict,
    load_config,
    save_config,
    update_legacy_dict,
)
from ptycho_api.errors import (
    BackendError,
    BackendNotInstalledError,
    BundleError,
    ConfigError,
    DataError,
    PtychoError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "ModelConfig",
    "TrainingConfig",
    "InferenceConfig",
    "dataclass_to_legacy_dict",
    "update_legacy_dict",
    "load_config",
    "save_config",
    "PtychoError",
    "ConfigError",
    "DataError",
    "BackendError",
    "BackendNotInstalledError",
    "BundleError",
]
