#!/usr/bin/env bash
# SIR on real data: one sir_setup (cranfield | scifact: MiniLM cross-encoders, BM25 top-100 candidates; the setup's
# config says what is shrunk for 2 CPU cores). Runs each experiment into <root>/<experiment>/ (skipping finished
# ones, so a second call resumes the list), then writes the Tables 2-3 shaped comparison with paired t-tests vs V0.
#   experiments/sir/run.sh <setup> [root]    (make sir-cranfield, make sir-scifact; EXPERIMENTS="sir_v0 sir_v3" to
#   choose; SIR_OVERRIDES="collection.source.path=<BEIR folder> collection.test_splits=[test]" SIR_SPLIT=test to
#   evaluate on other splits of the same layout)
set -euo pipefail
SETUP=${1:?usage: experiments/sir/run.sh <sir_setup> [root]}
ROOT=${2:-logs/sir/$SETUP}
EXPERIMENTS=${EXPERIMENTS:-"sir_v0 sir_v3 sir_v4 sir_v1 sir_v3_random sir_v1_random"}
SPLIT=${SIR_SPLIT:-dev}
PYTHON=${PYTHON:-python}
export HF_HUB_OFFLINE=1
for experiment in $EXPERIMENTS; do
  if [ -f "$ROOT/$experiment/metrics/$SPLIT/metrics.json" ]; then
    echo "== $experiment: done already"; continue
  fi
  echo "== $experiment: $(date -u +%H:%M:%S)"
  start=$SECONDS
  # shellcheck disable=SC2086  # SIR_OVERRIDES is a list of overrides
  "$PYTHON" -m lit_ir.train experiment="$experiment" sir_setup="$SETUP" hydra.run.dir="$ROOT/$experiment" \
    logger=csv trainer.enable_progress_bar=false trainer.enable_model_summary=false ${SIR_OVERRIDES:-}
  echo "== $experiment: $((SECONDS - start)) s"
done
"$PYTHON" experiments/sir/table.py "$ROOT" --split "$SPLIT" --baseline sir_v0 --metrics mrr@10 ndcg@10 mrr@100 \
  ${SIR_TABLE_OUT:+--out "$SIR_TABLE_OUT"}
