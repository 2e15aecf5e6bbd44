"""Hydra support: where the configs live (`conf/` at the repository root; the package is installed editable)
and the custom resolvers they use."""

import os
from pathlib import Path

from omegaconf import OmegaConf

from lit_ir.tracking import naming
from lit_ir.utils import cluster

CONFIG_DIR = Path(__file__).resolve().parents[3] / "conf"


def wandb_offline() -> bool:
    """W&B logs offline unless the user asked for online mode or is logged in, so nothing waits on the network."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode:
        return mode in {"offline", "dryrun", "disabled"}
    netrc = Path.home() / ".netrc"
    logged_in = bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())
    return not logged_in


def sequential_epochs(levels, epochs_per_stage: int) -> int:
    """SIR V1/V2 train one compressor per level in sequence: trainer.max_epochs = levels x epochs per compressor."""
    return len(levels) * int(epochs_per_stage)


OmegaConf.register_new_resolver("wandb_offline", wandb_offline, replace=True)
OmegaConf.register_new_resolver("sequential_epochs", sequential_epochs, replace=True)
OmegaConf.register_new_resolver("run_stamp", cluster.run_stamp, replace=True)   # the run folder's name
OmegaConf.register_new_resolver("run_name", naming.run_name, replace=True)
OmegaConf.register_new_resolver("run_group", naming.run_group, replace=True)
OmegaConf.register_new_resolver("job_type", naming.job_type, replace=True)
OmegaConf.register_new_resolver("run_tags", naming.run_tags, replace=True)
