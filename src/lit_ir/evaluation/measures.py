"""Every metric as a few numpy operations over `RankedJudgments`: one score per query of the qrels.

Each function takes (ranked, cutoff, level): a document is relevant iff its grade >= `level`, and `cutoff` = k
keeps the top k of the ranking (0 = all of it). The definitions are ranx's (0.3.x) and so are the operations'
order: sums run over a query's ranking from the top, one term at a time, as ranx's loops do, so the values are
ranx's to the last bit or within a rounding step (the tests check every metric per query against ranx). Where
ranx has no value (bpref with no judged non-relevant document divides by zero), the docstring says what we do.
"""

from __future__ import annotations

import math

import numpy as np

from lit_ir.evaluation.judged import NOT_RETRIEVED, RankedJudgments

_discounts = np.zeros(0)


def discounts(n: int) -> np.ndarray:
    """log2(position + 2) for positions 0..n-1, with math.log2 (libm's, as ranx's compiled code uses)."""
    global _discounts
    if len(_discounts) < n:
        _discounts = np.array([math.log2(position + 2) for position in range(max(n, 2 * len(_discounts)))])
    return _discounts[:n]


# ---- what the metrics share ------------------------------------------------------------------------------------
def _within(ranked: RankedJudgments, cutoff: int) -> np.ndarray:
    return ranked.rank < cutoff if cutoff else ranked.rank != NOT_RETRIEVED


def _hits(ranked: RankedJudgments, cutoff: int, level: int) -> np.ndarray:
    """Per judgment (in rank order): relevant and within the cutoff."""
    hit = (ranked.qrels.grades >= level) & _within(ranked, cutoff)
    return hit[ranked.by_rank]


def _per_query(ranked: RankedJudgments, order: np.ndarray, values=None) -> np.ndarray:
    """Sum `values` (default 1) of the judgments at `order` per query, adding them in that order."""
    return np.bincount(ranked.qrels.query_index[order], weights=values, minlength=len(ranked.qrels)).astype(np.float64)


def _group_starts(groups: np.ndarray) -> np.ndarray:
    """For a grouped array (equal values adjacent), the index where each element's group starts."""
    is_start = np.ones(len(groups), dtype=bool)
    is_start[1:] = groups[1:] != groups[:-1]
    return np.maximum.accumulate(np.where(is_start, np.arange(len(groups)), 0)) if len(groups) else groups


def _ratio(numerator: np.ndarray, denominator, where: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=where)


# ---- binary metrics ----------------------------------------------------------------------------------------------
def hits(ranked: RankedJudgments, cutoff: int, level: int) -> np.ndarray:
    order = ranked.by_rank[_hits(ranked, cutoff, level)]
    return _per_query(ranked, order)


def hit_rate(ranked: RankedJudgments, cutoff: int, level: int) -> np.ndarray:
    return (hits(ranked, cutoff, level) > 0).astype(np.float64)


def precision(ranked: RankedJudgments, cutoff: int, level: int) -> np.ndarray:
    """Hits / k; k = the cutoff (also when the ranking is shorter), or the ranking's length without one."""
    depth = cutoff if cutoff else ranked.retrieved
    return _ratio(hits(ranked, cutoff, level), depth, np.asarray(depth) > 0)


def recall(ranked: RankedJudgments, cutoff: int, level: int) -> np.ndarray:
    relevant = ranked.qrels.relevant_counts(level)
    return _ratio(hits(ranked, cutoff, level), relevant, relevant > 0)


def f1(ranked: RankedJudgments, cutoff: int, level: int) -> np.ndarray:
    p, r = precision(ranked, cutoff, level), recall(ranked, cutoff, level)
    return 2 * _ratio(p * r, p + r, p + r > 0)


def r_precision(ranked: RankedJudgments, cutoff: int, level: int) -> np.ndarray:
    """Precision at R, R = the query's number of relevant documents (no cutoff)."""
    relevant = ranked.qrels.relevant_counts(level)
    hit = (ranked.qrels.grades >= level) & (ranked.rank < relevant[ranked.qrels.query_index])
    return _ratio(_per_query(ranked, np.flatnonzero(hit)), relevant, relevant > 0)


def reciprocal_rank(ranked: RankedJudgments, cutoff: int, level: int) -> np.ndarray:
    order = ranked.by_rank[_hits(ranked, cutoff, level)]
    queries = ranked.qrels.query_index[order]
    first = np.flatnonzero(_group_starts(queries) == np.arange(len(queries)))
    scores = np.zeros(len(ranked.qrels))
    scores[queries[first]] = 1.0 / (ranked.rank[order[first]] + 1)
    return scores


def average_precision(ranked: RankedJudgments, cutoff: int, level: int) -> np.ndarray:
    """Mean over the relevant documents (retrieved within the cutoff or not) of the precision at their rank."""
    order = ranked.by_rank[_hits(ranked, cutoff, level)]
    queries = ranked.qrels.query_index[order]
    hits_so_far = np.arange(len(order)) - _group_starts(queries) + 1
    total = _per_query(ranked, order, hits_so_far / (ranked.rank[order] + 1))
    relevant = ranked.qrels.relevant_counts(level)
    return _ratio(total, relevant, relevant > 0)


def bpref(ranked: RankedJudgments, cutoff: int, level: int) -> np.ndarray:
    """Buckley & Voorhees' bpref over the judged documents of the whole ranking (no cutoff). With no judged
    non-relevant document nothing can outrank a relevant one: bpref = the fraction of relevant documents retrieved
    (ranx divides by zero there)."""
    relevant_counts = ranked.qrels.relevant_counts(level)
    judged = np.diff(ranked.qrels.offsets)
    order = ranked.by_rank[ranked.rank[ranked.by_rank] != NOT_RETRIEVED]  # retrieved judged documents, top first
    relevant = ranked.qrels.grades[order] >= level
    queries = ranked.qrels.query_index[order]
    non_relevant = (~relevant).astype(np.int64)
    non_relevant_above = np.cumsum(non_relevant) - non_relevant  # ahead of each document, counted over all queries
    non_relevant_above -= non_relevant_above[_group_starts(queries)]  # ... and within its own query
    n_relevant = relevant_counts[queries]
    bound = np.minimum(n_relevant, judged[queries] - n_relevant)
    terms = 1.0 - _ratio(np.minimum(non_relevant_above, n_relevant).astype(np.float64), bound, bound > 0)
    total = _per_query(ranked, order[relevant], terms[relevant])
    return _ratio(total, relevant_counts, relevant_counts > 0)


# ---- graded metrics ----------------------------------------------------------------------------------------------
def _gain(grades: np.ndarray, burges: bool) -> np.ndarray:
    grades = grades.astype(np.float64)
    return 2.0**grades - 1 if burges else grades


def _dcg(ranked: RankedJudgments, cutoff: int, level: int, burges: bool) -> np.ndarray:
    """Gains of the relevant documents within the cutoff, discounted by log2(rank + 1) (1-based rank); grades
    below `level` gain nothing."""
    order = ranked.by_rank[_hits(ranked, cutoff, level)]
    rank = ranked.rank[order]
    gains = _gain(ranked.qrels.grades[order], burges) / discounts(int(rank.max()) + 1 if len(rank) else 0)[rank]
    return _per_query(ranked, order, gains)


def _ideal_dcg(ranked: RankedJudgments, cutoff: int, level: int, burges: bool) -> np.ndarray:
    qrels = ranked.qrels
    position = qrels.ideal_position
    ideal = np.flatnonzero((qrels.grades >= level) & (position < cutoff if cutoff else True))
    gains = _gain(qrels.grades[ideal], burges) / discounts(int(position.max()) + 1 if len(position) else 0)[
        position[ideal]]
    return _per_query(ranked, ideal, gains)


def dcg(ranked: RankedJudgments, cutoff: int, level: int) -> np.ndarray:
    return _dcg(ranked, cutoff, level, burges=False)


def dcg_burges(ranked: RankedJudgments, cutoff: int, level: int) -> np.ndarray:
    return _dcg(ranked, cutoff, level, burges=True)


def _ndcg(ranked: RankedJudgments, cutoff: int, level: int, burges: bool) -> np.ndarray:
    ideal = _ideal_dcg(ranked, cutoff, level, burges)
    return _dcg(ranked, cutoff, level, burges) / np.where(ideal == 0.0, 1.0, ideal)


def ndcg(ranked: RankedJudgments, cutoff: int, level: int) -> np.ndarray:
    return _ndcg(ranked, cutoff, level, burges=False)


def ndcg_burges(ranked: RankedJudgments, cutoff: int, level: int) -> np.ndarray:
    return _ndcg(ranked, cutoff, level, burges=True)


BINARY = {"hits": hits, "hit_rate": hit_rate, "precision": precision, "recall": recall, "f1": f1,
          "r-precision": r_precision, "mrr": reciprocal_rank, "map": average_precision, "bpref": bpref}
GRADED = {"ndcg": ndcg, "dcg": dcg, "ndcg_burges": ndcg_burges, "dcg_burges": dcg_burges}
WITHOUT_CUTOFF = frozenset({"r-precision", "bpref"})  # they define their own depth
