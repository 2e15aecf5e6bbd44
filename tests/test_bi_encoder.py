"""BiEncoder: pooling, shared vs separate weights, cosine, scoring, fingerprint and save/load."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from lit_ir.data.collections import DocStore
from lit_ir.data.embedding_store import EmbeddingStore
from lit_ir.errors import InputError
from lit_ir.models.bi_encoder import BiEncoder, pool
from lit_ir.models.hub import build_random_bert
from lit_ir.retrieval.dense import DenseFirstStage
from lit_ir.retrieval.encoding import encode_documents
from lit_ir.utils.hydra import CONFIG_DIR

TEXTS = ["kipoli polahu karotu fiji suce", "verasa tohuse polahu zida zoka", "muguze kujo bige mehuke"] * 5


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_random_bert(tmp_path_factory.mktemp("models"), hidden=32, layers=1, vocab_texts=TEXTS)


def test_pooling_on_a_hand_made_case():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # the third token is padding
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]  # padding ignored: (1+3)/2, (2+4)/2
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, mask, "max")


def test_mean_pooling_ignores_padding_in_a_batch(tiny_model):
    encoder = BiEncoder.from_pretrained(tiny_model, pooling="mean").eval()
    with torch.inference_mode():
        alone = encoder.encode_docs(["fiji"])
        batched = encoder.encode_docs(["fiji", TEXTS[0] + " " + TEXTS[1]])
    torch.testing.assert_close(alone[0], batched[0], atol=1e-5, rtol=1e-5)


def test_shared_weights_are_one_module(tiny_model):
    encoder = BiEncoder.from_pretrained(tiny_model, shared=True)
    assert encoder.shared and encoder.query_encoder is encoder.doc_encoder
    assert sum(p.numel() for p in encoder.parameters()) == sum(p.numel() for p in encoder.query_encoder.parameters())
    before = encoder.fingerprint()["weights_sha"]
    with torch.no_grad():
        next(encoder.query_encoder.parameters()).add_(1.0)
    assert encoder.fingerprint()["weights_sha"] != before  # training the query side changed the documents too


def test_separate_weights_train_the_query_side_only(tiny_model):
    encoder = BiEncoder.from_pretrained(tiny_model, shared=False, pooling="cls").eval()
    assert not encoder.shared and encoder.query_encoder is not encoder.doc_encoder
    with torch.inference_mode():
        q0, d0 = encoder.encode_queries(TEXTS[:2]), encoder.encode_docs(TEXTS[:2])
    torch.testing.assert_close(q0, d0)  # two copies of the same model: same vectors (same max lengths here)
    sha = encoder.fingerprint()["weights_sha"]
    with torch.no_grad():
        for p in encoder.query_encoder.parameters():
            p.mul_(1.5)
    with torch.inference_mode():
        assert not torch.allclose(encoder.encode_queries(TEXTS[:2]), q0)
        torch.testing.assert_close(encoder.encode_docs(TEXTS[:2]), d0)
    assert encoder.fingerprint()["weights_sha"] == sha  # the document side, and so its stores, are unchanged


def test_cosine_normalises_and_score_shapes(tiny_model):
    encoder = BiEncoder.from_pretrained(tiny_model, similarity="cosine", pooling="mean").eval()
    with torch.inference_mode():
        q = encoder.encode_queries(TEXTS[:2])
        d = encoder.encode_docs(TEXTS[:6])
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(2))
    per_query = encoder.score(q, d.view(2, 3, -1))
    assert per_query.shape == (2, 3)
    torch.testing.assert_close(per_query[1, 2], (q[1] * d[5]).sum())
    torch.testing.assert_close(encoder.score(q, d), q @ d.T)  # same documents for every query
    dot = BiEncoder.from_pretrained(tiny_model, similarity="dot")
    x, y = torch.tensor([[3.0, 4.0]]), torch.tensor([[[1.0, 0.0], [6.0, 8.0]]])
    assert dot.score(x, y).tolist() == [[3.0, 50.0]]


def test_fingerprint_describes_the_document_side(tiny_model):
    encoder = BiEncoder.from_pretrained(tiny_model, pooling="mean", similarity="dot", doc_max_length=64)
    fingerprint = encoder.fingerprint()
    assert {k: fingerprint[k] for k in ("model", "pooling", "similarity", "doc_max_length", "dim")} == {
        "model": str(tiny_model), "pooling": "mean", "similarity": "dot", "doc_max_length": 64, "dim": 32}
    assert fingerprint == BiEncoder.from_pretrained(tiny_model, pooling="mean", doc_max_length=64).fingerprint()


def test_save_and_load_round_trip_separate_weights(tiny_model, tmp_path):
    encoder = BiEncoder.from_pretrained(tiny_model, shared=False, pooling="mean", similarity="cosine",
                                        query_max_length=8, doc_max_length=16).eval()
    with torch.no_grad():
        for p in encoder.query_encoder.parameters():
            p.mul_(0.5)
    encoder.save_pretrained(tmp_path / "saved")
    loaded = BiEncoder.from_pretrained(tmp_path / "saved").eval()  # settings come from bi_encoder.json
    assert (loaded.shared, loaded.pooling, loaded.similarity, loaded.query_max_length, loaded.doc_max_length) == (
        False, "mean", "cosine", 8, 16)
    assert loaded.name == str(tiny_model)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.encode_queries(TEXTS[:3]), encoder.encode_queries(TEXTS[:3]))
        torch.testing.assert_close(loaded.encode_docs(TEXTS[:3]), encoder.encode_docs(TEXTS[:3]))
    assert loaded.fingerprint() == encoder.fingerprint()


def test_query_path_starts_the_query_side_from_another_model(tiny_model, tmp_path):
    trained = BiEncoder.from_pretrained(tiny_model)
    with torch.no_grad():
        for p in trained.query_encoder.parameters():
            p.add_(0.1)
    trained.save_pretrained(tmp_path / "trained")
    pair = BiEncoder.from_pretrained(tiny_model, query_path=tmp_path / "trained")
    assert not pair.shared
    base = BiEncoder.from_pretrained(tiny_model)
    assert pair.fingerprint()["weights_sha"] == base.fingerprint()["weights_sha"]
    assert torch.equal(next(pair.query_encoder.parameters()), next(trained.query_encoder.parameters()))


def test_random_bert_by_name_learns_its_vocabulary(tmp_path):
    encoder = BiEncoder.from_pretrained("random-bert-32x1", cache_dir=tmp_path, vocab_texts=TEXTS)
    assert encoder.tokenizer.tokenize(TEXTS[0]) == TEXTS[0].split()
    assert encoder.dim == 32


def test_segment_ids_per_side_as_repbert_encodes(tiny_model, tmp_path):
    """RepBERT reads documents as segment 1 and queries as segment 0: a bi-encoder setting, saved, fingerprinted."""
    encoder = BiEncoder.from_pretrained(tiny_model, pooling="mean", doc_token_type=1).eval()
    plain = BiEncoder.from_pretrained(tiny_model, pooling="mean").eval()
    inputs = encoder.tokenize_docs(TEXTS[:2])
    with torch.inference_mode():
        hidden = encoder.doc_encoder(**{**inputs, "token_type_ids": torch.ones_like(inputs["input_ids"])})
        expected = pool(hidden.last_hidden_state, inputs["attention_mask"], "mean")
        torch.testing.assert_close(encoder.encode_docs(TEXTS[:2]), expected)
        assert not torch.allclose(plain.encode_docs(TEXTS[:2]), expected, atol=1e-3)  # segment 1 is not segment 0
        torch.testing.assert_close(encoder.encode_queries(TEXTS[:2]), plain.encode_queries(TEXTS[:2]))

    assert encoder.fingerprint()["doc_token_type"] == 1 and plain.fingerprint()["doc_token_type"] == 0
    assert encoder.fingerprint()["weights_sha"] == plain.fingerprint()["weights_sha"]  # same weights, other embeddings
    encoder.save_pretrained(tmp_path / "saved")
    loaded = BiEncoder.from_pretrained(tmp_path / "saved")
    assert (loaded.query_token_type, loaded.doc_token_type) == (0, 1) and loaded.fingerprint() == encoder.fingerprint()
    with pytest.raises(ValueError, match="doc_token_type=2.*embeds 2 token types"):
        BiEncoder.from_pretrained(tiny_model, doc_token_type=2)


def test_a_store_of_the_other_segment_is_refused(tiny_model, tmp_path):
    docs = {f"d{i}": text for i, text in enumerate(TEXTS[:3])}
    plain = BiEncoder.from_pretrained(tiny_model, pooling="mean").eval()
    store = encode_documents(plain, docs, tmp_path / "segment0", progress=False)
    repbert_like = BiEncoder.from_pretrained(tiny_model, pooling="mean", doc_token_type=1)
    with pytest.raises(InputError, match="doc_token_type: store has 0, expected 1"):
        store.check_compatible(repbert_like.fingerprint())
    # a store written before segments were recorded was encoded as segment 0
    sidecar = store.path / "store.json"
    meta = json.loads(sidecar.read_text())
    del meta["fingerprint"]["doc_token_type"]
    sidecar.write_text(json.dumps(meta))
    older = EmbeddingStore.open(store.path)
    older.check_compatible(plain.fingerprint())
    with pytest.raises(InputError, match="doc_token_type: store has 0, expected 1"):
        older.check_compatible(repbert_like.fingerprint())


def test_repbert_preset_reads_documents_as_segment_one(tmp_path):
    preset = OmegaConf.load(CONFIG_DIR / "encoder" / "repbert.yaml")
    assert (preset.query_token_type, preset.doc_token_type) == (0, 1)
    for other in ("tasb", "bert_dot", "minilm"):  # their own code encodes both sides as segment 0
        assert OmegaConf.load(CONFIG_DIR / "encoder" / f"{other}.yaml").get("doc_token_type", 0) == 0
    # and a dense first stage keeps the two kinds of store apart on disk
    model = build_random_bert(tmp_path / "model", hidden=32, layers=1, vocab_texts=["a text"])
    collection = SimpleNamespace(name="c", docs=lambda: DocStore({"d1": "text"}, source="c"))
    paths = {token_type: DenseFirstStage({"path": str(model), "doc_token_type": token_type,
                                          "query_max_length": 16, "doc_max_length": 16}, cache_dir=tmp_path)
             .store_path(collection) for token_type in (0, 1)}
    assert paths[0] != paths[1]
