"""PtychoPINN under its original import name ``ptycho``, served by ``ptycho_api`` and a backend.

This package holds no physics and no training logic: each module re-exports or adapts the
framework-free ``ptycho_api`` and drives the backend chosen by the usual ladder
(``PTYCHO_BACKEND``, the config's ``backend``, the only installed backend). It exists so that
code written for the original TensorFlow package - above all Ptychodus's "PtychoPINN"
reconstructor library - runs unmodified on TensorFlow or PyTorch. Importing it (and
``ptycho.config.config``) never imports a framework.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ptychopinn")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
