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
