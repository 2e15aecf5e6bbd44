"""SIR end to end: on a collection whose right answers are known, every strategy learns to rank the relevant document
first from run-file candidates (which the untrained model ranks low); on the toy collection, V1/V2 compressors train
one after another (earlier ones untouched, V2 inheriting weights) and resume mid-way, and bad blocks fail clearly;
the paper's setup takes BM25, run files or a dense first stage."""

from __future__ import annotations

import json

import lightning as L
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback

from conftest import MARKERS, compose_train, known_answer_overrides, write_known_answer_collection
from lit_ir.data.trec import read_run
from lit_ir.models.cross_encoder import CrossEncoder
from lit_ir.models.hub import resolve_model
from lit_ir.modules.shared import build_model
from lit_ir.modules.sir import SIRModule
from lit_ir.retrieval.dense import DenseFirstStage
from lit_ir.retrieval.first_stage import BM25FirstStage, RunFiles
from lit_ir.train import run
from lit_ir.utils.hydra import CONFIG_DIR

# blocks of 1 + 5 BM25 negatives, 6 -> 4 -> 2; BM25's top 60 so that most tiny-toy queries have 5 negatives
TINY_SIR = ["sir.levels_3=[6,4,2]", "sir.levels_4=[6,4,3,2]", "sir.levels_v0=[6]", "data.num_negatives=5",
            "data.first_stage.k=60", "model.chunk_size=7", "sir.epochs=1", "sir.epochs_per_stage=1"]
EPOCHS = {"v1": 3, "v2": 3}  # one epoch per compressor; one epoch for the others


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def compose_sir(tmp_path, cache, experiment: str, overrides: list[str] = ()):
    epochs = EPOCHS.get(experiment.split("_")[1], 1)
    return compose_train(tmp_path, cache, [f"experiment={experiment}", *TINY_SIR, f"trainer.max_epochs={epochs}",
                                           *overrides])


@pytest.fixture(scope="module")
def known_answers(tmp_path_factory, shared_cache):
    """Every query has one relevant document among 5, told apart by a marker word; the first stage (run files)
    lists them in a chance order. The relevant documents carry the marker the untrained model scores lower, so that
    it starts out wrong whatever its random weights happen to prefer."""
    folder = write_known_answer_collection(tmp_path_factory.mktemp("known") / "collection", positive_marker="alpha")
    cfg = known_answer_sir(tmp_path_factory.mktemp("probe"), shared_cache, folder, "sir_v3")
    datamodule, module = instantiate(cfg.data, _convert_="all"), instantiate(cfg.model, _convert_="all")
    build_model(module, datamodule)  # the model every run below starts from (the same texts, the same init seed)
    docs = datamodule.collection.docs()
    module.model.eval()
    with torch.no_grad():
        preference = {}
        for marker in MARKERS:
            marked = [docs[doc_id] for doc_id in docs if docs[doc_id].startswith(marker)][:30]
            preference[marker] = module.score(["find find"] * len(marked), marked).mean().item()
    return write_known_answer_collection(folder, positive_marker=min(preference, key=preference.get))


def known_answer_sir(tmp_path, cache, folder, experiment: str, overrides: list[str] = ()):
    """96 training blocks of 1 + 5, 8 per step: 36 steps (v1/v2: 24 per compressor, the classifier's included);
    levels 6 -> 5 -> 4 (-> 3), so that the last level still ranks a list."""
    sequential = experiment.split("_")[1] in ("v1", "v2")
    return compose_train(tmp_path, cache, [
        f"experiment={experiment}", *known_answer_overrides(folder), *TINY_SIR, "sir.levels_3=[6,5,4]",
        "sir.levels_4=[6,5,4,3]", "data.train_batch_size=8",
        "model.optimizer.lr=2e-3", "model.scheduler.num_warmup_steps=2", "sir.epochs=3", "sir.epochs_per_stage=2",
        f"trainer.max_epochs={6 if sequential else 3}", "trainer.check_val_every_n_epoch=3",
        *overrides], toy=False)


@pytest.fixture(scope="module")
def untrained_mrr(known_answers, tmp_path_factory, shared_cache) -> float:
    """Test MRR@10 of the model before training (every strategy starts from the same weights)."""
    out = tmp_path_factory.mktemp("untrained")
    outputs = run(known_answer_sir(out, shared_cache, known_answers, "sir_v3", ["train=false"]))
    return json.loads(outputs["metrics/test"].read_text())["metrics"]["reranker"]["mrr@10"]


# V1/V2 as the paper reports them (Table 2: random selection; its Table 3 finds V1/V2 Top far worse)
@pytest.mark.parametrize("experiment", ["sir_v0", "sir_v1_random", "sir_v2_random", "sir_v3", "sir_v4_random_4levels"])
def test_each_strategy_learns_to_rank_the_relevant_document_first(tmp_path, shared_cache, known_answers, untrained_mrr,
                                                              experiment):
    outputs = run(known_answer_sir(tmp_path, shared_cache, known_answers, experiment))
    metrics = json.loads(outputs["metrics/test"].read_text())["metrics"]
    assert set(metrics["reranker"]) == {"mrr@10", "mrr@100", "map@20", "ndcg@20", "ndcg@10"}
    # the first stage is chance, the untrained model prefers the wrong marker; the trained one ranks the relevant first
    assert metrics["first_stage"]["mrr@10"] < 0.6 and untrained_mrr < 0.5, (metrics, untrained_mrr)
    assert metrics["reranker"]["mrr@10"] >= 0.9, metrics
    assert metrics["reranker"]["mrr@10"] >= untrained_mrr + 0.4
    # candidates came from the given run files: the report's first stage is the test run file
    given = read_run(known_answers / "runs" / "test.trec")
    assert read_run(tmp_path / "runs" / "test.first_stage.trec") == given
    reranked = read_run(tmp_path / "runs" / "test.rerank.trec")
    assert {q: set(d) for q, d in reranked.items()} == {q: set(d) for q, d in given.items()}
    logged = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    losses = logged["train/loss"].dropna()
    assert losses.tail(5).mean() < 0.8 * losses.head(5).mean(), losses.tolist()  # the compressor loss fell
    levels = {"sir_v0": [1], "sir_v1_random": [1], "sir_v2_random": [1], "sir_v3": [1, 3],
              "sir_v4_random_4levels": [1, 2, 3, 4]}
    for level in levels[experiment]:  # the per-level loss terms that make up the strategy's loss
        assert logged[f"train/loss_level{level}"].notna().any()
    assert CrossEncoder.from_pretrained(outputs["model"]).backbone.config.hidden_size == 32


class Snapshots(Callback):
    """Every compressor's weights when training starts, when each epoch's first step is about to run (after the
    module's stage switch) and at the end of each epoch."""

    def __init__(self):
        self.initial: list[dict[str, torch.Tensor]] = []
        self.starts: list[list[dict[str, torch.Tensor]]] = []
        self.ends: list[list[dict[str, torch.Tensor]]] = []

    @staticmethod
    def _take(module) -> list[dict[str, torch.Tensor]]:
        return [{key: value.clone() for key, value in module.stage_model(stage).state_dict().items()}
                for stage in range(module.num_stages)]

    def on_train_start(self, trainer, module) -> None:
        self.initial = self._take(module)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.starts.append(self._take(module))

    def on_train_epoch_end(self, trainer, module) -> None:
        self.ends.append(self._take(module))


def same(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


def fit_with_snapshots(cfg, ckpt_path=None) -> tuple:
    L.seed_everything(cfg.seed)
    datamodule = instantiate(cfg.data, _convert_="all")
    module = instantiate(cfg.model, _convert_="all")
    snapshots = Snapshots()
    trainer = L.Trainer(max_epochs=cfg.trainer.max_epochs, accelerator="cpu", devices=1, logger=False,
                        default_root_dir=cfg.paths.output_dir,
                        callbacks=[snapshots, instantiate(cfg.callbacks.model_checkpoint)],
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        check_val_every_n_epoch=100)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return module, snapshots


@pytest.mark.parametrize("strategy", ["v1", "v2"])
def test_compressors_train_one_after_another(tmp_path, shared_cache, strategy):
    module, snap = fit_with_snapshots(compose_sir(tmp_path, shared_cache, f"sir_{strategy}"))
    initial, ends = snap.initial, snap.ends  # ends[s]: after stage s (one epoch per stage)
    assert module.stage == 2 and len(ends) == 3
    assert same(initial[0], initial[1]) and same(initial[1], initial[2])  # "the same pretrained checkpoint"
    for stage in range(3):
        before = ends[stage - 1] if stage else initial
        assert not same(ends[stage][stage], snap.starts[stage][stage]), f"compressor {stage} did not train"
        for other in range(3):
            if other != stage:  # only the current stage's compressor moves
                assert same(ends[stage][other], before[other]), f"compressor {other} moved in stage {stage}"
    for stage in (1, 2):  # where each compressor starts: v1 the pretrained weights, v2 its predecessor's end
        expected = initial[stage] if strategy == "v1" else ends[stage - 1][stage - 1]
        assert same(snap.starts[stage][stage], expected)
    assert module.ranker is module.model  # the classifier reranks once every stage has trained


def test_v1_resumes_mid_way_from_the_last_checkpoint(tmp_path, shared_cache):
    first = compose_sir(tmp_path / "first", shared_cache, "sir_v1", ["trainer.max_epochs=2"])
    _, snap = fit_with_snapshots(first)  # stages 1 and 2 of 3, then stop
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["sir_stage"] == 1
    resumed = compose_sir(tmp_path / "resumed", shared_cache, "sir_v1")
    module, rest = fit_with_snapshots(resumed, ckpt_path=str(last))
    assert len(rest.ends) == 1 and module.stage == 2  # only the remaining epoch, stage 3, ran
    for stage in range(3):  # it starts exactly where the first run stopped
        assert same(rest.initial[stage], snap.ends[-1][stage])
    assert same(rest.ends[0][0], snap.ends[-1][0]) and same(rest.ends[0][1], snap.ends[-1][1])
    assert not same(rest.ends[0][2], snap.ends[-1][2])  # the classifier trained


def test_bad_blocks_fail_clearly(tmp_path, shared_cache):
    with pytest.raises(ValueError, match="data.num_negatives=3"):
        run(compose_sir(tmp_path / "width", shared_cache, "sir_v3", ["data.num_negatives=3"]))
    with pytest.raises(ValueError, match="fewer than 5 first-stage negatives"):
        run(compose_sir(tmp_path / "short", shared_cache, "sir_v3", ["data.short_pools=error"]))
    with pytest.raises(ValueError, match="monitor=null"):
        run(compose_sir(tmp_path / "monitor", shared_cache, "sir_v1",
                        ["callbacks.model_checkpoint.monitor=val/ndcg@10"]))
    with pytest.raises(ValueError, match="exceeds"):
        run(compose_sir(tmp_path / "epochs", shared_cache, "sir_v1", ["trainer.max_epochs=4"]))


SIR_EXPERIMENTS = sorted(path.stem for path in (CONFIG_DIR / "experiment").glob("sir_*.yaml"))


@pytest.mark.parametrize("setup", ["toy", "cranfield", "msmarco_document"])
def test_every_experiment_composes_into_a_consistent_module(tmp_path, shared_cache, setup):
    assert len(SIR_EXPERIMENTS) == 13
    for experiment in SIR_EXPERIMENTS:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[f"experiment={experiment}", f"sir_setup={setup}",
                                              f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}"])
        module = instantiate(cfg.model, _convert_="all")  # validates levels, selection, strategy (no weights yet)
        assert cfg.data.num_negatives == module.levels.widths[0] - 1, experiment
        if module.strategy == "v0":  # one level: the whole block of random negatives
            assert len(module.levels) == 1
        else:
            assert len(module.levels) == (4 if "4levels" in experiment else 3), experiment
            assert set(module.levels.selection) == {"random" if "random" in experiment else "top"}, experiment
        if setup == "msmarco_document":  # the paper's blocks
            assert module.levels.widths[:3] == (88, 48, 16)[: len(module.levels)]
        if module.sequential:
            assert cfg.trainer.max_epochs == module.num_stages * cfg.model.epochs_per_stage, experiment
            assert cfg.callbacks.model_checkpoint.monitor is None
        assert set(cfg.collection.metrics) >= {"mrr@10", "mrr@100", "map@20", "ndcg@20"}


def test_paper_setup_takes_run_files_or_a_dense_first_stage(tmp_path):
    """sir_setup=msmarco_document: BM25 offline by default; the paper's HDCT/ANCE top 100 from run files; or dense."""
    def first_stage(*overrides):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=["experiment=sir_v4", "sir_setup=msmarco_document", *overrides,
                                              f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}"])
        return instantiate(cfg.data.first_stage)

    assert isinstance(first_stage(), BM25FirstStage) and first_stage().k == 100
    runs = first_stage("first_stage@data.first_stage=run_files", f"data.first_stage.folder={tmp_path / 'hdct'}")
    assert isinstance(runs, RunFiles) and runs.k == 100 and runs.folder == tmp_path / "hdct"
    dense = first_stage("first_stage@data.first_stage=dense", "+encoder=random")
    assert isinstance(dense, DenseFirstStage) and dense.k == 100 and dense.encoder_config["path"] == "random-bert-32x1"


def test_chunking_and_checkpointing_change_neither_scores_nor_gradients(shared_cache):
    texts = ["wind tunnel flow", "heat transfer in boundary layers", "supersonic shock waves over wings"] * 5
    path = resolve_model("random-bert-32x1", cache_dir=shared_cache, vocab_texts=texts)
    results = []
    for chunk_size, checkpointing in [(64, False), (3, False), (3, True)]:
        module = SIRModule(str(path), chunk_size=chunk_size, gradient_checkpointing=checkpointing, dropout=0.0,
                           max_length=32, max_query_length=8, levels=[6, 4, 2])
        module.configure_model()
        tokens = module.pair_tokenizer(["flow over wings"] * 6, texts[:6])
        scores = module._score_rows(module.model, tokens, torch.arange(6), grad=True)
        scores.sum().backward()
        results.append((scores.detach(), module.model.score_head.weight.grad.clone()))
    for scores, grad in results[1:]:
        assert torch.allclose(scores, results[0][0], atol=1e-5)
        assert torch.allclose(grad, results[0][1], atol=1e-5)
