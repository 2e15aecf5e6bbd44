"""A diverged model never gives numbers: training stops at the first non-finite loss, no checkpoint holds
non-finite weights, and NaN scores are never written into a run or evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conftest import compose_train
from lit_ir.data.trec import write_run
from lit_ir.errors import InputError
from lit_ir.evaluation import evaluate_run
from lit_ir.train import run
from lit_ir.utils.hydra import CONFIG_DIR

# the default composition, and every experiment that touches the callbacks group (the others inherit it)
EXPERIMENTS = ["quickstart", *sorted(path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml")
                                     if "callbacks" in path.read_text())]


def test_a_diverged_run_stops_at_the_first_non_finite_loss(tmp_path, shared_cache):
    cfg = compose_train(tmp_path, shared_cache, ["model.optimizer.lr=1e10", "model.scheduler=null",
                                                 "trainer.max_epochs=2"])
    with pytest.raises(RuntimeError, match=r"non-finite training loss (nan|inf) at step [1-9]\d* \(epoch 0, batch "
                                           r"\d+\), learning rate 1e\+10"):
        run(cfg)
    assert not list(tmp_path.glob("checkpoints/*.ckpt")), "a checkpoint of the diverged model was kept"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "model").exists()


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    from lit_ir.callbacks import FiniteGuard

    weights = {"model.score_head.weight": torch.tensor([[1.0, float("nan")]]), "model.step": torch.tensor(3)}
    with pytest.raises(RuntimeError, match=r"not saving a checkpoint: model\.score_head\.weight has 1 non-finite"):
        FiniteGuard().on_save_checkpoint(None, None, {"state_dict": weights})
    FiniteGuard().on_save_checkpoint(None, None, {"state_dict": {"w": torch.ones(2)}})  # finite: saved


def test_every_method_trains_under_the_guards():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for experiment in EXPERIMENTS:
            cfg = compose(config_name="train", overrides=[f"experiment={experiment}", "paths.root_dir=/tmp"])
            targets = {entry.get("_target_") for entry in cfg.callbacks.values()}
            # the divergence guard, and resumes that match an uninterrupted run
            assert {"lit_ir.callbacks.FiniteGuard", "lit_ir.callbacks.RNGState"} <= targets, experiment


def test_nan_scores_are_never_written_into_a_run(tmp_path):
    with pytest.raises(InputError, match=r"query 'q2': document 'd9' has a NaN score"):
        write_run({"q1": {"d1": 1.0}, "q2": {"d8": 0.5, "d9": float("nan")}}, tmp_path / "run.trec")
    assert not (tmp_path / "run.trec").exists()


def test_nan_scores_are_never_evaluated():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    with pytest.raises(InputError, match=r"query 'q2': document 'd2' has a NaN score"):
        evaluate_run({"q1": {"d1": 1.0}, "q2": {"d2": float("nan"), "d3": 0.5}}, qrels, ["ndcg@10"])
