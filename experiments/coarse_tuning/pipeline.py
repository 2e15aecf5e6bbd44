"""Chain the coarse-tuning paper's stages and write its tables (see lit_ir.pipelines.coarse_tuning).

  # fine-tune only vs coarse-tune + fine-tune (+ MLM-only / QDPP-only ablations), 5-fold CV on Cranfield
  python experiments/coarse_tuning/pipeline.py compare --target cranfield --pretrained bert-tiny-mlm \
      --out logs/coarse_tuning/cranfield-bert-tiny
  # the paper's setting: ORCAS coarse-tuning, then Robust04 / TREC-COVID / TREC DL (needs those collections)
  python experiments/coarse_tuning/pipeline.py compare --target robust04 --pretrained prajjwal1/bert-tiny \
      --coarse-root logs/coarse_tuning/orcas-coarse
  # sweeps: a table (sweep.csv/.md) and a plot (sweep.png)
  python experiments/coarse_tuning/pipeline.py sweep --param sample_rate --values 0.25,0.5,1.0 --target cranfield

Overrides for one stage only: --coarse trainer.max_epochs=2 --finetune model.max_length=128 (repeatable).
Finished stages are skipped when a command is run again with the same --out.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lit_ir.pipelines.coarse_tuning import SYSTEMS, TARGETS, run_comparison, run_sweep, write_tables  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["compare", "sweep"])
    parser.add_argument("--target", choices=sorted(TARGETS), default="cranfield")
    parser.add_argument("--pretrained", default="bert-tiny-mlm", help="the pre-trained model both pipelines start from")
    parser.add_argument("--out", type=Path, help="output folder (default logs/coarse_tuning/<target>-<command>)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"compare: a subset of {list(SYSTEMS)}")
    parser.add_argument("--folds", default=None, help="CV rotations to run, e.g. 1,2,3 (default: all)")
    parser.add_argument("--param", choices=["sample_rate", "epochs"], help="sweep: the coarse-tuning parameter")
    parser.add_argument("--values", default="", help="sweep: comma-separated values")
    parser.add_argument("--coarse", action="append", default=[], help="override for the coarse-tuning stage")
    parser.add_argument("--finetune", action="append", default=[], help="override for the fine-tuning stage")
    parser.add_argument("--coarse-root", type=Path, help="compare: where the coarse stages go (default <out>/coarse); "
                        "share one to coarse-tune on ORCAS once for several targets")
    parser.add_argument("--table", type=Path, help="compare: also write the results tables (markdown, paired t-tests) "
                        "here, one section per test group, with the command that made them")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    out = args.out or Path("logs/coarse_tuning") / f"{args.target}-{args.command}"
    folds = [int(fold) for fold in args.folds.split(",")] if args.folds else None
    if args.command == "compare":
        comparisons = run_comparison(args.target, out, args.pretrained, args.systems.split(","), args.coarse,
                                     args.finetune, folds, args.coarse_root)
        if args.table:
            write_tables(comparisons, args.table, command=" ".join(["python", *sys.argv]))
    else:
        if not args.param or not args.values:
            parser.error("sweep needs --param and --values")
        run_sweep(args.target, args.param, args.values.split(","), out, args.pretrained, args.coarse, args.finetune,
                  folds)


if __name__ == "__main__":
    main()
