"""The order of training examples, the same on one process and under DDP."""

from __future__ import annotations

import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


def train_order(dataset: Dataset, shuffle: bool, seed: int) -> dict:
    """`shuffle` / `sampler` arguments for a training DataLoader.

    Under a distributed strategy Lightning replaces a training DataLoader's sampler with a *shuffling*
    DistributedSampler, whatever `shuffle` says. Our own DistributedSampler keeps `shuffle=False` a fixed order
    (DDP-equivalence tests, debugging) and seeds a shuffled order with the DataModule's seed.
    """
    if dist.is_available() and dist.is_initialized():
        return {"sampler": DistributedSampler(dataset, shuffle=shuffle, seed=seed)}
    return {"shuffle": shuffle}
