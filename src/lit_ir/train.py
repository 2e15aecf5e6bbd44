"""Train and test a ranking model: `python -m lit_ir.train experiment=<name>` (configs in conf/, see train.yaml).

compose -> instantiate (data, model, callbacks, loggers, trainer) -> fit -> test -> report (reranker vs the
first-stage run, with paired t-tests) -> export the model as a Hugging Face folder.

`ckpt_path`: null starts fresh, except in a requeued SLURM job, which resumes like `auto`; `auto` resumes from the
run folder's newest checkpoint (Lightning's HPC checkpoint or last.ckpt; fresh when there is none), refusing a
folder whose config.yaml differs; a path resumes from that file (see lit_ir.utils.cluster).

`main` returns `optimized_metric` (e.g. "val/ndcg@10_best"; null: nothing) for Hydra's sweepers (Optuna:
conf/hparams_search/).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lit_ir.data.collections import check_validation_disjoint
from lit_ir.errors import InputError
from lit_ir.modules.shared import build_model
from lit_ir.utils import cluster
from lit_ir.utils.hydra import CONFIG_DIR
from lit_ir.utils.instantiate import instantiate_group
from lit_ir.utils.io import atomic_write
from lit_ir.reporting import report_test_splits

log = logging.getLogger(__name__)


class RunOutputs(dict):
    """The output files of a run (name -> path), and the metrics it ended with in `metrics` (name -> float):
    the last validation and test values, and `val/<monitor>_best`, the score of the checkpoint that was tested."""

    def __init__(self, files: dict[str, Path] | None = None, metrics: dict[str, float] | None = None):
        super().__init__(files or {})
        self.metrics = dict(metrics or {})


def run(cfg: DictConfig) -> RunOutputs:
    """Everything `main` does, callable from tests and notebooks with a composed config."""
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = checkpoint_to_resume(cfg, output_dir)  # before config.yaml is rewritten: it may be compared
    with atomic_write(output_dir / "config.yaml") as handle:  # the resolved config, beside Hydra's .hydra/
        handle.write(OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True)

    # plain containers, not OmegaConf nodes: checkpoints then hold only primitive hyper-parameters
    datamodule = instantiate(cfg.data, _convert_="all")
    if cfg.train and not cfg.allow_validation_on_test and hasattr(datamodule, "collection"):
        check_validation_disjoint(datamodule.collection, getattr(datamodule, "val_split", None),
                                  getattr(datamodule, "test_splits", []))
    module = instantiate(cfg.model, _convert_="all")
    build_model(module, datamodule)  # here too, not only in the trainer's processes: see build_model
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=instantiate_group(cfg.get("callbacks")), logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    outputs = RunOutputs()
    try:
        if cfg.train:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            outputs.metrics.update(_scalars(trainer.callback_metrics))
            outputs.metrics.update(_best_validation(trainer))
        if cfg.test:
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
            outputs.metrics.update(_scalars(trainer.callback_metrics))
            if best:
                log.info("tested the best checkpoint: %s", best)
            if trainer.is_global_zero:
                sinks = [logger.log_report for logger in loggers if hasattr(logger, "log_report")]
                outputs.update(report_test_splits(cfg, datamodule, output_dir, sinks=sinks))
        if trainer.is_global_zero and module.model is not None:
            outputs["model"] = module.export(output_dir / "model")
            log.info("exported the model to %s", outputs["model"])
    finally:
        for logger in loggers:  # each job of a --multirun sweep gets its own W&B run
            if hasattr(logger, "finish"):
                logger.finish()
    return outputs


def checkpoint_to_resume(cfg: DictConfig, output_dir: Path) -> str | None:
    """What `trainer.fit` resumes from (see the module docstring)."""
    requested = cfg.get("ckpt_path")
    if requested is None and cluster.restarted():
        log.info("requeued SLURM job (SLURM_RESTART_COUNT=%s): resuming the run in %s",
                 os.environ["SLURM_RESTART_COUNT"], output_dir)
        requested = "auto"
    if requested != "auto":
        return requested
    cluster.check_same_config(cfg, output_dir / "config.yaml")
    checkpoints = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath")
    found = cluster.latest_checkpoint(output_dir, Path(checkpoints) if checkpoints else None)
    if found is None:
        log.info("no checkpoint in %s: training from the start", output_dir)
        return None
    log.info("resuming from %s", found)
    return str(found)


def _scalars(metrics) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items() if getattr(value, "numel", lambda: 1)() == 1}


def _best_validation(trainer: L.Trainer) -> dict[str, float]:
    callback = trainer.checkpoint_callback
    if callback is None or callback.monitor is None or callback.best_model_score is None:
        return {}
    return {f"{callback.monitor}_best": float(callback.best_model_score)}


def objective(cfg: DictConfig, outputs: RunOutputs) -> float | None:
    """The value a sweeper optimises: `outputs.metrics[cfg.optimized_metric]` (None when that is null)."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in outputs.metrics:
        raise InputError(f"optimized_metric={name!r} is not among the run's metrics: {sorted(outputs.metrics)} "
                         "(a *_best value needs a checkpoint callback that monitors it)")
    return outputs.metrics[name]


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    return objective(cfg, run(cfg))


if __name__ == "__main__":
    main()
