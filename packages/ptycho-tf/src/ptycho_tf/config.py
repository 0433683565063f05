"""Runtime options of the TensorFlow backend that are not part of the shared config (never bridged)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from ptycho_api.errors import ConfigError

__all__ = ["ExecutionConfig"]

_JIT_ENV_VAR = "PTYCHO_TF_JIT"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass
class ExecutionConfig:
    """How TensorFlow runs. Defaults are safe on a CPU-only machine.

    ``jit_compile``: XLA compilation of the train and predict steps: ``"auto"`` (on when a GPU
    is visible; on CPU it measured slower), True or False; the environment variable
    ``PTYCHO_TF_JIT`` (1/0) overrides it. Keras itself turns XLA off for training while op
    determinism is on (a seeded run). ``verbose`` is Keras' ``fit`` verbosity (None: a progress
    bar on a terminal, one line per epoch otherwise).
    """

    jit_compile: bool | Literal["auto"] = "auto"
    verbose: int | str | None = None

    def validate(self) -> ExecutionConfig:
        """Check the fields; raise ``ConfigError`` naming the first bad one. Returns ``self``."""
        if self.jit_compile != "auto" and not isinstance(self.jit_compile, bool):
            raise ConfigError(
                f"execution.jit_compile: expected 'auto', true or false; found {self.jit_compile!r}"
            )
        env = os.environ.get(_JIT_ENV_VAR, "").strip().lower()
        if env and env not in _TRUE + _FALSE:
            raise ConfigError(
                f"environment variable {_JIT_ENV_VAR}: expected 1 or 0; found {env!r}"
            )
        return self

    def jit_requested(self, gpu_visible: bool) -> bool:
        """Whether to compile with XLA: the environment override, else the field (``auto``: a GPU)."""
        env = os.environ.get(_JIT_ENV_VAR, "").strip().lower()
        if env in _TRUE:
            return True
        if env in _FALSE:
            return False
        if self.jit_compile == "auto":
            return gpu_visible
        return bool(self.jit_compile)
