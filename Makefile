# lit_ir: `make quickstart` and `make test` do all the set-up on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU machines: the local CPU wheel (plain `torch` would pull several GB of CUDA packages).
# GPU machines: make TORCH=torch  (or any torch spec you need).
TORCH ?= torch==2.13.0
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install install-bench quickstart test test-slow bench bench-evaluation bench-bm25 bench-cross-encoder bench-cranfield clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install "$(TORCH)"
	$(PIP) install -e '.[test]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PIP) install -e '.[test,bench]'
	touch $@

install: $(VENV)/.installed
install-bench: $(VENV)/.installed-bench

## the main job: BM25 + a tiny cross-encoder trained from scratch on the built-in toy collection (offline, CPU)
quickstart: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m lit_ir.train experiment=quickstart

## the test suite (slow tests excluded; `make test-slow` runs them)
test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-slow: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

## benchmarks print figures; they are not tests
bench: bench-evaluation bench-bm25 bench-cross-encoder bench-cranfield

bench-evaluation: install-bench
	$(BIN)/python benchmarks/bench_evaluation.py

bench-bm25: install-bench
	$(BIN)/python benchmarks/bench_bm25.py

bench-cross-encoder: install
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_cross_encoder.py

## real data: BM25 vs a MiniLM cross-encoder trained on Cranfield train, evaluated on dev
bench-cranfield: install-bench
	HF_HUB_OFFLINE=1 $(BIN)/python -m lit_ir.train experiment=monobert_cranfield

## dense retrieval (CODER's infrastructure)
.PHONY: bench-dense
# document encoding docs/s (MiniLM, a tiny random BERT) and FAISS flat/IVF/HNSW queries/s + recall on 100k x 384
bench-dense: install-bench
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_dense.py

clean:
	rm -rf logs .cache .pytest_cache

## CODER (lit_ir.modules.coder): listwise training of a bi-encoder's query encoder against frozen document embeddings
.PHONY: coder-cranfield coder-figure2 coder-ablations coder-tasb coder-repbert coder-tripclick bench-coder
CODER_RUNS ?= logs/coder
# real data, offline (~15 min on 2 CPU cores): MiniLM base, training candidates from BM25 and from MiniLM itself;
# CODER vs MiniLM on Cranfield dev, single-stage and reranking BM25, with paired t-tests
coder-cranfield: install-bench
	HF_HUB_OFFLINE=1 $(BIN)/python -m lit_ir.train experiment=coder_cranfield hydra.run.dir=$(CODER_RUNS)/cranfield-bm25
	HF_HUB_OFFLINE=1 $(BIN)/python -m lit_ir.train experiment=coder_cranfield 'data.candidates=$${data.embeddings}' \
		hydra.run.dir=$(CODER_RUNS)/cranfield-minilm
	$(BIN)/python experiments/coder/compare_base.py $(CODER_RUNS)/cranfield-bm25 $(CODER_RUNS)/cranfield-minilm \
		--out experiments/coder/results/cranfield.md
# Figure 2's shape: a --multirun sweep over the number of training candidates N, then table + plot
CODER_NS ?= 10,30,100,300,1000
# epochs per sweep job: 5 for the committed figure and ablations (15 = the experiment's default)
CODER_SWEEP_EPOCHS ?= 5
coder-figure2: install-bench
	HF_HUB_OFFLINE=1 $(BIN)/python -m lit_ir.train --multirun experiment=coder_cranfield data.num_candidates=$(CODER_NS) trainer.max_epochs=$(CODER_SWEEP_EPOCHS) \
		trainer.val_check_interval=15 hydra.sweep.dir=$(CODER_RUNS)/figure2
	$(BIN)/python experiments/coder/figure2.py $(CODER_RUNS)/figure2 --out experiments/coder/results
# the §4.4 ablations (and A.3's transformer scorer) next to the default (N = 300, job 3 of coder-figure2), one sweep
coder-ablations: install-bench
	HF_HUB_OFFLINE=1 $(BIN)/python -m lit_ir.train --multirun experiment=coder_cranfield \
		'+coder_ablation=max_margin,random_negatives,in_batch,transformer_scorer' trainer.max_epochs=$(CODER_SWEEP_EPOCHS) \
		trainer.val_check_interval=15 hydra.sweep.dir=$(CODER_RUNS)/ablations
	$(BIN)/python experiments/coder/figure2.py $(CODER_RUNS)/ablations $(CODER_RUNS)/figure2/3 \
		--out experiments/coder/results/ablations
# the paper's settings: need a GPU and the collections locally (they fail at once, saying what is missing, otherwise)
coder-tasb: install
	$(BIN)/python -m lit_ir.train experiment=coder_tasb trainer=gpu
coder-repbert: install
	$(BIN)/python -m lit_ir.train experiment=coder_repbert trainer=gpu encoder.path=$(REPBERT)
coder-tripclick: install
	$(BIN)/python -m lit_ir.train experiment=coder_tripclick trainer=gpu encoder.path=$(BERT_DOT)
	$(BIN)/python -m lit_ir.train experiment=coder_tripclick_raw trainer=gpu encoder.path=$(BERT_DOT)
# training queries/s (data vs compute), reranking ms/query for 1,000 candidates, peak memory; GPU when there is one
bench-coder: install-bench
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_coder.py
