#!/usr/bin/env bash
# SIR on real data: Cranfield train -> dev, MiniLM cross-encoders, BM25 top-100 candidates (conf/sir_setup/cranfield.yaml
# says what is shrunk for 2 CPU cores). Runs each experiment into <root>/<experiment>/ (skipping finished ones, so a
# second call resumes the list), then writes the Tables 2-3 shaped comparison with paired t-tests against V0.
#   experiments/sir/run_cranfield.sh [root]        (make sir-cranfield; EXPERIMENTS="sir_v0 sir_v3" to choose)
set -euo pipefail
ROOT=${1:-logs/sir_cranfield}
EXPERIMENTS=${EXPERIMENTS:-"sir_v0 sir_v3 sir_v4 sir_v1 sir_v3_random sir_v1_random"}
PYTHON=${PYTHON:-python}
export HF_HUB_OFFLINE=1
for experiment in $EXPERIMENTS; do
  if [ -f "$ROOT/$experiment/metrics/dev/metrics.json" ]; then
    echo "== $experiment: done already"; continue
  fi
  echo "== $experiment: $(date -u +%H:%M:%S)"
  start=$SECONDS
  "$PYTHON" -m lit_ir.train experiment="$experiment" sir_setup=cranfield hydra.run.dir="$ROOT/$experiment" \
    logger=csv trainer.enable_progress_bar=false trainer.enable_model_summary=false ${SIR_OVERRIDES:-}
  echo "== $experiment: $((SECONDS - start)) s"
done
"$PYTHON" experiments/sir/table.py "$ROOT" --split dev --baseline sir_v0 --metrics mrr@10 ndcg@10 mrr@100
