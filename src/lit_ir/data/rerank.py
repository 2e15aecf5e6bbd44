"""Datasets and the DataModule for rerankers trained on groups of 1 positive + n negatives from a first-stage run.

Batches carry text; the LightningModule owns the tokenizer. Evaluation batches carry an integer pair index so that
scores can be gathered across DDP ranks (which cannot exchange strings) and mapped back to (query id, doc id).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lit_ir.data.collections import Collection, DocStore, Qrels, Queries
from lit_ir.data.sampling import train_order
from lit_ir.data.trec import Run, rank_documents
from lit_ir.errors import InputError

log = logging.getLogger(__name__)
FirstStage = Callable[[Collection, str], Run]


@dataclass
class TrainGroup:
    """One query with its candidate pool: judged positives and first-stage negatives."""

    query_id: str
    query: str
    positives: list[str]
    negatives: list[str]


@dataclass
class GroupBatch:
    queries: list[str]  # [batch]
    docs: list[list[str]]  # [batch][1 + num_negatives], the positive first


@dataclass
class PairBatch:
    pair_index: torch.Tensor  # [pairs] indices into the dataset's `pairs`
    queries: list[str]
    docs: list[str]


def build_train_groups(queries: Queries, qrels: Qrels, run: Run, positive_level: int, depth: int,
                       split: str) -> list[TrainGroup]:
    """Positives are judged docs with grade >= positive_level; negatives are the run's top `depth` minus judged
    positives. Queries that cannot form a group are reported, never dropped silently."""
    groups, no_positive, no_negative = [], [], []
    for query_id, text in queries.items():
        judged = qrels.get(query_id, {})
        positives = sorted(doc for doc, grade in judged.items() if grade >= positive_level)
        ranked = [doc for doc, _ in rank_documents(run.get(query_id, {}))[:depth]]
        negatives = [doc for doc in ranked if doc not in positives]
        if not positives:
            no_positive.append(query_id)
        elif not negatives:
            no_negative.append(query_id)
        else:
            groups.append(TrainGroup(query_id, text, positives, negatives))
    for reason, ids in (("no judged positive", no_positive), ("no first-stage negative", no_negative)):
        if ids:
            log.warning("split %s: %d of %d queries have %s and are not trained on (e.g. %s)",
                        split, len(ids), len(queries), reason, ids[:5])
    if not groups:
        raise InputError(f"split {split!r}: no query has both a judged positive and a first-stage negative")
    return groups


class GroupDataset(Dataset):
    """1 positive + n negatives per training example; the draw depends only on (seed, epoch, index), so it is the
    same whatever the number of workers or DDP ranks.

    `per_positive=False`: one example per query per epoch, its positive drawn among the judged ones (MS MARCO, with
    ~1 positive per query). `per_positive=True`: one example per (query, judged positive), so collections with many
    judged documents per query (Cranfield, Robust04, TREC-COVID) train on all of them every epoch.
    """

    def __init__(self, groups: list[TrainGroup], docs: DocStore, num_negatives: int, seed: int = 0,
                 per_positive: bool = False):
        self.groups, self.docs, self.num_negatives, self.seed = groups, docs, num_negatives, seed
        # (group index, positive index or None = draw one)
        self.examples: list[tuple[int, int | None]] = [
            (g, p) for g, group in enumerate(groups) for p in range(len(group.positives))
        ] if per_positive else [(g, None) for g in range(len(groups))]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[str, list[str]]:
        group_index, positive_index = self.examples[index]
        group = self.groups[group_index]
        rng = random.Random(f"{self.seed}/{self.epoch}/{index}")
        positive = rng.choice(group.positives) if positive_index is None else group.positives[positive_index]
        if len(group.negatives) >= self.num_negatives:
            negatives = rng.sample(group.negatives, self.num_negatives)
        else:  # a short pool: sample with replacement so every group has the same width
            negatives = rng.choices(group.negatives, k=self.num_negatives)
        return group.query, [self.docs[doc] for doc in [positive, *negatives]]

    @staticmethod
    def collate(items: list[tuple[str, list[str]]]) -> GroupBatch:
        return GroupBatch(queries=[query for query, _ in items], docs=[docs for _, docs in items])


class PairDataset(Dataset):
    """All (query, candidate) pairs of a run cut at `depth`, for reranking."""

    def __init__(self, queries: Queries, run: Run, docs: DocStore, depth: int, split: str):
        self.queries, self.docs = queries, docs
        self.pairs: list[tuple[str, str]] = [
            (query_id, doc_id)
            for query_id in queries
            for doc_id, _ in rank_documents(run.get(query_id, {}))[:depth]
        ]
        unknown = [query_id for query_id in run if query_id not in queries]
        if unknown:
            raise InputError(f"split {split!r}: the run has queries that are not in the split, e.g. {unknown[:5]}")
        without = [query_id for query_id in queries if not run.get(query_id)]
        if without:
            # they stay in the evaluation (scored 0 by every metric), so the numbers stay comparable
            log.warning("split %s: %d of %d queries have no first-stage candidates (e.g. %s); they score 0",
                        split, len(without), len(queries), without[:5])
        if not self.pairs:
            raise InputError(f"split {split!r}: no query has any first-stage candidate")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[int, str, str]:
        query_id, doc_id = self.pairs[index]
        return index, self.queries[query_id], self.docs[doc_id]

    @staticmethod
    def collate(items: list[tuple[int, str, str]]) -> PairBatch:
        return PairBatch(pair_index=torch.tensor([index for index, _, _ in items]),
                         queries=[query for _, query, _ in items], docs=[doc for _, _, doc in items])


class RerankDataModule(L.LightningDataModule):
    """Training groups from a first-stage run + qrels; validation and test rerank the first-stage run."""

    def __init__(
        self,
        collection: Collection,
        first_stage: FirstStage,
        train_split: str | Sequence[str] | None = "train",
        val_split: str | None = "dev",
        test_splits: Sequence[str] = ("test",),
        num_negatives: int = 7,
        train_depth: int = 100,
        rerank_depth: int = 100,
        positive_level: int = 1,
        per_positive: bool = False,
        train_batch_size: int = 8,
        eval_batch_size: int = 128,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.collection, self.first_stage = collection, first_stage
        self.train_splits = [train_split] if isinstance(train_split, str) else list(train_split or [])
        self.val_split, self.test_splits = val_split, list(test_splits or [])
        self.num_negatives, self.train_depth, self.rerank_depth = num_negatives, train_depth, rerank_depth
        self.positive_level, self.per_positive, self.seed, self.shuffle = positive_level, per_positive, seed, shuffle
        self.train_batch_size, self.eval_batch_size, self.num_workers = train_batch_size, eval_batch_size, num_workers
        self._runs: dict[str, Run] = {}
        self.train_dataset: GroupDataset | None = None
        self.eval_datasets: dict[str, PairDataset] = {}

    def first_stage_run(self, split: str) -> Run:
        if split not in self._runs:
            self._runs[split] = self.first_stage(self.collection, split)
        return self._runs[split]

    def sample_texts(self, limit: int = 20_000) -> list[str]:
        """Documents and training queries, e.g. to learn a vocabulary for a model trained from scratch."""
        docs = self.collection.docs()
        texts = [docs[doc_id] for _, doc_id in zip(range(limit), docs)]
        for split in self.train_splits:
            texts += list(self.collection.queries(split).values())
        return texts

    def eval_splits(self) -> list[str]:
        return [split for split in [self.val_split, *self.test_splits] if split]

    def prepare_data(self) -> None:
        # runs are computed once here (rank 0 under DDP) and cached on disk by the first stage
        for split in self.train_splits + self.eval_splits():
            self.first_stage_run(split)

    def setup(self, stage: str | None = None) -> None:
        docs = self.collection.docs()
        if stage in ("fit", None) and self.train_dataset is None and self.train_splits:
            groups = [group for split in self.train_splits for group in build_train_groups(
                self.collection.queries(split), self.collection.qrels(split), self.first_stage_run(split),
                self.positive_level, self.train_depth, split)]
            self.train_dataset = GroupDataset(groups, docs, self.num_negatives, self.seed, self.per_positive)
        for split in self.eval_splits():
            if split not in self.eval_datasets:
                self.eval_datasets[split] = PairDataset(self.collection.queries(split), self.first_stage_run(split),
                                                        docs, self.rerank_depth, split)

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise InputError("no training split is configured (data.train_split)")
        return DataLoader(self.train_dataset, batch_size=self.train_batch_size,
                          **train_order(self.train_dataset, self.shuffle, self.seed),
                          num_workers=self.num_workers, collate_fn=GroupDataset.collate)

    def _pair_loader(self, split: str) -> DataLoader:
        return DataLoader(self.eval_datasets[split], batch_size=self.eval_batch_size, shuffle=False,
                          num_workers=self.num_workers, collate_fn=PairDataset.collate)

    def val_dataloader(self) -> DataLoader | list:
        return self._pair_loader(self.val_split) if self.val_split else []

    def test_dataloader(self) -> list[DataLoader]:
        return [self._pair_loader(split) for split in self.test_splits]
