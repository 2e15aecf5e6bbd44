"""What the LightningModules share: the pretrained model's folder, seeded new weights, optimizer + schedulers, and
the count of truncated texts per split."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist

from lit_ir.models.hub import RANDOM_BERT, resolve_model
from lit_ir.models.tokenization import TruncationCount
from lit_ir.optim import ReduceOnPlateau
from lit_ir.utils.io import write_json

log = logging.getLogger(__name__)
TRUNCATION_FILE = "truncation.json"  # in the run folder (the trainer's default_root_dir)

# Before the first validation the plateau's metric does not exist yet and Lightning says so at every step;
# PlateauSchedules instead checks after each validation that the metric was logged, and fails if it was not.
warnings.filterwarnings("ignore", message=r"ReduceLROnPlateau conditioned on metric val/\S+ which is not available "
                        r"but strict is set to `False`", category=RuntimeWarning)


def build_model(module: L.LightningModule, datamodule: L.LightningDataModule) -> None:
    """Build `module`'s model now, in the launching process, with `datamodule` at hand for a random-init vocabulary.

    Modules build their model lazily, in `configure_model`, once the DataModule is known. Under ddp_spawn training
    runs in child processes, and Lightning copies the trained weights back into the launching process's module with
    `strict=False`: a module that has no model there silently drops them all, then tests and exports the untrained
    model. Building it here first gives the weights somewhere to land.
    """
    module._build_datamodule = datamodule
    try:
        module.configure_model()
    finally:
        del module._build_datamodule  # not pickled into the spawned processes with the module


def attached_datamodule(module: L.LightningModule) -> L.LightningDataModule | None:
    """The DataModule `module` trains on: the trainer's, or the one `build_model` was given."""
    if module._trainer is not None and module.trainer.datamodule is not None:
        return module.trainer.datamodule
    return getattr(module, "_build_datamodule", None)


def resolve_pretrained(module: L.LightningModule) -> Path:
    """`module.hparams.pretrained` as a local model folder. A random-init model (`random-bert-*`) learns its
    vocabulary from the DataModule's `sample_texts()`, which is why modules build their model in configure_model."""
    datamodule = attached_datamodule(module)
    vocab_texts = datamodule.sample_texts() if RANDOM_BERT.match(module.hparams.pretrained) and datamodule else None
    return resolve_model(module.hparams.pretrained, cache_dir=module.hparams.cache_dir, vocab_texts=vocab_texts)


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """New weights (a head, a random backbone) depend only on `seed`, not on how much of the global RNG was used
    before: the same model whether launched as one process, under DDP or from a checkpoint."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def configure_optimizers(module: L.LightningModule,
                         optimizer_factory: Callable[..., torch.optim.Optimizer] | None,
                         scheduler_factory: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None,
                         params: Iterable[torch.nn.Parameter] | Iterable[dict] | None = None,
                         num_training_steps: int | None = None,
                         plateau_factory: Callable[..., ReduceOnPlateau] | None = None,
                         monitor: str | None = None):
    """What `LightningModule.configure_optimizers` returns: the optimizer, with a per-step scheduler if given, and
    a `ReduceOnPlateau` on the validation metric `monitor` if given (the module must mix in `PlateauSchedules`).

    `params` defaults to every parameter of the module (CODER passes only the query encoder's, in weight-decay
    groups); a step-based schedule spans `num_training_steps`, by default the whole run (SIR V1/V2 pass one
    stage's length).
    """
    if optimizer_factory is None:
        raise ValueError("model.optimizer is not configured")
    optimizer = optimizer_factory(params=module.parameters() if params is None else params)
    configs = []
    if scheduler_factory is not None:
        # step-based schedules (warmup + decay) need the run's length, known only once the trainer is set up
        needs_length = "num_training_steps" in inspect.signature(scheduler_factory).parameters
        steps = module.trainer.estimated_stepping_batches if num_training_steps is None else num_training_steps
        extra = {"num_training_steps": steps} if needs_length else {}
        configs.append({"scheduler": scheduler_factory(optimizer=optimizer, **extra), "interval": "step"})
    if plateau_factory is not None:
        if not isinstance(module, PlateauSchedules) or not monitor:
            raise ValueError(f"{type(module).__name__} cannot reduce the rate on a plateau (it needs PlateauSchedules "
                             f"and a monitored metric)")
        # Lightning offers the plateau scheduler the latest `monitor` value after every step (strict=False: none
        # before the first validation); PlateauSchedules passes it on only once per validation run
        configs.append({"scheduler": plateau_factory(optimizer=optimizer), "interval": "step", "frequency": 1,
                        "monitor": monitor, "reduce_on_plateau": True, "strict": False, "name": "lr-plateau"})
    if not configs:
        return optimizer
    if len(configs) == 1:
        return {"optimizer": optimizer, "lr_scheduler": configs[0]}
    return [optimizer], configs


class PlateauSchedules:
    """LightningModule mixin: a `ReduceOnPlateau` steps once per validation run, with the step count, whatever
    the validation schedule (every n steps across epochs, or at epoch ends).

    Lightning's own step-interval plateau update fires on `frequency` counted within the epoch, which drifts from
    a validation schedule counted across epochs, and would hand the scheduler the same stale metric again between
    validations. Here Lightning offers the metric after every step and only a fresh one is passed on.
    """

    _validation_runs = 0
    _plateau_seen: dict[int, int]

    def on_validation_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self._validation_runs += 1
        for config in self.trainer.lr_scheduler_configs:
            if config.reduce_on_plateau and config.monitor not in self.trainer.callback_metrics:
                raise ValueError(f"the learning-rate plateau monitors {config.monitor!r}, which validation did not "
                                 f"log (logged: {sorted(self.trainer.callback_metrics)}); set model.monitor to one "
                                 f"of the validation metrics")

    def lr_scheduler_step(self, scheduler, metric) -> None:
        if not isinstance(scheduler, ReduceOnPlateau):
            super().lr_scheduler_step(scheduler, metric)
            return
        seen = self.__dict__.setdefault("_plateau_seen", {})
        if metric is not None and seen.get(id(scheduler)) != self._validation_runs:
            seen[id(scheduler)] = self._validation_runs
            scheduler.step(metric, self.global_step)


class TruncationLog:
    """Truncated queries and documents, counted once per split (the first pass over it: the first training epoch,
    the first validation) from the tokenizer output the module computes anyway, then logged once and written to
    `<run folder>/truncation.json` (split -> counts and the settings that cut them).

    `limits` names the settings, e.g. {"query": "model.max_query_length=16", "document": "model.max_length=64"}.
    """

    def __init__(self, limits: dict[str, str]):
        self.limits = limits
        self._counts: dict[str, TruncationCount] = {}
        self._reported: set[str] = set()

    def count(self, module: L.LightningModule, split: str | None) -> TruncationCount | None:
        """Where to count `split`'s texts now; None when it is already reported (or in the sanity check)."""
        if split is None or split in self._reported or module.trainer.sanity_checking:
            return None
        return self._counts.setdefault(split, TruncationCount())

    def report(self, module: L.LightningModule, split: str | None) -> None:
        """Log and write `split`'s counts (on every rank, collectively: counts are merged over DDP ranks)."""
        if split is None or split in self._reported or split not in self._counts:
            return
        count = self._counts.pop(split)
        self._reported.add(split)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            counts = [None] * dist.get_world_size()
            dist.all_gather_object(counts, count)
            count = TruncationCount()
            for other in counts:
                count.merge(other)
        summary = count.summary()
        if module.trainer.is_global_zero:
            self._log(split, summary)
            path = Path(module.trainer.default_root_dir) / TRUNCATION_FILE
            written = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            write_json({**written, split: {**summary, "limits": self.limits}}, path)

    def _log(self, split: str, summary: dict[str, int]) -> None:
        cut = summary["truncated_queries"] or summary["truncated_documents"]
        parts = []
        if summary["queries"]:
            parts.append(f"{summary['truncated_queries']} of {summary['queries']} queries "
                         f"({summary['truncated_queries'] / summary['queries']:.0%}) were cut to "
                         f"{self.limits['query']} tokens")
        if summary["documents"]:
            parts.append(f"{summary['truncated_documents']} of {summary['documents']} documents "
                         f"({summary['truncated_documents'] / summary['documents']:.0%}) were cut to fit "
                         f"{self.limits['document']}")
        if parts:
            log.log(logging.WARNING if cut else logging.INFO, "split %s: %s", split, "; ".join(parts))


def train_split_name(datamodule) -> str:
    """The training split(s) as one name, e.g. "train" or "fold1+fold2"."""
    return "+".join(getattr(datamodule, "train_splits", None) or ["train"])


def eval_split(trainer: L.Trainer, dataloader_idx: int) -> str:
    """The split an evaluation batch belongs to: a test split by loader index, or the validation split."""
    datamodule = trainer.datamodule
    return datamodule.test_splits[dataloader_idx] if trainer.testing else datamodule.val_split
