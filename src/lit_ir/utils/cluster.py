"""Jobs on clusters: one run folder for every rank of a job and every attempt of a requeued SLURM job, and the
checkpoint a requeued job resumes from.

- `run_stamp()` names the run folder (conf/hydra/default.yaml). A SLURM batch job: `slurm-<job id>-<digest>`,
  the same for all its tasks (srun starts one process per GPU, each composing its own config) and after
  `scontrol requeue` (the job id survives it); the digest of the command-line overrides keeps two different
  trainings of one batch script apart. Under torchrun with a rendezvous id (`--rdzv-id`, or `--standalone`):
  `torchrun-<id>-<digest>`, shared by the ranks. Otherwise the time, as before: `2026-01-31_12-00-00`.
- `restarted()`: this is a requeued SLURM job (SLURM_RESTART_COUNT > 0).
- `latest_checkpoint(run_dir, checkpoint_dir)`: the newest of Lightning's HPC checkpoint (`hpc_ckpt_<n>.ckpt`,
  saved in the trainer's root folder when SLURM signals a requeue) and the checkpoint callback's `last*.ckpt`.
- `check_same_config(cfg, saved)`: resuming is refused when the run folder's `config.yaml` differs from the
  config that would resume it (a reused folder, not a requeue), naming the keys that differ.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lit_ir.errors import InputError

INTERACTIVE_JOB_NAMES = ("bash", "interactive")  # salloc / srun --pty: a shell, not one job per run (Lightning's test)
IGNORED_WHEN_RESUMING = ("ckpt_path",)


def _slurm_batch_job() -> str | None:
    job = os.environ.get("SLURM_JOB_ID")
    if not job or os.environ.get("SLURM_JOB_NAME") in INTERACTIVE_JOB_NAMES:
        return None
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else job


def _overrides_digest() -> str:
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    return hashlib.sha1(" ".join(overrides).encode()).hexdigest()[:8]


def run_stamp() -> str:
    if job := _slurm_batch_job():
        return f"slurm-{job}-{_overrides_digest()}"
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if run_id and run_id != "none":
        return f"torchrun-{re.sub(r'[^A-Za-z0-9_.-]', '_', run_id)[:40]}-{_overrides_digest()}"
    return datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def restarted() -> bool:
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def latest_checkpoint(run_dir: Path, checkpoint_dir: Path | None) -> Path | None:
    candidates = list(Path(run_dir).glob("hpc_ckpt_*.ckpt"))
    if checkpoint_dir is not None:
        candidates += list(Path(checkpoint_dir).glob("last*.ckpt"))
    return max(candidates, key=lambda path: path.stat().st_mtime) if candidates else None


def check_same_config(cfg: DictConfig, saved: Path) -> None:
    """`saved`: the resolved config.yaml of the run being resumed (absent for a job that never started)."""
    if not saved.is_file():
        return
    before, now = _flat(OmegaConf.to_container(OmegaConf.load(saved))), _flat(OmegaConf.to_container(cfg, resolve=True))
    differing = sorted(key for key in before.keys() | now.keys()
                       if before.get(key) != now.get(key) and key.split(".")[0] not in IGNORED_WHEN_RESUMING)
    if differing:
        shown = ", ".join(f"{key}: {before.get(key)!r} -> {now.get(key)!r}" for key in differing[:5])
        raise InputError(f"{saved.parent} holds a run with another config ({len(differing)} keys differ: {shown}); "
                         "resuming it would mix two experiments. Use another run folder, or ckpt_path=<file> to "
                         "start from one of its checkpoints on purpose")


def _flat(values, prefix: str = "") -> dict:
    if isinstance(values, dict):
        return {k: v for key, value in values.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: values}
