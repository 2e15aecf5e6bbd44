"""CODER against its untrained base model, from finished runs: single-stage dense retrieval (CODER vs base) and
reranking of the first stage (M_F -> CODER vs M_F -> base), each with a paired two-sided t-test over queries.

    python experiments/coder/compare_base.py <run folder> [<run folder> ...] [--split dev] \
        [--metrics ndcg@10 mrr@10] [--out experiments/coder/results/cranfield.md]

Without --split, every test split of the runs (their config's collection.test_splits) gets a table of its own.

Reads `<run>/metrics/<split>/per_query.csv`, which the end-of-run report writes for every system the CODER module
wrote (first_stage, reranker, dense, base_rerank, base_dense). The training-candidate source (M_C) of each run is
read from its config.yaml.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import yaml

from lit_ir.evaluation import paired_t_test

PAIRS = [("dense", "base_dense", "single-stage"), ("reranker", "base_rerank", "reranking the first stage")]


def source_name(component: dict) -> str:
    """What a first-stage component of the config retrieves with."""
    target = component["_target_"]
    return "dense base model" if "DenseFirstStage" in target else "run files" if "RunFiles" in target else "BM25"


def candidate_source(config: dict) -> str:
    """M_C: where the training candidates come from (the first stage unless data.candidates says otherwise)."""
    return source_name(config["data"].get("candidates") or config["data"]["first_stage"])


def compare(folder: Path, split: str, metrics: list[str]) -> list[dict]:
    config = yaml.safe_load((folder / "config.yaml").read_text())
    per_query = pd.read_csv(folder / "metrics" / split / "per_query.csv", dtype={"query_id": str})
    by_system = {system: frame.set_index("query_id").sort_index() for system, frame in per_query.groupby("system")}
    first_stage = f"first stage (M_F = {source_name(config['data']['first_stage'])})"
    rows = [{"M_C": "-", "setting": first_stage, "system": "first_stage",
             **{m: by_system["first_stage"][m].mean() for m in metrics}}]
    for system, base, setting in PAIRS:
        if system not in by_system or base not in by_system:
            continue
        row_base = {"M_C": "-", "setting": setting, "system": f"{base} (base model)"}
        row = {"M_C": candidate_source(config), "setting": setting, "system": f"{system} (CODER)"}
        for m in metrics:
            row_base[m] = by_system[base][m].mean()
            row[m] = by_system[system][m].mean()
            row[f"p {m}"] = paired_t_test(by_system[system][m].to_numpy(), by_system[base][m].to_numpy())
        rows += [row_base, row]
    return rows


def test_splits(folders: list[Path]) -> list[str]:
    """The test splits of the runs, in order (each run's config.yaml: collection.test_splits)."""
    splits: list[str] = []
    for folder in folders:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        splits += [split for split in config["collection"]["test_splits"] if split not in splits]
    return splits


def table(folders: list[Path], split: str, metrics: list[str]) -> str:
    frame = pd.DataFrame([row for folder in folders for row in compare(folder, split, metrics)])
    frame = frame.drop_duplicates(subset=["setting", "system", *metrics])  # base rows repeat across runs
    num_queries = len(pd.read_csv(folders[0] / "metrics" / split / "per_query.csv", usecols=["query_id"])
                      ["query_id"].unique())
    for column in metrics:
        frame[column] = frame[column].map(lambda value: f"{value:.4f}")
    for column in (c for c in frame.columns if c.startswith("p ")):  # small p-values stay readable: 1.3e-06
        frame[column] = frame[column].map(lambda p: "" if pd.isna(p) else f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}")
    return (frame.to_markdown(index=False, disable_numparse=True) + f"\n\np: paired two-sided t-test of CODER against the "
            f"base model over the {num_queries} {split} queries.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--split", default=None, help="the test split to compare on (default: every one)")
    parser.add_argument("--metrics", nargs="+", default=["ndcg@10", "mrr@10"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    splits = [args.split] if args.split else test_splits(args.runs)
    tables = {split: table(args.runs, split, args.metrics) for split in splits}
    text = tables[splits[0]] if len(splits) == 1 else "\n".join(f"## {s}\n\n{t}" for s, t in tables.items())
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
