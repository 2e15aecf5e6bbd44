"""Optimizer parameter groups and learning-rate schedules that the stock ones do not cover.

- `decay_groups`: weight decay on weight matrices only; biases and normalisation weights get none (the authors of
  CODER, like most BERT fine-tuning code, exclude `bias` and `LayerNorm.weight`). Found by module type, so that
  DistilBERT's `sa_layer_norm` is excluded too (a match on the name "LayerNorm" misses it).
- `ConstantWithWarmup`: linear warm-up, then constant. Multiplicative (each step scales the current rate, as the
  CODER authors' MultiplicativeLR does), so a rate lowered by `ReduceOnPlateau` stays lowered; transformers'
  `get_constant_schedule_with_warmup` recomputes the rate from the initial one every step and would undo it.
- `ReduceOnPlateau`: multiply the rate by `factor` when the monitored validation metric has not improved for
  `patience_steps` training steps, never below `min_lr_ratio` x the initial rate. Steps, not validations, so the
  setting does not depend on how often validation runs: with validation every V steps it is torch's
  ReduceLROnPlateau with patience = patience_steps / V and cooldown = cooldown_steps / V validations, which is how
  the CODER authors convert their `ROP_patience` (tests check the equivalence).
  A LightningModule steps it once per validation run through `modules.shared.PlateauSchedules`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)
MODES = ("max", "min")
THRESHOLD_MODES = ("rel", "abs")


def decay_groups(modules: Iterable[nn.Module]) -> list[dict]:
    """Optimizer parameter groups over the trainable parameters of `modules`: weights with the optimizer's weight
    decay, then biases and normalisation-layer parameters with none. Each parameter appears once."""
    no_decay: dict[int, nn.Parameter] = {}
    decay: dict[int, nn.Parameter] = {}
    for module in modules:
        for layer in module.modules():
            for name, param in layer.named_parameters(recurse=False):
                if not param.requires_grad:
                    continue
                exempt = isinstance(layer, NORM_LAYERS) or name == "bias" or "norm" in type(layer).__name__.lower()
                (no_decay if exempt else decay).setdefault(id(param), param)
    decay = {key: param for key, param in decay.items() if key not in no_decay}  # shared weights: exempt wins
    return [{"params": list(decay.values())}, {"params": list(no_decay.values()), "weight_decay": 0.0}]


class ConstantWithWarmup(LRScheduler):
    """The rate rises linearly to its configured value over `num_warmup_steps` optimizer steps (1/W of it on the
    first step), then stays. Each step multiplies the current rate, so reductions by another scheduler persist."""

    def __init__(self, optimizer: torch.optim.Optimizer, num_warmup_steps: int, last_epoch: int = -1):
        if num_warmup_steps < 0:
            raise ValueError(f"num_warmup_steps must be >= 0, got {num_warmup_steps}")
        self.num_warmup_steps = num_warmup_steps
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The share of the configured rate at optimizer step `step` (0-based)."""
        return 1.0 if self.num_warmup_steps <= 1 else min(1.0, (step + 1) / self.num_warmup_steps)

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step == 0:
            return [base * self.factor(0) for base in self.base_lrs]
        ratio = self.factor(step) / self.factor(step - 1)
        return [group["lr"] * ratio for group in self.optimizer.param_groups]


class ReduceOnPlateau:
    """Reduce every group's rate by `factor` when the metric has not improved (by `threshold`, relative or absolute)
    for more than `patience_steps` steps, counted from the best value or from the end of the last cooldown,
    whichever is later. `step(metric, global_step)` is called once per validation run."""

    def __init__(self, optimizer: torch.optim.Optimizer, mode: str = "max", factor: float = 0.707,
                 patience_steps: int = 8000, cooldown_steps: int = 0, threshold: float = 1e-3,
                 threshold_mode: str = "rel", min_lr_ratio: float = 0.01):
        if mode not in MODES or threshold_mode not in THRESHOLD_MODES:
            raise ValueError(f"mode must be one of {MODES} and threshold_mode one of {THRESHOLD_MODES}, got "
                             f"{mode!r}, {threshold_mode!r}")
        if not 0.0 < factor < 1.0 or patience_steps < 0 or cooldown_steps < 0 or not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"need 0 < factor < 1, patience_steps and cooldown_steps >= 0, 0 <= min_lr_ratio <= 1; "
                             f"got {factor}, {patience_steps}, {cooldown_steps}, {min_lr_ratio}")
        self.optimizer = optimizer
        self.mode, self.factor, self.threshold, self.threshold_mode = mode, factor, threshold, threshold_mode
        self.patience_steps, self.cooldown_steps = patience_steps, cooldown_steps
        # the floor is relative to the configured (peak) rate, before any warm-up scaled it
        self.min_lrs = [min_lr_ratio * group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
        self.best = -math.inf if mode == "max" else math.inf
        self.best_step = 0
        self.cooldown_until = 0  # the step at which the last reduction's cooldown ends
        self.reductions: list[int] = []  # the steps at which the rate was reduced

    def improved(self, metric: float) -> bool:
        sign = 1.0 if self.mode == "max" else -1.0
        margin = self.threshold * abs(self.best) if self.threshold_mode == "rel" else self.threshold
        return sign * (metric - self.best) > margin if math.isfinite(self.best) else True

    def step(self, metric: float, global_step: int) -> None:
        metric = float(metric)
        if self.improved(metric):
            self.best, self.best_step = metric, global_step
            return
        if global_step - max(self.best_step, self.cooldown_until) > self.patience_steps:
            for group, floor in zip(self.optimizer.param_groups, self.min_lrs):
                group["lr"] = max(group["lr"] * self.factor, floor)
            self.cooldown_until = global_step + self.cooldown_steps
            self.reductions.append(global_step)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)
