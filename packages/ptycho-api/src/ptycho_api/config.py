"""Configuration dataclasses (physics.md B 3.2 as amended by Part A) and the CONFIG-001 bridge.

The dataclasses are plain and mutable (Ptychodus builds ``ModelConfig(N=0)`` and assigns ``N``
later), picklable, and validated by ``validate()``, which the bridge and the model builders call
again at the point of use.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import logging
import math
import os
import types
import typing
import warnings
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ptycho_api.atomic import atomic_write_text
from ptycho_api.errors import ConfigError

__all__ = [
    "ModelConfig",
    "TrainingConfig",
    "InferenceConfig",
    "SUPPORTED_N",
    "BACKEND_CHOICES",
    "BACKEND_ALIASES",
    "KEY_MAPPINGS",
    "normalize_backend_name",
    "require_supported_n",
    "dataclass_to_legacy_dict",
    "update_legacy_dict",
    "config_to_dict",
    "config_from_dict",
    "model_config_from_legacy_dict",
    "load_config",
    "save_config",
]

logger = logging.getLogger(__name__)

SUPPORTED_N: tuple[int, ...] = (64, 128, 256)
MODEL_TYPES = ("pinn", "supervised")
ARCHITECTURES = ("cnn",)
AMP_ACTIVATIONS = ("sigmoid", "swish", "softplus", "relu")
BACKEND_CHOICES = ("auto", "tensorflow", "pytorch")
BACKEND_ALIASES = {"tf": "tensorflow", "torch": "pytorch"}

DEFAULT_N_GROUPS_TRAINING = 512

KEY_MAPPINGS: dict[str, str] = {
    "object_big": "object.big",
    "probe_big": "probe.big",
    "probe_mask": "probe.mask",
    "probe_trainable": "probe.trainable",
    "intensity_scale_trainable": "intensity_scale.trainable",
    "positions_provided": "positions.provided",
    "output_dir": "output_prefix",
    "train_data_file": "train_data_file_path",
    "test_data_file": "test_data_file_path",
}


def normalize_backend_name(name: str) -> str:
    """Return the canonical backend name for ``name`` (aliases "tf"/"torch" resolved, lower case)."""
    key = str(name).strip().lower()
    return BACKEND_ALIASES.get(key, key)


def require_supported_n(n: int) -> int:
    """Raise ``ConfigError`` unless ``n`` is a patch size the network supports (64, 128, 256)."""
    if isinstance(n, bool) or not isinstance(n, int) or n not in SUPPORTED_N:
        raise ConfigError(
            f"model.N: the network supports patch sizes {list(SUPPORTED_N)}; found {n!r}"
        )
    return n


def _fail(section: str, name: str, value: Any, allowed: str) -> ConfigError:
    prefix = f"{section}.{name}" if section else name
    return ConfigError(f"{prefix}: expected {allowed}; found {value!r}")


def _check_int(section: str, name: str, value: Any, *, minimum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(section, name, value, "an integer")
    if minimum is not None and value < minimum:
        raise _fail(section, name, value, f"an integer >= {minimum}")


def _check_number(
    section: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(section, name, value, "a finite number")
    if low is not None and (value <= low if low_open else value < low):
        bound = f"> {low}" if low_open else f">= {low}"
        if high is not None:
            bound += f" and <= {high}"
        raise _fail(section, name, value, f"a number {bound}")
    if high is not None and value > high:
        raise _fail(section, name, value, f"a number in [{low}, {high}]")


def _check_bool(section: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(section, name, value, "true or false")


def _check_choice(section: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _fail(section, name, value, f"one of {list(choices)}")


def _check_backend(section: str, value: Any) -> None:
    allowed = list(BACKEND_CHOICES) + sorted(BACKEND_ALIASES)
    if not isinstance(value, str) or normalize_backend_name(value) not in BACKEND_CHOICES:
        raise _fail(section, "backend", value, f"one of {allowed}")


def _check_seed(section: str, value: Any) -> None:
    if value is not None:
        _check_int(section, "seed", value, minimum=0)


def _check_optional_positive_int(section: str, name: str, value: Any) -> None:
    if value is not None:
        _check_int(section, name, value, minimum=1)


def _check_path(section: str, name: str, value: Any, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str | os.PathLike):
        raise _fail(section, name, value, "a file system path")


def _apply_n_images_alias(obj: Any) -> None:
    if obj.n_images is not None:
        warnings.warn(
            "n_images is deprecated; use n_groups (the number of groups to draw)",
            DeprecationWarning,
            stacklevel=4,
        )
        if obj.n_groups is None:
            obj.n_groups = obj.n_images


@dataclass
class ModelConfig:
    """Network and physics settings shared by training and inference (physics.md B 3.2)."""

    N: int = 64
    gridsize: int = 1
    n_filters_scale: int = 2
    model_type: str = "pinn"
    architecture: str = "cnn"
    amp_activation: str = "sigmoid"
    object_big: bool = True
    probe_big: bool = True
    probe_mask: bool = False
    pad_object: bool = True
    probe_scale: float = 4.0
    gaussian_smoothing_sigma: float = 0.0

    def validate(self) -> ModelConfig:
        """Check every field; raise ``ConfigError`` naming the first bad one. Returns ``self``."""
        s = "model"
        _check_int(s, "N", self.N, minimum=0)
        if self.N % 2:
            raise _fail(
                s, "N", self.N, "an even number of pixels (64, 128 or 256 to build a model)"
            )
        _check_int(s, "gridsize", self.gridsize, minimum=1)
        _check_int(s, "n_filters_scale", self.n_filters_scale, minimum=1)
        _check_choice(s, "model_type", self.model_type, MODEL_TYPES)
        _check_choice(s, "architecture", self.architecture, ARCHITECTURES)
        _check_choice(s, "amp_activation", self.amp_activation, AMP_ACTIVATIONS)
        for name in ("object_big", "probe_big", "probe_mask", "pad_object"):
            _check_bool(s, name, getattr(self, name))
        _check_number(s, "probe_scale", self.probe_scale, low=0.0, low_open=True)
        _check_number(s, "gaussian_smoothing_sigma", self.gaussian_smoothing_sigma, low=0.0)
        return self

    @property
    def n_channels(self) -> int:
        """Patterns per group, C = gridsize**2."""
        return self.gridsize * self.gridsize


@dataclass
class TrainingConfig:
    """Training settings (physics.md B 3.2, Part A decisions 4, 5, 8, 10) plus backend and seed."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train_data_file: Path | None = None
    test_data_file: Path | None = None
    batch_size: int = 16
    nepochs: int = 50
    mae_weight: float = 0.0
    nll_weight: float = 1.0
    realspace_mae_weight: float = 0.0
    realspace_weight: float = 0.0
    nphotons: float = 1e9
    n_groups: int | None = None
    n_images: int | None = None
    n_subsample: int | None = None
    subsample_seed: int | None = None
    neighbor_count: int = 4
    enable_oversampling: bool = False
    neighbor_pool_size: int | None = None
    positions_provided: bool = True
    probe_trainable: bool = False
    intensity_scale_trainable: bool = True
    output_dir: Path = Path("training_outputs")
    sequential_sampling: bool = False
    # Not in the original's field set: False trains exactly nepochs, without the schedule's
    # early stopping on the training loss (ptycho_api.schedule), as comparisons of schedules need.
    early_stopping: bool = True
    backend: str = "auto"
    # Seeded by default so that a run repeats (Ptychodus and most scripts never set one);
    # None asks for an unseeded run.
    seed: int | None = 0

    def __post_init__(self) -> None:
        _apply_n_images_alias(self)
        if self.n_groups is None:
            self.n_groups = DEFAULT_N_GROUPS_TRAINING

    def validate(self) -> TrainingConfig:
        """Check every field (and ``model``); raise ``ConfigError`` naming the first bad one."""
        if not isinstance(self.model, ModelConfig):
            raise _fail("", "model", self.model, "a ModelConfig")
        self.model.validate()
        s = "training"
        _check_int(s, "batch_size", self.batch_size, minimum=1)
        if self.batch_size & (self.batch_size - 1):
            raise _fail(s, "batch_size", self.batch_size, "a positive power of two")
        _check_int(s, "nepochs", self.nepochs, minimum=1)
        _check_number(s, "mae_weight", self.mae_weight, low=0.0, high=1.0)
        _check_number(s, "nll_weight", self.nll_weight, low=0.0, high=1.0)
        for name in ("realspace_mae_weight", "realspace_weight"):
            _check_number(s, name, getattr(self, name), low=0.0)
            # Both backends train the diffraction loss only; a real-space term would be ignored.
            if getattr(self, name) != 0:
                raise ConfigError(
                    f"{s}.{name}: realspace losses are not supported yet; expected 0.0; "
                    f"found {getattr(self, name)!r}"
                )
        _check_number(s, "nphotons", self.nphotons, low=0.0, low_open=True)
        _validate_sampling(s, self)
        for name in (
            "enable_oversampling",
            "positions_provided",
            "probe_trainable",
            "intensity_scale_trainable",
            "sequential_sampling",
            "early_stopping",
        ):
            _check_bool(s, name, getattr(self, name))
        _check_path(s, "train_data_file", self.train_data_file)
        _check_path(s, "test_data_file", self.test_data_file)
        _check_path(s, "output_dir", self.output_dir, optional=False)
        _check_backend(s, self.backend)
        _check_seed(s, self.seed)
        return self


@dataclass
class InferenceConfig:
    """Inference settings (physics.md B 3.2) plus backend and seed; ``n_groups`` None means all."""

    model: ModelConfig = field(default_factory=ModelConfig)
    model_path: Path | None = None
    test_data_file: Path | None = None
    n_groups: int | None = None
    n_images: int | None = None
    n_subsample: int | None = None
    subsample_seed: int | None = None
    neighbor_count: int = 4
    enable_oversampling: bool = False
    neighbor_pool_size: int | None = None
    debug: bool = False
    output_dir: Path = Path("inference_outputs")
    backend: str = "auto"
    seed: int | None = None

    def __post_init__(self) -> None:
        _apply_n_images_alias(self)

    def validate(self) -> InferenceConfig:
        """Check every field (and ``model``); raise ``ConfigError`` naming the first bad one.

        ``model_path``, when given, must exist, or have an existing ``.zip`` or ``wts.h5.zip``
        sibling (the original tools' base-path convention).
        """
        if not isinstance(self.model, ModelConfig):
            raise _fail("", "model", self.model, "a ModelConfig")
        self.model.validate()
        s = "inference"
        _validate_sampling(s, self)
        _check_bool(s, "enable_oversampling", self.enable_oversampling)
        _check_bool(s, "debug", self.debug)
        _check_path(s, "model_path", self.model_path)
        _check_path(s, "test_data_file", self.test_data_file)
        _check_path(s, "output_dir", self.output_dir, optional=False)
        _check_backend(s, self.backend)
        _check_seed(s, self.seed)
        if self.model_path is not None:
            p = Path(self.model_path)
            candidates = [p, Path(f"{p}.zip")]
            if p.name:  # Path() (Ptychodus' "not used") has no name to replace
                candidates.append(p.with_name("wts.h5.zip"))
            if not any(c.exists() for c in candidates):
                raise _fail(
                    s,
                    "model_path",
                    str(p),
                    "an existing model directory (holding wts.h5.zip) or archive file",
                )
        return self


def _validate_sampling(section: str, cfg: TrainingConfig | InferenceConfig) -> None:
    _check_optional_positive_int(section, "n_groups", cfg.n_groups)
    _check_optional_positive_int(section, "n_images", cfg.n_images)
    _check_optional_positive_int(section, "n_subsample", cfg.n_subsample)
    if cfg.subsample_seed is not None:
        _check_int(section, "subsample_seed", cfg.subsample_seed, minimum=0)
    c = cfg.model.n_channels
    _check_int(section, "neighbor_count", cfg.neighbor_count, minimum=1)
    if cfg.neighbor_count < c:
        # Say what to change: the default K = 4 only suits gridsize 1 and 2.
        flag = f" (ptycho {'train and demo' if section == 'training' else 'reconstruct'}: --neighbor-count {c})"
        raise ConfigError(
            f"{section}.neighbor_count: expected at least gridsize**2 = {c} neighbours to draw "
            f"a group from; found {cfg.neighbor_count!r}: set neighbor_count to {c} or "
            f"more{flag}"
        )
    if cfg.neighbor_pool_size is not None:
        _check_int(section, "neighbor_pool_size", cfg.neighbor_pool_size, minimum=c)


# --------------------------------------------------------------------------------------------
# CONFIG-001 bridge (physics.md B 3.3)
# --------------------------------------------------------------------------------------------

AnyConfig = ModelConfig | TrainingConfig | InferenceConfig


def dataclass_to_legacy_dict(obj: AnyConfig) -> dict[str, Any]:
    """Flatten a config into the legacy ``params.cfg`` key space (B 3.3 steps 1-3; Path -> str)."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise ConfigError(f"expected a config dataclass instance; found {type(obj).__name__}")
    flat = dataclasses.asdict(obj)
    model = flat.pop("model", None)
    if isinstance(model, dict):
        flat.update(model)
    out: dict[str, Any] = {}
    for key, value in flat.items():
        legacy = KEY_MAPPINGS.get(key, key)
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        out[legacy] = value
    return out


def update_legacy_dict(cfg: MutableMapping[str, Any], obj: AnyConfig) -> None:
    """CONFIG-001: validate ``obj`` and copy its flattened fields into ``cfg``; None never overwrites."""
    obj.validate()
    for key, value in dataclass_to_legacy_dict(obj).items():
        if value is not None:
            cfg[key] = value


# --------------------------------------------------------------------------------------------
# Config files (YAML or JSON, same field names, nested ``model:``)
# --------------------------------------------------------------------------------------------

C = TypeVar("C", ModelConfig, TrainingConfig, InferenceConfig)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown_key_error(where: str, key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(
        f"{where}: unknown key {key!r}{hint} (valid keys: {', '.join(sorted(known))})"
    )


def _coerce(where: str, name: str, value: Any, tp: Any) -> Any:
    """Convert a value read from a file to the field's declared type, or raise ``ConfigError``."""
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        tp = inner[0]
    if value is None:
        raise ConfigError(f"{where}.{name}: expected a value of type {tp.__name__}; found null")
    if tp is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where}.{name}: expected a path string; found {value!r}")
        return Path(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}.{name}: expected true or false; found {value!r}")
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}.{name}: expected an integer; found {value!r}")
        return value
    if tp is float:
        # YAML 1.1 reads "1e9" (no dot) as a string; accept numeric strings for float fields.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{where}.{name}: expected a number; found {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}.{name}: expected a number; found {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}.{name}: expected a string; found {value!r}")
        return value
    return value


def _build(cls: type[C], data: Mapping[str, Any], where: str) -> C:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of field names to values; found {data!r}")
    types_ = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in types_:
            raise _unknown_key_error(where, str(key), list(types_))
        if key == "model":
            kwargs["model"] = _build(ModelConfig, value, f"{where}.model")
        else:
            kwargs[key] = _coerce(where, key, value, types_[key])
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any], cls: type[C] = TrainingConfig) -> C:
    """Build a validated config of type ``cls`` from a (nested) mapping; unknown keys are errors."""
    return _build(cls, data, cls.__name__).validate()


def model_config_from_legacy_dict(cfg: Mapping[str, Any]) -> ModelConfig:
    """A validated ``ModelConfig`` from legacy params keys (``object.big``, ...); absent keys keep defaults."""
    values = {}
    for spec in dataclasses.fields(ModelConfig):
        key = KEY_MAPPINGS.get(spec.name, spec.name)
        if key in cfg:
            values[spec.name] = cfg[key]
    return _build(ModelConfig, values, "params").validate()


def config_to_dict(obj: AnyConfig) -> dict[str, Any]:
    """Nested, JSON-safe dict of a config (Paths as strings; the deprecated ``n_images`` omitted)."""

    def convert(value: Any) -> Any:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    data = convert(dataclasses.asdict(obj))
    data.pop("n_images", None)
    return data


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    raise ConfigError(f"{path}: config files must end in .yaml, .yml or .json; found {suffix!r}")


CONFIG_MAX_DEPTH = 32
"""Deepest nesting a config file may have; a TrainingConfig needs 2 (the file and ``model:``)."""
CONFIG_MAX_NODES = 10_000
"""Most values a config file may hold, YAML aliases counted as copies; a full TrainingConfig has
about 40. A few hundred bytes of nested aliases ("billion laughs") expand to billions."""


@functools.cache
def _bounded_yaml_loader() -> type:
    """``yaml.SafeLoader`` that refuses deep nesting and alias expansion while composing, before anything is built."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        """Counts each node's size with aliases expanded; nesting is checked as it is entered."""

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._depth = 0
            self._sizes: dict[int, int] = {}  # id(node) -> its size with aliases expanded

        def compose_node(self, parent: Any, index: Any) -> Any:
            """Compose as SafeLoader does, refusing nesting over ``CONFIG_MAX_DEPTH`` and sizes over ``CONFIG_MAX_NODES``."""
            if self.check_event(yaml.AliasEvent):
                node = super().compose_node(parent, index)
                if id(node) not in self._sizes:  # its anchor is still being composed
                    raise ConfigError("a YAML alias refers to a node that contains it")
                return node
            self._depth += 1
            if self._depth > CONFIG_MAX_DEPTH:
                # SafeLoader composes recursively: 50,000 levels would raise RecursionError.
                raise ConfigError(f"nested more than {CONFIG_MAX_DEPTH} levels deep")
            try:
                node = super().compose_node(parent, index)
            finally:
                self._depth -= 1
            size = 1
            if isinstance(node, yaml.SequenceNode):
                size += sum(self._sizes[id(item)] for item in node.value)
            elif isinstance(node, yaml.MappingNode):
                size += sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
            if size > CONFIG_MAX_NODES:
                raise ConfigError(
                    f"more than {CONFIG_MAX_NODES:,} values once YAML aliases are expanded"
                )
            self._sizes[id(node)] = size
            return node

    return BoundedLoader


def _check_json_shape(data: Any) -> None:
    """Refuse parsed JSON nested deeper than ``CONFIG_MAX_DEPTH`` or holding over ``CONFIG_MAX_NODES`` values."""
    pending = [(data, 1)]  # iterative: the point is not to recurse
    count = 0
    while pending:
        value, depth = pending.pop()
        count += 1
        if count > CONFIG_MAX_NODES:
            raise ConfigError(f"more than {CONFIG_MAX_NODES:,} values")
        if isinstance(value, dict | list):
            if depth > CONFIG_MAX_DEPTH:
                raise ConfigError(f"nested more than {CONFIG_MAX_DEPTH} levels deep")
            items = value.values() if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)


def _parse(text: str, fmt: str) -> Any:
    """The document in ``text``, parsed within the depth and size limits."""
    import yaml

    if fmt == "yaml":
        return yaml.load(text, Loader=_bounded_yaml_loader())  # a SafeLoader: plain data only
    try:
        data = json.loads(text)
    except RecursionError:
        # The C parser recurses once per level and gives up near 1,000: deeper than allowed.
        raise ConfigError(f"nested more than {CONFIG_MAX_DEPTH} levels deep") from None
    _check_json_shape(data)
    return data


def load_config(path: str | os.PathLike[str], cls: type[C] = TrainingConfig) -> C:
    """Read a YAML or JSON config file into a validated ``cls`` instance."""
    import yaml

    p = Path(path)
    fmt = _format_of(p)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = _parse(text, fmt)
    except ConfigError as exc:
        raise ConfigError(f"{p}: refused: {exc}") from None
    except (yaml.YAMLError, ValueError) as exc:
        # ValueError also covers JSON syntax errors and integers over Python's 4,300-digit limit.
        message = " ".join(str(exc).split())  # one line: YAML errors span several
        raise ConfigError(f"{p}: not valid {fmt.upper()}: {message[:500]}") from exc
    if data is None:
        data = {}
    try:
        return config_from_dict(data, cls)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc


def save_config(obj: AnyConfig, path: str | os.PathLike[str]) -> Path:
    """Write a config as YAML or JSON (by suffix), atomically; returns the path written."""
    import yaml

    p = Path(path)
    fmt = _format_of(p)
    data = config_to_dict(obj)
    text = (
        yaml.safe_dump(data, sort_keys=False)
        if fmt == "yaml"
        else json.dumps(data, indent=2) + "\n"
    )
    atomic_write_text(p, text)
    return p
