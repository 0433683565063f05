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
from ptycho_api.container import PtychoDataContainer, create_ptycho_data_container
from ptycho_api.errors import (
    BackendError,
    BackendNotInstalledError,
    BundleError,
    ConfigError,
    DataError,
    PtychoError,
)
from ptycho_api.metrics import align_for_evaluation, eval_reconstruction
from ptycho_api.rawdata import RawData
from ptycho_api.simulation import make_train_test_pair, simulate_dataset, simulate_to_file
from ptycho_api.stitching import reassemble_position

__version__ = "0.2.0"

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

# Data pipeline, reference stitching, metrics and simulation (issue 3).
__all__ += [
    "RawData",
    "PtychoDataContainer",
    "create_ptycho_data_container",
    "reassemble_position",
    "eval_reconstruction",
    "align_for_evaluation",
    "simulate_dataset",
    "simulate_to_file",
    "make_train_test_pair",
]
