"""Evaluation: ranking metrics (ranx's definitions, numpy), significance tests against a baseline, result files and tables."""

from lit_ir.evaluation.judged import JudgedQrels, RankedJudgments, collection_qrels
from lit_ir.evaluation.metrics import (
    MetricSpec,
    QueryCoverage,
    evaluate_run,
    evaluated_query_ids,
    parse_metric,
    per_query_scores,
    query_coverage,
)
from lit_ir.evaluation.protocol import SplitProtocol, split_protocol
from lit_ir.evaluation.report import (
    metrics_json,
    per_query_frame,
    print_table,
    results_table,
    table_note,
    write_metrics,
)
from lit_ir.evaluation.significance import Comparison, compare_runs, paired_t_test

__all__ = [
    "Comparison",
    "JudgedQrels",
    "RankedJudgments",
    "SplitProtocol",
    "collection_qrels",
    "MetricSpec",
    "QueryCoverage",
    "compare_runs",
    "evaluate_run",
    "evaluated_query_ids",
    "metrics_json",
    "paired_t_test",
    "parse_metric",
    "per_query_frame",
    "per_query_scores",
    "print_table",
    "query_coverage",
    "results_table",
    "split_protocol",
    "table_note",
    "write_metrics",
]
