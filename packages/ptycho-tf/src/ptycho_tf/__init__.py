"""PtychoPINN's TensorFlow backend (entry point `ptycho.backends: tensorflow`).

Importing this package does not import TensorFlow itself; the backend module does.
"""

from __future__ import annotations

__version__ = "0.2.0"
