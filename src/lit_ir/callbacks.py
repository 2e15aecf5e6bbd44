"""Lightning callbacks every method trains with (conf/callbacks/default.yaml): lit_ir's guards on training state.

- `FiniteGuard`: a diverged run stops at its first non-finite loss, before that step changes the weights, and no
  checkpoint (best or last) is ever written with non-finite weights.
- `RNGState`: checkpoints carry the RNG states (Python, NumPy, torch CPU and CUDA), so a run resumed from one
  continues with the random draws (dropout, masks) of the run that was never interrupted.
"""

from __future__ import annotations

import logging
import random

import lightning as L
import numpy as np
import torch
import torch.distributed as dist

from lit_ir.errors import TrainingDivergedError

log = logging.getLogger(__name__)


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



class RNGState(L.Callback):
    """Save every global RNG state into checkpoints and restore it on resume.

    Lightning restores the weights, optimizer, schedule and loop counters, not the RNGs; the data order and the
    negatives are drawn from (seed, epoch) already (`data.sampling.train_order`, the datasets), but dropout and
    everything else that draws from the global generators would continue from the fresh `seed_everything` state,
    so a killed and resumed run would end with other weights than an uninterrupted one. Under DDP every rank's
    states are saved (gathered to the checkpoint rank zero writes) and each rank gets its own back.
    """

    def state_dict(self) -> dict:
        states = _rng_states()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, states)  # Lightning dumps checkpoints on every rank
            return {"ranks": gathered}
        return {"ranks": [states]}

    def load_state_dict(self, state_dict: dict) -> None:
        ranks = state_dict["ranks"]
        distributed = dist.is_available() and dist.is_initialized()
        rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        if len(ranks) != world:
            log.warning("the checkpoint holds the RNG states of %d processes, this run has %d: they are not restored, "
                        "so random draws (dropout) differ from an uninterrupted run", len(ranks), world)
            return
        _set_rng_states(ranks[rank])


def _rng_states() -> dict:
    # tensors, tuples and numbers only: checkpoints load with torch.load(weights_only=True)
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states = {"python": random.getstate(), "torch": torch.get_rng_state(),
              "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(states["cuda"]):
            torch.cuda.set_rng_state_all(states["cuda"])
        else:
            log.warning("the checkpoint holds CUDA RNG states of %d devices, this process sees %d: not restored",
                        len(states["cuda"]), torch.cuda.device_count() if torch.cuda.is_available() else 0)
