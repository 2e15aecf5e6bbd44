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

## real data: BM25 top 100 -> a MiniLM cross-encoder, pure and interpolated with BM25 (weight chosen on train_val),
## paired t-tests vs BM25: the table goes to experiments/rerank/. Another folder of the same layout:
## make monobert-scifact RERANK_OVERRIDES="collection.source.path=<BEIR folder> collection.test_splits=[test]" RERANK_SPLIT=test
RERANK_RUNS ?= logs/rerank
RERANK_SPLIT ?= dev
RERANK_OVERRIDES ?=
RERANK := HF_HUB_OFFLINE=1 $(BIN)/python -m lit_ir.train logger=csv trainer.enable_progress_bar=false
.PHONY: monobert-scifact
bench-cranfield: install-bench
	$(RERANK) experiment=monobert_cranfield hydra.run.dir=$(RERANK_RUNS)/cranfield $(RERANK_OVERRIDES)
	$(BIN)/python experiments/rerank/table.py $(RERANK_RUNS)/cranfield --split $(RERANK_SPLIT) \
		--title "Cranfield $(RERANK_SPLIT): BM25 -> MiniLM cross-encoder" --out experiments/rerank/results_cranfield_$(RERANK_SPLIT).md

monobert-scifact: install-bench
	$(RERANK) experiment=monobert_scifact hydra.run.dir=$(RERANK_RUNS)/scifact $(RERANK_OVERRIDES)
	$(BIN)/python experiments/rerank/table.py $(RERANK_RUNS)/scifact --split $(RERANK_SPLIT) \
		--title "SciFact $(RERANK_SPLIT): BM25 -> MiniLM cross-encoder" --out experiments/rerank/results_scifact_$(RERANK_SPLIT).md

## dense retrieval (CODER's infrastructure)
.PHONY: bench-dense
# document encoding docs/s (MiniLM, a tiny random BERT) and FAISS flat/IVF/HNSW queries/s + recall on 100k x 384
bench-dense: install-bench
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_dense.py

clean:
	rm -rf logs .cache .pytest_cache

## SIR (Self-Involvement Ranker) V0-V4: experiments (toy by default; SIR_SETUP=cranfield | scifact | msmarco_document),
## the Cranfield comparison with paired t-tests vs V0, the Tables 2-3 shaped summary, and the step benchmark
SIR_SETUP ?= toy
SIR_EXPERIMENTS := sir_v0 sir_v1 sir_v1_random sir_v2 sir_v2_random sir_v3 sir_v3_random sir_v3_4levels \
	sir_v3_random_4levels sir_v4 sir_v4_random sir_v4_4levels sir_v4_random_4levels
SIR_RUNS ?= logs/sir/$(SIR_SETUP)
# more overrides, e.g. the paper's HDCT top 100: SIR_ARGS='first_stage@data.first_stage=run_files data.first_stage.folder=/runs/hdct'
SIR_ARGS ?=
.PHONY: sir-all sir-table sir-cranfield sir-scifact bench-sir bench-sir-paper $(subst _,-,$(SIR_EXPERIMENTS))
# make sir-v3, sir-v4-random-4levels, ...: one experiment into $(SIR_RUNS)/<experiment>
$(subst _,-,$(SIR_EXPERIMENTS)): install
	HF_HUB_OFFLINE=1 $(BIN)/python -m lit_ir.train experiment=$(subst -,_,$@) sir_setup=$(SIR_SETUP) \
		hydra.run.dir=$(SIR_RUNS)/$(subst -,_,$@) $(SIR_ARGS)

sir-all: $(subst _,-,$(SIR_EXPERIMENTS))

# the paper's Tables 2-3 from the finished runs under $(SIR_RUNS) (SIR_SPLIT: the test split to tabulate)
SIR_SPLIT ?= test
sir-table: install
	$(BIN)/python experiments/sir/table.py $(SIR_RUNS) --split $(SIR_SPLIT)

# real data: V0 vs V1/V3/V4 Top and Random on Cranfield dev (MiniLM, BM25 top 100), MRR@10 / nDCG@10 with t-tests;
# tables (Tables 2-3 shaped) into experiments/sir/<setup>/. SIR_OVERRIDES / SIR_SPLIT: another folder or split
sir-cranfield: install-bench
	SIR_TABLE_OUT=experiments/sir/cranfield PYTHON=$(BIN)/python experiments/sir/run.sh cranfield logs/sir/cranfield
# V0 vs V1/V3/V4 (Top) on SciFact dev, the same budget each (conf/sir_setup/scifact.yaml)
sir-scifact: install-bench
	EXPERIMENTS="sir_v0 sir_v1 sir_v3 sir_v4" SIR_TABLE_OUT=experiments/sir/scifact PYTHON=$(BIN)/python \
		experiments/sir/run.sh scifact logs/sir/scifact

bench-sir: install
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_sir.py

# the paper's block: 88 -> 48 -> 16, 512 tokens, 4 blocks per step, checkpointed chunks (meant for a GPU)
bench-sir-paper: install
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_sir.py --models minilm --levels 88 48 16 --max-length 512 \
		--chunk-size 22 --checkpointing on --steps 1

## coarse-tuning: MLM + Query-Document Pair Prediction on click logs, then fine-tuning (experiments/coarse_tuning/)
.PHONY: coarse-toy coarse-cranfield coarse-scifact coarse-cranfield-minilm coarse-ablations-cranfield coarse-query-prediction coarse-sweep-rate coarse-sweep-epochs coarse-robust04 coarse-trec-covid coarse-trec-dl
COARSE_OUT ?= logs/coarse_tuning
COARSE_PRETRAINED ?= bert-tiny-mlm
COARSE_TARGET ?= cranfield
# Cranfield's click log has 2.6K clicks; on ORCAS (18.8M) sweep the paper's range: COARSE_RATES=0.01,0.02,0.04,0.06,0.08,0.1
COARSE_RATES ?= 0.1,0.25,0.5,1.0
COARSE_EPOCHS ?= 1,2,4,8
COARSE_SWEEP_FOLDS ?= 1,2,3,4,5
COARSE := HF_HUB_OFFLINE=1 $(BIN)/python experiments/coarse_tuning/pipeline.py

# a coarse-tuning run on the toy collection's click log (offline, seconds)
coarse-toy: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m lit_ir.train experiment=coarse_toy

# real data: fine-tune only vs coarse-tune + fine-tune on Cranfield (clicks.tsv), 5-fold CV, paired t-tests
coarse-cranfield: install-bench
	$(COARSE) compare --target cranfield --pretrained $(COARSE_PRETRAINED) --systems fine_only,coarse --out $(COARSE_OUT)/cranfield-$(COARSE_PRETRAINED) \
		--table experiments/coarse_tuning/results/cranfield-$(COARSE_PRETRAINED).md

# real data: fine-tune only vs coarse-tune + fine-tune on SciFact dev; the click log is cut from SciFact's titles
# (lit_ir.data.pseudo_clicks), fine-tuning trains on train_fit and selects on train_val. Another BEIR folder of the
# same layout: COARSE_SCIFACT_ARGS='--coarse collection.source.path=X --finetune collection.source.path=X \
#   --finetune collection.test_splits=[test]'
COARSE_SCIFACT_ARGS ?=
COARSE_SCIFACT_TABLE ?= experiments/coarse_tuning/results/scifact-$(COARSE_PRETRAINED).md
coarse-scifact: install-bench
	$(COARSE) compare --target scifact --pretrained $(COARSE_PRETRAINED) --systems fine_only,coarse \
		--out $(COARSE_OUT)/scifact-$(COARSE_PRETRAINED) --table $(COARSE_SCIFACT_TABLE) $(COARSE_SCIFACT_ARGS)

# the same for MiniLM with a new MLM head, sized for 2 CPU cores (1 rotation, 128 tokens, 1 epoch per stage)
coarse-cranfield-minilm: install-bench
	$(COARSE) compare --target cranfield --pretrained minilm --systems fine_only,coarse --folds 1 \
		--out $(COARSE_OUT)/cranfield-minilm \
		--coarse model.max_length=128 --coarse trainer.max_epochs=1 --coarse model.optimizer.lr=5e-5 \
		--finetune model.max_length=128 --finetune data.rerank_depth=30 --finetune data.first_stage.k=30 \
		--finetune data.num_negatives=1 --finetune trainer.max_epochs=1 --finetune model.optimizer.lr=3e-5

# the same with the MLM-only and QDPP-only ablations (reuses the finished stages of coarse-cranfield)
coarse-ablations-cranfield: install-bench
	$(COARSE) compare --target cranfield --pretrained $(COARSE_PRETRAINED) --out $(COARSE_OUT)/cranfield-$(COARSE_PRETRAINED)

# query prediction before vs after coarse-tuning, on the held-out clicks of coarse-cranfield's coarse run
coarse-query-prediction: install-bench
	HF_HUB_OFFLINE=1 $(BIN)/python experiments/coarse_tuning/query_prediction.py --coarse-run $(COARSE_OUT)/cranfield-$(COARSE_PRETRAINED)/coarse/coarse

# sweeps: sweep.csv / sweep.md (table) and sweep.png (plot) in $(COARSE_OUT)/sweep-<param>-<target>
coarse-sweep-rate: install-bench
	$(COARSE) sweep --target $(COARSE_TARGET) --pretrained $(COARSE_PRETRAINED) --param sample_rate --values $(COARSE_RATES) --folds $(COARSE_SWEEP_FOLDS) --out $(COARSE_OUT)/sweep-sample_rate-$(COARSE_TARGET)

coarse-sweep-epochs: install-bench
	$(COARSE) sweep --target $(COARSE_TARGET) --pretrained $(COARSE_PRETRAINED) --param epochs --values $(COARSE_EPOCHS) --folds $(COARSE_SWEEP_FOLDS) --out $(COARSE_OUT)/sweep-epochs-$(COARSE_TARGET)

# the paper's setting (needs ORCAS + MS MARCO documents, Robust04, TREC-COVID; prajjwal1/bert-tiny from the Hub):
# ORCAS coarse-tuning runs once (into $(COARSE_OUT)/orcas-coarse) and is shared by the three targets
COARSE_PAPER := --pretrained prajjwal1/bert-tiny --coarse-root $(COARSE_OUT)/orcas-coarse
coarse-robust04: install
	$(COARSE) compare --target robust04 $(COARSE_PAPER) --out $(COARSE_OUT)/robust04
coarse-trec-covid: install
	$(COARSE) compare --target trec_covid $(COARSE_PAPER) --out $(COARSE_OUT)/trec_covid
coarse-trec-dl: install
	$(COARSE) compare --target trec_dl $(COARSE_PAPER) --out $(COARSE_OUT)/trec_dl

## CODER (lit_ir.modules.coder): listwise training of a bi-encoder's query encoder against frozen document embeddings
.PHONY: coder-cranfield coder-scifact coder-figure2 coder-ablations coder-tasb coder-repbert coder-tripclick bench-coder
CODER_RUNS ?= logs/coder
# real data, offline (~15 min on 2 CPU cores): MiniLM base, training candidates from BM25 and from MiniLM itself;
# CODER vs MiniLM on Cranfield dev, single-stage and reranking BM25, with paired t-tests
coder-cranfield: install-bench
	HF_HUB_OFFLINE=1 $(BIN)/python -m lit_ir.train experiment=coder_cranfield hydra.run.dir=$(CODER_RUNS)/cranfield-bm25
	HF_HUB_OFFLINE=1 $(BIN)/python -m lit_ir.train experiment=coder_cranfield 'data.candidates=$${data.embeddings}' \
		hydra.run.dir=$(CODER_RUNS)/cranfield-minilm
	$(BIN)/python experiments/coder/compare_base.py $(CODER_RUNS)/cranfield-bm25 $(CODER_RUNS)/cranfield-minilm \
		--out experiments/coder/results/cranfield.md
# real data, offline: MiniLM vs CODER(MiniLM) on SciFact dev (train on train_fit, select on train_val), single-stage
# (FAISS) and reranking BM25's top 100, paired t-tests. Another BEIR folder of the same layout, or other splits:
# CODER_SCIFACT_ARGS='collection.source.path=X collection.test_splits=[test]'
CODER_SCIFACT_ARGS ?=
CODER_SCIFACT_TABLE ?= experiments/coder/results/scifact.md
coder-scifact: install-bench
	HF_HUB_OFFLINE=1 $(BIN)/python -m lit_ir.train experiment=coder_scifact hydra.run.dir=$(CODER_RUNS)/scifact \
		$(CODER_SCIFACT_ARGS)
	$(BIN)/python experiments/coder/compare_base.py $(CODER_RUNS)/scifact --out $(CODER_SCIFACT_TABLE)
# Figure 2's shape: a --multirun sweep over the number of training candidates N, then table + plot
CODER_NS ?= 10,30,100,300,1000
# epochs per sweep job: the experiment's 15 (at 5, 65 steps, scale-20 CODER had not yet left its start)
CODER_SWEEP_EPOCHS ?= 15
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

## the prepared GPU check (benchmarks/gpu_check.py): ~8 minutes on one H100/H200, each step time-boxed; results.json,
## summary.md and log.txt in GPU_CHECK_OUT. Without CUDA it runs the CPU-feasible parts at small sizes and says so.
## On the lent H200 (Python 3.12, torch preinstalled, no network): make gpu-check-wheels here, carry .whl, and run
##   make gpu-check GPU_CHECK_PYTHON=python3 GPU_CHECK_OUT=$$OUT
.PHONY: gpu-check gpu-check-wheels
GPU_CHECK_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
GPU_CHECK_OUT ?=
gpu-check:
	HF_HUB_OFFLINE=1 $(GPU_CHECK_PYTHON) benchmarks/gpu_check.py --install $(if $(GPU_CHECK_OUT),--out $(GPU_CHECK_OUT))

# wheels of what the H200 image lacks (benchmarks/gpu_check.py NEEDED), for CPython 3.12 x86-64 (~22 MB)
GPU_CHECK_WHEELS := hydra-core==1.3.8 omegaconf==2.3.1 faiss-cpu==1.15.1 bm25s==0.3.16 PyStemmer==3.1.0 orjson==3.13.0
gpu-check-wheels: | $(BIN)/python
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $(GPU_CHECK_WHEELS)
	$(BIN)/python -m pip wheel --quiet --no-deps antlr4-python3-runtime==4.9.3 -w .whl   # no wheel on PyPI: built here
	du -sh .whl
