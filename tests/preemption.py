"""A stand-in for a SLURM preemption in tests: the first attempt of a job dies at the start of its second epoch
(after the first epoch's last.ckpt); a requeued attempt (SLURM_RESTART_COUNT > 0) runs through."""

import lightning as L

from lit_ir.utils.cluster import restarted


class PreemptOnce(L.Callback):
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 1 and not restarted():
            raise RuntimeError("preempted (simulated): the job is requeued")
