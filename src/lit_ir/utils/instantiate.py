"""Build lists of Lightning callbacks and loggers from config groups that hold {name: {_target_: ...}}."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig


def instantiate_group(cfg: DictConfig | None) -> list:
    """Instantiate every entry with a `_target_`; `null` or an empty group gives an empty list."""
    if not cfg:
        return []
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"expected a mapping of name -> config, got {type(cfg).__name__}")
    return [instantiate(entry) for entry in cfg.values() if isinstance(entry, DictConfig) and "_target_" in entry]
