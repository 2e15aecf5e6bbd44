"""Encode a collection's documents into an embedding store:
`python -m lit_ir.encode collection=<name> encoder=<preset> [output=<folder>] [first_stage.dtype=float32]`.

Under torchrun (WORLD_SIZE > 1), or srun with several SLURM tasks (over any number of nodes), each rank encodes
its own contiguous shard on its own GPU (gloo on CPU) into the same preallocated memmap on a shared file system;
rank 0 finalises the store (see `lit_ir.retrieval.encoding.encode_documents`).
"""

from __future__ import annotations

import logging
import os
import time

import hydra
import torch
import torch.distributed as dist
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from lit_ir.data.embedding_store import EmbeddingStore
from lit_ir.retrieval.dense import DenseFirstStage
from lit_ir.retrieval.encoding import encode_documents
from lit_ir.utils.hydra import CONFIG_DIR
from lit_ir.utils.instantiate import instantiate_group

log = logging.getLogger(__name__)


def _ranks_from_slurm() -> None:
    """srun starts the ranks without torchrun's variables: take them from SLURM, as Lightning does (its
    SLURMEnvironment picks the first node as the address and a port from the job id)."""
    if "WORLD_SIZE" in os.environ or not SLURMEnvironment.detect() or int(os.environ["SLURM_NTASKS"]) < 2:
        return
    slurm = SLURMEnvironment()
    os.environ.update(MASTER_ADDR=slurm.main_address, MASTER_PORT=str(slurm.main_port),
                      WORLD_SIZE=str(slurm.world_size()), RANK=str(slurm.global_rank()),
                      LOCAL_RANK=str(slurm.local_rank()))


def encode(cfg: DictConfig) -> EmbeddingStore:
    """The work of `main`, callable with a composed config (tests, scripts)."""
    _ranks_from_slurm()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        dense: DenseFirstStage = instantiate(cfg.first_stage)
        if distributed and torch.cuda.is_available():
            dense.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        collection = instantiate(cfg.collection.source)
        path = cfg.output or dense.store_path(collection)
        start = time.perf_counter()
        store = encode_documents(dense.encoder(collection), collection.docs(), path, dtype=dense.dtype,
                                 batch_size=dense.batch_size, chunk_size=cfg.chunk_size, overwrite=cfg.overwrite,
                                 progress=cfg.progress, across_ranks=True)
        seconds = time.perf_counter() - start
        log.info("embedding store of %s: %s", collection.name, store)
        if int(os.environ.get("RANK", "0")) == 0:
            _log_store(cfg, store, seconds)
        return store
    finally:
        if distributed:
            dist.destroy_process_group()


def _log_store(cfg: DictConfig, store: EmbeddingStore, seconds: float) -> None:
    """What the configured loggers (logger=wandb) record of an encoding job: the store and the time it took
    (a reused store's seconds are the time to open it)."""
    loggers = instantiate_group(cfg.get("logger"))
    try:
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
            logger.log_metrics({"encode/documents": len(store), "encode/dim": store.dim, "encode/seconds": seconds,
                                "encode/docs_per_s": len(store) / seconds if seconds else 0.0})
    finally:
        for logger in loggers:
            logger.finalize("success")
            if hasattr(logger, "finish"):
                logger.finish()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="encode")
def main(cfg: DictConfig) -> None:
    store = encode(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(store.path)  # the one line a script needs


if __name__ == "__main__":
    main()
