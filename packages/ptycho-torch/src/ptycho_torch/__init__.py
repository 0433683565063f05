"""PtychoPINN's PyTorch backend (entry point `ptycho.backends: pytorch`).

Importing this package does not import PyTorch itself; the backend module does.
"""

from __future__ import annotations

__version__ = "0.2.0"
