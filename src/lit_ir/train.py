"""Train and test a ranking model: `python -m lit_ir.train experiment=<name>` (configs in conf/, see train.yaml).

compose -> instantiate (data, model, callbacks, loggers, trainer) -> fit -> test -> report (reranker vs the
first-stage run, with paired t-tests) -> export the model as a Hugging Face folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lit_ir.data.collections import check_validation_disjoint
from lit_ir.modules.shared import build_model
from lit_ir.utils.hydra import CONFIG_DIR
from lit_ir.utils.instantiate import instantiate_group
from lit_ir.utils.io import atomic_write
from lit_ir.reporting import report_test_splits

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, Path]:
    """Everything `main` does, callable from tests and notebooks with a composed config. Returns the output files."""
    output_dir = Path(cfg.paths.output_dir)
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

    if cfg.train:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    outputs: dict[str, Path] = {}
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
        if best:
            log.info("tested the best checkpoint: %s", best)
        if trainer.is_global_zero:
            outputs.update(report_test_splits(cfg, datamodule, output_dir))
    if trainer.is_global_zero and module.model is not None:
        outputs["model"] = module.export(output_dir / "model")
        log.info("exported the model to %s", outputs["model"])
    return outputs


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
