"""The training set's per-epoch order as a pure function of ``(seed, epoch)`` (exact resume).

A ``DataLoader(shuffle=True, generator=g)`` draws each epoch's order from the running state of
``g``, which a checkpoint does not hold: a run resumed at epoch k re-seeded ``g`` and replayed
epoch 0's order, so epochs after a resume differed from the uninterrupted run (issue 17).
``EpochSeededSampler`` derives epoch k's permutation from the seed and k alone; Lightning calls
``set_epoch`` with the fit loop's epoch before each epoch (also after a resume), so resumed
epoch k sees the uninterrupted epoch k's order.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import RandomSampler

__all__ = ["EpochSeededSampler", "epoch_seed"]


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed mixed from ``seed`` and ``epoch`` (numpy's ``SeedSequence`` hash)."""
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint64)
    return int(state[0]) >> 1


class EpochSeededSampler(RandomSampler):
    """Random order without replacement, epoch ``e``'s from ``torch.Generator(epoch_seed(seed, e))``.

    A ``RandomSampler`` subclass, so Lightning treats the loader as shuffled and, under a
    distributed strategy, substitutes its seeded ``DistributedSampler`` (also a function of the
    seed and the epoch). ``seed`` None draws a fresh base seed (nondeterministic run).
    """

    def __init__(self, data_source: Sized, seed: int | None) -> None:
        super().__init__(data_source)
        self.seed = secrets.randbits(63) if seed is None else int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        """Indices of the current epoch's permutation."""
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()
