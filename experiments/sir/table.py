"""SIR results shaped like the paper's Tables 2-3, from finished runs (nothing is trained again).

    python experiments/sir/table.py RUNS_ROOT [--split dev] [--metrics mrr@100 mrr@10] [--baseline RUN] [--out DIR]

Every folder under RUNS_ROOT holding `metrics/<split>/metrics.json` (what `python -m lit_ir.train` writes) is a run;
its `config.yaml` says which SIR variant it is (model.strategy, model.selection, model.levels). Rows are labelled as
the paper does ("V3 Top 16": strategy, selection, samples per block at the last level). Each metric is the reranker's
mean on the split; † marks p < 0.05 in a paired two-sided t-test over per-query scores against the baseline (the V0
run unless --baseline names a run folder), and the p-values are printed beside. The first stage's row comes from
the baseline run. Writes table2.md (V1/V2 Random, V3/V4 Top, 3 levels, as Table 2) and table3.md (every variant).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from lit_ir.evaluation import paired_t_test
from lit_ir.evaluation.report import SIGNIFICANT_MARK
from lit_ir.utils.io import atomic_write

ALPHA = 0.05


@dataclass
class Result:
    name: str  # the run folder, relative to the root
    strategy: str
    selection: str  # Top | Random | mixed
    levels: list[int]
    means: dict[str, float]
    first_stage: dict[str, float]
    per_query: pd.DataFrame  # query_id -> metric (the reranker)

    @property
    def label(self) -> str:
        if self.strategy == "v0":
            return f"V0 random negatives ({self.levels[-1]})"
        return f"{self.strategy.upper()} {self.selection} {self.levels[-1]}"

    @property
    def order(self) -> tuple:
        # the paper's Table 3 order: by strategy, Random before Top for V1/V2, Top first for V3/V4, 3 levels first
        selection_rank = {"Random": 0, "Top": 1, "mixed": 2} if self.strategy in ("v1", "v2") else \
            {"Top": 0, "Random": 1, "mixed": 2}
        return self.strategy, len(self.levels), selection_rank[self.selection], self.name


def selection_label(selection) -> str:
    modes = {selection} if isinstance(selection, str) else set(selection)
    return {frozenset({"top"}): "Top", frozenset({"random"}): "Random"}.get(frozenset(modes), "mixed")


def load_results(root: Path, split: str) -> list[Result]:
    results = []
    for metrics_path in sorted(root.glob(f"**/metrics/{split}/metrics.json")):
        run_dir = metrics_path.parents[2]
        config_path = run_dir / "config.yaml"
        if not config_path.is_file():
            raise SystemExit(f"{run_dir}: no config.yaml beside the metrics; is it a lit_ir run folder?")
        model = yaml.safe_load(config_path.read_text())["model"]
        if "strategy" not in model:
            continue  # not a SIR run
        metrics = json.loads(metrics_path.read_text())["metrics"]
        frame = pd.read_csv(metrics_path.parent / "per_query.csv", dtype={"query_id": str})
        per_query = frame[frame["system"] == "reranker"].set_index("query_id").drop(columns="system")
        results.append(Result(str(run_dir.relative_to(root)), model["strategy"], selection_label(model["selection"]),
                              list(model["levels"]), metrics["reranker"], metrics.get("first_stage", {}), per_query))
    return sorted(results, key=lambda result: result.order)


def pick_baseline(results: list[Result], name: str | None) -> Result:
    candidates = [r for r in results if r.name == name] if name else [r for r in results if r.strategy == "v0"]
    if len(candidates) != 1:
        found = [r.name for r in candidates] or "none"
        raise SystemExit(f"need exactly one baseline run ({'--baseline ' + name if name else 'strategy v0'}): {found}")
    return candidates[0]


def p_value(result: Result, baseline: Result, metric: str) -> float:
    joined = result.per_query[[metric]].merge(baseline.per_query[[metric]], left_index=True, right_index=True,
                                              suffixes=("", "_baseline"))
    if len(joined) != len(baseline.per_query) or len(joined) != len(result.per_query):
        raise SystemExit(f"{result.name} and {baseline.name} were evaluated on different queries")
    return paired_t_test(joined[metric].to_numpy(), joined[f"{metric}_baseline"].to_numpy())


def markdown(results: list[Result], baseline: Result, metrics: list[str], title: str) -> str:
    header = ["model", *metrics, *[f"p ({metric})" for metric in metrics], "run"]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    if baseline.first_stage:
        lines.append("| first stage | " + " | ".join(f"{baseline.first_stage[m]:.4f}" for m in metrics)
                     + " |" + " |" * len(metrics) + f" {baseline.name} |")
    for result in results:
        cells, p_cells = [], []
        for metric in metrics:
            p = p_value(result, baseline, metric) if result is not baseline else None
            mark = SIGNIFICANT_MARK if p is not None and p < ALPHA else ""
            cells.append(f"{result.means[metric]:.4f}{mark}")
            p_cells.append("" if p is None else f"{p:.3f}")
        lines.append(f"| {result.label} | " + " | ".join(cells + p_cells) + f" | {result.name} |")
    queries = len(baseline.per_query)
    lines += ["", f"{queries} queries; {SIGNIFICANT_MARK} p < {ALPHA} vs {baseline.label} ({baseline.name}), paired "
                  "two-sided t-test over per-query scores.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="folder of finished runs (searched recursively)")
    parser.add_argument("--split", default="dev", help="the test split whose metrics to tabulate")
    parser.add_argument("--metrics", nargs="+", default=["mrr@100", "mrr@10"], help="as the paper: MRR@100, MRR@10")
    parser.add_argument("--baseline", default=None, help="run folder of the baseline (default: the V0 run)")
    parser.add_argument("--out", type=Path, default=None, help="where table2.md/table3.md go (default: root)")
    args = parser.parse_args()

    results = load_results(args.root, args.split)
    if not results:
        raise SystemExit(f"no SIR run with metrics/{args.split}/metrics.json under {args.root}")
    if missing := sorted({m for r in results for m in args.metrics if m not in r.means}):
        raise SystemExit(f"metrics {missing} are not in every run's metrics.json (collection.metrics)")
    baseline = pick_baseline(results, args.baseline)
    # Table 2 reports V1/V2 with Random selection and V3/V4 with Top, 3 levels
    table2_selection = {"v1": "Random", "v2": "Random", "v3": "Top", "v4": "Top"}
    table2 = [r for r in results
              if r.strategy == "v0" or (len(r.levels) == 3 and r.selection == table2_selection[r.strategy])]
    out = args.out or args.root
    for name, rows, title in [("table2.md", table2, f"Table 2 shape: V1/V2 Random, V3/V4 Top ({args.split})"),
                              ("table3.md", results, f"Table 3 shape: every variant ({args.split})")]:
        text = markdown(rows, baseline, args.metrics, title)
        with atomic_write(out / name) as handle:
            handle.write(text)
        print(text)
        print(f"written: {out / name}\n")


if __name__ == "__main__":
    main()
