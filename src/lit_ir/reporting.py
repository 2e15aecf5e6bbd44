"""The end-of-run report: for each test split, the reranked run against the first-stage run it reranked."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console

from lit_ir.data.trec import read_run, write_run
from lit_ir.evaluation import compare_runs, print_table, write_metrics


def report_test_splits(cfg: DictConfig, datamodule, output_dir: Path) -> dict[str, Path]:
    """Write metrics/<split>/metrics.json (system -> metric -> value) and per_query.csv; print a table per split."""
    if not cfg.model.get("run_dir"):  # a module that writes no ranking (e.g. coarse-tuning) has nothing to compare
        return {}
    console = Console()
    run_dir = Path(cfg.model.run_dir)
    collection = datamodule.collection
    outputs = {}
    for split in datamodule.test_splits:
        reranked_path = run_dir / f"{split}.rerank.trec"
        if not reranked_path.is_file():
            continue
        first_stage = datamodule.first_stage_run(split)
        first_stage_path = write_run(first_stage, run_dir / f"{split}.first_stage.trec", tag="first_stage")
        runs = {"first_stage": read_run(first_stage_path), "reranker": read_run(reranked_path)}
        level = (cfg.collection.relevance_levels or {}).get(split, cfg.collection.relevance_level)
        comparison = compare_runs(runs, collection.qrels(split), list(cfg.collection.metrics),
                                  baseline=cfg.report_baseline, relevance_level=level)
        console.rule(f"{collection.name} / {split}")
        print_table(comparison, console)
        metrics_path, _ = write_metrics(comparison, output_dir / "metrics" / split,
                                        extra_meta={"collection": collection.name, "split": split,
                                                    "runs": {"first_stage": str(first_stage_path),
                                                             "reranker": str(reranked_path)}})
        console.print(f"metrics: {metrics_path}", highlight=False)
        outputs[f"metrics/{split}"] = metrics_path
    return outputs
