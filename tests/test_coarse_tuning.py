"""Coarse-tuning: the loss, the module, its export into cross-encoder fine-tuning, the two-stage pipeline and the
query prediction analysis, end to end on the tiny toy collection."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from conftest import TINY_TOY
from lit_ir.analysis.query_prediction import QueryPredictor, analyse_query_prediction
from lit_ir.data.clicks import QDPPBatch
from lit_ir.losses import coarse_tuning_loss
from lit_ir.models.coarse import CoarseTuningModel
from lit_ir.models.cross_encoder import CrossEncoder
from lit_ir.modules.coarse_tuning import CoarseTuningModule
from lit_ir.pipelines.coarse_tuning import compose_train, run_comparison, run_sweep
from lit_ir.train import run

TINY = [*TINY_TOY, "logger=csv", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "trainer.log_every_n_steps=1"]


def test_loss_is_mlm_plus_lambda_qdpp_on_a_hand_computed_case():
    mlm_logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    mlm_labels = torch.tensor([0, 1])
    qdpp_logits, qdpp_labels = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    total, mlm, qdpp = coarse_tuning_loss(mlm_logits, mlm_labels, qdpp_logits, qdpp_labels, qdpp_weight=0.5)
    expected_mlm = (-math.log(math.e / (math.e + 2)) - math.log(1 / (2 + math.e**2))) / 2
    expected_qdpp = (math.log(2) + math.log(1 + math.e**2)) / 2
    assert mlm.item() == pytest.approx(expected_mlm)
    assert qdpp.item() == pytest.approx(expected_qdpp)
    assert total.item() == pytest.approx(expected_mlm + 0.5 * expected_qdpp)
    total, mlm, _ = coarse_tuning_loss(None, torch.zeros(0, dtype=torch.long), qdpp_logits, qdpp_labels)
    assert mlm.item() == 0.0 and total.item() == pytest.approx(expected_qdpp)  # nothing masked: QDPP only


@pytest.fixture(scope="module")
def coarse_run(tmp_path_factory, shared_cache):
    """One tiny coarse-tuning run through the training entry point, as `python -m lit_ir.train` runs it."""
    out = tmp_path_factory.mktemp("coarse_run")
    cfg = compose_train("coarse_toy", out, [*TINY, "model.pretrained=random-bert-32x1", "model.max_length=48",
                                            "trainer.max_epochs=2", f"paths.cache_dir={shared_cache}",
                                            "model.qdpp_head_as_score_head=true"])
    return out, cfg, run(cfg)


def test_coarse_run_logs_both_losses_and_exports_a_model_the_cross_encoder_loads(coarse_run):
    out, cfg, outputs = coarse_run
    logged = pd.read_csv(out / "csv" / "metrics.csv")
    for name in ("train/mlm_loss_step", "train/qdpp_loss_step", "train/qdpp_acc_step", "val/loss", "val/mlm_loss",
                 "val/qdpp_loss", "val/qdpp_acc", "test/qdpp_acc"):
        assert logged[name].notna().any(), name
    rows = logged.dropna(subset=["val/loss"])
    assert rows["val/loss"].to_numpy() == pytest.approx((rows["val/mlm_loss"] + rows["val/qdpp_loss"]).to_numpy())
    truncation = json.loads((out / "truncation.json").read_text())  # counted once per click split
    assert set(truncation) == {"clicks_train", "clicks_val", "clicks_test"}
    assert truncation["clicks_train"]["limits"] == {"query": "model.max_query_length=16", "document": "model.max_length=48"}
    assert all(0 < counts["queries"] <= counts["documents"] for counts in truncation.values())
    held_out = json.loads((out / "metrics" / "held_out_clicks.json").read_text())
    assert 0.0 <= held_out["held_out_clicks"]["qdpp_acc"] <= 1.0
    assert held_out["clicks"]["clicks_read"] == 20 and held_out["clicks"]["missing_doc"] == 0
    assert "metrics/test" not in outputs  # no ranking to report

    coarse = CoarseTuningModel.from_pretrained(outputs["model"])
    encoder = CrossEncoder.from_pretrained(outputs["model"])  # what fine-tuning does with model.pretrained=<folder>
    assert torch.equal(encoder.backbone.embeddings.word_embeddings.weight,
                       coarse.mlm.base_model.embeddings.word_embeddings.weight)
    assert torch.equal(encoder.backbone.encoder.layer[0].output.dense.weight,
                       coarse.mlm.base_model.encoder.layer[0].output.dense.weight)
    # qdpp_head_as_score_head=true: fine-tuning starts from the QDPP head
    assert torch.equal(encoder.score_head.weight, coarse.qdpp_head.weight)


def test_qdpp_only_reads_unmasked_pairs(coarse_run, shared_cache, tmp_path):
    from hydra.utils import instantiate

    _, cfg, outputs = coarse_run
    module = instantiate({**cfg.model, "pretrained": str(outputs["model"]), "mlm_weight": 0.0}, _convert_="all")
    module.configure_model()
    batch = QDPPBatch(["alpha beta"], ["gamma delta epsilon"], torch.tensor([1.0]))
    values = module.losses(batch, torch.Generator().manual_seed(0))
    assert values["mlm_loss"].item() == 0.0 and values["loss"].item() == pytest.approx(values["qdpp_loss"].item())
    with pytest.raises(ValueError, match="not both 0"):
        CoarseTuningModule(pretrained=str(outputs["model"]), mlm_weight=0.0, qdpp_weight=0.0)


def test_held_out_qdpp_reads_unmasked_pairs_and_mlm_one_fixed_mask(coarse_run):
    from hydra.utils import instantiate

    out, cfg, outputs = coarse_run
    module = instantiate({**cfg.model, "pretrained": str(outputs["model"])}, _convert_="all")
    clean = instantiate({**cfg.model, "pretrained": str(outputs["model"]), "mlm_weight": 0.0}, _convert_="all")
    for m in (module, clean):
        m.configure_model()
        m.model.eval()
    batch = QDPPBatch(["vijugi fisiju", "gevu sate"] * 4, ["vijugi fisiju gevu sate mola"] * 8,
                      torch.tensor([1.0, 0.0] * 4))
    held_out = module.losses(batch, module._masking_generator("val", 0), unmasked_qdpp=True)
    unmasked = clean.losses(batch, unmasked_qdpp=True)
    masked = module.losses(batch, module._masking_generator("val", 0))
    assert held_out["qdpp_loss"].item() == pytest.approx(unmasked["qdpp_loss"].item())
    assert masked["qdpp_loss"].item() != pytest.approx(unmasked["qdpp_loss"].item())  # the mask hides query words
    # validation and test mask the same held-out tokens: their MLM losses are the same number
    again = module.losses(batch, module._masking_generator("test", 0), unmasked_qdpp=True)
    assert again["mlm_loss"].item() == held_out["mlm_loss"].item() and held_out["mlm_loss"].item() > 0
    # so the test figures are those of the validation that chose the tested checkpoint
    logged = pd.read_csv(out / "csv" / "metrics.csv")
    best = logged.dropna(subset=["val/loss"]).sort_values("val/loss").iloc[0]
    tested = logged.dropna(subset=["test/loss"]).iloc[0]
    for name in ("loss", "mlm_loss", "qdpp_loss", "qdpp_acc"):
        assert tested[f"test/{name}"] == pytest.approx(best[f"val/{name}"]), name


def test_query_prediction_measures(coarse_run):
    out, cfg, outputs = coarse_run
    predictor = QueryPredictor.from_pretrained(outputs["model"], max_query_length=16, max_length=48)
    total, count = predictor.query_log_likelihood("vijugi fisiju", "vijugi fisiju gevu sate")
    assert count == len(predictor.tokenizer("vijugi fisiju", add_special_tokens=False)["input_ids"])
    assert total < 0.0
    top = predictor.predict_query("vijugi fisiju gevu sate", num_tokens=3, k=5)
    assert len(top) == 3 and all(len(ids) == 5 for ids in top)
    assert not {token for ids in top for token in ids} & set(predictor.tokenizer.all_special_ids)

    from lit_ir.data.clicks import ClickDataModule
    from hydra.utils import instantiate

    datamodule: ClickDataModule = instantiate(cfg.data, _convert_="all")
    clicks = datamodule.held_out_clicks()
    result = analyse_query_prediction({"coarse": predictor}, clicks, datamodule.collection.docs(), k=5,
                                      num_examples=1)
    summary = result["summary"]["coarse"]
    assert summary["queries"] == len(clicks) and 0.0 <= summary["recall@1"] <= summary["recall@5"] <= 1.0
    assert summary["pseudo_perplexity"] == pytest.approx(math.exp(-summary["log_likelihood_per_token"]))
    assert result["examples"][0]["query"] == clicks[0].query and "coarse" in result["examples"][0]["predicted"]


def test_two_stage_pipeline_chains_coarse_export_into_fine_tuning(tmp_path, shared_cache):
    common = [*TINY, f"paths.cache_dir={shared_cache}", "model.max_length=48", "trainer.max_epochs=1"]
    comparisons = run_comparison("toy", tmp_path, "random-bert-32x1", ["fine_only", "coarse"], common,
                                 [*common, "data.rerank_depth=20", "data.first_stage.k=20"])
    comparison = comparisons["test"]
    assert comparison.systems == ["bm25", "fine_only", "coarse"] and comparison.num_queries == 8
    assert set(comparison.p_values) == {"bm25", "coarse"}
    finetune_cfg = json.loads((tmp_path / "finetune" / "coarse" / "splits" / "stage.json").read_text())
    assert f"model.pretrained={tmp_path / 'coarse' / 'coarse' / 'model'}" in finetune_cfg["overrides"]
    metrics = json.loads((tmp_path / "results" / "test" / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"bm25", "fine_only", "coarse"}
    assert (tmp_path / "results" / "test" / "results.md").read_text().startswith("| system |")
    # run again: every stage is finished, so nothing trains and the same table comes out
    again = run_comparison("toy", tmp_path, "random-bert-32x1", ["fine_only", "coarse"], common,
                           [*common, "data.rerank_depth=20", "data.first_stage.k=20"])
    assert again["test"].means == comparison.means


def test_sweep_writes_a_table_and_a_plot(tmp_path, shared_cache):
    common = [*TINY, f"paths.cache_dir={shared_cache}", "model.max_length=48", "trainer.max_epochs=1"]
    table_path = run_sweep("toy", "sample_rate", ["0.5", "1.0"], tmp_path, "random-bert-32x1", common,
                           [*common, "data.rerank_depth=20", "data.first_stage.k=20"])
    table = pd.read_csv(table_path)
    assert table["system"].tolist() == ["bm25", "fine_only", "sample_rate=0.5", "sample_rate=1.0"]
    assert table["sample_rate"].tolist()[2:] == [0.5, 1.0]
    # half the rate keeps about half the clicks (20 in the tiny toy log, 10% of queries held out)
    assert table["train_clicks"].iloc[2] < table["train_clicks"].iloc[3] <= 20
    assert table["held_out_qdpp_acc"].iloc[2:].between(0, 1).all() and "p(ndcg@5)" in table
    assert (tmp_path / "sweep.png").stat().st_size > 1000 and (tmp_path / "sweep.md").is_file()


@pytest.mark.parametrize("experiment", ["coarse_orcas", "coarse_orcas_mlm_only", "coarse_orcas_qdpp_only",
                                        "coarse_cranfield", "coarse_finetune_cranfield", "coarse_finetune_robust04",
                                        "coarse_finetune_trec_covid", "coarse_finetune_trec_dl", "coarse_scifact",
                                        "coarse_finetune_scifact"])
def test_paper_experiment_configs_compose(experiment, tmp_path):
    cfg = compose_train(experiment, tmp_path)
    if experiment.startswith("coarse_finetune"):
        assert cfg.model.loss == "bce" and cfg.model.monitor in cfg.collection.metrics  # the paper: pointwise
        assert {"ndcg@5"} <= set(cfg.collection.metrics) and any(m.startswith("mrr") for m in cfg.collection.metrics)
    else:
        assert cfg.data._target_.endswith("ClickDataModule")
        assert cfg.trainer.max_epochs == {"coarse_scifact": 2}.get(experiment, 4)
        assert cfg.model.optimizer.lr == 1e-3  # 1e-4 never learned QDPP on Cranfield's log
        assert (cfg.model.mlm_weight, cfg.model.qdpp_weight) == {"coarse_orcas_mlm_only": (1.0, 0.0),
                                                                 "coarse_orcas_qdpp_only": (0.0, 1.0)}.get(
            experiment, (1.0, 1.0))
        assert cfg.callbacks.model_checkpoint.mode == "min"  # monitors the held-out loss
