"""The end-of-run report: for each test split, every run the module wrote against the first-stage run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console

from lit_ir.data.trec import read_run, write_run
from lit_ir.evaluation import Comparison, collection_qrels, compare_runs, print_table, split_protocol, write_metrics

# a module writes `<split>.<name>.trec` into model.run_dir; the report calls `rerank` "reranker", others by name
SYSTEM_NAMES = {"rerank": "reranker"}


def module_runs(run_dir: Path, split: str) -> dict[str, Path]:
    """The runs a module wrote for `split` (system name -> path): the reranked run first, then by name."""
    found = {}
    for path in sorted(run_dir.glob(f"{split}.*.trec")):
        name = path.name[len(split) + 1 : -len(".trec")]
        if name != "first_stage" and "." not in name:  # a dotted name belongs to another split ("dev.x.rerank")
            found[SYSTEM_NAMES.get(name, name)] = path
    return dict(sorted(found.items(), key=lambda item: (item[0] != "reranker", item[0])))


# a sink receives each split's comparison and its files {"metrics": path, "per_query": path, "runs": {system: path}}
ReportSink = Callable[[str, Comparison, dict], None]


def report_test_splits(cfg: DictConfig, datamodule, output_dir: Path, sinks: Sequence[ReportSink] = ()
                       ) -> dict[str, Path]:
    """Write metrics/<split>/metrics.json (system -> metric -> value) and per_query.csv; print a table per split;
    hand each split's comparison to every sink (e.g. `WandbLogger.log_report`)."""
    if not cfg.model.get("run_dir"):  # a module that writes no ranking (e.g. coarse-tuning) has nothing to compare
        return {}
    console = Console()
    run_dir = Path(cfg.model.run_dir)
    collection = datamodule.collection
    outputs = {}
    for split in datamodule.test_splits:
        written = module_runs(run_dir, split)
        if not written:
            continue
        first_stage = datamodule.first_stage_run(split)
        first_stage_path = write_run(first_stage, run_dir / f"{split}.first_stage.trec", tag="first_stage")
        paths = {"first_stage": first_stage_path, **written}
        runs = {system: read_run(path) for system, path in paths.items()}
        protocol = split_protocol(cfg.collection, split)
        comparison = compare_runs(runs, collection_qrels(collection, split), protocol.metrics,
                                  baseline=cfg.report_baseline, relevance_level=protocol.relevance_level)
        console.rule(f"{collection.name} / {split}")
        print_table(comparison, console)
        if protocol.readings:
            console.print(f"readings: {protocol.describe()}", highlight=False)
        metrics_path, per_query_path = write_metrics(comparison, output_dir / "metrics" / split,
                                        extra_meta={"collection": collection.name, "split": split,
                                                    "readings": protocol.readings,
                                                    "runs": {system: str(path) for system, path in paths.items()}})
        console.print(f"metrics: {metrics_path}", highlight=False)
        for sink in sinks:
            sink(split, comparison, {"metrics": metrics_path, "per_query": per_query_path, "runs": paths})
        outputs[f"metrics/{split}"] = metrics_path
    return outputs
