"""Experiment tracking (W&B): run names, groups, job types and tags researchers can read, the end-of-run table
and artifacts (`wandb_logger.WandbLogger`), and figures logged to a sweep's group (`groups.log_to_group`).

The naming functions here are the configs' resolvers (`conf/logger/wandb.yaml`); they import neither Lightning
nor wandb.
"""

from lit_ir.tracking.naming import job_type, run_group, run_name, run_tags

__all__ = ["job_type", "run_group", "run_name", "run_tags"]
