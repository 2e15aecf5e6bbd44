"""What a W&B run is called and filed under, from the Hydra job that made it.

- name: the experiment, then the command-line overrides that differ from it, as typed
  ("coder_cranfield data.num_candidates=300"); plumbing (paths, hydra, logger, run_group, ckpt_path) left out;
- group: `run_group` when set (the coarse-tuning pipeline sets it), else the --multirun sweep
  ("<experiment>:<sweep folder>", one group per sweep), else none;
- job_type: fit (train=true), test (train=false) or encode;
- tags: the config's `tags`, then the experiment and the collection.
Outside a Hydra job (a composed config in a notebook) the name is the given default and there is no group.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

MAX_LENGTH = 128  # W&B truncates longer names and groups in its tables
PLUMBING = ("experiment", "hydra", "paths", "logger", "run_group", "ckpt_path")


def _hydra():
    return HydraConfig.get() if HydraConfig.initialized() else None


def _experiment(hydra, default: str) -> str:
    return (hydra.runtime.choices.get("experiment") if hydra is not None else None) or default


def _is_plumbing(override: str) -> bool:
    key = override.lstrip("+~").partition("=")[0]
    return any(key == prefix or key.startswith(f"{prefix}.") or key.startswith(f"{prefix}/") for prefix in PLUMBING)


def run_name(default: str) -> str:
    hydra = _hydra()
    # as typed: read unresolved, or an override like data.candidates=${data.embeddings} comes back interpolated
    typed = OmegaConf.to_container(hydra.overrides, resolve=False)["task"] if hydra is not None else []
    overrides = [o.lstrip("+~") for o in typed if not _is_plumbing(o)]
    name = " ".join([_experiment(hydra, default), *overrides])[:MAX_LENGTH]
    # an override's interpolation (data.candidates=${data.embeddings}) is shown as $(data.embeddings): the name is a
    # config value, and OmegaConf would read ${...} in it as an interpolation (a cut one does not even parse)
    return re.sub(r"\$\{([^}]*)\}?", r"$(\1)", name)


def run_group(explicit: str | None, default: str = "") -> str | None:
    if explicit:
        return str(explicit)[:MAX_LENGTH]
    hydra = _hydra()
    if hydra is None or hydra.mode != RunMode.MULTIRUN:
        return None
    return f"{_experiment(hydra, default)}:{Path(hydra.sweep.dir).name}"[:MAX_LENGTH]


def job_type(train: bool | None, task_name: str) -> str:
    if task_name == "encode":
        return "encode"
    return "test" if train is False else "fit"


def run_tags(tags: Sequence[str] | None) -> list[str]:
    hydra = _hydra()
    choices = hydra.runtime.choices if hydra is not None else {}
    found = [*(tags or []), choices.get("experiment"), choices.get("collection")]
    return list(dict.fromkeys(str(tag)[:64] for tag in found if tag))  # W&B tags: at most 64 characters
