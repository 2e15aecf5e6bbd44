"""Interpolation of a reranker with its first stage: normalisation, the two ends of the weight, the selection on a
validation split, and the weight's trip through checkpoint, run folder and export into a later run."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import compose_train
from lit_ir.data.trec import rank_documents, read_run
from lit_ir.errors import InputError
from lit_ir.retrieval.fusion import (
    WEIGHT_FILE,
    FirstStageWeight,
    interpolate,
    normalize_scores,
    select_first_stage_weight,
    weight_grid,
)
from lit_ir.train import run


def _order(run):
    return {query_id: [doc for doc, _ in rank_documents(docs)] for query_id, docs in run.items()}


# q1: the first stage puts `a` first, the reranker `c`; only a mix of the two puts the relevant `b` first.
FIRST_STAGE = {"q1": {"a": 13.0, "b": 12.0, "c": 10.0, "z": 1.0}, "q2": {"x": 2.0, "y": 1.0}}
RERANKED = {"q1": {"a": 0.0, "b": 0.9, "c": 1.0}, "q2": {"x": -3.0, "y": 5.0}}  # q1's "z" was not reranked
QRELS = {"q1": {"b": 1}, "q2": {"y": 1}}


def test_normalisations_on_hand_computed_scores():
    assert normalize_scores({"a": 2.0, "b": 4.0, "c": 3.0}) == {"a": 0.0, "b": 1.0, "c": 0.5}
    zscore = normalize_scores({"a": 1.0, "b": 3.0}, "zscore")  # mean 2, population std 1
    assert zscore == pytest.approx({"a": -1.0, "b": 1.0})
    assert normalize_scores({"a": 5.0, "b": 5.0}, "zscore") == {"a": 0.0, "b": 0.0}  # all equal: no order to keep
    with pytest.raises(InputError, match="normalization"):
        normalize_scores({"a": 1.0}, "rank")


@pytest.mark.parametrize("normalization", ["minmax", "zscore"])
def test_weight_zero_is_the_reranker_and_one_the_first_stage(normalization):
    pure, first = interpolate(RERANKED, FIRST_STAGE, 0.0, normalization), interpolate(RERANKED, FIRST_STAGE, 1.0,
                                                                                      normalization)
    assert _order(pure) == _order(RERANKED) == {"q1": ["c", "b", "a"], "q2": ["y", "x"]}
    # the first stage's order over the reranked candidates (q1's unreranked "z" stays out)
    assert _order(first) == {"q1": ["a", "b", "c"], "q2": ["x", "y"]}
    mixed = interpolate(RERANKED, FIRST_STAGE, 0.5, "minmax")
    # minmax: first stage a=1, b=2/3, c=0; reranker a=0, b=0.9, c=1
    assert mixed["q1"] == pytest.approx({"a": 0.5, "b": 0.5 * 2 / 3 + 0.45, "c": 0.5})


def test_selection_picks_the_weight_that_maximises_the_validation_metric():
    chosen = select_first_stage_weight(RERANKED, FIRST_STAGE, QRELS, "mrr@10", split="train_val")
    # q1's `b` is first for 0.13 < w < 0.73 (q2 needs w < 0.5): MRR 1 on 0.15 .. 0.45; the smallest is chosen
    assert chosen.weight == pytest.approx(0.15)
    assert (chosen.value, chosen.reranker_value, chosen.first_stage_value) == pytest.approx((1.0, 0.75, 0.5))
    assert (chosen.selected_on, chosen.metric, chosen.normalization) == ("train_val", "mrr@10", "minmax")
    agreeing = select_first_stage_weight({"q": {"a": 2.0, "b": 1.0}}, {"q": {"a": 5.0, "b": 1.0}}, {"q": {"a": 1}},
                                         "mrr@10")
    assert (agreeing.weight, agreeing.value) == (0.0, 1.0)  # every weight ties: the least change to the reranker


def test_bad_inputs_fail_clearly(tmp_path):
    with pytest.raises(InputError, match="'q1'.*'c'"):
        interpolate({"q1": {"a": 1.0, "c": 2.0}}, {"q1": {"a": 1.0}}, 0.5)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        interpolate(RERANKED, FIRST_STAGE, 1.5)
    with pytest.raises(InputError, match="divide 1"):
        weight_grid(0.3)
    assert weight_grid(0.25) == [0.0, 0.25, 0.5, 0.75, 1.0]
    (tmp_path / WEIGHT_FILE).write_text('{"weight": 0.5, "colour": "red"}')
    with pytest.raises(InputError, match=WEIGHT_FILE):
        FirstStageWeight.load(tmp_path)
    assert FirstStageWeight.load(tmp_path / "nothing") is None


def test_the_selected_weight_is_saved_and_reused(tmp_path, shared_cache):
    trained = tmp_path / "trained"
    outputs = run(compose_train(trained, shared_cache, ["model.first_stage_weight_step=0.1"]))

    saved = json.loads((trained / "runs" / WEIGHT_FILE).read_text())
    assert saved["selected_on"] == "dev" and saved["metric"] == "ndcg@10"
    assert saved["weight"] in weight_grid(0.1)
    # the export and the tested checkpoint carry the same weight as the run folder
    assert json.loads((outputs["model"] / WEIGHT_FILE).read_text()) == saved
    best = next((trained / "checkpoints").glob("epoch_*.ckpt"))
    assert torch.load(best, map_location="cpu", weights_only=False)["first_stage_weight"] == saved
    metrics = json.loads(outputs["metrics/test"].read_text())
    assert set(metrics["metrics"]) == {"first_stage", "reranker", "interpolated"}
    assert set(metrics["p_values"]["interpolated"]) == set(metrics["metrics"]["interpolated"])
    first_stage = read_run(trained / "runs" / "test.first_stage.trec")
    reranked = read_run(trained / "runs" / "test.rerank.trec")
    expected = FirstStageWeight.from_dict(saved).apply(reranked, first_stage)
    written = read_run(trained / "runs" / "test.interpolated.trec")
    assert _order(written) == _order(expected)

    # a later run without training or validation reranks with the exported model and the same weight
    reused = tmp_path / "reused"
    run(compose_train(reused, shared_cache, ["train=false", f"model.pretrained={outputs['model']}"]))
    assert json.loads((reused / "runs" / WEIGHT_FILE).read_text()) == saved
    assert _order(read_run(reused / "runs" / "test.interpolated.trec")) == _order(written)


def test_a_fixed_weight_of_one_gives_the_first_stage_ranking(tmp_path, shared_cache):
    outputs = run(compose_train(tmp_path, shared_cache, ["model.first_stage_weight=1.0", "train=false"]))
    first_stage = read_run(tmp_path / "runs" / "test.first_stage.trec")
    interpolated = read_run(tmp_path / "runs" / "test.interpolated.trec")
    cut = {query_id: dict(rank_documents(docs)[:20]) for query_id, docs in first_stage.items()}  # rerank_depth 20
    assert _order(interpolated) == _order(cut)
    metrics = json.loads(outputs["metrics/test"].read_text())["metrics"]
    assert metrics["interpolated"]["ndcg@10"] == pytest.approx(metrics["first_stage"]["ndcg@10"])
    assert json.loads((tmp_path / "runs" / WEIGHT_FILE).read_text())["selected_on"] is None
