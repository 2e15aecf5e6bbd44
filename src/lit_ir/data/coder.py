"""Data for CODER: per query, the rows of its N candidate documents in a frozen document-embedding store.

Candidates come from any first-stage run (the paper's M_C: BM25 or the dense base model itself), turned once into a
cached `CandidateStore` (queries x N store rows). Batches carry query text, int row indices, a padding mask and
graded labels; the LightningModule gathers the embeddings of the rows (on the GPU when the matrix fits there).

- Training: a query's list is its top-N candidates plus its judged positives (added when the first stage missed
  them), in a random order that depends only on (seed, epoch, index): positives are never in a fixed place.
  Ablations (paper §4.4): `negatives="random"` replaces the retrieved candidates by N random documents;
  `in_batch_negatives=k` adds k documents drawn from the other queries' lists of the batch; `num_candidates` sets N.
- Validation / test: the first-stage run to rerank (M_F, by default the same first stage), cut at `rerank_depth`,
  with no positives added.

Everything that would fail training is checked in `setup`, before the first step: a candidate or positive id missing
from the embedding store, a query with no candidates, a store or candidate file cut short (InputError each).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lit_ir.data.candidates import CandidateStore
from lit_ir.data.collections import Collection
from lit_ir.data.embedding_store import EmbeddingStore
from lit_ir.data.sampling import train_order
from lit_ir.data.trec import Run, rank_documents
from lit_ir.errors import InputError, some_ids
from lit_ir.retrieval.dense import VOCAB_DOCS, DenseFirstStage
from lit_ir.retrieval.first_stage import safe_name
from lit_ir.utils.hashing import fingerprint, short_hash

log = logging.getLogger(__name__)
FirstStage = Callable[[Collection, str], Run]
NEGATIVES = ("retrieved", "random")


@dataclass
class CandidateBatch:
    query_index: torch.Tensor  # [b] index of each query in its dataset's `query_ids`
    queries: list[str]  # [b] query texts
    rows: torch.Tensor  # [b, n] int64 embedding-store rows; 0 where padded
    mask: torch.Tensor  # [b, n] bool, False where padded
    labels: torch.Tensor  # [b, n] float: the grade of a judged-relevant candidate, else 0

    def pin_memory(self) -> "CandidateBatch":
        """Called by the DataLoader (pin_memory=True on GPU machines): fast, asynchronous copies to the device."""
        return CandidateBatch(self.query_index.pin_memory(), self.queries, self.rows.pin_memory(),
                              self.mask.pin_memory(), self.labels.pin_memory())


@dataclass
class ListItem:
    index: int
    query: str
    rows: np.ndarray  # int64
    labels: np.ndarray  # float32, aligned with rows
    exclude: frozenset = frozenset()  # rows never to add as another query's in-batch negative (judged for this one)
    seed: int = 0


def pad_lists(items: list[ListItem], extra: list[np.ndarray] | None = None) -> CandidateBatch:
    """Stack lists of unequal length (each plus its `extra` rows, labelled 0) into padded tensors."""
    extra = extra or [np.empty(0, dtype=np.int64)] * len(items)
    width = max(len(item.rows) + len(more) for item, more in zip(items, extra))
    rows = torch.zeros((len(items), width), dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.bool)
    labels = torch.zeros((len(items), width), dtype=torch.float32)
    for i, (item, more) in enumerate(zip(items, extra)):
        n = len(item.rows) + len(more)
        rows[i, :n] = torch.from_numpy(np.concatenate([item.rows, more]))
        labels[i, : len(item.rows)] = torch.from_numpy(item.labels)
        mask[i, :n] = True
    return CandidateBatch(query_index=torch.tensor([item.index for item in items]),
                          queries=[item.query for item in items], rows=rows, mask=mask, labels=labels)


@dataclass
class TrainQuery:
    query_id: str
    query: str
    candidates: np.ndarray  # int64 store rows of the first-stage candidates, ranking order, no padding
    positive_rows: np.ndarray  # int64 rows of the judged-relevant documents
    positive_grades: np.ndarray  # float32, their grades
    judged_rows: frozenset  # rows of every judged document (any grade)


class TrainListDataset(Dataset):
    """One list per training query per epoch: candidates (+ in-batch negatives at collate time) and positives."""

    def __init__(self, queries: list[TrainQuery], num_docs: int, num_candidates: int, negatives: str = "retrieved",
                 in_batch_negatives: int = 0, seed: int = 0):
        if negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
        if num_candidates < 1 or in_batch_negatives < 0:
            raise ValueError(f"num_candidates must be >= 1 and in_batch_negatives >= 0, got {num_candidates}, "
                             f"{in_batch_negatives}")
        self.queries, self.num_docs, self.num_candidates = queries, num_docs, num_candidates
        self.negatives, self.in_batch_negatives, self.seed = negatives, in_batch_negatives, seed
        self.query_ids = [query.query_id for query in queries]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, index: int) -> ListItem:
        query = self.queries[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.negatives == "retrieved":
            negatives = query.candidates[: self.num_candidates]
        else:  # random documents of the whole store
            negatives = rng.choice(self.num_docs, size=min(self.num_candidates, self.num_docs), replace=False)
        negatives = negatives[~np.isin(negatives, query.positive_rows)]
        rows = np.concatenate([negatives, query.positive_rows])
        labels = np.concatenate([np.zeros(len(negatives), dtype=np.float32), query.positive_grades])
        order = rng.permutation(len(rows))  # positives shuffled in, never in a fixed place
        return ListItem(index, query.query, rows[order].astype(np.int64), labels[order],
                        exclude=query.judged_rows, seed=int(rng.integers(2**31)))

    def collate(self, items: list[ListItem]) -> CandidateBatch:
        if not self.in_batch_negatives or len(items) < 2:
            return pad_lists(items)
        rng = np.random.default_rng([item.seed for item in items])
        extra = []
        for i, item in enumerate(items):
            pool = np.unique(np.concatenate([other.rows for j, other in enumerate(items) if j != i]))
            keep = ~np.isin(pool, item.rows) & ~np.isin(pool, np.fromiter(item.exclude, np.int64, len(item.exclude)))
            pool = pool[keep]
            extra.append(rng.choice(pool, size=min(self.in_batch_negatives, len(pool)), replace=False))
        return pad_lists(items, extra)


class RerankListDataset(Dataset):
    """One list per query: its first-stage candidates to rerank, no positives added."""

    def __init__(self, query_ids: list[str], queries: dict[str, str], candidates: CandidateStore, depth: int):
        self.query_ids, self.queries = query_ids, queries
        self.candidates, self.depth = candidates, depth

    def __len__(self) -> int:
        return len(self.query_ids)

    def __getitem__(self, index: int) -> ListItem:
        rows = self.candidates.rows(self.query_ids[index])[: self.depth]
        rows = rows[rows >= 0].astype(np.int64)
        return ListItem(index, self.queries[self.query_ids[index]], rows, np.zeros(len(rows), dtype=np.float32))

    @staticmethod
    def collate(items: list[ListItem]) -> CandidateBatch:
        return pad_lists(items)


class CoderDataModule(L.LightningDataModule):
    """Candidate lists over a frozen document-embedding store.

    `embeddings`: the base model M_D as a `DenseFirstStage`; its (cached) store holds the document embeddings,
    encoded on first use. `embedding_store`: a finished store folder to use instead (e.g. from `python -m
    lit_ir.encode`). `first_stage`: the run validation and test rerank (M_F). `candidates`: the run whose top
    `num_candidates` documents are each training query's list (M_C); None = `first_stage`.
    """

    def __init__(
        self,
        collection: Collection,
        embeddings: DenseFirstStage,
        first_stage: FirstStage,
        candidates: FirstStage | None = None,
        embedding_store: str | os.PathLike | None = None,
        train_split: str | Sequence[str] | None = "train",
        val_split: str | None = "dev",
        test_splits: Sequence[str] = ("test",),
        num_candidates: int = 1000,
        rerank_depth: int = 1000,
        negatives: str = "retrieved",
        in_batch_negatives: int = 0,
        positive_level: int = 1,
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        cache_dir: str | os.PathLike = ".cache/lit_ir/first_stage",
    ):
        super().__init__()
        if negatives not in NEGATIVES:
            raise ValueError(f"data.negatives must be one of {NEGATIVES}, got {negatives!r}")
        if num_candidates < 1 or rerank_depth < 1 or in_batch_negatives < 0:
            raise ValueError(f"num_candidates and rerank_depth must be >= 1 and in_batch_negatives >= 0, got "
                             f"{num_candidates}, {rerank_depth}, {in_batch_negatives}")
        self.collection, self.embeddings = collection, embeddings
        self.first_stage, self.candidates = first_stage, candidates or first_stage
        self.embedding_store_path = Path(embedding_store) if embedding_store else None
        self.train_splits = [train_split] if isinstance(train_split, str) else list(train_split or [])
        self.val_split, self.test_splits = val_split, list(test_splits or [])
        self.num_candidates, self.rerank_depth = num_candidates, rerank_depth
        self.negatives, self.in_batch_negatives, self.positive_level = negatives, in_batch_negatives, positive_level
        self.train_batch_size, self.eval_batch_size, self.num_workers = train_batch_size, eval_batch_size, num_workers
        self.shuffle, self.seed, self.cache_dir = shuffle, seed, Path(cache_dir)
        self._runs: dict[tuple[str, str], Run] = {}
        self._store: EmbeddingStore | None = None
        self.train_dataset: TrainListDataset | None = None
        self.eval_datasets: dict[str, RerankListDataset] = {}

    # ---- runs and stores ---------------------------------------------------------------------------------------
    def eval_splits(self) -> list[str]:
        return [split for split in [self.val_split, *self.test_splits] if split]

    def first_stage_run(self, split: str) -> Run:
        """The run that `split` reranks (M_F); the end-of-run report compares against it."""
        return self._run("first_stage", split)

    def _run(self, which: str, split: str) -> Run:
        if (which, split) not in self._runs:
            first_stage = self.first_stage if which == "first_stage" else self.candidates
            self._runs[which, split] = first_stage(self.collection, split)
        return self._runs[which, split]

    @property
    def store(self) -> EmbeddingStore:
        """The frozen document embeddings (encoded with the base model on first use)."""
        if self._store is None:
            if self.embedding_store_path is not None:
                self._store = EmbeddingStore.open(self.embedding_store_path)
            else:
                self._store = self.embeddings.encode_collection(self.collection)
        return self._store

    def sample_texts(self) -> list[str]:
        """The texts a random-bert base model learns its vocabulary from (as DenseFirstStage does)."""
        docs = self.collection.docs()
        return [docs[doc_id] for _, doc_id in zip(range(VOCAB_DOCS), docs)]

    def candidate_store(self, which: str, split: str, depth: int) -> CandidateStore:
        """The run's top-`depth` rows per query, cached beside the embedding store's first-stage cache."""
        run = self._run(which, split)
        key = short_hash(str(self.store.path), self.store.meta["ids_digest"], depth, fingerprint(
            f"{qid}\t{doc_id}" for qid, docs in run.items() for doc_id, _ in rank_documents(docs)[:depth]))
        path = (self.cache_dir / safe_name(self.collection.name) / "candidates"
                / f"{safe_name(split)}.{which}-n{depth}-{key}")
        if (path / "candidates.json").is_file():
            return CandidateStore.open(path, self.store)
        log.info("building the candidate store %s", path)
        return CandidateStore.from_run(run, self.store, depth, path, source=f"{which} run of {split}")

    def prepare_data(self) -> None:
        # the embedding store, runs and candidate stores are built once here (rank 0 under DDP), cached on disk
        for split in self.train_splits:
            self.candidate_store("candidates", split, self.num_candidates)
        for split in self.eval_splits():
            self.candidate_store("first_stage", split, self.rerank_depth)

    # ---- datasets ----------------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and self.train_dataset is None and self.train_splits:
            queries = [query for split in self.train_splits for query in self._train_queries(split)]
            self.train_dataset = TrainListDataset(queries, len(self.store), self.num_candidates, self.negatives,
                                                  self.in_batch_negatives, self.seed)
        for split in self.eval_splits():
            if split not in self.eval_datasets:
                candidates = self.candidate_store("first_stage", split, self.rerank_depth)
                queries = self.collection.queries(split)
                self.eval_datasets[split] = RerankListDataset(list(queries), dict(queries), candidates,
                                                              self.rerank_depth)

    def _train_queries(self, split: str) -> list[TrainQuery]:
        candidates = self.candidate_store("candidates", split, self.num_candidates)
        qrels, out, no_positive = self.collection.qrels(split), [], []
        for query_id, text in self.collection.queries(split).items():
            judged = qrels.get(query_id, {})
            relevant = sorted(doc_id for doc_id, grade in judged.items() if grade >= self.positive_level)
            if not relevant:
                no_positive.append(query_id)
                continue
            rows = candidates.rows(query_id)
            out.append(TrainQuery(
                query_id, text, rows[rows >= 0].astype(np.int64), self.store.rows(relevant),
                np.array([judged[doc_id] for doc_id in relevant], dtype=np.float32),
                frozenset(self.store.rows(sorted(judged)).tolist())))
        if no_positive:
            log.warning("split %s: %d of %d queries have no judged document with grade >= %d and are not trained "
                        "on: %s", split, len(no_positive), len(out) + len(no_positive), self.positive_level,
                        some_ids(no_positive))
        if not out:
            raise InputError(f"split {split!r}: no query has a judged document with grade >= {self.positive_level}")
        return out

    # ---- loaders -----------------------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise InputError("no training split is configured (data.train_split)")
        return DataLoader(self.train_dataset, batch_size=self.train_batch_size,
                          **train_order(self.train_dataset, self.shuffle, self.seed),
                          num_workers=self.num_workers, collate_fn=self.train_dataset.collate,
                          pin_memory=torch.cuda.is_available())

    def _list_loader(self, split: str) -> DataLoader:
        return DataLoader(self.eval_datasets[split], batch_size=self.eval_batch_size, shuffle=False,
                          num_workers=self.num_workers, collate_fn=RerankListDataset.collate,
                          pin_memory=torch.cuda.is_available())

    def val_dataloader(self) -> DataLoader | list:
        return self._list_loader(self.val_split) if self.val_split else []

    def test_dataloader(self) -> list[DataLoader]:
        return [self._list_loader(split) for split in self.test_splits]
