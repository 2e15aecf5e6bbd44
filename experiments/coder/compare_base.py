"""CODER against its untrained base model, from finished runs: single-stage dense retrieval (CODER vs base) and
reranking of the first stage (M_F -> CODER vs M_F -> base), each with a paired two-sided t-test over queries.

    python experiments/coder/compare_base.py <run folder> [<run folder> ...] [--split dev] \
        [--metrics ndcg@10 mrr@10] [--out experiments/coder/results/cranfield.md]

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


def candidate_source(config: dict) -> str:
    candidates = config["data"].get("candidates") or config["data"]["first_stage"]
    return "dense base model" if "DenseFirstStage" in candidates["_target_"] else "BM25"


def compare(folder: Path, split: str, metrics: list[str]) -> list[dict]:
    config = yaml.safe_load((folder / "config.yaml").read_text())
    per_query = pd.read_csv(folder / "metrics" / split / "per_query.csv", dtype={"query_id": str})
    by_system = {system: frame.set_index("query_id").sort_index() for system, frame in per_query.groupby("system")}
    rows = [{"M_C": candidate_source(config), "setting": "first stage (M_F)", "system": "first_stage",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--metrics", nargs="+", default=["ndcg@10", "mrr@10"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    table = pd.DataFrame([row for folder in args.runs for row in compare(folder, args.split, args.metrics)])
    table = table.drop_duplicates(subset=["setting", "system", *args.metrics])  # base rows repeat across runs
    text = table.to_markdown(index=False, floatfmt=".4f")
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n\np: paired two-sided t-test of CODER against the base model over the "
                            f"{args.split} queries.\n")


if __name__ == "__main__":
    main()
