"""Figure 2 of the CODER paper from finished runs: reranking quality as a function of the number of training
candidates N (and of the other §4.4 settings: loss, random or in-batch negatives).

    python experiments/coder/figure2.py logs/train/multiruns/<time> [more run or sweep folders] \
        [--split dev] [--metric mrr@10] [--out experiments/coder/results]

Each run folder (a `python -m lit_ir.train` output, or every job of a --multirun sweep) gives one row / one curve:
its setting from `config.yaml`, the final reranking metric from `metrics/<split>/metrics.json` (the base model's
reranking of the same first stage, `base_rerank`, is the left-most point, as in the paper), and the validation curve
from `csv/metrics.csv` when the CSV logger ran; p: paired t-test of CODER's reranking against the base model's. Writes `figure2.md` (table), `figure2.csv` and `figure2.png`, and logs the plot and the table to W&B in the
sweep's group when its runs logged to W&B.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from lit_ir.evaluation import paired_t_test  # noqa: E402
from lit_ir.tracking.groups import log_to_group  # noqa: E402


def run_folders(paths: list[Path]) -> list[Path]:
    """Every run under the given folders: a run has a config.yaml and a metrics/ folder."""
    found = []
    for path in paths:
        candidates = [path] if (path / "config.yaml").is_file() else sorted(p.parent for p in path.glob("*/config.yaml"))
        found += [p for p in candidates if (p / "metrics").is_dir()]
    return found


def setting(config: dict) -> str:
    data, model = config["data"], config["model"]
    label = f"N={data['num_candidates']}"
    if data.get("negatives") == "random":
        label += ", random negatives"
    if data.get("in_batch_negatives"):
        label += f", +{data['in_batch_negatives']} in-batch"
    if model.get("loss") != "kl":
        label += f", {model['loss']} loss"
    if "Transformer" in str(model.get("scorer", {}).get("_target_", "")):
        label += ", transformer scorer"
    return label


def p_vs_base(folder: Path, split: str, metric: str) -> float | None:
    """Paired t-test of CODER's reranking against the base model's, over the split's queries."""
    per_query = pd.read_csv(folder / "metrics" / split / "per_query.csv", dtype={"query_id": str})
    systems = {name: frame.set_index("query_id").sort_index()[metric] for name, frame in per_query.groupby("system")}
    if "base_rerank" not in systems:
        return None
    return paired_t_test(systems["reranker"].to_numpy(), systems["base_rerank"].to_numpy())


def collect(folders: list[Path], split: str, metric: str) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    rows, curves = [], {}
    for folder in folders:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        metrics = json.loads((folder / "metrics" / split / "metrics.json").read_text())
        label = setting(config)
        systems = metrics["metrics"]
        rows.append({"setting": label, "num_candidates": config["data"]["num_candidates"],
                     f"base {metric}": systems.get("base_rerank", {}).get(metric),
                     f"CODER rerank {metric}": systems["reranker"][metric],
                     "p vs base": p_vs_base(folder, split, metric),
                     f"CODER dense {metric}": systems.get("dense", {}).get(metric),
                     "run": str(folder)})
        log = folder / "csv" / "metrics.csv"
        if log.is_file():
            logged = pd.read_csv(log)
            column = f"val/{metric}"
            if column in logged:
                curve = logged.dropna(subset=[column]).set_index("step")[column]
                base = systems.get("base_rerank", {}).get(metric)
                if base is not None:  # the left-most point: the base model before any CODER step
                    curve = pd.concat([pd.Series({0: base}), curve])
                curves[label] = curve
    table = pd.DataFrame(rows).sort_values(["num_candidates", "setting"]).reset_index(drop=True)
    return table, curves


def plot(table: pd.DataFrame, curves: dict[str, pd.Series], metric: str, split: str, path: Path) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 8))
    for label, curve in curves.items():
        top.plot(curve.index, curve.values, marker="o", label=label)
    top.set(xlabel="training step", ylabel=f"validation {metric}", title="CODER reranking during training")
    if curves:
        top.legend(fontsize=8)
    plain = table[~table["setting"].str.contains(",")]
    bottom.plot(plain["num_candidates"], plain[f"CODER rerank {metric}"], marker="o", label="CODER")
    if plain[f"base {metric}"].notna().any():
        bottom.axhline(plain[f"base {metric}"].dropna().iloc[0], color="grey", linestyle="--", label="base model")
    bottom.set(xscale="log", xlabel="training candidates per query (N)", ylabel=f"{split} {metric}",
               title="final reranking quality vs number of candidates")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders or --multirun sweep folders")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--metric", default="mrr@10")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    folders = run_folders(args.runs)
    if not folders:
        raise SystemExit(f"no finished runs (config.yaml + metrics/) under {[str(p) for p in args.runs]}")
    table, curves = collect(folders, args.split, args.metric)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "figure2.csv", index=False)
    (args.out / "figure2.md").write_text(table.drop(columns="run").to_markdown(index=False, floatfmt=".4f") + "\n")
    plot(table, curves, args.metric, args.split, args.out / "figure2.png")
    print(table.drop(columns="run").to_string(index=False))
    print(f"wrote {args.out / 'figure2.md'}, {args.out / 'figure2.png'}")
    # to W&B, in the sweep's group (when its runs logged to W&B), written under the first sweep folder
    logged = log_to_group(yaml.safe_load((folders[0] / "config.yaml").read_text()), "figure2", args.runs[0],
                          images={"figure2": args.out / "figure2.png"}, tables={"figure2": table})
    if logged:
        print(f"W&B: {logged}")


if __name__ == "__main__":
    main()
