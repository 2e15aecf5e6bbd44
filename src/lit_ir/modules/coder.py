"""CODER (Zerveas et al. 2022): fine-tune a bi-encoder's query encoder against frozen document embeddings.

Each query is scored jointly against its N candidate embeddings (gathered from the document-embedding store by
row) with `scorer` (default: plain dot product X . g(Z)); the loss is listwise KL with graded labels (or the
pairwise max-margin ablation). Only the query encoder (and a learnable scorer) train: the document encoder is a
frozen copy of the base model, kept for export and for the base-model comparison runs.

The embedding matrix lives on the GPU when it fits there, else in pinned CPU memory (`EmbeddingStore.to_tensor`).
Under mixed precision (trainer=gpu: bf16-mixed) the query encoder runs in bf16, but candidate scores and the loss are
computed in fp32, as the authors do: bf16 dot products of 768-d embeddings (~100) have steps of 0.5, so the top
candidates would tie and the ties fall to document order.

Validation reranks the validation split's first-stage candidates and logs the metrics (every
`trainer.val_check_interval` steps). Test writes, per test split, into `run_dir`:

- `<split>.rerank.trec`: M_F -> CODER, the first-stage candidates reranked by the trained query encoder;
- `<split>.dense.trec`: CODER as a single-stage dense retriever over a FAISS index of the store (top `dense_k`);
- with `base_runs=True`, the same two for the untrained base model: `<split>.base_rerank.trec`,
  `<split>.base_dense.trec` (its query encoder is the frozen document encoder).

`lit_ir.reporting` evaluates every one of them against the first-stage run, with paired t-tests.

Optimisation as the authors': RAdam with weight decay on weight matrices only (`exclude_from_weight_decay`), a
constant rate after linear warm-up (`scheduler`), reduced on a plateau of the validation metric (`plateau`,
`lit_ir.optim.ReduceOnPlateau`, stepped once per validation run).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import lightning as L
import torch
from torch import nn

from lit_ir.data.coder import CandidateBatch
from lit_ir.data.trec import Run, write_run
from lit_ir.evaluation import collection_qrels, evaluate_run, split_protocol
from lit_ir.losses import CANDIDATE_LIST_LOSSES
from lit_ir.models.bi_encoder import EXPORT_KIND, BiEncoder
from lit_ir.models.candidate_scorer import DotProductScorer
from lit_ir.models.export import export_folder
from lit_ir.models.hub import RANDOM_BERT
from lit_ir.models.tokenization import TruncationCount
from lit_ir.modules.shared import (PlateauSchedules, TruncationLog, attached_datamodule, configure_optimizers,
                                   eval_split, seeded_init, train_split_name)
from lit_ir.optim import ReduceOnPlateau, decay_groups
from lit_ir.retrieval.dense import DenseIndex
from lit_ir.retrieval.encoding import encode_texts

log = logging.getLogger(__name__)
SCORER_FILE = "scorer.pt"  # a learnable scorer's weights, beside the exported bi-encoder


class CoderModule(PlateauSchedules, L.LightningModule):
    def __init__(
        self,
        encoder: Mapping,
        scorer: Callable[..., nn.Module] | None = None,
        loss: str = "kl",
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        plateau: Callable[..., ReduceOnPlateau] | None = None,
        exclude_from_weight_decay: bool = True,
        metrics: tuple[str, ...] = ("mrr@10", "ndcg@10"),
        relevance_level: int = 1,
        relevance_levels: dict[str, int] | None = None,
        relevance_readings: dict[str, dict[str, int]] | None = None,
        monitor: str = "mrr@10",
        run_dir: str | None = None,
        cache_dir: str | None = None,
        dense_k: int = 1000,
        dense_index: Mapping | None = None,
        base_runs: bool = True,
        dropout: float | None = None,
        init_seed: int = 0,
    ):
        super().__init__()
        if loss not in CANDIDATE_LIST_LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(CANDIDATE_LIST_LOSSES)}")
        if not dict(encoder).get("path"):
            raise ValueError("model.encoder.path is required (see conf/encoder/)")
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "plateau", "scorer"])
        self.optimizer_factory, self.scheduler_factory, self.plateau_factory = optimizer, scheduler, plateau
        self.scorer_factory = scorer or DotProductScorer
        self.loss_fn = CANDIDATE_LIST_LOSSES[loss]
        self.truncation = TruncationLog({})  # the query limit is the encoder's, known once it is loaded
        self.model: BiEncoder | None = None
        self.scorer: nn.Module | None = None
        self._matrix: torch.Tensor | None = None  # the document embeddings, not a parameter or buffer
        self._index: DenseIndex | None = None
        self._eval_outputs: dict[int, list[tuple[torch.Tensor, ...]]] = {}

    # ---- model -------------------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.model is not None:
            return
        datamodule = attached_datamodule(self)
        encoder = dict(self.hparams.encoder)
        vocab_texts = datamodule.sample_texts() if RANDOM_BERT.match(str(encoder["path"])) and datamodule else None
        with seeded_init(self.hparams.init_seed):
            # separate weights: the query copy trains, the document copy stays the base model that made the store
            self.model = BiEncoder.from_pretrained(**{**encoder, "shared": False}, cache_dir=self.hparams.cache_dir,
                                                   vocab_texts=vocab_texts)
            self.scorer = self.scorer_factory(dim=self.model.dim)
        if self.hparams.dropout is not None:  # every dropout layer of the query encoder (BERT, DistilBERT alike)
            for layer in self.model.query_encoder.modules():
                if isinstance(layer, nn.Dropout):
                    layer.p = self.hparams.dropout
        self.truncation.limits = {"query": f"encoder.query_max_length={self.model.query_max_length}"}
        self.model.train()  # Hugging Face loads in eval mode; Lightning keeps whatever mode it finds
        self.model.doc_encoder.requires_grad_(False).eval()

    def base_model(self) -> BiEncoder:
        """The untrained base model: the frozen document encoder on both sides."""
        m = self.model
        return BiEncoder(m.doc_encoder, m.tokenizer, pooling=m.pooling, similarity=m.similarity,
                         query_max_length=m.query_max_length, doc_max_length=m.doc_max_length, name=m.name,
                         query_token_type=m.query_token_type, doc_token_type=m.doc_token_type)

    def doc_matrix(self) -> torch.Tensor:
        """The store's embeddings, checked against the document encoder first (InputError for another model or
        dimension), then placed where gathering is fastest: on this device when it fits, else pinned CPU memory."""
        if self._matrix is None or (self._matrix.device != self.device and self._matrix.device.type != "cpu"):
            store = self.trainer.datamodule.store
            store.check_compatible(self.model.fingerprint())
            self._matrix = store.to_tensor(self.device)
            log.info("document embeddings %s on %s", tuple(self._matrix.shape), self._matrix.device)
        return self._matrix

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """[b, n] store rows -> [b, n, dim] float embeddings on this module's device."""
        matrix = self.doc_matrix()
        if matrix.device == self.device:
            return matrix[rows.to(matrix.device)].float()
        # the matrix is in pinned CPU memory (too large for the GPU): gather into a pinned buffer, so that the copy
        # to the GPU is a fast asynchronous one rather than a staged copy from pageable memory
        flat = rows.detach().cpu().reshape(-1)
        docs = torch.empty((flat.numel(), matrix.shape[1]), dtype=matrix.dtype, pin_memory=True)
        torch.index_select(matrix, 0, flat, out=docs)
        return docs.view(*rows.shape, -1).to(self.device, non_blocking=True).float()

    def score(self, encoder: BiEncoder, batch: CandidateBatch, docs: torch.Tensor | None = None,
              count: TruncationCount | None = None) -> torch.Tensor:
        """[b, n] fp32 scores of the batch's candidates: CODER's query encoder through `scorer`, or (the base model) a
        plain dot product. `docs`: the gathered embeddings, when already at hand; `count` adds the cut queries. The
        query encoder runs in whatever precision the trainer set; the scores do not (see the module docstring)."""
        docs = self.gather(batch.rows) if docs is None else docs
        query = encoder.encode_queries(batch.queries, count)
        with self.full_precision():
            query, docs = query.float(), docs.float()
            if encoder is self.model:
                return self.scorer(query, docs, batch.mask)
            return torch.einsum("bd,bnd->bn", query, docs)

    @contextlib.contextmanager
    def full_precision(self) -> Iterator[None]:
        """fp32 inside, whatever autocast (bf16-mixed, 16-mixed) the trainer runs the step under."""
        with torch.autocast(self.device.type, enabled=False):
            yield

    def on_fit_start(self) -> None:
        self.doc_matrix()  # a mismatched store fails here, before the first step

    def on_test_start(self) -> None:
        self.doc_matrix()

    # ---- training ----------------------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self.model.doc_encoder.eval()
        dataset = self.trainer.train_dataloader.dataset
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def training_step(self, batch: CandidateBatch, batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(batch, self.truncation.count(self, train_split_name(self.trainer.datamodule)))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.queries))
        return loss

    def training_loss(self, batch: CandidateBatch, count: TruncationCount | None = None) -> torch.Tensor:
        """The listwise loss of the trained query encoder's scores, in fp32 like the scores."""
        scores = self.score(self.model, batch, count=count)
        with self.full_precision():
            return self.loss_fn(scores, batch.labels, batch.mask)

    def on_train_epoch_end(self) -> None:
        self.truncation.report(self, train_split_name(self.trainer.datamodule))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in [*self.model.query_encoder.parameters(), *self.scorer.parameters()] if p.requires_grad]

    def parameter_groups(self) -> list[nn.Parameter] | list[dict]:
        """The trainable parameters, in weight-decay groups unless every parameter decays."""
        if not self.hparams.exclude_from_weight_decay:
            return self.trainable_parameters()
        return decay_groups([self.model.query_encoder, self.scorer])

    def configure_optimizers(self):
        return configure_optimizers(self, self.optimizer_factory, self.scheduler_factory,
                                    params=self.parameter_groups(), plateau_factory=self.plateau_factory,
                                    monitor=f"val/{self.hparams.monitor}")

    # ---- reranking ---------------------------------------------------------------------------------------------
    def _eval_step(self, batch: CandidateBatch, dataloader_idx: int, with_base: bool) -> None:
        docs = self.gather(batch.rows)
        count = self.truncation.count(self, eval_split(self.trainer, dataloader_idx))
        outputs = [batch.query_index, batch.rows, batch.mask, self.score(self.model, batch, docs, count)]
        if with_base:
            outputs.append(self.score(self.base_model(), batch, docs))
        self._eval_outputs.setdefault(dataloader_idx, []).append(tuple(outputs))

    def validation_step(self, batch: CandidateBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx, with_base=False)

    def test_step(self, batch: CandidateBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx, with_base=self.hparams.base_runs)

    def _gathered_runs(self, split: str, outputs: list[tuple[torch.Tensor, ...]]) -> list[Run]:
        """One run per score column (CODER, then the base model), from every rank; lists are padded to the split's
        depth so that ranks can exchange equal shapes. DDP repeats some queries: they map to the same entries."""
        depth = self.trainer.datamodule.rerank_depth
        pad = lambda t: torch.nn.functional.pad(t, (0, depth - t.shape[1]))  # noqa: E731
        query_index = torch.cat([o[0] for o in outputs])
        rows, mask = torch.cat([pad(o[1]) for o in outputs]), torch.cat([pad(o[2]) for o in outputs])
        columns = [torch.cat([pad(o[c]) for o in outputs]) for c in range(3, len(outputs[0]))]
        if self.trainer.world_size > 1:
            gather = lambda t: self.all_gather(t).flatten(0, 1)  # noqa: E731
            query_index, rows, mask, columns = gather(query_index), gather(rows), gather(mask), map(gather, columns)
        dataset, ids = self.trainer.datamodule.eval_datasets[split], self.trainer.datamodule.store.ids
        runs = []
        for scores in columns:
            run: Run = {}
            for q, r, m, s in zip(query_index.tolist(), rows.tolist(), mask.tolist(), scores.tolist()):
                run[dataset.query_ids[q]] = {ids[row]: score for row, keep, score in zip(r, m, s) if keep}
            runs.append(run)
        return runs

    def _log_metrics(self, stage: str, split: str, system: str, run: Run) -> None:
        protocol = split_protocol(self.hparams, split)
        qrels = collection_qrels(self.trainer.datamodule.collection, split)
        for metric, value in evaluate_run(run, qrels, protocol.metrics, protocol.relevance_level).items():
            if stage == "val":
                name = f"val/{metric}"
            else:
                name = f"test/{split}/{metric}" if system == "rerank" else f"test/{split}/{system}/{metric}"
            self.log(name, value, prog_bar=stage == "val" and metric == self.hparams.monitor, sync_dist=False,
                     rank_zero_only=system.endswith("dense"))

    def on_validation_epoch_end(self) -> None:
        outputs = self._eval_outputs.pop(0, [])
        if outputs and not self.trainer.sanity_checking:
            split = self.trainer.datamodule.val_split
            self._log_metrics("val", split, "rerank", self._gathered_runs(split, outputs)[0])
            self.truncation.report(self, split)
        self._eval_outputs.clear()

    def on_test_epoch_end(self) -> None:
        splits = self.trainer.datamodule.test_splits
        for dataloader_idx, split in enumerate(splits):
            outputs = self._eval_outputs.pop(dataloader_idx, [])
            if not outputs:
                continue
            runs = dict(zip(["rerank", "base_rerank"], self._gathered_runs(split, outputs)))
            self.truncation.report(self, split)
            if self.trainer.is_global_zero:
                runs.update(self.dense_runs(split))
            for system, run in runs.items():
                if not system.endswith("dense") or self.trainer.is_global_zero:
                    self._log_metrics("test", split, system, run)
                if self.hparams.run_dir and self.trainer.is_global_zero:
                    path = write_run(run, Path(self.hparams.run_dir) / f"{split}.{system}.trec", tag=f"coder-{system}")
                    log.info("wrote %s", path)
        self._eval_outputs.clear()

    # ---- single-stage dense retrieval ------------------------------------------------------------------------
    def dense_runs(self, split: str) -> dict[str, Run]:
        """CODER's query encoder (and the base model's) searching the whole store with FAISS."""
        if not isinstance(self.scorer, DotProductScorer):
            log.warning("model.scorer is not the dot product: the dense run uses the query encoder alone, without "
                        "the scorer's document transformation (which needs a candidate list)")
        store = self.trainer.datamodule.store
        if self._index is None:
            self._index = DenseIndex.build(store, **dict(self.hparams.dense_index or {}))
        queries = self.trainer.datamodule.collection.queries(split)
        query_ids = list(queries)
        texts = [queries[q] for q in query_ids]
        encoders = {"dense": self.model, **({"base_dense": self.base_model()} if self.hparams.base_runs else {})}
        return {name: self._index.search_run(query_ids, encode_texts(encoder, texts, "query"), self.hparams.dense_k)
                for name, encoder in encoders.items()}

    def export(self, path: str | Path) -> Path:
        """The trained bi-encoder (query encoder at the top, the base document encoder under doc_encoder/), loadable
        with BiEncoder.from_pretrained(path); a learnable scorer's weights go to scorer.pt. Whole or not at all
        (`lit_ir.models.export`)."""
        with export_folder(path, EXPORT_KIND) as staging:
            self.model.save_pretrained(staging)
            if any(True for _ in self.scorer.parameters()):
                torch.save(self.scorer.state_dict(), staging / SCORER_FILE)
        return Path(path)
