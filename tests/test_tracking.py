"""W&B tracking, checked on the files of offline runs (read back with `wandb_records`): names, groups, job types,
tags, the end-of-run table and summary, artifacts, figures logged to a sweep's group, the Optuna sweeper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from conftest import TINY_TOY, compose_train
from lit_ir.tracking import job_type, run_group, run_name, run_tags
from lit_ir.utils.hydra import CONFIG_DIR
from wandb_records import offline_runs

REPO = Path(__file__).resolve().parents[1]


def _hydra_job(overrides: list[str]) -> None:
    """Make `overrides` the current Hydra job's, as `python -m lit_ir.train <overrides>` would."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        HydraConfig().set_config(compose(config_name="train", return_hydra_config=True, overrides=overrides))


def test_names_groups_job_types_and_tags_come_from_the_hydra_job(tmp_path):
    _hydra_job(["experiment=quickstart", "model.optimizer.lr=0.01", "+trainer.gradient_clip_val=1.0",
                f"paths.root_dir={tmp_path}", "logger=csv", "hydra.run.dir=/somewhere", "run_group=null"])
    # the experiment, then what differs from it as typed; paths, logger, hydra and run_group are plumbing
    assert run_name("train") == "quickstart model.optimizer.lr=0.01 trainer.gradient_clip_val=1.0"
    assert run_group(None, "train") is None  # a single run has no group
    assert run_group("coarse_tuning:cv", "train") == "coarse_tuning:cv"
    assert run_tags(["dev", "quickstart"]) == ["dev", "quickstart", "toy"]  # + the experiment and the collection
    assert (job_type(True, "train"), job_type(False, "train"), job_type(None, "encode")) == ("fit", "test", "encode")

    _hydra_job(["model.optimizer.lr=0.01", "hydra.mode=MULTIRUN", f"hydra.sweep.dir={tmp_path}/lr-sweep"])
    assert run_name("train") == "train model.optimizer.lr=0.01"  # no experiment: the task name
    assert run_group(None, "train") == "train:lr-sweep"  # every job of the sweep: one group


def test_a_name_with_an_interpolation_override_stays_a_plain_string():
    # make coder-cranfield's second run: the name is a config value, so `${...}` in it was read as an interpolation
    # (cut at 128 characters it did not even parse, and the logger failed to instantiate)
    _hydra_job(["experiment=coder_cranfield", "data.candidates=${data.embeddings}", f"data.num_candidates={'9' * 120}"])
    name = run_name("train")
    assert name.startswith("coder_cranfield data.candidates=$(data.embeddings) data.num_candidates=999")
    config = OmegaConf.create({"data": {"embeddings": {"k": 1}}, "logger": {"name": name}})
    OmegaConf.resolve(config)
    assert config.logger.name == name


def test_offline_run_has_the_name_group_table_summary_and_artifacts(tmp_path, shared_cache):
    from lit_ir.train import run

    cfg = compose_train(tmp_path, shared_cache, ["logger=wandb", "run_group=my-sweep", "tags=[unit]"])
    outputs = run(cfg)
    (wandb_run,) = offline_runs(tmp_path / "wandb")
    assert wandb_run.name.startswith("quickstart model.pretrained=random-bert-32x1 model.max_length=48")
    assert "paths." not in wandb_run.name and "logger" not in wandb_run.name
    assert (wandb_run.group, wandb_run.job_type, wandb_run.tags) == ("my-sweep", "fit", ["unit", "quickstart", "toy"])

    written = json.loads(outputs["metrics/test"].read_text())
    table = wandb_run.table("report/test/table")
    metrics = list(cfg.collection.metrics)
    assert table["columns"] == ["system", *metrics, *(f"p_{m}" for m in metrics)]
    rows = {row[0]: dict(zip(table["columns"], row)) for row in table["data"]}
    assert set(rows) == {"first_stage", "reranker", "interpolated"}  # interpolated: weight chosen on validation
    for system, means in written["metrics"].items():
        for metric, value in means.items():
            assert rows[system][metric] == pytest.approx(value)
            assert wandb_run.summary[f"report/test/{system}/{metric}"] == pytest.approx(value)
    for metric, p_value in written["p_values"]["reranker"].items():
        assert rows["reranker"][f"p_{metric}"] == pytest.approx(p_value)
        assert wandb_run.summary[f"report/test/reranker/p_{metric}"] == pytest.approx(p_value)
    assert rows["first_stage"]["p_ndcg@10"] is None  # the baseline is not tested against itself

    run_id = wandb_run.folder.name.rsplit("-", 1)[-1]
    report = wandb_run.artifact(f"report-test-{run_id}")
    assert report.type == "evaluation" and {e.path for e in report.manifest.contents} == {"metrics.json",
                                                                                          "per_query.csv"}
    runs = wandb_run.artifact(f"runs-test-{run_id}")
    assert {e.path for e in runs.manifest.contents} == {"test.first_stage.trec", "test.rerank.trec",
                                                        "test.interpolated.trec"}
    assert outputs.metrics["val/ndcg@10_best"] > 0  # what a sweeper optimises


@pytest.mark.parametrize("overrides", [["logger.wandb.artifacts=false"], ["logger.wandb.max_artifact_mb=0.0001"]])
def test_artifacts_can_be_switched_off_and_large_ones_are_skipped(tmp_path, shared_cache, overrides):
    from lit_ir.train import run

    run(compose_train(tmp_path, shared_cache, ["logger=wandb", "train=false", *overrides]))
    (wandb_run,) = offline_runs(tmp_path / "wandb")
    assert wandb_run.job_type == "test"
    assert not [a for a in wandb_run.artifacts if a.type in ("evaluation", "run")]
    assert "report/test/reranker/ndcg@10" in wandb_run.summary  # the table and summary are always logged


def test_log_to_group_files_figures_and_tables_with_the_sweep(tmp_path):
    from lit_ir.tracking.groups import log_to_group

    image = tmp_path / "figure2.png"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.plot([10, 100], [0.5, 0.6])
    plt.savefig(image)
    plt.close()
    sweep_config = {"logger": {"wandb": {"project": "lit_ir", "group": "coder_cranfield:figure2", "tags": ["coder"],
                                         "offline": True}}}
    table = pd.DataFrame({"setting": ["N=10", "N=100"], "mrr@10": [0.5, 0.6], "p vs base": [None, 0.04]})
    folder = log_to_group(sweep_config, "figure2", tmp_path, images={"figure2": image}, tables={"figure2": table})
    (wandb_run,) = offline_runs(tmp_path)
    assert folder == wandb_run.folder
    assert (wandb_run.name, wandb_run.group, wandb_run.job_type) == ("figure2", "coder_cranfield:figure2", "analysis")
    assert wandb_run.table("figure2")["data"] == [["N=10", 0.5, None], ["N=100", 0.6, 0.04]]
    images = [row["figure2"] for row in wandb_run.history if row.get("figure2", {}).get("_type") == "image-file"]
    assert images and (wandb_run.folder / "files" / images[0]["path"]).is_file()
    assert log_to_group({"logger": {"csv": {}}}, "figure2", tmp_path / "none") is None  # runs without W&B


def test_encode_logs_a_run_of_job_type_encode(tmp_path):
    from lit_ir.encode import encode

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="encode", return_hydra_config=True, overrides=[
            "encoder=random", "logger=wandb", f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.runtime.output_dir={tmp_path / 'out'}", "progress=false", *TINY_TOY])
        HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    store = encode(cfg)
    (wandb_run,) = offline_runs(tmp_path / "out")
    assert (wandb_run.job_type, wandb_run.tags) == ("encode", ["encode", "toy"])
    assert wandb_run.summary["encode/documents"] == len(store) and wandb_run.summary["encode/dim"] == 32


@pytest.mark.slow  # ~70 s on 2 busy cores: a new process (Lightning, W&B) and two trainings
def test_optuna_sweep_returns_the_validation_metric_and_groups_its_trials(tmp_path):
    """hparams_search=cross_encoder_optuna through Hydra's Optuna sweeper, 2 trials: each trial is a W&B run of its
    own in the sweep's group, and the study's best value is a trial's best validation score."""
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "lit_ir.train", "--multirun", "experiment=quickstart",
               "hparams_search=cross_encoder_optuna", "hydra.sweeper.n_trials=2",
               "hydra.sweeper.sampler.n_startup_trials=2", "model.pretrained=random-bert-32x1", "model.max_length=48",
               "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1", "trainer.enable_progress_bar=false",
               "trainer.enable_model_summary=false", "logger=wandb", "data.train_batch_size=8", "data.rerank_depth=20", "data.first_stage.k=20",
               "test=false", f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}",
               f"hydra.sweep.dir={sweep}", *TINY_TOY]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    trials = offline_runs(sweep)
    assert len(trials) == 2 and len({trial.folder for trial in trials}) == 2  # one W&B run per trial
    assert {trial.group for trial in trials} == {"quickstart:sweep"}
    assert all("model.optimizer.lr=" in trial.name and "data.num_negatives=" in trial.name for trial in trials)
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    scores = [trial.summary["val/ndcg@10"] for trial in trials]  # one validation per trial: last = best
    assert best.best_value == pytest.approx(max(scores), abs=1e-6)
    assert set(best.best_params) == {"model.optimizer.lr", "data.num_negatives"}
