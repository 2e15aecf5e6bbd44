"""The real-data experiments run unchanged on another folder of the same (BEIR) layout and other test splits:
`collection.source.path=<folder> collection.test_splits=[test]`, here a tiny generated BEIR folder with a test split
(the shared Cranfield / SciFact folders hold none), shrunk to a tiny random model."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from lit_ir.data.toy import ToyConfig, generate_toy_collection
from lit_ir.retrieval.fusion import WEIGHT_FILE
from lit_ir.train import run
from lit_ir.utils.hydra import CONFIG_DIR

RERANK_EXPERIMENTS = ["monobert_cranfield", "monobert_scifact"]
SIR_EXPERIMENTS = ["sir_v0", "sir_v1", "sir_v3", "sir_v4"]
SIR_SETUPS = ["cranfield", "scifact"]
# a tiny random model and BM25's top 20, on 6 test queries; SIR blocks of 1 + 3 negatives, 4 -> 2 (-> 2 levels)
TINY = ["model.pretrained=random-bert-32x1", "model.max_length=48", "model.max_query_length=8",
        "data.first_stage.k=20", "data.rerank_depth=20", "data.train_batch_size=8", "trainer.max_epochs=1",
        "logger=csv", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
TINY_SIR = ["sir.levels_v0=[4]", "sir.levels_3=[4,3,2]", "data.num_negatives=3", "sir.epochs=1",
            "sir.epochs_per_stage=1"]


@pytest.fixture(scope="module")
def beir_folder(tmp_path_factory):
    """A BEIR folder with train (enough for SciFact's 50 held-out claims), dev and test qrels."""
    return generate_toy_collection(tmp_path_factory.mktemp("beir"), ToyConfig(
        n_queries={"train": 60, "dev": 4, "test": 6}, n_background_docs=20, n_click_queries=2))


def compose_elsewhere(folder, output_dir, cache_dir, overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True, overrides=[
            *overrides, f"collection.source.path={folder}", "collection.test_splits=[test]",
            f"paths.root_dir={output_dir}", f"paths.cache_dir={cache_dir}", f"paths.output_dir={output_dir}",
            f"hydra.runtime.output_dir={output_dir}"])
        HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.mark.parametrize("overrides", [[f"experiment={name}"] for name in RERANK_EXPERIMENTS]
                         + [[f"experiment={name}", f"sir_setup={setup}"] for name in SIR_EXPERIMENTS
                            for setup in SIR_SETUPS])
def test_every_real_data_experiment_takes_another_folder_and_test_split(beir_folder, tmp_path, overrides):
    cfg = compose_elsewhere(beir_folder, tmp_path, tmp_path / "cache", overrides)
    assert cfg.data.collection.path == str(beir_folder) and list(cfg.data.test_splits) == ["test"]
    assert cfg.data.val_split == "train_val"  # still selected on held-out training queries, never on a test split


@pytest.mark.parametrize("overrides", [["experiment=monobert_scifact"],
                                       ["experiment=sir_v4", "sir_setup=scifact", *TINY_SIR]])
def test_a_scifact_experiment_runs_on_a_folder_with_a_test_split(beir_folder, tmp_path, shared_cache, overrides):
    torch.set_num_threads(1)
    cfg = compose_elsewhere(beir_folder, tmp_path, shared_cache, [*overrides, *TINY,
                                                                   "trainer.check_val_every_n_epoch=1"])
    outputs = run(cfg)
    metrics = json.loads(outputs["metrics/test"].read_text())
    assert metrics["meta"]["split"] == "test" and metrics["meta"]["num_queries"] == 6
    # validation on train_val chose the first-stage weight; test reports the pure and the interpolated reranker
    assert set(metrics["metrics"]) == {"first_stage", "reranker", "interpolated"}
    assert json.loads((tmp_path / "runs" / WEIGHT_FILE).read_text())["selected_on"] == "train_val"
