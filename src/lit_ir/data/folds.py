"""Cross-validation folds over a collection's judged queries, for collections without official folds
(Cranfield's train+dev queries, TREC-COVID's 50 topics). Robust04 has official folds in ir_datasets already."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from lit_ir.data.collections import Click, Collection, DocStore, Qrels, Queries
from lit_ir.errors import InputError


def fold_names(n_folds: int) -> list[str]:
    return [f"fold{index}" for index in range(1, n_folds + 1)]


def rotation(n_folds: int, test_fold: int) -> dict[str, object]:
    """Rotation `test_fold` (1-based) of k-fold cross-validation: test on that fold, validate on the next one,
    train on the rest (as Robust04's 5 folds are used: 3 train, 1 dev, 1 test)."""
    if not 1 <= test_fold <= n_folds:
        raise ValueError(f"test_fold must be in 1..{n_folds}, got {test_fold}")
    names = fold_names(n_folds)
    test, val = names[test_fold - 1], names[test_fold % n_folds]
    return {"train_split": [name for name in names if name not in (test, val)], "val_split": val, "test_splits": [test]}


class CrossValidationFolds(Collection):
    """The queries of `splits` of `base` dealt into `n_folds` folds (`fold1`..`foldk`) after a seeded shuffle of
    their sorted ids; documents and the click log are the base collection's."""

    def __init__(self, base: Collection, n_folds: int = 5, splits: Sequence[str] | None = None, seed: int = 0):
        if n_folds < 3:
            raise ValueError(f"n_folds must be >= 3 (train, validation and test folds), got {n_folds}")
        self.base, self.n_folds, self.seed = base, n_folds, seed
        self.source_splits = list(splits or base.splits())
        self.name = f"{base.name}-{n_folds}fold-seed{seed}"
        queries: Queries = {}
        self._qrels: Qrels = {}
        for split in self.source_splits:
            for query_id, text in base.queries(split).items():
                if query_id in queries:
                    raise InputError(f"collection {base.name}: query {query_id!r} is in more than one of the splits "
                                     f"{self.source_splits}; folds need each query once")
                queries[query_id] = text
            self._qrels.update(base.qrels(split))
        if len(queries) < n_folds:
            raise InputError(f"collection {base.name}: {len(queries)} queries cannot fill {n_folds} folds")
        order = sorted(queries)
        random.Random(seed).shuffle(order)
        self._folds: dict[str, Queries] = {name: {} for name in fold_names(n_folds)}
        for position, query_id in enumerate(order):
            self._folds[f"fold{position % n_folds + 1}"][query_id] = queries[query_id]

    def docs(self) -> DocStore:
        return self.base.docs()

    def clicks(self) -> Iterator[Click]:
        return self.base.clicks()

    def splits(self) -> list[str]:
        return list(self._folds)

    def queries(self, split: str) -> Queries:
        self._check_split(split)
        return dict(self._folds[split])

    def qrels(self, split: str) -> Qrels:
        self._check_split(split)
        return {query_id: self._qrels[query_id] for query_id in self._folds[split] if query_id in self._qrels}
