"""Lightning callbacks every method trains with (conf/callbacks/default.yaml): lit_ir's guards on training state.

- `FiniteGuard`: a diverged run stops at its first non-finite loss, before that step changes the weights, and no
  checkpoint (best or last) is ever written with non-finite weights.
"""

from __future__ import annotations

import lightning as L
import torch

from lit_ir.errors import TrainingDivergedError


class FiniteGuard(L.Callback):
    """Stop at the first non-finite training loss, naming the step, the loss and the learning rate; refuse to save
    a checkpoint with a non-finite weight, naming it. The same for every method: it only sees the loss that
    `training_step` returns and the checkpoint's state dict."""

    def __init__(self) -> None:
        self._batch_idx = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._batch_idx = batch_idx

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        finite = bool(torch.isfinite(loss.detach()).all())
        # every rank decides together: a rank that stopped alone would leave the others waiting in all-reduce
        if trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        rates = sorted({group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups})
        value = loss.detach().float().cpu()
        shown = "on another rank" if finite else f"{value.item():g}" if value.numel() == 1 else f"{value.tolist()}"
        raise TrainingDivergedError(
            f"non-finite training loss {shown} at step {trainer.global_step} (epoch {trainer.current_epoch}, batch "
            f"{self._batch_idx}), learning rate {', '.join(f'{rate:g}' for rate in rates)}. Training stopped before "
            "this step changed the weights; no checkpoint of it was kept. Lower model.optimizer.lr, add warmup or "
            "gradient clipping (trainer.gradient_clip_val), or check the inputs")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        for name, tensor in checkpoint.get("state_dict", {}).items():
            if torch.is_tensor(tensor) and tensor.is_floating_point():
                bad = int((~torch.isfinite(tensor)).sum())
                if bad:
                    raise TrainingDivergedError(
                        f"not saving a checkpoint: {name} has {bad} non-finite values of {tensor.numel()} (the model "
                        f"diverged); lower model.optimizer.lr or add gradient clipping (trainer.gradient_clip_val)")

