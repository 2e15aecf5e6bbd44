"""monoBERT cross-encoder training and reranking.

Training: each query brings 1 positive + n negatives from a first-stage run; the loss is listwise softmax
cross-entropy over the group or pointwise BCE on every pair (the coarse-tuning paper's fine-tuning).
Validation and test rerank the first-stage run, evaluate it with ranx and (test) write the reranked TREC run.
Coarse-tuning and SIR build on this module.

Interpolation with the first stage (`lit_ir.retrieval.fusion`): every validation pass picks the first-stage weight
that maximises the monitored metric of the interpolated run on the validation split (unless
`first_stage_weight` fixes it); the weight goes into the checkpoint, so the tested checkpoint comes with the weight
chosen for it, and into `first_stage_weight.json` beside the test runs and in the export, which a later
`pretrained=<export>` run without validation (train=false) reuses. Test writes `<split>.rerank.trec` (the pure
reranker) and `<split>.interpolated.trec`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from transformers import AutoTokenizer

from lit_ir.data.rerank import GroupBatch, PairBatch
from lit_ir.data.trec import Run, write_run
from lit_ir.evaluation import collection_qrels, evaluate_run, split_protocol
from lit_ir.losses import RANKING_LOSSES
from lit_ir.models.cross_encoder import EXPORT_KIND, CrossEncoder
from lit_ir.models.export import export_folder
from lit_ir.models.tokenization import PairTokenizer, TruncationCount, check_length
from lit_ir.modules.shared import (TruncationLog, configure_optimizers, eval_split, resolve_pretrained,
                                   seeded_init, train_split_name)
from lit_ir.retrieval.fusion import NORMALIZATIONS, FirstStageWeight, select_first_stage_weight, weight_grid

log = logging.getLogger(__name__)


class CrossEncoderModule(L.LightningModule):
    def __init__(
        self,
        pretrained: str,
        loss: str = "softmax_ce",
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        max_query_length: int = 32,
        max_length: int = 256,
        dropout: float | None = None,
        pooling: str | None = None,
        metrics: tuple[str, ...] = ("ndcg@10", "mrr@10"),
        relevance_level: int = 1,
        relevance_levels: dict[str, int] | None = None,
        relevance_readings: dict[str, dict[str, int]] | None = None,
        monitor: str = "ndcg@10",
        run_dir: str | None = None,
        cache_dir: str | None = None,
        init_seed: int = 0,
        new_head: bool = False,
        first_stage_weight: float | None = None,
        score_normalization: str = "minmax",
        first_stage_weight_step: float = 0.05,
    ):
        super().__init__()
        if loss not in RANKING_LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(RANKING_LOSSES)}")
        if score_normalization not in NORMALIZATIONS:
            raise ValueError(f"model.score_normalization={score_normalization!r}: choose one of {NORMALIZATIONS}")
        if first_stage_weight is not None and not 0.0 <= first_stage_weight <= 1.0:
            raise ValueError(f"model.first_stage_weight={first_stage_weight}: a weight in [0, 1], or null to select "
                             f"it on the validation split")
        weight_grid(first_stage_weight_step)  # fails now, not after training, on a step that does not divide 1
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.loss_fn = RANKING_LOSSES[loss]
        self.truncation = TruncationLog({"query": f"model.max_query_length={max_query_length}",
                                         "document": f"model.max_length={max_length}"})
        self.model: CrossEncoder | None = None
        # the interpolation weight used at test time: fixed, selected on validation, or saved with `pretrained`
        self.first_stage_weight: FirstStageWeight | None = (
            None if first_stage_weight is None else FirstStageWeight(first_stage_weight, score_normalization))
        self._pretrained_weight: FirstStageWeight | None = None
        self._eval_outputs: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    # ---- model -------------------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Built here, not in __init__, so a random-init model can learn its vocabulary from the DataModule."""
        if self.model is not None:
            return
        path = resolve_pretrained(self)
        with seeded_init(self.hparams.init_seed):
            self.model = CrossEncoder.from_pretrained(path, dropout=self.hparams.dropout,
                                                      new_head=self.hparams.new_head,
                                                      pooling=self.hparams.pooling).train()
        check_length(self.model.backbone.config, "model.max_length", self.hparams.max_length, self.hparams.pretrained)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.pair_tokenizer = PairTokenizer(self.tokenizer, self.hparams.max_query_length, self.hparams.max_length)
        if self.first_stage_weight is None and (saved := FirstStageWeight.load(path)) is not None:
            # an exported reranker: its validation-selected weight, until a validation pass here selects another
            self.first_stage_weight = self._pretrained_weight = saved
            log.info("first-stage weight %.2f (%s) from %s", saved.weight, saved.normalization, path)

    @property
    def ranker(self) -> CrossEncoder:
        """The model that reranks and is exported (SIR V1/V2: the current stage's compressor)."""
        return self.model

    def score(self, queries: list[str], docs: list[str], count: TruncationCount | None = None) -> torch.Tensor:
        """Scores of (query, document) pairs; `count` (optional) adds the texts that were cut to fit."""
        inputs = {key: value.to(self.device) for key, value in self.pair_tokenizer(queries, docs, count).items()}
        return self.ranker(**inputs)

    # ---- training ----------------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.first_stage_weight is not None and self.first_stage_weight is self._pretrained_weight:
            # chosen for the weights training starts from, not for the ones it ends with
            log.info("training: the first-stage weight saved with model.pretrained is dropped (validation selects one)")
            self.first_stage_weight = None

    def on_train_epoch_start(self) -> None:
        # negatives are drawn per (seed, epoch, index): tell the dataset which epoch this is
        dataset = self.trainer.train_dataloader.dataset
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def training_step(self, batch: GroupBatch, batch_idx: int) -> torch.Tensor:
        width = len(batch.docs[0])
        queries = [query for query in batch.queries for _ in range(width)]
        docs = [doc for group in batch.docs for doc in group]
        count = self.truncation.count(self, train_split_name(self.trainer.datamodule))
        scores = self.score(queries, docs, count).view(len(batch.queries), width)
        loss = self.loss_fn(scores)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.queries))
        return loss

    def on_train_epoch_end(self) -> None:
        self.truncation.report(self, train_split_name(self.trainer.datamodule))

    def configure_optimizers(self):
        return configure_optimizers(self, self.optimizer_factory, self.scheduler_factory)

    # ---- reranking ---------------------------------------------------------------------------------------------
    def _eval_step(self, batch: PairBatch, dataloader_idx: int) -> None:
        count = self.truncation.count(self, eval_split(self.trainer, dataloader_idx))
        scores = self.score(batch.queries, batch.docs, count).float()
        self._eval_outputs.setdefault(dataloader_idx, []).append((batch.pair_index, scores.detach()))

    def validation_step(self, batch: PairBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def test_step(self, batch: PairBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def _gathered_run(self, split: str, outputs: list[tuple[torch.Tensor, torch.Tensor]]) -> Run:
        """Scores from every rank, mapped back to (query id, doc id). DDP pads the last batch with repeats."""
        index = torch.cat([pair_index for pair_index, _ in outputs]).to(self.device)
        scores = torch.cat([score for _, score in outputs])
        if self.trainer.world_size > 1:
            index, scores = self.all_gather(index).flatten(), self.all_gather(scores).flatten()
        pairs = self.trainer.datamodule.eval_datasets[split].pairs
        run: Run = {}
        for pair, score in zip(index.tolist(), scores.tolist()):
            query_id, doc_id = pairs[pair]
            run.setdefault(query_id, {})[doc_id] = score
        return run

    def _log_metrics(self, stage: str, split: str, run: Run, system: str = "") -> dict[str, float]:
        """Evaluate `run` on `split` and log it: `val/<metric>` (what checkpoints and early stopping monitor) or
        `test/<split>/<metric>`; another system than the pure reranker adds its name: `val/interpolated/<metric>`."""
        protocol = split_protocol(self.hparams, split)
        qrels = collection_qrels(self.trainer.datamodule.collection, split)
        values = evaluate_run(run, qrels, protocol.metrics, protocol.relevance_level)
        prefix = "/".join(part for part in (stage, split if stage != "val" else "", system) if part)
        for metric, value in values.items():
            self.log(f"{prefix}/{metric}", value, sync_dist=False,
                     prog_bar=stage == "val" and not system and metric == self.hparams.monitor)
        return values

    def _evaluate_splits(self, stage: str, splits: list[str]) -> dict[str, Run]:
        runs = {}
        for dataloader_idx, split in enumerate(splits):
            outputs = self._eval_outputs.pop(dataloader_idx, [])
            if not outputs:
                continue
            runs[split] = run = self._gathered_run(split, outputs)
            self._log_metrics(stage, split, run)
            self.truncation.report(self, split)
        self._eval_outputs.clear()
        return runs

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            split = self.trainer.datamodule.val_split
            for run in self._evaluate_splits("val", [split]).values():
                self._fit_first_stage_weight(split, run)
        self._eval_outputs.clear()

    def _fit_first_stage_weight(self, split: str, run: Run) -> None:
        """Select the interpolation weight on the validation run (unless fixed) and log the interpolated run."""
        first_stage = self.trainer.datamodule.first_stage_run(split)
        if self.hparams.first_stage_weight is None:
            self.first_stage_weight = select_first_stage_weight(
                run, first_stage, collection_qrels(self.trainer.datamodule.collection, split), self.hparams.monitor,
                split_protocol(self.hparams, split).relevance_level,
                self.hparams.score_normalization, self.hparams.first_stage_weight_step, split)
        self.log("val/first_stage_weight", self.first_stage_weight.weight, sync_dist=False)
        self._log_metrics("val", split, self.first_stage_weight.apply(run, first_stage), "interpolated")

    def on_test_epoch_end(self) -> None:
        runs = self._evaluate_splits("test", self.trainer.datamodule.test_splits)
        weight = self.first_stage_weight
        if weight is None and runs:
            log.warning("no first-stage weight: no validation pass selected one and model.first_stage_weight is "
                        "null, so only the pure reranker is written")
        interpolated = {split: weight.apply(run, self.trainer.datamodule.first_stage_run(split))
                        for split, run in runs.items()} if weight is not None else {}
        for split, run in interpolated.items():
            self._log_metrics("test", split, run, "interpolated")
        if self.hparams.run_dir and self.trainer.is_global_zero:
            run_dir = Path(self.hparams.run_dir)
            for split, run in runs.items():
                path = write_run(run, run_dir / f"{split}.rerank.trec", tag="lit_ir-cross-encoder")
                log.info("wrote reranked run %s", path)
            for split, run in interpolated.items():
                path = write_run(run, run_dir / f"{split}.interpolated.trec", tag="lit_ir-interpolated")
                log.info("wrote the interpolated run %s (first-stage weight %.2f, %s)", path, weight.weight,
                         weight.normalization)
            if interpolated:
                weight.save(run_dir)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.first_stage_weight is not None:
            checkpoint["first_stage_weight"] = self.first_stage_weight.as_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.hparams.first_stage_weight is None and "first_stage_weight" in checkpoint:
            self.first_stage_weight = FirstStageWeight.from_dict(checkpoint["first_stage_weight"])

    def export(self, path: str | Path) -> Path:
        """Write a Hugging Face folder (model + tokenizer + score head, and the first-stage weight when there is one)
        that `pretrained=<path>` loads again; whole or not at all (`lit_ir.models.export`)."""
        with export_folder(path, EXPORT_KIND) as staging:
            self.ranker.save_pretrained(staging)
            self.tokenizer.save_pretrained(staging)
            if self.first_stage_weight is not None:
                self.first_stage_weight.save(staging)
        return Path(path)
