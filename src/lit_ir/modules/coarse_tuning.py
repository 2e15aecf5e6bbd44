"""Coarse-tuning (Keyaki & Keyaki, 2024): between pre-training and IR fine-tuning, learn query representations with
masked language modelling and query-document relations with Query-Document Pair Prediction on click logs.

Input: `[CLS] query [SEP] document [SEP]`; loss = mlm_weight * MLM + qdpp_weight * QDPP (the paper: MLM + QDPP,
lambda = qdpp_weight = 1). MLM-only and QDPP-only ablations set one weight to 0; with mlm_weight = 0 nothing is
masked, so the QDPP-only model reads clean pairs. Validation and test run on held-out clicks (queries unseen in
training) and log the MLM loss, the QDPP loss and QDPP accuracy: QDPP on the unmasked pairs (what fine-tuning and
ranking read; a mask would hide some of the few words a short query has), MLM on one seeded mask of the same pairs,
the same in every validation and in the test, so that the figures compare across epochs and runs.

The export is a Hugging Face masked-LM folder: the cross-encoder fine-tuning loads it with
`model.pretrained=<run>/model` (a fresh score head, or the QDPP head with `qdpp_head_as_score_head=true`), and
the query prediction analysis (`lit_ir.analysis.query_prediction`) reads its MLM head.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from transformers import AutoTokenizer

from lit_ir.data.clicks import QDPPBatch, unit_hash
from lit_ir.data.masking import IGNORE_INDEX, mask_tokens
from lit_ir.losses import coarse_tuning_loss
from lit_ir.models.coarse import EXPORT_KIND, CoarseTuningModel
from lit_ir.models.cross_encoder import HEAD_FILE
from lit_ir.models.export import export_folder
from lit_ir.models.tokenization import PairTokenizer, TruncationCount, check_length
from lit_ir.modules.shared import TruncationLog, configure_optimizers, resolve_pretrained, seeded_init
from lit_ir.utils.io import write_json

log = logging.getLogger(__name__)


class CoarseTuningModule(L.LightningModule):
    def __init__(
        self,
        pretrained: str,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        mlm_weight: float = 1.0,
        qdpp_weight: float = 1.0,
        mlm_probability: float = 0.15,
        query_mlm_probability: float | None = None,
        max_query_length: int = 32,
        max_length: int = 256,
        dropout: float | None = None,
        qdpp_head_as_score_head: bool = False,
        monitor: str = "loss",  # the held-out metric that checkpoints monitor (callbacks read model.monitor)
        metrics_path: str | None = None,
        cache_dir: str | None = None,
        init_seed: int = 0,
        new_head: bool = False,
    ):
        super().__init__()
        if mlm_weight < 0 or qdpp_weight < 0 or mlm_weight == qdpp_weight == 0:
            raise ValueError(f"loss weights must be >= 0 and not both 0, got mlm_weight={mlm_weight}, "
                             f"qdpp_weight={qdpp_weight}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.truncation = TruncationLog({"query": f"model.max_query_length={max_query_length}",
                                         "document": f"model.max_length={max_length}"})
        self.model: CoarseTuningModel | None = None

    # ---- model -------------------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Built here, not in __init__, so a random-init model can learn its vocabulary from the DataModule."""
        if self.model is not None:
            return
        path = resolve_pretrained(self)
        with seeded_init(self.hparams.init_seed):  # the QDPP head, a new MLM head
            self.model = CoarseTuningModel.from_pretrained(path, dropout=self.hparams.dropout,
                                                           new_head=self.hparams.new_head).train()
        check_length(self.model.config, "model.max_length", self.hparams.max_length, self.hparams.pretrained)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.pair_tokenizer = PairTokenizer(self.tokenizer, self.hparams.max_query_length, self.hparams.max_length)

    # ---- one step ----------------------------------------------------------------------------------------------
    def _masking_generator(self, stage: str, batch_idx: int) -> torch.Generator:
        # training masks differ per step and rank; held-out masks depend on the batch only: validation and test
        # (the same held-out loader) mask the same tokens every time, so their MLM losses compare
        key = (unit_hash(self.hparams.init_seed, stage, self.global_step, batch_idx, self.global_rank)
               if stage == "train" else unit_hash(self.hparams.init_seed, "held_out", batch_idx, self.global_rank))
        return torch.Generator().manual_seed(int(key * 2**62))

    def losses(self, batch: QDPPBatch, generator: torch.Generator | None = None,
               count: TruncationCount | None = None, unmasked_qdpp: bool = False) -> dict[str, torch.Tensor]:
        """total, mlm, qdpp losses and QDPP accuracy on one batch; `count` adds the texts that were cut. Training
        predicts both from the masked pairs (one pass, as BERT's NSP + MLM); `unmasked_qdpp` (held-out evaluation)
        predicts QDPP from the unmasked pairs in a second pass."""
        tokens = self.pair_tokenizer(batch.queries, batch.docs, count)
        inputs = {key: value.to(self.device) for key, value in tokens.items()}
        masked, labels = inputs, None
        if self.hparams.mlm_weight > 0:
            corrupted, labels = mask_tokens(
                inputs["input_ids"], inputs["attention_mask"], self.tokenizer.all_special_ids,
                self.tokenizer.mask_token_id, self.model.config.vocab_size, self.hparams.mlm_probability,
                self.hparams.query_mlm_probability, inputs["token_type_ids"], generator)
            masked = {**inputs, "input_ids": corrupted}
        # QDPP-only: no masked position, but the MLM head stays in the graph (DDP wants every parameter used)
        if labels is None:
            positions = torch.zeros_like(inputs["input_ids"], dtype=torch.bool)
        else:
            positions = labels != IGNORE_INDEX
        qdpp_logits, mlm_logits = self.model(**masked, mlm_positions=positions)
        if unmasked_qdpp and masked is not inputs:
            qdpp_logits, _ = self.model(**inputs)
        qdpp_labels = batch.labels.to(self.device)
        mlm_labels = inputs["input_ids"].new_zeros(0) if labels is None else labels[positions]
        total, mlm, qdpp = coarse_tuning_loss(mlm_logits, mlm_labels, qdpp_logits, qdpp_labels,
                                              self.hparams.mlm_weight, self.hparams.qdpp_weight)
        accuracy = ((qdpp_logits > 0).float() == qdpp_labels).float().mean()
        return {"loss": total, "mlm_loss": mlm, "qdpp_loss": qdpp, "qdpp_acc": accuracy}

    def _step(self, batch: QDPPBatch, batch_idx: int, stage: str) -> torch.Tensor:
        count = self.truncation.count(self, f"clicks_{stage}")  # training clicks, held-out val / test clicks
        values = self.losses(batch, self._masking_generator(stage, batch_idx), count, unmasked_qdpp=stage != "train")
        for name, value in values.items():
            self.log(f"{stage}/{name}", value, prog_bar=name in ("loss", "qdpp_acc"), batch_size=len(batch.queries),
                     on_step=stage == "train", on_epoch=True, sync_dist=stage != "train")
        return values["loss"]

    def on_train_epoch_start(self) -> None:
        # QDPP negatives are drawn per (seed, epoch, index): tell the dataset which epoch this is
        dataset = self.trainer.train_dataloader.dataset
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def training_step(self, batch: QDPPBatch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, batch_idx, "train")

    def validation_step(self, batch: QDPPBatch, batch_idx: int) -> None:
        self._step(batch, batch_idx, "val")

    def test_step(self, batch: QDPPBatch, batch_idx: int) -> None:
        self._step(batch, batch_idx, "test")

    def on_train_epoch_end(self) -> None:
        self.truncation.report(self, "clicks_train")

    def on_validation_epoch_end(self) -> None:
        self.truncation.report(self, "clicks_val")

    def on_test_epoch_end(self) -> None:
        self.truncation.report(self, "clicks_test")

    def on_test_end(self) -> None:
        if self.hparams.metrics_path and self.trainer.is_global_zero:
            metrics = {name.removeprefix("test/"): float(value) for name, value in self.trainer.callback_metrics.items()
                       if name.startswith("test/")}
            datamodule = self.trainer.datamodule
            summary = datamodule.clicks().summary() if hasattr(datamodule, "clicks") else {}
            path = write_json({"held_out_clicks": metrics, "clicks": summary}, self.hparams.metrics_path)
            log.info("held-out click metrics %s -> %s", metrics, path)

    def configure_optimizers(self):
        return configure_optimizers(self, self.optimizer_factory, self.scheduler_factory)

    # ---- export ------------------------------------------------------------------------------------------------
    def export(self, path: str | Path) -> Path:
        """A Hugging Face masked-LM folder (+ QDPP head, + tokenizer) for fine-tuning and the query analysis;
        whole or not at all (`lit_ir.models.export`)."""
        with export_folder(path, EXPORT_KIND) as staging:
            self.model.save_pretrained(staging)
            self.tokenizer.save_pretrained(staging)
            if self.hparams.qdpp_head_as_score_head:
                torch.save(self.model.qdpp_head.state_dict(), staging / HEAD_FILE)
        return Path(path)
