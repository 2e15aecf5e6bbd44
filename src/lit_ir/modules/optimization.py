"""Optimizer + learning-rate schedule from config factories, shared by the LightningModules."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import lightning as L
import torch


def configure_optimizers(
    trainer: L.Trainer,
    params: Iterable[torch.nn.Parameter],
    optimizer_factory: Callable[..., torch.optim.Optimizer] | None,
    scheduler_factory: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None,
):
    """What `LightningModule.configure_optimizers` returns: the optimizer, stepped per batch by the schedule."""
    if optimizer_factory is None:
        raise ValueError("model.optimizer is not configured")
    optimizer = optimizer_factory(params=params)
    if scheduler_factory is None:
        return optimizer
    # step-based schedules (warmup + decay) need the run's length, known only once the trainer is set up
    needs_length = "num_training_steps" in inspect.signature(scheduler_factory).parameters
    extra = {"num_training_steps": trainer.estimated_stepping_batches} if needs_length else {}
    scheduler = scheduler_factory(optimizer=optimizer, **extra)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
