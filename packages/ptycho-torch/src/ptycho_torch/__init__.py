"""PtychoPINN's PyTorch backend (entry point `ptycho.backends: pytorch`).

Importing this package does not import PyTorch itself; the backend module does. It sets
``GOMP_SPINCOUNT`` (unless already set) before PyTorch loads: see ``OPENMP_SPINCOUNT``.
"""

from __future__ import annotations

import os

__version__ = "0.2.0"

OPENMP_SPINCOUNT = "10000"
"""Default ``GOMP_SPINCOUNT`` for PyTorch's OpenMP threads (GNU libgomp, as in the Linux wheels).

An idle libgomp thread spins up to 300,000 times before it sleeps. Our convolutions are small,
so on a loaded machine with few cores the spinning threads take the cores from the work: the
README demo (2 epochs, 2 cores, two other busy processes) took 110 s wall and 100 s CPU, against
TensorFlow's 76 s and 56 s. With 10,000 spins: 70 s and 57 s loaded, and the unloaded demo
(batch 16) unchanged at 31 s wall; at batch 4 on an idle machine, where the parallel regions are
tiny, sleeping threads must be woken more often and training is about 20 % slower. libgomp reads the variable when it loads, hence here, before
any ``import torch``; a value the user set is kept, and it has no effect if PyTorch was imported
first."""

os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPINCOUNT)
