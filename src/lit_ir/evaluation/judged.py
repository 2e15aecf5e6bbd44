"""The arrays every metric is computed from: the qrels as flat arrays, and where a run ranks each judged document.

Every metric lit_ir offers depends on a run only through the ranks of the *judged* documents (and the run's
length), so a run of 1,000 documents per query reduces to ~10 ranks per query: reading the run's scores with
`np.fromiter` and counting, with `searchsorted`, how many score higher is all the per-document work there is.
Ranks are positions in `lit_ir.data.trec.rank_documents` order (score descending, ties by doc id descending).
"""

from __future__ import annotations

import math
import weakref
from itertools import chain, repeat
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from lit_ir.data.trec import Qrels, Run

NOT_RETRIEVED = np.iinfo(np.int64).max  # the rank of a judged document that the run does not contain


@dataclass(frozen=True, eq=False)
class JudgedQrels:
    """Qrels as arrays: each query's judged documents, sorted by grade (descending), end to end.

    Query i owns judgments `offsets[i]:offsets[i + 1]` of `doc_ids` and `grades`.
    """

    query_ids: list[str]  # in qrels order
    doc_ids: list[str]  # one per judgment
    grades: np.ndarray  # int64, one per judgment
    offsets: np.ndarray  # int64, len(query_ids) + 1

    @classmethod
    def from_qrels(cls, qrels: Qrels) -> JudgedQrels:
        counts = np.fromiter(map(len, qrels.values()), dtype=np.int64, count=len(qrels))
        offsets = np.zeros(len(qrels) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        grades = np.fromiter(chain.from_iterable(map(dict.values, qrels.values())), dtype=np.int64, count=offsets[-1])
        doc_ids = list(chain.from_iterable(qrels.values()))
        # the ideal ranking (nDCG's denominator) is each query's judgments by grade
        order = np.lexsort((-grades, np.repeat(np.arange(len(qrels)), counts)))
        return cls(list(qrels), [doc_ids[i] for i in order], grades[order], offsets)

    def __len__(self) -> int:
        return len(self.query_ids)

    @cached_property
    def query_index(self) -> np.ndarray:
        """The query (position in `query_ids`) of every judgment."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.offsets))

    @cached_property
    def ideal_position(self) -> np.ndarray:
        """Every judgment's position in its query's ideal ranking (0 = the highest grade)."""
        return np.arange(len(self.grades), dtype=np.int64) - self.offsets[self.query_index]

    def relevant_counts(self, level: int) -> np.ndarray:
        """Per query, how many documents are graded >= `level`."""
        return np.bincount(self.query_index, weights=self.grades >= level, minlength=len(self)).astype(np.int64)

    def evaluated(self, level: int) -> np.ndarray:
        """Positions of the queries with at least one document graded >= `level` (the ones every mean is over)."""
        return np.flatnonzero(self.relevant_counts(level) > 0)

    def subset(self, positions: np.ndarray) -> JudgedQrels:
        """The queries at `positions`, in that order."""
        if len(positions) == len(self) and np.array_equal(positions, np.arange(len(self))):
            return self
        starts, lengths = self.offsets[positions], np.diff(self.offsets)[positions]
        offsets = np.zeros(len(positions) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        take = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])  # each query's judgments, in order
        return JudgedQrels([self.query_ids[p] for p in positions], [self.doc_ids[i] for i in take],
                           self.grades[take], offsets)


@dataclass(frozen=True, eq=False)
class RankedJudgments:
    """Where one run ranks the judged documents of `qrels`' queries.

    `rank` is aligned with `qrels.grades` (0-based position in the run, `NOT_RETRIEVED` when absent);
    `retrieved` is the length of each query's ranking. `by_rank` orders the judgments by (query, rank).
    """

    qrels: JudgedQrels
    rank: np.ndarray  # int64, one per judgment
    retrieved: np.ndarray  # int64, one per query

    @classmethod
    def from_run(cls, run: Run, qrels: JudgedQrels) -> RankedJudgments:
        rankings = [run.get(query_id) or {} for query_id in qrels.query_ids]
        retrieved = np.fromiter(map(len, rankings), dtype=np.int64, count=len(rankings))
        starts = np.zeros(len(rankings) + 1, dtype=np.int64)
        np.cumsum(retrieved, out=starts[1:])
        # NaN scores were refused by the caller (`lit_ir.data.trec.check_scores`, in `per_query_scores`)
        scores = np.fromiter(chain.from_iterable(map(dict.values, rankings)), dtype=np.float64, count=starts[-1])
        query_of = qrels.query_index
        ranking_of = [rankings[q] for q in query_of.tolist()]
        mine = np.fromiter(map(dict.get, ranking_of, qrels.doc_ids, repeat(math.nan)), dtype=np.float64,
                           count=len(qrels.doc_ids))  # the judged documents' scores; NaN = not retrieved
        _sort_segments(scores, retrieved)
        found = np.flatnonzero(~np.isnan(mine))
        begin, end = starts[query_of[found]], starts[query_of[found] + 1]
        not_above = _segment_searchsorted(scores, begin, end, mine[found], side="right")
        rank = np.full(len(mine), NOT_RETRIEVED, dtype=np.int64)
        rank[found] = end - not_above  # how many score strictly higher
        tied = not_above - _segment_searchsorted(scores, begin, end, mine[found], side="left") > 1
        for j in found[tied]:  # equal scores: rank_documents puts the larger doc id first
            doc_id, score = qrels.doc_ids[j], mine[j]
            rank[j] += sum(1 for other, s in ranking_of[j].items() if s == score and other > doc_id)
        return cls(qrels, rank, retrieved)

    @cached_property
    def by_rank(self) -> np.ndarray:
        """Judgment indices ordered by query, then rank: the order a metric walks a ranking in."""
        return np.lexsort((self.rank, self.qrels.query_index))


def _sort_segments(values: np.ndarray, lengths: np.ndarray) -> None:
    """Sort each consecutive segment of `values` in place (one call when every segment has the same length)."""
    if len(lengths) and lengths[0] > 0 and (lengths == lengths[0]).all():
        values.reshape(len(lengths), -1).sort(axis=1)
        return
    start = 0
    for length in lengths.tolist():
        values[start : start + length].sort()
        start += length


def _segment_searchsorted(values: np.ndarray, begin: np.ndarray, end: np.ndarray, targets: np.ndarray,
                          side: str) -> np.ndarray:
    """np.searchsorted of each target within its own sorted segment values[begin:end], all at once."""
    low, high = begin.copy(), end.copy()
    while (active := low < high).any():
        middle = (low + high) // 2
        probe = values[np.where(active, middle, 0)] if len(values) else np.zeros(len(middle))
        right = (probe <= targets) if side == "right" else (probe < targets)
        low = np.where(active & right, middle + 1, low)
        high = np.where(active & ~right, middle, high)
    return low


_COLLECTION_QRELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def collection_qrels(collection, split: str) -> JudgedQrels:
    """`collection.qrels(split)` as arrays, read once per collection object and split (evaluation calls this
    every validation epoch; a collection's qrels do not change while it is open)."""
    cached = _COLLECTION_QRELS.setdefault(collection, {})
    if split not in cached:
        cached[split] = JudgedQrels.from_qrels(collection.qrels(split))
    return cached[split]
