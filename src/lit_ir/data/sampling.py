"""The order of training examples: the same on one process, under DDP, and after a resume."""

from __future__ import annotations

import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


def train_order(dataset: Dataset, shuffle: bool, seed: int) -> dict:
    """The `sampler` argument for a training DataLoader.

    The order of epoch e is a permutation drawn from (seed, e) alone (Lightning calls the sampler's `set_epoch`),
    never from the global RNG, which checkpoints do not restore: a run resumed from a checkpoint sees the same
    order as one that was never interrupted. Under a distributed strategy Lightning would replace the sampler with
    a *shuffling* DistributedSampler whatever `shuffle` says; ours keeps `shuffle=False` a fixed order
    (DDP-equivalence tests, debugging). One process is a world of one replica.
    """
    distributed = dist.is_available() and dist.is_initialized()
    world = {} if distributed else {"num_replicas": 1, "rank": 0}
    return {"sampler": DistributedSampler(dataset, shuffle=shuffle, seed=seed, **world)}
