"""Dense retrieval: FAISS indexes against brute force, document encoding (resume, DDP shards), the encode and
retrieve entry points and the dense first stage on the toy collection."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conftest import TINY_TOY
from lit_ir.data.collections import BeirCollection
from lit_ir.data.embedding_store import EmbeddingStore, EmbeddingStoreWriter, partial_path
from lit_ir.data.trec import read_run
from lit_ir.encode import encode
from lit_ir.models.bi_encoder import BiEncoder
from lit_ir.models.hub import build_random_bert
from lit_ir.retrieval.dense import DenseFirstStage, DenseIndex
from lit_ir.retrieval.encoding import encode_documents, encode_texts, shard
from lit_ir.utils.hydra import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]
WORDS = "kipoli polahu karotu fiji suce verasa tohuse zida zoka muguze kujo bige mehuke".split()
DOCS = {f"d{i}": " ".join(WORDS[(i * j) % len(WORDS)] for j in range(1, 2 + i % 9)) for i in range(23)}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_random_bert(tmp_path_factory.mktemp("models"), hidden=32, layers=1, vocab_texts=DOCS.values())


def brute_force_top_k(docs: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = torch.from_numpy(queries) @ torch.from_numpy(docs).T
    top = scores.topk(k, dim=1)
    return top.values.numpy(), top.indices.numpy()


# ---- FAISS -------------------------------------------------------------------------------------------------------
def test_flat_index_equals_brute_force():
    rng = np.random.default_rng(0)
    docs, queries = rng.normal(size=(500, 16)).astype(np.float32), rng.normal(size=(20, 16)).astype(np.float32)
    index = DenseIndex.from_matrix(docs.astype(np.float16), [f"d{i}" for i in range(500)], "flat", use_gpu=False)
    scores, rows = index.search(queries, 10)
    expected_scores, expected_rows = brute_force_top_k(docs.astype(np.float16).astype(np.float32), queries, 10)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)
    run = index.search_run([f"q{i}" for i in range(20)], torch.from_numpy(queries), 10)
    assert list(run["q3"]) == [f"d{row}" for row in expected_rows[3]]
    assert run["q3"][f"d{expected_rows[3][0]}"] == pytest.approx(float(expected_scores[3][0]), rel=1e-5)
    assert index.search(queries, 10_000)[1].shape == (20, 500)  # k clipped to the collection


def test_ivf_and_hnsw_are_options():
    rng = np.random.default_rng(1)
    docs, queries = rng.normal(size=(2000, 16)).astype(np.float32), rng.normal(size=(30, 16)).astype(np.float32)
    ids = [f"d{i}" for i in range(2000)]
    _, exact = brute_force_top_k(docs, queries, 10)
    ivf = DenseIndex.from_matrix(docs, ids, "ivf", use_gpu=False, nlist=16, nprobe=16)  # every cell: exact
    np.testing.assert_array_equal(ivf.search(queries, 10)[1], exact)
    hnsw = DenseIndex.from_matrix(docs, ids, "hnsw", use_gpu=False, ef_search=256)
    found = hnsw.search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
    assert recall >= 0.95
    with pytest.raises(ValueError, match="unknown index kind"):
        DenseIndex.from_matrix(docs, ids, "lsh")


# ---- encoding ----------------------------------------------------------------------------------------------------
def test_encode_texts_keeps_the_input_order(tiny_model):
    encoder = BiEncoder.from_pretrained(tiny_model, pooling="mean")
    texts = list(DOCS.values())
    with torch.inference_mode():
        one_by_one = torch.cat([encoder.encode_docs([text]) for text in texts]).numpy()
    np.testing.assert_allclose(encode_texts(encoder, texts, "doc", batch_size=4), one_by_one, atol=1e-5)
    assert encoder.training  # restored after encoding in eval mode


def test_encode_documents_resumes_after_a_crash(tiny_model, tmp_path, monkeypatch):
    encoder = BiEncoder.from_pretrained(tiny_model, pooling="mean")
    whole = encode_documents(encoder, DOCS, tmp_path / "whole", chunk_size=5, progress=False)
    assert whole.ids == list(DOCS) and whole.dtype == np.float16
    np.testing.assert_allclose(whole.embeddings, encode_texts(encoder, list(DOCS.values()), "doc"), atol=1e-3)

    real_write, calls = EmbeddingStoreWriter.write, []

    def crash_on_third_chunk(self, start, embeddings, **kwargs):
        calls.append(start)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash")
        real_write(self, start, embeddings, **kwargs)

    monkeypatch.setattr(EmbeddingStoreWriter, "write", crash_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        encode_documents(encoder, DOCS, tmp_path / "crashed", chunk_size=5, progress=False)
    assert not (tmp_path / "crashed").exists() and partial_path(tmp_path / "crashed").is_dir()
    monkeypatch.setattr(EmbeddingStoreWriter, "write", real_write)
    resumed_writes = []
    monkeypatch.setattr(EmbeddingStoreWriter, "write",
                        lambda self, start, e, **kw: (resumed_writes.append(start), real_write(self, start, e, **kw)))
    crashed = encode_documents(encoder, DOCS, tmp_path / "crashed", chunk_size=5, progress=False)
    assert resumed_writes == [10, 15, 20]  # the two chunks written before the crash were not encoded again
    assert (tmp_path / "crashed" / "embeddings.bin").read_bytes() == (tmp_path / "whole" / "embeddings.bin").read_bytes()
    assert crashed.meta == whole.meta  # the count of truncated documents included, across the crash

    other = BiEncoder.from_pretrained(tiny_model, pooling="cls")
    with pytest.raises(Exception, match="pooling: store has 'mean', expected 'cls'"):
        encode_documents(other, DOCS, tmp_path / "whole", progress=False)  # the store was made by another encoder


def test_the_store_counts_the_documents_cut_to_the_encoder_length(tiny_model, tmp_path, monkeypatch):
    encoder = BiEncoder.from_pretrained(tiny_model, pooling="mean", doc_max_length=4)
    expected = sum(len(encoder.tokenizer(text)["input_ids"]) > 4 for text in DOCS.values())
    assert 0 < expected < len(DOCS)
    store = encode_documents(encoder, DOCS, tmp_path / "store", chunk_size=5, progress=False)
    assert store.meta["truncated_documents"] == expected
    # crashed after two chunks and resumed: the chunks written before the crash still count
    real_write = EmbeddingStoreWriter.write

    def crash_on_third_chunk(self, start, embeddings, **kwargs):
        if start == 10:
            raise KeyboardInterrupt("simulated crash")
        real_write(self, start, embeddings, **kwargs)

    monkeypatch.setattr(EmbeddingStoreWriter, "write", crash_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        encode_documents(encoder, DOCS, tmp_path / "resumed", chunk_size=5, progress=False)
    monkeypatch.setattr(EmbeddingStoreWriter, "write", real_write)
    resumed = encode_documents(encoder, DOCS, tmp_path / "resumed", chunk_size=5, progress=False)
    assert resumed.meta["truncated_documents"] == expected


def test_shards_split_rows_contiguously():
    assert [shard(10, r, 3) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]
    assert shard(5, 0, 1) == (0, 5)


def _ddp_worker(rank: int, world_size: int, init_file: str, model: str, path: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        encoder = BiEncoder.from_pretrained(model, pooling="mean")
        encode_documents(encoder, DOCS, path, chunk_size=4, progress=False, across_ranks=True)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # ~25 s on 2 busy cores: each process imports torch and transformers
def test_two_gloo_processes_fill_one_store(tiny_model, tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tiny_model), str(tmp_path / "ddp")), nprocs=2)
    ddp = EmbeddingStore.open(tmp_path / "ddp")
    single = encode_documents(BiEncoder.from_pretrained(tiny_model, pooling="mean"), DOCS, tmp_path / "single",
                              progress=False)
    assert ddp.ids == single.ids and ddp.meta == single.meta
    np.testing.assert_allclose(ddp.embeddings, single.embeddings, atol=1e-3)


# ---- entry points and the dense first stage ----------------------------------------------------------------------
def compose_encode(tmp_path: Path, overrides: list[str] = ()):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="encode", overrides=[
            "encoder=random", f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}",
            "progress=false", *TINY_TOY, *overrides])


def test_encode_entry_point_and_dense_first_stage(tmp_path):
    cfg = compose_encode(tmp_path)
    store = encode(cfg)
    assert store.path.parent == tmp_path / "cache" / "first_stage" / "toy"  # where first_stage=dense looks
    assert store.dim == 32 and store.fingerprint["model"] == "random-bert-32x1"
    assert (tmp_path / "cache" / "models").is_dir()  # the random model lives in the shared model cache

    from hydra.utils import instantiate

    dense: DenseFirstStage = instantiate(cfg.first_stage, k=5)
    collection = instantiate(cfg.collection.source)
    run = dense(collection, "dev")
    assert list(run) == list(collection.queries("dev")) and all(len(docs) == 5 for docs in run.values())
    # the same ranking as brute force over the stored embeddings
    queries = collection.queries("dev")
    q = encode_texts(dense.encoder(collection), list(queries.values()), "query")
    _, rows = brute_force_top_k(store.embeddings.astype(np.float32), q, 5)
    assert [list(docs) for docs in run.values()] == [[store.ids[r] for r in row] for row in rows]
    assert encode(cfg).path == store.path  # a second call reuses the finished store
    cached = instantiate(cfg.first_stage, k=5)
    assert cached(collection, "dev") == run
    assert next(cached._encoder.parameters()).device.type == "cpu"  # loaded to hash its weights, not moved to encode


def test_retrieve_entry_point_writes_a_dense_run(tmp_path):
    command = [sys.executable, "-m", "lit_ir.retrieve", "first_stage=dense", "encoder=random", "split=test", "k=7",
               f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path}",
               f"output={tmp_path / 'run.trec'}", *TINY_TOY]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = read_run(tmp_path / "run.trec")
    assert len(run) == 8 and all(len(docs) == 7 for docs in run.values())
    assert (tmp_path / "run.trec").read_text().split("\n")[0].endswith(" dense")


def write_beir(path: Path, docs: dict[str, str], queries: dict[str, str]) -> Path:
    (path / "qrels").mkdir(parents=True, exist_ok=True)
    (path / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": t}) + "\n" for d, t in docs.items()))
    (path / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (path / "qrels" / "dev.tsv").write_text("".join(f"{q}\td0\t1\n" for q in queries))
    return path


QUERIES = {"q1": "kipoli polahu karotu fiji suce", "q2": "zoka muguze kujo bige mehuke", "q3": "verasa"}


def dense_run(model: Path, collection: Path, cache: Path, **encoder) -> dict:
    first_stage = DenseFirstStage({"path": str(model), "pooling": "mean", "similarity": "cosine", **encoder}, k=5, cache_dir=cache,
                                  dtype="float32")
    return first_stage(BeirCollection(collection), "dev")


def test_dense_cache_is_keyed_by_the_weights_the_documents_and_the_query_side(tmp_path, tiny_model):
    model, cache = tmp_path / "encoder", tmp_path / "cache"
    shutil.copytree(tiny_model, model)
    collection = write_beir(tmp_path / "toy", DOCS, QUERIES)
    before = dense_run(model, collection, cache)
    assert before == dense_run(model, collection, cache)

    # another model under the same path: its own store and run, as with an empty cache
    retrained = build_random_bert(tmp_path / "other", hidden=32, layers=1, vocab_texts=DOCS.values(), seed=1)
    shutil.copy(retrained / "model.safetensors", model / "model.safetensors")
    after = dense_run(model, collection, cache)
    assert after == dense_run(model, collection, tmp_path / "fresh1") and after != before
    # corrected document texts under the same ids
    write_beir(collection, {**DOCS, "d3": QUERIES["q1"]}, QUERIES)
    corrected = dense_run(model, collection, cache)
    assert corrected == dense_run(model, collection, tmp_path / "fresh2")
    # d3 now holds q1's text: re-encoded, it is q1's nearest document at cosine 1 (the old vector was not)
    assert max(corrected["q1"], key=corrected["q1"].get) == "d3"
    assert corrected["q1"]["d3"] == pytest.approx(1.0, abs=1e-4) and after["q1"].get("d3", 0.0) < 0.999
    # the query side: a shorter query length changes the queries' embeddings, not the documents'
    short = dense_run(model, collection, cache, query_max_length=2)
    assert short == dense_run(model, collection, tmp_path / "fresh3", query_max_length=2) and short != corrected
    assert len(list((cache / "toy").glob("dense-*"))) == 3  # the query length did not re-encode the documents
