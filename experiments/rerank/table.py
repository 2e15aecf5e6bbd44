"""A reranking run's result table, from a finished run (nothing is trained again): the first stage, the pure
reranker and the reranker interpolated with the first stage, each metric with its paired two-sided t-test against
the first stage (what the end-of-run report computed into `metrics/<split>/metrics.json`).

    python experiments/rerank/table.py RUN [RUN ...] [--split dev] [--metrics ndcg@10 mrr@10] [--out FILE.md]

Each run adds its rows (labelled by the run folder's name when there are several). The interpolation weight and
the split it was chosen on come from `RUN/runs/first_stage_weight.json`; the settings that matter for a CPU budget
from `RUN/config.yaml`; the wall time is from the run's first file (`.hydra/config.yaml`) to its metrics.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from lit_ir.evaluation.report import SIGNIFICANT_MARK
from lit_ir.retrieval.fusion import WEIGHT_FILE
from lit_ir.utils.io import atomic_write

ALPHA = 0.05
LABELS = {"first_stage": "first stage (BM25)", "reranker": "reranker (pure)"}


def settings(config: dict) -> str:
    model, data, trainer = config["model"], config["data"], config["trainer"]
    return (f"{model['pretrained']}, loss {model.get('loss')}, max_length {model['max_length']}, lr "
            f"{model['optimizer']['lr']}, {trainer['max_epochs']} epochs, batch {data['train_batch_size']} x "
            f"(1 + {data['num_negatives']}), positives grade >= {data['positive_level']}, reranking top "
            f"{data['rerank_depth']}")


def rows(run: Path, split: str, metrics: list[str], prefix: str) -> tuple[list[str], str]:
    metrics_path = run / "metrics" / split / "metrics.json"
    if not metrics_path.is_file():
        raise SystemExit(f"{metrics_path}: not found; has {run} finished (and was {split!r} a test split)?")
    result = json.loads(metrics_path.read_text())
    means, p_values = result["metrics"], result["p_values"]
    if missing := [metric for metric in metrics if metric not in means["first_stage"]]:
        raise SystemExit(f"{metrics_path}: no {missing} (collection.metrics)")
    weight_path = run / "runs" / WEIGHT_FILE
    weight = json.loads(weight_path.read_text()) if weight_path.is_file() else None
    lines = []
    for system, by_metric in means.items():
        label = LABELS.get(system, system)
        if system == "interpolated" and weight:
            chosen = f"chosen on {weight['selected_on']}" if weight["selected_on"] else "fixed"
            label = f"interpolated (first-stage weight {weight['weight']:.2f}, {weight['normalization']}, {chosen})"
        cells, p_cells = [], []
        for metric in metrics:
            p = p_values.get(system, {}).get(metric)
            mark = SIGNIFICANT_MARK if p is not None and p < ALPHA else ""
            cells.append(f"{by_metric[metric]:.4f}{mark}")
            p_cells.append("" if system == "first_stage" or p is None else f"{p:.3g}")
        lines.append(f"| {prefix}{label} | " + " | ".join(cells + p_cells) + " |")
    config = yaml.safe_load((run / "config.yaml").read_text())
    started = run / ".hydra" / "config.yaml"
    wall = (f", {(metrics_path.stat().st_mtime - started.stat().st_mtime) / 60:.0f} min wall time"
            if started.is_file() else "")
    note = (f"- {prefix or run.name + ': '}{settings(config)}; {result['meta']['num_queries']} {split} queries{wall}"
            f" ({run})")
    return lines, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders (python -m lit_ir.train)")
    parser.add_argument("--split", default="dev", help="the test split to tabulate")
    parser.add_argument("--metrics", nargs="+", default=["ndcg@10", "mrr@10"])
    parser.add_argument("--title", default=None)
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write (default: print only)")
    args = parser.parse_args()

    header = ["system", *args.metrics, *[f"p ({metric})" for metric in args.metrics]]
    lines = [f"### {args.title or f'Reranking, {args.split}'}", "",
             "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    notes = []
    for run in args.runs:
        prefix = f"{run.name}: " if len(args.runs) > 1 else ""
        run_lines, note = rows(run, args.split, args.metrics, prefix)
        lines += run_lines
        notes.append(note)
    lines += ["", f"{SIGNIFICANT_MARK} p < {ALPHA} vs the first stage, paired two-sided t-test over per-query scores.",
              *notes, ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with atomic_write(args.out) as handle:
            handle.write(text)
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
