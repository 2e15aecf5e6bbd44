"""Figures and tables made after a sweep (CODER's Figure 2, the coarse-tuning sweep plots and CV tables), logged
to W&B next to the runs they summarise: one run of job_type "analysis" in the runs' group."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd


def log_to_group(run_config: Mapping, name: str, save_dir: Path, images: Mapping[str, Path] = {},
                 tables: Mapping[str, pd.DataFrame] = {}) -> Path | None:
    """Log `images` (key -> PNG) and `tables` (key -> DataFrame) as a W&B run called `name`, with the project,
    group, tags and offline mode of the runs whose resolved config (their `config.yaml`) is `run_config`; under
    `save_dir`/wandb. Nothing (None) when those runs did not log to W&B; else the W&B run's folder."""
    settings = (run_config.get("logger") or {}).get("wandb")
    if not settings:
        return None
    import wandb

    run = wandb.init(project=settings.get("project"), group=settings.get("group") or None, job_type="analysis",
                     name=name, tags=list(settings.get("tags") or []), dir=str(save_dir),
                     mode="offline" if settings.get("offline", True) else "online")
    try:
        for key, path in images.items():
            run.log({key: wandb.Image(str(path))})
        for key, table in tables.items():
            run.log({key: wandb.Table(dataframe=table.astype(object).where(table.notna(), None))})
        return Path(run.dir).parent
    finally:
        run.finish()
