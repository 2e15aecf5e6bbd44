"""Evaluate TREC run files against qrels: `python -m lit_ir.evaluate run=... qrels=...` (see conf/evaluate.yaml)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from lit_ir.data.trec import read_qrels, read_run
from lit_ir.errors import InputError
from lit_ir.evaluation import compare_runs, print_table, write_metrics
from lit_ir.utils.hydra import CONFIG_DIR


def run_paths(cfg: DictConfig) -> tuple[dict[str, str], str | None]:
    """System name -> run file from `run`, `runs` and `baseline`; and the baseline's system name."""
    paths = {str(name): str(path) for name, path in (cfg.runs or {}).items()}
    if cfg.run:
        _add_named_by_stem(paths, str(cfg.run))
    baseline = cfg.baseline
    if baseline and baseline not in paths:
        name_of_path = {path: name for name, path in paths.items()}
        if baseline in name_of_path:
            baseline = name_of_path[baseline]
        elif Path(baseline).is_file():
            baseline = _add_named_by_stem(paths, str(baseline))
        else:
            raise InputError(f"baseline {baseline!r} is neither a run name {sorted(paths)} nor a run file")
    if not paths:
        raise InputError("no run to evaluate: give run=path/to/run.trec or runs={name: path, ...}")
    return paths, baseline


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    paths, baseline = run_paths(cfg)
    qrels = read_qrels(cfg.qrels, format=cfg.qrels_format)
    if not qrels:
        raise InputError(f"{cfg.qrels}: the qrels file is empty")
    runs = {name: read_run(path) for name, path in paths.items()}
    for name, run in runs.items():
        if not run:
            raise InputError(f"{paths[name]}: the run file is empty")
    comparison = compare_runs(runs, qrels, list(cfg.metrics), baseline, cfg.relevance_level, cfg.alpha)
    print_table(comparison)
    inputs = {"qrels": _absolute(cfg.qrels), "runs": {name: _absolute(path) for name, path in paths.items()}}
    metrics_path, per_query_path = write_metrics(comparison, cfg.output_dir, extra_meta=inputs)
    print(f"metrics:   {metrics_path}")
    print(f"per query: {per_query_path}")


def _add_named_by_stem(paths: dict[str, str], path: str) -> str:
    name = Path(path).stem
    if paths.get(name, path) != path:
        raise InputError(f"two runs would be named {name!r} ({paths[name]}, {path}); name them with runs={{...}}")
    paths[name] = path
    return name


def _absolute(path: str) -> str:
    return str(Path(path).resolve())


if __name__ == "__main__":
    main()
