"""Write a first-stage run of one split:
`python -m lit_ir.retrieve collection=<name> split=<split> k=1000 [first_stage=dense encoder=minilm] output=run.trec`."""

from __future__ import annotations

import logging

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from lit_ir.data.trec import write_run
from lit_ir.utils.hydra import CONFIG_DIR

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="retrieve")
def main(cfg: DictConfig) -> None:
    split, output = cfg.split, cfg.output  # a missing mandatory value fails here, before any work
    collection = instantiate(cfg.collection.source)
    first_stage = instantiate(cfg.first_stage)
    run = first_stage(collection, split)
    path = write_run(run, output, tag=cfg.tag)
    log.info("wrote the %s run of %d queries of %s/%s to %s", cfg.tag, len(run), collection.name, split, path)


if __name__ == "__main__":
    main()
