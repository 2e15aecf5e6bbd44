"""The training entry point end to end on the toy collection: fit, test, report, export, resume, DDP, sweeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException

from conftest import TINY_TOY, compose_train
from lit_ir.data.trec import read_run
from lit_ir.errors import InputError
from lit_ir.models.cross_encoder import CrossEncoder
from lit_ir.train import run

REPO = Path(__file__).resolve().parents[1]


def _metrics(path: Path) -> dict:
    return json.loads(path.read_text())["metrics"]


def test_train_tests_reports_and_exports(tmp_path, shared_cache):
    cfg = compose_train(tmp_path, shared_cache, ["logger=default"])  # CSV + W&B (offline)
    outputs = run(cfg)

    metrics = _metrics(outputs["metrics/test"])
    assert set(metrics) == {"first_stage", "reranker", "interpolated"}  # interpolated: tests/test_fusion.py
    assert set(metrics["reranker"]) == set(cfg.collection.metrics)
    assert all(0.0 <= value <= 1.0 for system in metrics.values() for value in system.values())
    # reranking the first stage's top-k cannot change recall at that depth
    assert metrics["reranker"]["recall@100"] == pytest.approx(metrics["first_stage"]["recall@100"])

    reranked = read_run(tmp_path / "runs" / "test.rerank.trec")
    assert len(reranked) == 8 and all(len(docs) <= 20 for docs in reranked.values())
    assert (tmp_path / "config.yaml").read_text().count("random-bert-32x1") >= 1  # the resolved config is saved
    per_query = pd.read_csv(outputs["metrics/test"].parent / "per_query.csv")
    assert len(per_query) == 3 * 8

    logged = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    assert "train/loss" in logged and logged["val/ndcg@10"].notna().any()
    assert list((tmp_path / "wandb").glob("offline-run-*")), "W&B should have logged offline"

    model = CrossEncoder.from_pretrained(outputs["model"])  # the export loads back, score head included
    assert model.backbone.config.hidden_size == 32


def test_resume_from_last_checkpoint(tmp_path, shared_cache):
    first = tmp_path / "first"
    run(compose_train(first, shared_cache, ["test=false"]))
    last = first / "checkpoints" / "last.ckpt"
    assert last.is_file()

    resumed = tmp_path / "resumed"
    run(compose_train(resumed, shared_cache, ["test=false", "trainer.max_epochs=2", f"ckpt_path={last}"]))
    logged = pd.read_csv(resumed / "csv" / "metrics.csv")
    # only the second epoch ran: training continued where the first run stopped
    assert set(logged["epoch"].dropna().astype(int)) == {1}


def test_ddp_spawn_matches_single_process(tmp_path, shared_cache):
    # a fixed data order and no dropout: 2 ranks x 4 queries average to the same gradient as 1 rank x 8 queries.
    # SGD, not Adam: Adam's normalisation blows float summation-order noise in near-zero gradients up to full steps
    common = ["data.shuffle=false", "model.dropout=0.0", "callbacks=none", "logger=none",
              "model.optimizer._target_=torch.optim.SGD", "model.optimizer.lr=0.1"]
    outputs = {
        "untrained": run(compose_train(tmp_path / "untrained", shared_cache, [*common, "train=false"])),
        "single": run(compose_train(tmp_path / "single", shared_cache, [*common, "data.train_batch_size=8"])),
        "one_rank": run(compose_train(tmp_path / "one_rank", shared_cache,
                                      [*common, "data.train_batch_size=8", "trainer=ddp_spawn", "trainer.devices=1"])),
        "ddp": run(compose_train(tmp_path / "ddp", shared_cache, [*common, "data.train_batch_size=4", "trainer=ddp_spawn"])),
    }
    # the launching process gets the weights trained in the spawned ones: it tests and exports them
    assert all("model" in out for out in outputs.values()), "a run exported no model: its trained weights were lost"
    weights = {name: torch.cat([w.flatten() for w in CrossEncoder.from_pretrained(out["model"]).state_dict().values()])
               for name, out in outputs.items()}
    moved = (weights["ddp"] - weights["untrained"]).norm()
    # data parallel = one process with the whole batch: the same weights up to float noise, far from the untrained
    # ones (not merely both barely trained); with one rank or two under ddp_spawn, and without a strategy
    for other in ("one_rank", "single"):
        assert (weights["ddp"] - weights[other]).norm() < moved / 1000, other

    runs = {name: read_run(tmp_path / name / "runs" / "test.rerank.trec") for name in outputs}
    assert {q: set(d) for q, d in runs["single"].items()} == {q: set(d) for q, d in runs["ddp"].items()}
    for query_id, docs in runs["single"].items():
        for doc_id, score in docs.items():
            assert runs["ddp"][query_id][doc_id] == pytest.approx(score, abs=1e-5), (query_id, doc_id)
    # hence the same metrics, but for near-ties that such tiny differences may swap
    single_metrics, ddp_metrics = _metrics(outputs["single"]["metrics/test"]), _metrics(outputs["ddp"]["metrics/test"])
    for metric, value in single_metrics["reranker"].items():
        assert ddp_metrics["reranker"][metric] == pytest.approx(value, abs=0.02), metric


def test_wrong_config_key_or_group_fails_clearly(tmp_path, shared_cache):
    with pytest.raises(ConfigCompositionException, match="no_such_key"):
        compose_train(tmp_path, shared_cache, ["model.no_such_key=1"])
    with pytest.raises(MissingConfigException, match="no_such_collection"):
        compose_train(tmp_path, shared_cache, ["collection=no_such_collection"])


def test_validating_on_a_test_split_is_refused_unless_allowed(tmp_path, shared_cache):
    cfg = compose_train(tmp_path, shared_cache, ["collection.val_split=test", "collection.test_splits=[test]"])
    with pytest.raises(InputError, match=r"validation split 'test' is also a test split"):
        run(cfg)
    cfg = compose_train(tmp_path, shared_cache, ["collection.val_split=dev", "collection.test_splits=[test,dev]"])
    with pytest.raises(InputError, match=r"validation split 'dev' is also a test split"):
        run(cfg)
    assert not (tmp_path / "checkpoints").exists()  # refused before any training


def test_multirun_sweep(tmp_path, shared_cache):
    env = {**os.environ, "LIT_IR_CACHE": str(shared_cache)}
    command = [
        sys.executable, "-m", "lit_ir.train", "--multirun", "experiment=quickstart", "debug=fdr",
        "model.pretrained=random-bert-32x1", "model.max_length=48", "data.rerank_depth=10", "data.first_stage.k=20",
        "seed=1,2", f"paths.log_dir={tmp_path}", *TINY_TOY,
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dirs = sorted(p for p in (tmp_path / "debug" / "multiruns").glob("*/*") if p.is_dir())
    assert [p.name for p in sweep_dirs] == ["0", "1"]
    for job in sweep_dirs:
        assert (job / "config.yaml").is_file() and (job / "runs" / "test.rerank.trec").is_file()
