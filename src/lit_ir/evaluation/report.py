"""Write a `Comparison` to disk (metrics JSON, per-query CSV) and print it as a table."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from lit_ir.evaluation.metrics import parse_metric
from lit_ir.evaluation.significance import TEST_NAME, Comparison
from lit_ir.utils.io import atomic_write, write_json

SIGNIFICANT_MARK = "†"


def metrics_json(comparison: Comparison, extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"metrics": system -> metric -> mean, "p_values": system -> metric -> p vs baseline, "meta": {...}}.

    A p-value that is undefined (fewer than 2 queries) is null.
    """
    level = comparison.relevance_level
    return {
        "metrics": comparison.means,
        "p_values": {
            system: {metric: None if math.isnan(p) else p for metric, p in by_metric.items()}
            for system, by_metric in comparison.p_values.items()
        },
        "meta": {
            "baseline": comparison.baseline,
            "relevance_level": level,
            "num_queries": comparison.num_queries,
            "ranx_metrics": {metric: parse_metric(metric, level).ranx_name for metric in comparison.metrics},
            "significance_test": TEST_NAME,
            "alpha": comparison.alpha,
            "coverage": {system: coverage.as_dict() for system, coverage in comparison.coverage.items()},
            **(extra_meta or {}),
        },
    }


def per_query_frame(comparison: Comparison) -> pd.DataFrame:
    """Long table: one row per (system, query), one column per metric."""
    frames = [frame.reset_index().assign(system=system) for system, frame in comparison.per_query.items()]
    return pd.concat(frames, ignore_index=True)[["system", "query_id", *comparison.metrics]]


def write_metrics(
    comparison: Comparison, output_dir: str | os.PathLike, extra_meta: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Atomically write `metrics.json` and `per_query.csv` into `output_dir`; return their paths."""
    output_dir = Path(output_dir)
    metrics_path = write_json(metrics_json(comparison, extra_meta), output_dir / "metrics.json")
    per_query_path = output_dir / "per_query.csv"
    with atomic_write(per_query_path) as handle:
        per_query_frame(comparison).to_csv(handle, index=False)
    return metrics_path, per_query_path


def results_table(comparison: Comparison, digits: int = 4) -> Table:
    """Rows = systems, columns = metrics; † marks p < alpha against the baseline."""
    table = Table()
    table.add_column("system")
    for metric in comparison.metrics:
        table.add_column(metric, justify="right")
    for system, means in comparison.means.items():
        label = f"{system} (baseline)" if system == comparison.baseline else system
        cells = [
            f"{means[metric]:.{digits}f}{SIGNIFICANT_MARK if comparison.is_significant(system, metric) else ' '}"
            for metric in comparison.metrics
        ]
        table.add_row(label, *cells)
    return table


def table_note(comparison: Comparison) -> str:
    note = f"{comparison.num_queries} queries, relevance level {comparison.relevance_level}"
    if comparison.baseline is not None:
        note += f"; {SIGNIFICANT_MARK} p < {comparison.alpha} vs {comparison.baseline!r}, paired two-sided t-test"
    return note


def print_table(comparison: Comparison, console: Console | None = None) -> None:
    console = console or Console()
    console.print(results_table(comparison))
    console.print(table_note(comparison), highlight=False)
