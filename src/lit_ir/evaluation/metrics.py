"""Ranking metrics, per query and averaged.

Metric names are ranx's: "mrr@10", "ndcg@10", "map", "map@20", "recall@1000", ...; so are the definitions
(`lit_ir.evaluation.measures` computes them with numpy and the tests check them per query against ranx).

Relevance level: a document is relevant iff its grade >= `relevance_level`. Binary metrics (MRR, MAP,
recall, precision, ...) get ranx's "-l<level>" suffix. Graded metrics (nDCG, DCG) always use every positive
grade as its gain, as trec_eval does (TREC DL: nDCG@10 graded; MAP/MRR/recall "strict" at level 2).
A name that already carries "-l<level>" is used as written; for a graded metric, grades below that level then
gain nothing ("ndcg@10-l2": a grade-1 document counts as non-relevant, CODER's "strict" nDCG).

Which queries are averaged:
- the mean is over the *evaluated* queries: those in the qrels with at least one document graded
  >= `relevance_level` (the others have no defined score for most metrics and are left out);
- an evaluated query missing from the run scores 0 on every metric (ranx's `make_comparable`, trec_eval -c);
- run queries that are not in the qrels are ignored.
Every count is in `QueryCoverage` and logged as a warning when a query is left out or scored 0. No evaluated
query at all, a run with documents for none of them (e.g. ids from another collection), or a NaN score (a diverged
model) raises `InputError`.

Documents are ranked with `lit_ir.data.trec.rank_documents` (score descending, ties by doc id descending,
trec_eval's order), so tied scores give the same metric values here, in trec_eval and in a written run file.
A NaN score is an error. Qrels may be given as a dict or as `JudgedQrels` (`collection_qrels` caches those).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import pandas as pd

from lit_ir.data.trec import Qrels, Run, check_scores
from lit_ir.errors import InputError
from lit_ir.evaluation import measures
from lit_ir.evaluation.judged import JudgedQrels, RankedJudgments

log = logging.getLogger(__name__)

BINARY_METRICS = frozenset(measures.BINARY)
GRADED_METRICS = frozenset(measures.GRADED)


@dataclass(frozen=True)
class QueryCoverage:
    """How the queries of a run and of the qrels were used."""

    judged: int  # queries in the qrels
    evaluated: int  # judged queries with a relevant document: every mean is over these
    without_relevant: int  # judged queries with no document graded >= relevance_level: left out
    missing_from_run: int  # evaluated queries the run has no documents for: scored 0
    not_in_qrels: int  # run queries absent from the qrels: ignored

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class MetricSpec:
    """One metric as ranx computes it: e.g. "map@20" at level 2 -> base "map", cutoff 20, level 2."""

    name: str  # as the user wrote it; the key of every result
    base: str
    cutoff: int  # 0 = the whole ranking
    level: int

    @property
    def ranx_name(self) -> str:
        return f"{self.base}{f'@{self.cutoff}' if self.cutoff else ''}-l{self.level}"


def parse_metric(metric: str, relevance_level: int = 1) -> MetricSpec:
    """Parse a ranx-style name, applying `relevance_level` as the module docstring says."""
    name, _, level = metric.partition("-l")
    base, at, cutoff = name.partition("@")
    if base not in BINARY_METRICS | GRADED_METRICS:
        supported = ", ".join(sorted(BINARY_METRICS | GRADED_METRICS))
        raise InputError(f"unknown metric {metric!r}; supported (optionally '@k' and '-l<level>'): {supported}")
    if (at and not (cutoff.isdigit() and int(cutoff) > 0)) or (level and not (level.isdigit() and int(level) > 0)):
        raise InputError(f"malformed metric {metric!r}; expected e.g. 'ndcg@10', 'map', 'recall@100-l2'")
    if at and base in measures.WITHOUT_CUTOFF:
        raise InputError(f"metric {metric!r}: {base} takes no cutoff (it sets its own depth)")
    if not level:
        level = 1 if base in GRADED_METRICS else relevance_level
    return MetricSpec(metric, base, int(cutoff or 0), int(level))


def evaluated_query_ids(qrels: Qrels | JudgedQrels, relevance_level: int = 1) -> list[str]:
    """Query ids of the qrels with at least one document graded >= `relevance_level`, in qrels order."""
    judged = _judged(qrels)
    return [judged.query_ids[i] for i in judged.evaluated(relevance_level)]


def query_coverage(run: Run, qrels: Qrels | JudgedQrels, relevance_level: int = 1) -> QueryCoverage:
    judged = _judged(qrels)
    evaluated = evaluated_query_ids(judged, relevance_level)
    judged_ids = set(judged.query_ids)
    return QueryCoverage(
        judged=len(judged),
        evaluated=len(evaluated),
        without_relevant=len(judged) - len(evaluated),
        missing_from_run=sum(1 for qid in evaluated if not run.get(qid)),
        not_in_qrels=sum(1 for qid in run if qid not in judged_ids),
    )


def per_query_scores(run: Run, qrels: Qrels | JudgedQrels, metrics: list[str], relevance_level: int = 1
                     ) -> pd.DataFrame:
    """Scores of every evaluated query: index = query id, one column per metric (named as given)."""
    if relevance_level < 1:
        raise InputError(f"relevance_level must be >= 1, got {relevance_level}")
    specs = [parse_metric(metric, relevance_level) for metric in metrics]
    check_scores(run)
    judged = _judged(qrels)
    coverage = query_coverage(run, judged, relevance_level)
    _check_and_log(coverage, relevance_level)
    evaluated = judged.subset(judged.evaluated(relevance_level))
    ranked = RankedJudgments.from_run(run, evaluated)
    scores = {spec.name: _measure(spec.base)(ranked, spec.cutoff, spec.level) for spec in specs}
    return pd.DataFrame(scores, index=pd.Index(evaluated.query_ids, name="query_id"))


def evaluate_run(run: Run, qrels: Qrels, metrics: list[str], relevance_level: int = 1) -> dict[str, float]:
    """Mean of each metric over the evaluated queries (see the module docstring)."""
    means = per_query_scores(run, qrels, metrics, relevance_level).mean()
    return {metric: float(means[metric]) for metric in metrics}


def _check_and_log(coverage: QueryCoverage, relevance_level: int) -> None:
    if coverage.evaluated == 0:
        raise InputError(f"no query in the qrels has a document graded >= {relevance_level}; nothing to evaluate")
    if coverage.missing_from_run == coverage.evaluated:
        raise InputError(
            f"the run has no documents for any of the {coverage.evaluated} evaluated queries "
            "(are the run and the qrels from the same collection?)"
        )
    if coverage.without_relevant:
        log.warning(
            "%d of %d judged queries have no document graded >= %d and are left out of the means",
            coverage.without_relevant,
            coverage.judged,
            relevance_level,
        )
    if coverage.missing_from_run:
        log.warning(
            "%d of %d evaluated queries are missing from the run and score 0",
            coverage.missing_from_run,
            coverage.evaluated,
        )
    if coverage.not_in_qrels:
        log.warning("%d run queries are not in the qrels and are ignored", coverage.not_in_qrels)


def _judged(qrels: Qrels | JudgedQrels) -> JudgedQrels:
    return qrels if isinstance(qrels, JudgedQrels) else JudgedQrels.from_qrels(qrels)


def _measure(base: str):
    return measures.BINARY.get(base) or measures.GRADED[base]
