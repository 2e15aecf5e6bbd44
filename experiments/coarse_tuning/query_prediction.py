"""Query prediction before vs after coarse-tuning (the paper's analysis of learned query representations).

  python experiments/coarse_tuning/query_prediction.py --coarse-run logs/coarse_tuning/.../coarse/coarse

Reads the coarse run's config.yaml to rebuild its click sample, takes its held-out clicks (queries never seen in
coarse-tuning), and compares the pre-trained model (the run's model.pretrained) with the coarse-tuned export
(<run>/model), plus any `--model NAME=FOLDER`: mean per-token log-likelihood of the real queries given their
clicked document (higher = more query-like), pseudo-perplexity, recall@1/@k of the real query's tokens in the
predicted query, and printed examples. Writes query_prediction.json and .md into the run folder (or --out).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from lit_ir.analysis.query_prediction import QueryPredictor, analyse_query_prediction  # noqa: E402
from lit_ir.models.hub import RANDOM_BERT, resolve_model  # noqa: E402
from lit_ir.utils.io import atomic_write, write_json  # noqa: E402


def markdown(result: dict) -> str:
    summary = result["summary"]
    columns = [column for column in next(iter(summary.values())) if column not in ("queries", "query_tokens")]
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(f"{values[column]:.4f}" for column in columns) + " |"
              for name, values in summary.items()]
    first = next(iter(summary.values()))
    lines += ["", f"{first['queries']} held-out clicked queries ({first['query_tokens']} query tokens).", ""]
    for example in result["examples"]:
        lines += [f"- document {example['doc_id']}: {example['doc']!r}", f"  - real query: {example['query']!r}"]
        lines += [f"  - {name}: {predicted!r}" for name, predicted in example["predicted"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coarse-run", type=Path, required=True, help="a finished coarse-tuning run folder")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER", help="another model to compare")
    parser.add_argument("--num-clicks", type=int, default=300, help="held-out clicks to score")
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, help="output folder (default: the coarse run)")
    args = parser.parse_args()

    cfg = OmegaConf.load(args.coarse_run / "config.yaml")
    datamodule = instantiate(cfg.data, _convert_="all")
    clicks = datamodule.held_out_clicks()[: args.num_clicks]
    lengths = {"max_query_length": cfg.model.max_query_length, "max_length": cfg.model.max_length}
    # a random-bert start was built with a vocabulary learned from the run's texts: rebuild the same one
    vocab = datamodule.sample_texts() if RANDOM_BERT.match(cfg.model.pretrained) else None
    folders = {"pre-trained": resolve_model(cfg.model.pretrained, cache_dir=cfg.model.cache_dir, vocab_texts=vocab),
               "coarse-tuned": args.coarse_run / "model", **dict(item.split("=", 1) for item in args.model)}
    predictors = {name: QueryPredictor.from_pretrained(folder, **lengths) for name, folder in folders.items()}
    result = analyse_query_prediction(predictors, clicks, datamodule.collection.docs(), args.k, args.examples)
    out = args.out or args.coarse_run
    write_json(result, out / "query_prediction.json")
    text = markdown(result)
    with atomic_write(out / "query_prediction.md") as handle:
        handle.write(text)
    print(text)
    print(f"wrote {out / 'query_prediction.md'}")


if __name__ == "__main__":
    main()
