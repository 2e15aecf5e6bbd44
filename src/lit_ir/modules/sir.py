"""SIR (Self-Involvement Ranker, `papers/sir.md`): V0-V4 as configurations of one cross-encoder module.

Training blocks are the reranking DataModule's groups: 1 positive + (levels[0] - 1) first-stage negatives. Each
step tokenises a block once and scores the samples each level needs (`lit_ir.models.sir.level_plan`), in chunks
of `chunk_size` pairs, optionally with activation checkpointing per chunk, so that a block of 88 x 512 tokens fits
(bf16 autocast comes from the trainer: trainer=gpu sets precision bf16-mixed).

- v0, v3, v4: one model, trained for the whole run.
- v1, v2: M compressors trained one after another, `epochs_per_stage` epochs each (trainer.max_epochs = M x that).
  Stage s trains compressor s, with a fresh optimizer and schedule; compressors < s are frozen (eval mode, no
  gradient) and select its samples on the fly. v1 starts every compressor from the same pretrained weights, v2
  starts compressor s from compressor s - 1's (`init`: pretrained | previous overrides that). The stage is saved in
  the checkpoint, so `ckpt_path=.../last.ckpt` resumes mid-way. `self.model` is the last compressor, the classifier.

Validation, test and export use the ranker: the shared model, or the compressor of the current stage (the
classifier once training is done). Reranking and evaluation are CrossEncoderModule's.
"""

from __future__ import annotations

import copy
import logging
import random

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lit_ir.data.rerank import GroupBatch
from lit_ir.errors import InputError
from lit_ir.models.cross_encoder import CrossEncoder
from lit_ir.models.sir import CPR_MODES, SEQUENTIAL, STRATEGIES, Levels, level_losses, level_plan, run_levels
from lit_ir.models.tokenization import TruncationCount
from lit_ir.modules.cross_encoder import CrossEncoderModule
from lit_ir.modules.shared import configure_optimizers, train_split_name

log = logging.getLogger(__name__)
INIT_POLICIES = {"v1": "pretrained", "v2": "previous"}


class SIRModule(CrossEncoderModule):
    def __init__(
        self,
        pretrained: str,
        strategy: str = "v3",
        levels: tuple[int, ...] = (88, 48, 16),
        selection: str | tuple[str, ...] = "top",
        init: str | None = None,
        epochs_per_stage: int = 1,
        cpr: str = "softmax",
        chunk_size: int = 16,
        gradient_checkpointing: bool = False,
        selection_seed: int = 0,
        loss: str = "sir_compressor",
        **kwargs,
    ):
        if loss != "sir_compressor":
            raise ValueError(f"model.loss={loss!r}: SIR trains with its compressor loss (sir_compressor, Eq. 1-2)")
        super().__init__(pretrained, loss=loss, **kwargs)
        if strategy not in STRATEGIES:
            raise ValueError(f"model.strategy={strategy!r}: choose from {STRATEGIES}")
        self.levels = Levels.parse(levels, selection)
        if strategy == "v0" and "top" in self.levels.selection:
            raise ValueError("model.strategy=v0 fine-tunes on random negatives: model.selection must be random")
        if strategy != "v0" and len(self.levels) < 2:
            raise ValueError(f"model.strategy={strategy} needs >= 2 levels, got model.levels={list(levels)}")
        if init is not None and (strategy not in SEQUENTIAL or init not in INIT_POLICIES.values()):
            raise ValueError(f"model.init={init!r}: only v1/v2 take an init policy, one of "
                             f"{sorted(INIT_POLICIES.values())}")
        if cpr not in CPR_MODES:
            raise ValueError(f"model.cpr={cpr!r}: choose from {CPR_MODES}")
        if chunk_size < 1 or epochs_per_stage < 1:
            raise ValueError("model.chunk_size and model.epochs_per_stage must be >= 1")
        self.strategy, self.cpr = strategy, cpr
        self.sequential = strategy in SEQUENTIAL
        self.init_policy = init or INIT_POLICIES.get(strategy)
        self.num_stages = len(self.levels) if self.sequential else 1
        self.stage = 0
        self.compressors: nn.ModuleList | None = None  # v1/v2: compressors 1 .. M-1; self.model is compressor M

    # ---- models and stages -------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.model is not None:
            return
        super().configure_model()
        if self.sequential:  # identical copies: "each initialised from the same pretrained checkpoint"
            self.compressors = nn.ModuleList(copy.deepcopy(self.model) for _ in range(self.num_stages - 1))
        self._set_trainable()

    def stage_model(self, stage: int) -> CrossEncoder:
        return self.compressors[stage] if self.sequential and stage < self.num_stages - 1 else self.model

    @property
    def ranker(self) -> CrossEncoder:
        """The model that reranks: the shared one, or the current stage's compressor."""
        return self.stage_model(self.stage)

    def _set_trainable(self) -> None:
        if not self.sequential or self.model is None:
            return
        for stage in range(self.num_stages):
            self.stage_model(stage).requires_grad_(stage == self.stage)

    def _enter_stage(self, stage: int) -> None:
        if self.init_policy == "previous":
            self.stage_model(stage).load_state_dict(self.stage_model(stage - 1).state_dict())
        self.stage = stage
        self._set_trainable()
        self.trainer.strategy.setup_optimizers(self.trainer)  # a fresh optimizer and schedule for this compressor
        log.info("SIR %s: stage %d of %d, compressor %d starts from %s weights", self.strategy, stage + 1,
                 self.num_stages, stage + 1, self.init_policy)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["sir_stage"] = self.stage

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.stage = checkpoint.get("sir_stage", 0)
        self._set_trainable()

    # ---- configuration checks ----------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = self.trainer.datamodule
        width = self.levels.widths[0]
        if getattr(datamodule, "num_negatives", width - 1) != width - 1:
            raise ValueError(f"model.levels starts with blocks of {width} (1 positive + {width - 1} negatives) but "
                             f"data.num_negatives={datamodule.num_negatives}; set data.num_negatives={width - 1}")
        if self.sequential:
            self._check_stages()

    def _check_stages(self) -> None:
        planned, epochs = self.num_stages * self.hparams.epochs_per_stage, self.trainer.max_epochs
        if epochs > planned:
            raise ValueError(f"trainer.max_epochs={epochs} exceeds the {self.num_stages} stages x "
                             f"model.epochs_per_stage={self.hparams.epochs_per_stage} = {planned} epochs")
        if epochs < planned:
            last_stage = (epochs - 1) // self.hparams.epochs_per_stage + 1
            log.warning("trainer.max_epochs=%d < %d: training stops before the classifier (stage %d of %d)",
                        epochs, planned, last_stage, self.num_stages)
        callback = self.trainer.checkpoint_callback
        if callback is not None and callback.monitor is not None:
            raise ValueError(f"model.strategy={self.strategy} trains compressors one after another, so the best "
                             f"validation checkpoint may be an earlier compressor's: set "
                             f"callbacks.model_checkpoint.monitor=null (the last checkpoint is tested)")

    # ---- scoring -----------------------------------------------------------------------------------------------
    def _score_rows(self, model: CrossEncoder, tokens: dict[str, torch.Tensor], rows: torch.Tensor,
                    grad: bool) -> torch.Tensor:
        """Scores of the tokenised pairs `rows`, `chunk_size` pairs at a time, each chunk padded to its own width."""
        scores = []
        for chunk in rows.split(self.hparams.chunk_size):
            width = int(tokens["attention_mask"][chunk].sum(-1).max())
            inputs = {key: value[chunk, :width].to(self.device) for key, value in tokens.items()}
            if grad and self.hparams.gradient_checkpointing:
                # keep only the chunk's inputs and scores; activations are recomputed in backward
                scores.append(checkpoint(model, use_reentrant=False, **inputs))
            else:
                scores.append(model(**inputs))
        return torch.cat(scores).float()

    def score(self, queries: list[str], docs: list[str], count: TruncationCount | None = None) -> torch.Tensor:
        tokens = self.pair_tokenizer(queries, docs, count)
        return self._score_rows(self.ranker, tokens, torch.arange(len(queries)), grad=False)  # reranking only

    def _selection_generator(self) -> torch.Generator:
        """Random selection depends only on (seed, step, rank): reproducible, and the same after a resume."""
        key = f"{self.hparams.selection_seed}/{self.global_step}/{self.global_rank}"
        return torch.Generator().manual_seed(random.Random(key).getrandbits(63))

    # ---- training ----------------------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.sequential:
            wanted = min(self.current_epoch // self.hparams.epochs_per_stage, self.num_stages - 1)
            for stage in range(self.stage + 1, wanted + 1):
                self._enter_stage(stage)

    def training_step(self, batch: GroupBatch, batch_idx: int) -> torch.Tensor:
        blocks, width = len(batch.queries), len(batch.docs[0])
        if width != self.levels.widths[0]:
            raise InputError(f"a training block has {width} documents but model.levels starts with "
                             f"{self.levels.widths[0]}")
        queries = [query for query in batch.queries for _ in range(width)]
        count = self.truncation.count(self, train_split_name(self.trainer.datamodule))
        tokens = self.pair_tokenizer(queries, [doc for block in batch.docs for doc in block], count)  # once per block
        for stage in range(self.stage):  # frozen compressors select without dropout
            self.stage_model(stage).eval()
        offsets = torch.arange(blocks).unsqueeze(1) * width

        def score(level: int, columns: torch.Tensor, grad: bool) -> torch.Tensor:
            model = self.stage_model(level) if self.sequential else self.model
            rows = (offsets + columns.cpu()).flatten()
            with torch.set_grad_enabled(grad):
                return self._score_rows(model, tokens, rows, grad).view(blocks, -1)

        plan = level_plan(self.strategy, self.levels, self.stage)
        outputs = run_levels(score, self.levels, plan, blocks, self._selection_generator())
        losses = level_losses(self.strategy, outputs, self.cpr)
        loss = torch.stack(list(losses.values())).sum()
        self.log("train/loss", loss, prog_bar=True, batch_size=blocks)
        for level, value in losses.items():
            self.log(f"train/loss_level{level + 1}", value, batch_size=blocks)
        if self.sequential:
            self.log("train/stage", float(self.stage + 1), batch_size=blocks)
        return loss

    def configure_optimizers(self):
        if not self.sequential:
            return super().configure_optimizers()
        # one stage: its compressor's parameters and a schedule over that stage's steps
        steps = self.trainer.estimated_stepping_batches * self.hparams.epochs_per_stage // self.trainer.max_epochs
        return configure_optimizers(self, self.optimizer_factory, self.scheduler_factory,
                                    params=self.ranker.parameters(), num_training_steps=steps)
