"""Click logs for coarse-tuning: a deterministic sample of clicks and Query-Document Pair Prediction (QDPP) pairs.

- Sampling keeps a click when a hash of (seed, query id, doc id) falls below the rate: the same clicks for the
  same seed whatever the order or length of the log, in one streaming pass (ORCAS has 18.8M clicks).
- Held-out clicks (validation, the query prediction analysis) are all clicks of a share of the queries, chosen by
  query id before sampling: their queries are never seen in training, and they are the same at every rate.
- A sampled click on a document that the collection does not have is counted and reported (or fatal): never dropped
  silently.
- QDPP, like BERT's next-sentence prediction: each click is one example per epoch; with probability
  `negative_rate` its document is replaced by a negative (a random document, or one of the query's first-stage
  top-k: a hard negative) and the label is 0, else the label is 1. The draw depends only on (seed, epoch, index).

Batches carry text; the LightningModule owns the tokenizer and the MLM masking (`lit_ir.data.masking`).
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lit_ir.data.collections import Click, Collection, DocStore, Qrels, Queries
from lit_ir.data.sampling import train_order
from lit_ir.data.trec import Run, rank_documents
from lit_ir.errors import InputError, some_ids

log = logging.getLogger(__name__)
FirstStage = Callable[[Collection, str], Run]
NEGATIVE_KINDS = ("random", "first_stage")
CLICKS_SPLIT = "clicks"


def unit_hash(*parts: object) -> float:
    """A deterministic number in [0, 1) from `parts` (Python's hash() is salted per process)."""
    digest = hashlib.blake2b("\0".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class ClickSample:
    """The sampled clicks, split into training and held-out clicks, with what was read and what was missing."""

    train: list[Click]
    held_out: list[Click]
    num_read: int
    missing_doc: list[Click] = field(default_factory=list)  # sampled clicks whose document is not in the collection

    def summary(self) -> dict[str, int]:
        return {"clicks_read": self.num_read, "sampled_train": len(self.train), "sampled_held_out": len(self.held_out),
                "missing_doc": len(self.missing_doc)}


def sample_clicks(
    clicks: Iterable[Click],
    docs: Mapping[str, str],
    rate: float,
    seed: int = 0,
    held_out_fraction: float = 0.05,
    missing_docs: Literal["warn", "error"] = "warn",
    source: str = "click log",
) -> ClickSample:
    """Hold out the clicks of `held_out_fraction` of the queries (by query id, whatever the rate, so that runs at
    different rates validate on the same clicks) and keep each other click with probability `rate`; both
    deterministic under `seed`. Clicks on documents missing from `docs` are counted and reported, or fatal."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"sample rate must be in (0, 1], got {rate}")
    if not 0.0 <= held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in [0, 1), got {held_out_fraction}")
    if missing_docs not in ("warn", "error"):
        raise ValueError(f"missing_docs must be 'warn' or 'error', got {missing_docs!r}")
    sample = ClickSample(train=[], held_out=[], num_read=0)
    for click in clicks:
        sample.num_read += 1
        held_out = unit_hash(seed, "held_out", click.query_id) < held_out_fraction
        if not held_out and unit_hash(seed, "sample", click.query_id, click.doc_id) >= rate:
            continue
        if click.doc_id not in docs:
            if missing_docs == "error":
                raise InputError(f"{source}: click (query {click.query_id!r}, {click.query!r}) on document id "
                                 f"{click.doc_id!r}, which is not in the collection")
            sample.missing_doc.append(click)
            continue
        (sample.held_out if held_out else sample.train).append(click)
    if sample.missing_doc:
        log.warning("%s: %d of %d sampled clicks are on documents missing from the collection and are not used "
                    "(missing_docs=error makes this fatal); e.g. doc ids %s", source, len(sample.missing_doc),
                    len(sample.missing_doc) + len(sample.train) + len(sample.held_out),
                    some_ids([click.doc_id for click in sample.missing_doc]))
    if not sample.train:
        raise InputError(f"{source}: no training click left after sampling {sample.num_read} clicks at rate {rate} "
                         f"(seed {seed}; {len(sample.held_out)} held out, {len(sample.missing_doc)} on missing "
                         f"documents); raise the sample rate")
    log.info("%s: %s", source, sample.summary())
    return sample


class ClickQueries(Collection):
    """A collection's documents with the click log's queries as one split (`clicks`) and the clicks as its qrels,
    so a first stage (BM25, cached per collection and query set) can rank documents for click queries."""

    def __init__(self, base: Collection, clicks: Sequence[Click]):
        self.base, self.name = base, base.name
        self._queries: Queries = {}
        self._qrels: Qrels = {}
        for click in clicks:
            self._queries.setdefault(click.query_id, click.query)
            self._qrels.setdefault(click.query_id, {})[click.doc_id] = 1

    def docs(self) -> DocStore:
        return self.base.docs()

    def splits(self) -> list[str]:
        return [CLICKS_SPLIT]

    def queries(self, split: str) -> Queries:
        self._check_split(split)
        return self._queries

    def qrels(self, split: str) -> Qrels:
        self._check_split(split)
        return self._qrels


@dataclass
class QDPPBatch:
    queries: list[str]
    docs: list[str]
    labels: torch.Tensor  # [batch] float: 1 = clicked pair, 0 = negative document


class QDPPDataset(Dataset):
    """One example per click per epoch: the clicked document (label 1) or, with probability `negative_rate`, a
    negative (label 0) that is never a document clicked for that query."""

    def __init__(self, clicks: Sequence[Click], docs: DocStore, doc_ids: Sequence[str], negative_rate: float = 0.5,
                 hard_negatives: Mapping[str, Sequence[str]] | None = None, seed: int = 0):
        if not 0.0 <= negative_rate <= 1.0:
            raise ValueError(f"negative_rate must be in [0, 1], got {negative_rate}")
        self.clicks, self.docs, self.doc_ids = list(clicks), docs, list(doc_ids)
        self.negative_rate, self.hard_negatives, self.seed = negative_rate, hard_negatives, seed
        self.clicked: dict[str, set[str]] = {}
        for click in self.clicks:
            self.clicked.setdefault(click.query_id, set()).add(click.doc_id)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clicks)

    def _negative(self, click: Click, rng: random.Random) -> str:
        clicked = self.clicked[click.query_id]
        pool = self.hard_negatives.get(click.query_id) if self.hard_negatives is not None else None
        pool = [doc for doc in pool or () if doc not in clicked]
        if pool:
            return rng.choice(pool)
        if len(clicked) >= len(self.doc_ids):
            raise InputError(f"query {click.query_id!r} has clicks on every document: no negative to draw")
        while (doc_id := rng.choice(self.doc_ids)) in clicked:  # rejection: clicked documents are few
            pass
        return doc_id

    def __getitem__(self, index: int) -> tuple[str, str, float]:
        click = self.clicks[index]
        rng = random.Random(f"{self.seed}/{self.epoch}/{index}")
        if rng.random() < self.negative_rate:
            return click.query, self.docs[self._negative(click, rng)], 0.0
        return click.query, self.docs[click.doc_id], 1.0

    @staticmethod
    def collate(items: list[tuple[str, str, float]]) -> QDPPBatch:
        return QDPPBatch(queries=[query for query, _, _ in items], docs=[doc for _, doc, _ in items],
                         labels=torch.tensor([label for _, _, label in items], dtype=torch.float))


class ClickDataModule(L.LightningDataModule):
    """Coarse-tuning data: QDPP pairs from a sample of a collection's click log (ORCAS through ir_datasets, or an
    ORCAS-layout `clicks.tsv` beside a local collection). Validation and test use the held-out clicks."""

    def __init__(
        self,
        collection: Collection,
        sample_rate: float = 0.08,
        held_out_fraction: float = 0.05,
        max_held_out: int | None = 2000,
        negative_rate: float = 0.5,
        negatives: str = "random",
        first_stage: FirstStage | None = None,
        hard_negative_depth: int = 100,
        missing_docs: Literal["warn", "error"] = "warn",
        train_batch_size: int = 32,
        eval_batch_size: int = 128,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if negatives not in NEGATIVE_KINDS:
            raise ValueError(f"negatives must be one of {NEGATIVE_KINDS}, got {negatives!r}")
        if negatives == "first_stage" and first_stage is None:
            raise ValueError("negatives=first_stage needs a first_stage (e.g. BM25FirstStage)")
        self.collection, self.first_stage = collection, first_stage
        self.sample_rate, self.held_out_fraction, self.max_held_out = sample_rate, held_out_fraction, max_held_out
        self.negative_rate, self.negatives, self.hard_negative_depth = negative_rate, negatives, hard_negative_depth
        self.missing_docs, self.seed, self.shuffle = missing_docs, seed, shuffle
        self.train_batch_size, self.eval_batch_size, self.num_workers = train_batch_size, eval_batch_size, num_workers
        self.sample: ClickSample | None = None
        self.train_dataset: QDPPDataset | None = None
        self.held_out_dataset: QDPPDataset | None = None
        self.test_splits: list[str] = []  # no ranking to report: held-out clicks are evaluated by the module

    def clicks(self) -> ClickSample:
        """The sampled clicks (read once)."""
        if self.sample is None:
            self.sample = sample_clicks(self.collection.clicks(), self.collection.docs(), self.sample_rate, self.seed,
                                        self.held_out_fraction, self.missing_docs,
                                        source=f"click log of {self.collection.name}")
        return self.sample

    def held_out_clicks(self) -> list[Click]:
        """At most `max_held_out` held-out clicks, a fixed subset (validation costs little, stays comparable)."""
        held_out = self.clicks().held_out
        if self.max_held_out is not None and len(held_out) > self.max_held_out:
            held_out = sorted(held_out, key=lambda click: unit_hash(self.seed, "val", click.query_id, click.doc_id))
            held_out = held_out[: self.max_held_out]
        return held_out

    def sample_texts(self, limit: int = 20_000) -> list[str]:
        """Documents and click queries, e.g. to learn a vocabulary for a model trained from scratch."""
        docs = self.collection.docs()
        texts = [docs[doc_id] for _, doc_id in zip(range(limit), docs)]
        return texts + [click.query for click in self.clicks().train[:limit]]

    def _hard_negatives(self, clicks: Sequence[Click]) -> dict[str, list[str]] | None:
        if self.negatives != "first_stage":
            return None
        run = self.first_stage(ClickQueries(self.collection, clicks), CLICKS_SPLIT)
        return {qid: [doc for doc, _ in rank_documents(docs)[: self.hard_negative_depth]] for qid, docs in run.items()}

    def prepare_data(self) -> None:
        # first-stage runs are computed once here (rank 0 under DDP) and cached on disk by the first stage
        sample = self.clicks()
        self._hard_negatives(sample.train + self.held_out_clicks())

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        sample, held_out = self.clicks(), self.held_out_clicks()
        docs = self.collection.docs()
        doc_ids = list(docs)
        hard = self._hard_negatives(sample.train + held_out)
        self.train_dataset = QDPPDataset(sample.train, docs, doc_ids, self.negative_rate, hard, self.seed)
        if held_out:
            # its own seed: held-out labels and negatives are fixed, whatever the epoch
            self.held_out_dataset = QDPPDataset(held_out, docs, doc_ids, self.negative_rate, hard, self.seed + 1)
        else:
            log.warning("no held-out clicks (held_out_fraction=%s): validation and test are skipped",
                        self.held_out_fraction)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_dataset, batch_size=self.train_batch_size,
                          **train_order(self.train_dataset, self.shuffle, self.seed),
                          num_workers=self.num_workers, collate_fn=QDPPDataset.collate)

    def _held_out_loader(self) -> DataLoader | list:
        if self.held_out_dataset is None:
            return []
        return DataLoader(self.held_out_dataset, batch_size=self.eval_batch_size, shuffle=False,
                          num_workers=self.num_workers, collate_fn=QDPPDataset.collate)

    def val_dataloader(self) -> DataLoader | list:
        return self._held_out_loader()

    def test_dataloader(self) -> DataLoader | list:
        return self._held_out_loader()
