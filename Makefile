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

## SIR (Self-Involvement Ranker) V0-V4: experiments (toy by default; SIR_SETUP=cranfield | msmarco_document),
## the Cranfield comparison with paired t-tests vs V0, the Tables 2-3 shaped summary, and the step benchmark
SIR_SETUP ?= toy
SIR_EXPERIMENTS := sir_v0 sir_v1 sir_v1_random sir_v2 sir_v2_random sir_v3 sir_v3_random sir_v3_4levels \
	sir_v3_random_4levels sir_v4 sir_v4_random sir_v4_4levels sir_v4_random_4levels
SIR_RUNS ?= logs/sir/$(SIR_SETUP)
.PHONY: sir-all sir-table sir-cranfield bench-sir bench-sir-paper $(subst _,-,$(SIR_EXPERIMENTS))
# make sir-v3, sir-v4-random-4levels, ...: one experiment into $(SIR_RUNS)/<experiment>
$(subst _,-,$(SIR_EXPERIMENTS)): install
	HF_HUB_OFFLINE=1 $(BIN)/python -m lit_ir.train experiment=$(subst -,_,$@) sir_setup=$(SIR_SETUP) \
		hydra.run.dir=$(SIR_RUNS)/$(subst -,_,$@)

sir-all: $(subst _,-,$(SIR_EXPERIMENTS))

# the paper's Tables 2-3 from the finished runs under $(SIR_RUNS) (SIR_SPLIT: the test split to tabulate)
SIR_SPLIT ?= test
sir-table: install
	$(BIN)/python experiments/sir/table.py $(SIR_RUNS) --split $(SIR_SPLIT)

# real data: V0 vs V1/V3/V4 Top and Random on Cranfield dev (MiniLM, BM25 top 100), MRR@10 / nDCG@10 with t-tests
sir-cranfield: install-bench
	PYTHON=$(BIN)/python experiments/sir/run_cranfield.sh logs/sir/cranfield

bench-sir: install
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_sir.py

# the paper's block: 88 -> 48 -> 16, 512 tokens, 4 blocks per step, checkpointed chunks (meant for a GPU)
bench-sir-paper: install
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_sir.py --models minilm --levels 88 48 16 --max-length 512 \
		--chunk-size 22 --checkpointing on --steps 1
