"""Lightning's WandbLogger, plus what a ranking run ends with: the end-of-run table and its files.

For each test split, `log_report` (a sink of `lit_ir.reporting.report_test_splits`, fed the same comparison as
the printed table) logs
- `report/<split>/table`: a wandb.Table, one row per system, each metric's mean and its p-value vs the baseline;
- the run summary `report/<split>/<system>/<metric>` and `report/<split>/<system>/p_<metric>`;
- artifacts `report-<split>-<run id>` (metrics.json + per_query.csv, type "evaluation") and
  `runs-<split>-<run id>` (the TREC runs, type "run"), each only if it is at most `max_artifact_mb` under
  `artifacts: auto` (the default; the runs of a 7,000 x 1,000 test split are ~250 MB), always with `true`,
  never with `false`.
`finish()` ends the W&B run, so that the next job of a --multirun sweep gets a run of its own.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

from lit_ir.evaluation import Comparison

log = logging.getLogger(__name__)


class WandbLogger(LightningWandbLogger):
    def __init__(self, *args, artifacts: bool | Literal["auto"] = "auto", max_artifact_mb: float = 100.0, **kwargs):
        if artifacts not in (True, False, "auto"):
            raise ValueError(f"logger.wandb.artifacts must be true, false or auto, got {artifacts!r}")
        super().__init__(*args, **kwargs)
        self.artifacts, self.max_artifact_mb = artifacts, max_artifact_mb

    @rank_zero_only
    def log_report(self, split: str, comparison: Comparison, files: dict[str, Path]) -> None:
        """`files`: metrics / per_query (the written metrics.json, per_query.csv) and runs (system -> TREC run)."""
        columns = ["system", *comparison.metrics, *(f"p_{metric}" for metric in comparison.metrics)]
        rows, summary = [], {}
        for system, means in comparison.means.items():
            p_values = {metric: comparison.p_values.get(system, {}).get(metric) for metric in comparison.metrics}
            p_values = {m: None if p is None or math.isnan(p) else p for m, p in p_values.items()}
            rows.append([system, *(means[m] for m in comparison.metrics), *(p_values[m] for m in comparison.metrics)])
            summary.update({f"report/{split}/{system}/{metric}": value for metric, value in means.items()})
            summary.update({f"report/{split}/{system}/p_{m}": p for m, p in p_values.items() if p is not None})
        self.log_table(f"report/{split}/table", columns=columns, data=rows)
        self.experiment.summary.update(summary)
        self._log_files(f"report-{split}-{self.version}", "evaluation", [files["metrics"], files["per_query"]])
        self._log_files(f"runs-{split}-{self.version}", "run", list(files["runs"].values()))

    def _log_files(self, name: str, kind: str, paths: list[Path]) -> None:
        import wandb

        size_mb = sum(Path(path).stat().st_size for path in paths) / 2**20
        if self.artifacts is False or (self.artifacts == "auto" and size_mb > self.max_artifact_mb):
            log.info("W&B artifact %s not logged (%.1f MB; logger.wandb.artifacts=%s, max_artifact_mb=%s)",
                     name, size_mb, self.artifacts, self.max_artifact_mb)
            return
        artifact = wandb.Artifact(name, type=kind)
        for path in paths:
            artifact.add_file(str(path))
        self.experiment.log_artifact(artifact)

    @rank_zero_only
    def finish(self) -> None:
        if self._experiment is not None:
            self._experiment.finish()  # kept: a finished run, not None (which would start a new one on next use)
