"""CODER end to end on the toy collection (random BERT): training changes only the query encoder, test writes the
reranked and single-stage dense runs and the report evaluates them; bad input fails before training; the paper's
experiments compose and, offline, fail fast and clearly."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from transformers import AutoTokenizer

from conftest import MARKERS, TINY_TOY, known_answer_overrides, write_known_answer_collection
from lit_ir.data.embedding_store import EmbeddingStore, ids_digest
from lit_ir.data.trec import read_run
from lit_ir.errors import CollectionUnavailableError, InputError
from lit_ir.models.bi_encoder import BiEncoder, weights_sha
from lit_ir.modules.shared import build_model
from lit_ir.retrieval.encoding import encode_documents
from lit_ir.train import run
from lit_ir.utils.hydra import CONFIG_DIR

TINY_CODER = [
    "experiment=coder_cranfield", "collection=toy", *TINY_TOY, "encoder=random",
    "data.num_candidates=20", "data.rerank_depth=20", "data.train_batch_size=8", "model.dense_k=20",
    "model.optimizer.lr=1e-3", "model.scheduler.num_warmup_steps=1",
    "trainer.max_epochs=1", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=csv",
]


def compose_coder(output_dir: Path, cache_dir: Path, overrides: list[str] = ()) -> DictConfig:
    """The real `train` config with a CODER experiment, as `python -m lit_ir.train` composes it, for a tiny CPU run."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True, overrides=[
            *overrides, f"paths.root_dir={output_dir}", f"paths.cache_dir={cache_dir}",
            f"paths.output_dir={output_dir}", f"hydra.runtime.output_dir={output_dir}"])
        HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _store(cfg: DictConfig) -> EmbeddingStore:
    datamodule = instantiate(cfg.data, _convert_="all")
    return datamodule.store


def known_answer_coder(output_dir: Path, cache_dir: Path, folder: Path, overrides: list[str] = ()) -> DictConfig:
    """CODER on a known-answer collection: 96 training queries, 8 per step, 36 steps; candidates (M_C and M_F) from
    its chance run files; single-stage retrieval of the top 10."""
    return compose_coder(output_dir, cache_dir, [
        "experiment=coder_cranfield", "encoder=random", *known_answer_overrides(folder), "data.candidates=null",
        "data.num_candidates=20", "data.rerank_depth=20", "data.train_batch_size=8", "model.dense_k=10",
        "model.optimizer.lr=3e-3", "model.scheduler.num_warmup_steps=1", "model.dropout=0.0", "trainer.max_epochs=3",
        "trainer.val_check_interval=12", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "logger=csv", *overrides])


@pytest.fixture(scope="module")
def known_answers(tmp_path_factory, shared_cache) -> Path:
    """Queries 'seek seek' and 'find find' (words no document contains) each ask for one marker of document; each
    asks for the marker the untrained base model scores lower for it, so the base model starts out wrong."""
    folder = write_known_answer_collection(tmp_path_factory.mktemp("known") / "collection",
                                           asks={"find": "alpha", "seek": "alpha"})
    cfg = known_answer_coder(tmp_path_factory.mktemp("probe"), shared_cache, folder)
    datamodule, module = instantiate(cfg.data, _convert_="all"), instantiate(cfg.model, _convert_="all")
    build_model(module, datamodule)  # the base model every run below starts from
    base, docs = module.base_model().eval(), datamodule.collection.docs()
    asks = {}
    with torch.no_grad():
        for word in ("find", "seek"):
            query = base.encode_queries([f"{word} {word}"])
            preference = {marker: base.score(query, base.encode_docs(
                [docs[d] for d in docs if docs[d].startswith(marker)][:30])).mean().item() for marker in MARKERS}
            asks[word] = min(preference, key=preference.get)
    return write_known_answer_collection(folder, asks=asks)


def _marker_share(run: dict[str, dict[str, float]], docs, asked: dict[str, str]) -> float:
    """The share of retrieved documents that carry the marker their query asks for."""
    hits = [docs[doc_id].startswith(asked[query_id]) for query_id, ranked in run.items() for doc_id in ranked]
    return sum(hits) / len(hits)


def test_coder_learns_what_each_query_asks_for_in_the_query_encoder_only(tmp_path, shared_cache, known_answers):
    cfg = known_answer_coder(tmp_path, shared_cache, known_answers)
    outputs = run(cfg)
    metrics = json.loads(outputs["metrics/test"].read_text())["metrics"]
    assert set(metrics) == {"first_stage", "reranker", "dense", "base_rerank", "base_dense"}
    # reranking the chance run: the base model prefers the wrong marker, CODER the right one
    assert metrics["first_stage"]["mrr@10"] < 0.6 and metrics["base_rerank"]["mrr@10"] < 0.5, metrics
    assert metrics["reranker"]["mrr@10"] >= 0.9
    assert metrics["reranker"]["mrr@10"] >= metrics["base_rerank"]["mrr@10"] + 0.4
    given = read_run(known_answers / "runs" / "test.trec")
    reranked = read_run(tmp_path / "runs" / "test.rerank.trec")
    assert {q: set(d) for q, d in reranked.items()} == {q: set(d) for q, d in given.items()}
    # single-stage over the whole store: the top 10 now carry the asked marker (any such document is a right kind)
    collection = instantiate(cfg.collection.source)
    docs, qrels = collection.docs(), collection.qrels("test")
    asked = {query_id: docs[next(iter(judged))].split()[0] for query_id, judged in qrels.items()}
    dense, base_dense = (read_run(tmp_path / "runs" / f"test.{name}.trec") for name in ("dense", "base_dense"))
    assert _marker_share(dense, docs, asked) >= 0.9 and _marker_share(base_dense, docs, asked) <= 0.5
    losses = pd.read_csv(tmp_path / "csv" / "metrics.csv")["train/loss"].dropna()
    assert losses.tail(5).mean() < 0.5 * losses.head(5).mean(), losses.tolist()

    # only the query encoder trained: the export pairs it with the base document encoder that made the store
    store = instantiate(cfg.data, _convert_="all").store
    exported = BiEncoder.from_pretrained(outputs["model"])
    assert not exported.shared
    assert exported.fingerprint()["weights_sha"] == store.fingerprint["weights_sha"]
    assert weights_sha(exported.query_encoder) != store.fingerprint["weights_sha"]
    # the single-stage run is the exported query encoder searching the store
    queries = collection.queries("test")
    qid = next(iter(queries))
    query = exported.eval().encode_queries([queries[qid]]).detach().numpy()[0]
    best = max(dense[qid], key=dense[qid].get)
    assert float(query @ store.embeddings[store.row_of[best]].astype(np.float32)) == pytest.approx(
        dense[qid][best], rel=1e-3, abs=1e-3)


def test_coder_validates_during_training_and_reports_against_the_first_stage(tmp_path, shared_cache):
    outputs = run(compose_coder(tmp_path, shared_cache, TINY_CODER))
    report = json.loads(outputs["metrics/test"].read_text())
    assert set(report["p_values"]) == {"reranker", "dense", "base_rerank", "base_dense"}
    logged = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    assert logged["val/mrr@10"].notna().sum() == 2  # 4 training steps, validated every 2
    reranked = read_run(tmp_path / "runs" / "test.rerank.trec")
    dense = read_run(tmp_path / "runs" / "test.dense.trec")
    assert len(reranked) == 8 and len(dense) == 8 and all(len(docs) == 20 for docs in dense.values())
    # queries cut to the encoder's query length, counted once per split (documents were cut when encoded)
    cfg = compose_coder(tmp_path, shared_cache, TINY_CODER)
    truncation = json.loads((tmp_path / "truncation.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(outputs["model"])
    for split in ("train", "dev", "test"):
        queries = instantiate(cfg.collection.source).queries(split)
        cut = sum(len(tokenizer(text)["input_ids"]) > 32 for text in queries.values())
        assert (truncation[split]["queries"], truncation[split]["truncated_queries"]) == (len(queries), cut), split
    assert truncation["test"]["limits"] == {"query": "encoder.query_max_length=32"}


def test_missing_candidate_or_truncated_store_fails_before_training(tmp_path, shared_cache):
    cfg = compose_coder(tmp_path, shared_cache, TINY_CODER)
    store = _store(cfg)
    # a store that lacks documents the first stage retrieves
    partial = tmp_path / "partial-store"
    shutil.copytree(store.path, partial)
    meta = json.loads((partial / "store.json").read_text())
    keep = len(store) // 2
    (partial / "ids.txt").write_text("".join(f"{i}\n" for i in store.ids[:keep]))
    with open(partial / "embeddings.bin", "r+b") as handle:
        handle.truncate(keep * store.dim * store.embeddings.dtype.itemsize)
    meta.update(count=keep, ids_digest=ids_digest(store.ids[:keep]))
    (partial / "store.json").write_text(json.dumps(meta))
    with open_dict(cfg):
        cfg.data.embedding_store = str(partial)
    datamodule = instantiate(cfg.data, _convert_="all")
    with pytest.raises(InputError, match="is not in the embedding store"):
        datamodule.prepare_data()

    # a memmap shorter than its sidecar says
    truncated = tmp_path / "truncated-store"
    shutil.copytree(store.path, truncated)
    with open(truncated / "embeddings.bin", "r+b") as handle:
        handle.truncate(100)
    with open_dict(cfg):
        cfg.data.embedding_store = str(truncated)
    with pytest.raises(InputError, match="truncated"):
        instantiate(cfg.data, _convert_="all").prepare_data()


def test_query_without_candidates_fails_before_training(tmp_path, shared_cache):
    cfg = compose_coder(tmp_path, shared_cache, TINY_CODER)
    datamodule = instantiate(cfg.data, _convert_="all")
    bm25 = datamodule.candidates

    def drops_a_query(collection, split):
        run = bm25(collection, split)
        run[next(iter(run))] = {}  # as a first stage leaves a query it found nothing for
        return run

    datamodule.candidates = drops_a_query
    with pytest.raises(InputError, match="has no candidates"):
        datamodule.prepare_data()


def test_store_of_another_model_fails_before_training(tmp_path, shared_cache):
    cfg = compose_coder(tmp_path, shared_cache, TINY_CODER)
    collection = instantiate(cfg.collection.source)
    docs = collection.docs()
    other = BiEncoder.from_pretrained("random-bert-16x1", pooling="mean", cache_dir=shared_cache,
                                      vocab_texts=[docs[d] for d in docs])
    path = encode_documents(other, docs, tmp_path / "other-store", progress=False).path
    outputs_dir = tmp_path / "run"
    cfg = compose_coder(outputs_dir, shared_cache, [*TINY_CODER, f"data.embedding_store={path}"])
    with pytest.raises(InputError, match=r"does not fit the encoder.*dim: store has 16, expected 32"):
        run(cfg)
    assert not (outputs_dir / "checkpoints").exists()  # not one training step


@pytest.mark.parametrize("experiment, error, message", [
    ("coder_tasb", CollectionUnavailableError, "msmarco-passage"),
    ("coder_tripclick", CollectionUnavailableError, "tripclick"),
    ("coder_tripclick_raw", CollectionUnavailableError, "tripclick"),
])
def test_paper_experiments_compose_and_fail_fast_offline(tmp_path, shared_cache, monkeypatch, experiment, error,
                                                          message):
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "ir_datasets"))
    cfg = compose_coder(tmp_path, shared_cache, [f"experiment={experiment}", "logger=none"])
    assert cfg.model.optimizer._target_ == "torch.optim.RAdam" and cfg.model.optimizer.lr == pytest.approx(1.73e-6)
    assert cfg.model.scheduler.num_warmup_steps == 9000 and cfg.data.train_batch_size == 32
    # the authors' schedule: constant after warm-up, x 0.707 after 8000 steps without gain, floor 0.01 x lr
    assert cfg.model.scheduler._target_ == "lit_ir.optim.ConstantWithWarmup"
    plateau = cfg.model.plateau
    assert (plateau.factor, plateau.patience_steps, plateau.min_lr_ratio) == (0.707, 8000, 0.01)
    assert cfg.trainer.val_check_interval == 2000 and cfg.model.optimizer.decoupled_weight_decay
    assert cfg.trainer.max_epochs == 15 and cfg.data.num_candidates == 1000
    assert (cfg.encoder.query_max_length, cfg.encoder.doc_max_length) == (32, 256)
    with pytest.raises(error, match=message):
        instantiate(cfg.data, _convert_="all").prepare_data()


@pytest.mark.parametrize("experiment", ["coder_tripclick", "coder_tripclick_raw"])
def test_tripclick_is_table_2s_setting(tmp_path, shared_cache, monkeypatch, experiment):
    """CODER(BERT-Dot, M_C = BM25): BM25 candidates, validated on the official val set, tested on the official
    HEAD (DCTR, RAW), TORSO and TAIL test sets, whose qrels come from local files."""
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "ir_datasets"))
    cfg = compose_coder(tmp_path, shared_cache, [f"experiment={experiment}", "logger=none"])
    assert cfg.data.candidates._target_ == "lit_ir.retrieval.first_stage.BM25FirstStage"
    assert cfg.data.candidates.k == 1000 and cfg.data.first_stage._target_.endswith("BM25FirstStage")
    assert cfg.collection.val_split == "val"
    assert list(cfg.collection.test_splits) == ["test_head_dctr", "test_head", "test_torso", "test_tail"]
    source = cfg.collection.source
    assert {split: source.splits[split] for split in cfg.collection.test_splits} == {
        "test_head_dctr": "tripclick/test/head", "test_head": "tripclick/test/head",
        "test_torso": "tripclick/test/torso", "test_tail": "tripclick/test/tail"}
    assert source.splits.val == ("tripclick/val/head/dctr" if experiment == "coder_tripclick" else "tripclick/val/head")
    collection = instantiate(source)
    expected = tmp_path / "ir_datasets" / "tripclick" / "test_qrels" / "qrels.raw.torso.test.txt"
    with pytest.raises(CollectionUnavailableError, match=f"not at {expected}. Put them there"):
        collection.qrels("test_torso")


def test_repbert_needs_its_model_folder(tmp_path, shared_cache):
    cfg = compose_coder(tmp_path, shared_cache, ["experiment=coder_repbert", "logger=none"])
    assert cfg.encoder.pooling == "mean" and cfg.collection.test_splits == ["dev", "dl19", "dl20"]
    with pytest.raises(Exception, match=r"encoder\.path"):
        instantiate(cfg.data, _convert_="all")


def _script(name: str):
    path = Path(__file__).resolve().parents[1] / "experiments" / "coder" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"coder_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_experiment_scripts_read_finished_runs(tmp_path, shared_cache):
    runs = tmp_path / "sweep"
    for job, n in enumerate([5, 20]):
        run(compose_coder(runs / str(job), shared_cache, [*TINY_CODER, f"data.num_candidates={n}"]))
    figure2 = _script("figure2")
    folders = figure2.run_folders([runs])
    table, curves = figure2.collect(folders, "test", "mrr@10")
    assert table["num_candidates"].tolist() == [5, 20] and set(curves) == {"N=5", "N=20"}
    for job in (0, 1):
        report = json.loads((runs / str(job) / "metrics" / "test" / "metrics.json").read_text())
        assert table.loc[job, "CODER rerank mrr@10"] == pytest.approx(report["metrics"]["reranker"]["mrr@10"])
        assert table.loc[job, "base mrr@10"] == pytest.approx(report["metrics"]["base_rerank"]["mrr@10"])
    figure2.plot(table, curves, "mrr@10", "test", tmp_path / "figure2.png")
    assert (tmp_path / "figure2.png").stat().st_size > 1000

    rows = _script("compare_base").compare(runs / "0", "test", ["ndcg@10", "mrr@10"])
    systems = [row["system"] for row in rows]
    assert systems == ["first_stage", "base_dense (base model)", "dense (CODER)", "base_rerank (base model)",
                       "reranker (CODER)"]
    assert all(0.0 <= rows[2][f"p {m}"] <= 1.0 for m in ("ndcg@10", "mrr@10")) and rows[2]["M_C"] == "BM25"


@pytest.mark.parametrize("ablation, key, value", [
    ("max_margin", "model.loss", "max_margin"), ("random_negatives", "data.negatives", "random"),
    ("in_batch", "data.in_batch_negatives", 300), ("transformer_scorer", "model.scorer.num_layers", 2),
])
def test_each_ablation_trains_in_the_direction_its_loss_asks(tmp_path, shared_cache, known_answers, ablation, key,
                                                              value):
    """Paper section 4.4 / A.3 variants: each still moves the relevant documents up from the base model's ranking."""
    small = ["model.scorer.d_model=32", "model.scorer.dim_feedforward=64", "model.scorer.num_heads=2"]
    cfg = known_answer_coder(tmp_path, shared_cache, known_answers, [
        f"+coder_ablation={ablation}", "trainer.max_epochs=2", "callbacks=none",
        *(small if ablation == "transformer_scorer" else [])])
    assert OmegaConf.select(cfg, key) == value
    outputs = run(cfg)
    metrics = json.loads(outputs["metrics/test"].read_text())["metrics"]
    assert metrics["base_rerank"]["mrr@10"] < 0.5, metrics
    assert metrics["reranker"]["mrr@10"] >= metrics["base_rerank"]["mrr@10"] + 0.4, metrics
    if ablation == "transformer_scorer":  # the learnt scorer travels with the export
        assert (outputs["model"] / "scorer.pt").is_file()


def test_ddp_spawn_matches_single_process(tmp_path, shared_cache):
    # 2 ranks x 4 queries with a fixed order and SGD average to the same step as 1 rank x 8 queries (see test_train)
    common = [*TINY_CODER, "data.shuffle=false", "callbacks=none", "logger=none", "model.dropout=0.0",
              "model.optimizer._target_=torch.optim.SGD", "~model.optimizer.eps",
              "~model.optimizer.decoupled_weight_decay", "model.optimizer.lr=0.1"]
    single = run(compose_coder(tmp_path / "single", shared_cache, [*common, "data.train_batch_size=8"]))
    ddp = run(compose_coder(tmp_path / "ddp", shared_cache, [*common, "data.train_batch_size=4", "trainer=ddp_spawn"]))
    one, two = (read_run(tmp_path / name / "runs" / "test.rerank.trec") for name in ("single", "ddp"))
    assert {q: set(d) for q, d in one.items()} == {q: set(d) for q, d in two.items()}
    for query_id, docs in one.items():
        for doc_id, score in docs.items():
            assert two[query_id][doc_id] == pytest.approx(score, abs=2e-3), (query_id, doc_id)
    single_metrics = json.loads(single["metrics/test"].read_text())["metrics"]
    ddp_metrics = json.loads(ddp["metrics/test"].read_text())["metrics"]
    for metric, value in single_metrics["reranker"].items():
        assert ddp_metrics["reranker"][metric] == pytest.approx(value, abs=0.02), metric
