"""The training entry point end to end on the toy collection: fit, test, report, export, resume, DDP, sweeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
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



class Killed(Exception):
    """The process was stopped (in the test: raised by KillAtEpoch)."""


class KillAtEpoch(L.Callback):
    """Stops training as a kill would, once the checkpoints of the epochs before `epoch` are written."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise Killed(f"killed at the start of epoch {self.epoch}")


def exported_weights(path: Path) -> dict[str, torch.Tensor]:
    return CrossEncoder.from_pretrained(path).state_dict()


def test_a_killed_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, shared_cache):
    # dropout draws from the global RNG at every step: only a restored RNG state gives the same masks after a resume
    common = ["test=false", "trainer.max_epochs=2", "model.dropout=0.1"]
    whole = run(compose_train(tmp_path / "whole", shared_cache, common))["model"]
    with pytest.raises(Killed):
        run(compose_train(tmp_path / "killed", shared_cache,
                          [*common, "+callbacks.kill._target_=test_train.KillAtEpoch", "+callbacks.kill.epoch=1"]))
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    resumed = run(compose_train(tmp_path / "resumed", shared_cache, [*common, f"ckpt_path={last}"]))["model"]
    expected, got = exported_weights(whole), exported_weights(resumed)
    assert expected.keys() == got.keys()
    differing = [name for name in expected if not torch.equal(expected[name], got[name])]
    assert not differing, f"{len(differing)} of {len(expected)} tensors differ, e.g. {differing[:3]}"



def test_truncated_queries_and_documents_are_counted_once_per_split(tmp_path, shared_cache, caplog):
    from hydra.utils import instantiate
    from transformers import AutoTokenizer

    caplog.set_level("INFO")
    cfg = compose_train(tmp_path, shared_cache, ["model.max_query_length=4", "trainer.max_epochs=2"])
    outputs = run(cfg)
    counts = json.loads((tmp_path / "truncation.json").read_text())
    assert set(counts) == {"train", "dev", "test"}
    # the same counts from tokenizing again here: queries longer than 4 tokens, pairs whose document was cut
    collection, tokenizer = instantiate(cfg.collection.source), AutoTokenizer.from_pretrained(outputs["model"])
    length = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    for split in ("dev", "test"):
        queries, docs = collection.queries(split), collection.docs()
        pairs = [(qid, doc) for qid, ranked in read_run(tmp_path / "runs" / f"{split}.first_stage.trec").items()
                 for doc in ranked] if split == "test" else None
        assert counts[split]["queries"] == len(queries)
        assert counts[split]["truncated_queries"] == sum(length(text) > 4 for text in queries.values()) > 0
        if pairs:
            cut = sum(length(docs[doc]) > 48 - 3 - min(length(queries[qid]), 4) for qid, doc in pairs)
            assert (counts[split]["documents"], counts[split]["truncated_documents"]) == (len(pairs), cut)
    assert counts["train"]["truncated_queries"] == sum(length(text) > 4 for text in collection.queries("train").values())
    assert counts["train"]["limits"] == {"query": "model.max_query_length=4", "document": "model.max_length=48"}
    logged = [r.getMessage() for r in caplog.records if "were cut to" in r.getMessage()]
    assert sum(message.startswith("split dev:") for message in logged) == 1  # validated twice, said once


def test_ddp_spawn_matches_single_process(tmp_path, shared_cache):
    # a fixed data order and no dropout: 2 ranks x 4 queries average to the same gradient as 1 rank x 8 queries.
    # SGD, not Adam: Adam's normalisation blows float summation-order noise in near-zero gradients up to full steps.
    # float64: averaging 2 x 4 gradients is not summing 8 in float32's rounding, and a few SGD steps grew that noise
    # past 1e-5 in the scores in about 1 run in 3; in float64 it stays ~1e-13 (scores are written as float32)
    common = ["data.shuffle=false", "model.dropout=0.0", "callbacks=none", "logger=none", "trainer.precision=64-true",
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
