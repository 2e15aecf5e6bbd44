"""Compare systems on the same queries: means and paired two-sided t-tests against a baseline."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from lit_ir.data.trec import Qrels, Run
from lit_ir.errors import InputError
from lit_ir.evaluation.judged import JudgedQrels
from lit_ir.evaluation.metrics import QueryCoverage, per_query_scores, query_coverage

TEST_NAME = "paired two-sided Student t-test (scipy.stats.ttest_rel) over per-query scores"


@dataclass(frozen=True)
class Comparison:
    """Per-query scores, means and p-values (vs `baseline`) of several systems on the same queries."""

    metrics: list[str]
    baseline: str | None
    relevance_level: int
    alpha: float
    per_query: dict[str, pd.DataFrame]  # system -> per_query_scores(...)
    coverage: dict[str, QueryCoverage]  # system -> how its queries were used
    means: dict[str, dict[str, float]]  # system -> metric -> mean
    p_values: dict[str, dict[str, float]]  # system -> metric -> p vs baseline; baseline itself excluded

    @property
    def systems(self) -> list[str]:
        return list(self.means)

    @property
    def num_queries(self) -> int:
        return len(next(iter(self.per_query.values())))

    def is_significant(self, system: str, metric: str) -> bool:
        p_value = self.p_values.get(system, {}).get(metric, math.nan)
        return p_value < self.alpha  # False for NaN


def paired_t_test(scores: np.ndarray, baseline_scores: np.ndarray) -> float:
    """Two-sided p-value of a paired t-test; 1.0 when every per-query difference is 0, NaN with < 2 queries."""
    if np.array_equal(scores, baseline_scores):
        return 1.0  # scipy returns NaN here; identical scores are no evidence of a difference
    return float(stats.ttest_rel(scores, baseline_scores).pvalue)


def compare_runs(
    runs: dict[str, Run],
    qrels: Qrels | JudgedQrels,
    metrics: list[str],
    baseline: str | None = None,
    relevance_level: int = 1,
    alpha: float = 0.05,
) -> Comparison:
    """Evaluate every run on the same evaluated queries and test each one against `baseline`."""
    if not runs:
        raise InputError("compare_runs needs at least one run")
    if baseline is not None and baseline not in runs:
        raise InputError(f"baseline {baseline!r} is not one of the runs {sorted(runs)}")
    if not isinstance(qrels, JudgedQrels):
        qrels = JudgedQrels.from_qrels(qrels)  # once for every run
    per_query = {name: per_query_scores(run, qrels, metrics, relevance_level) for name, run in runs.items()}
    means = {name: {metric: float(frame[metric].mean()) for metric in metrics} for name, frame in per_query.items()}
    p_values = {}
    if baseline is not None:
        # Every frame has the same index (the evaluated queries of the qrels), so the rows are paired.
        base = per_query[baseline]
        p_values = {
            name: {metric: paired_t_test(frame[metric].to_numpy(), base[metric].to_numpy()) for metric in metrics}
            for name, frame in per_query.items()
            if name != baseline
        }
    return Comparison(
        metrics=list(metrics),
        baseline=baseline,
        relevance_level=relevance_level,
        alpha=alpha,
        per_query=per_query,
        coverage={name: query_coverage(run, qrels, relevance_level) for name, run in runs.items()},
        means=means,
        p_values=p_values,
    )
