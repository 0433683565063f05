"""The original ``ptycho.config.config``: ``ptycho_api``'s config dataclasses and CONFIG-001 bridge.

Framework-free and picklable, so a GUI process (Ptychodus) can build configs without importing
TensorFlow or PyTorch. ``ModelConfig`` is mutable: Ptychodus assigns ``N`` once the training
patterns are known.
"""

from ptycho_api.config import (
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    config_from_dict,
    config_to_dict,
    dataclass_to_legacy_dict,
    load_config,
    save_config,
    update_legacy_dict,
)

__all__ = [
    "ModelConfig",
    "TrainingConfig",
    "InferenceConfig",
    "update_legacy_dict",
    "dataclass_to_legacy_dict",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
]
