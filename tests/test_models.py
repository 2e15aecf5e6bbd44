"""Model resolution, the random tiny BERT, pair tokenisation and the cross-encoder's save/load."""

from __future__ import annotations

import time

import pytest
import torch
from transformers import AutoTokenizer

from lit_ir.errors import InputError, ModelUnavailableError
from lit_ir.losses import listwise_softmax_ce, pointwise_bce
from lit_ir.models.cross_encoder import CrossEncoder
from lit_ir.models.hub import build_random_bert, resolve_model
from lit_ir.models.tokenization import PairTokenizer

TEXTS = ["kipoli polahu karotu fiji suce", "verasa tohuse polahu zida zoka", "muguze kujo bige mehuke"] * 5


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_random_bert(tmp_path_factory.mktemp("models"), hidden=32, layers=1, vocab_texts=TEXTS)


def test_random_bert_vocabulary_covers_its_texts(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokens = tokenizer.tokenize(TEXTS[0])
    assert tokens == TEXTS[0].split()  # whole words, no [UNK]: the vocabulary was learned from these texts
    assert tokenizer.tokenize("zzzq") and "[UNK]" not in tokenizer.tokenize("zzzq")  # characters cover the rest


def test_random_bert_is_cached_and_deterministic(tmp_path):
    first = build_random_bert(tmp_path, hidden=32, layers=1, vocab_texts=TEXTS)
    assert build_random_bert(tmp_path, hidden=32, layers=1, vocab_texts=TEXTS) == first
    other = build_random_bert(tmp_path, hidden=32, layers=1, vocab_texts=TEXTS[:2])
    assert other != first  # other texts, another vocabulary, another folder


def test_resolve_local_folder_and_random_spec(tmp_path, tiny_model):
    assert resolve_model(str(tiny_model)) == tiny_model
    built = resolve_model("random-bert-32x1", cache_dir=tmp_path, vocab_texts=TEXTS)
    assert (built / "config.json").is_file()
    (tmp_path / "not_a_model").mkdir()
    with pytest.raises(ModelUnavailableError, match="config.json"):
        resolve_model(str(tmp_path / "not_a_model"))


def test_missing_model_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="no-such-org/no-such-model.*HF_HUB_OFFLINE"):
        resolve_model("no-such-org/no-such-model")
    assert time.perf_counter() - start < 5


def test_pair_tokenizer_budgets(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    pairs = PairTokenizer(tokenizer, max_query_length=3, max_length=10)
    query = "kipoli polahu karotu fiji suce"  # 5 words, cut to 3
    encoded = pairs([query, "fiji"], ["verasa tohuse polahu zida zoka muguze kujo bige", "kujo"])
    first = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist())
    assert first == ["[CLS]", "kipoli", "polahu", "karotu", "[SEP]", "verasa", "tohuse", "polahu", "zida", "[SEP]"]
    assert encoded["token_type_ids"][0].tolist() == [0] * 5 + [1] * 5
    assert encoded["attention_mask"][1].tolist() == [1] * 5 + [0] * 5  # the short pair is padded
    with pytest.raises(ValueError, match="max_length"):
        PairTokenizer(tokenizer, max_query_length=8, max_length=10)


def test_cross_encoder_save_and_load_round_trip(tmp_path, tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = CrossEncoder.from_pretrained(tiny_model, dropout=0.0).eval()
    inputs = PairTokenizer(tokenizer, 8, 32)(TEXTS[:2], TEXTS[2:4])
    with torch.no_grad():
        scores = model(**inputs)
    assert scores.shape == (2,)
    model.save_pretrained(tmp_path / "saved")
    reloaded = CrossEncoder.from_pretrained(tmp_path / "saved", dropout=0.0).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**inputs), scores)


@pytest.mark.parametrize("pooling", ["mean", "segment_cosine"])
def test_cross_encoder_poolings_round_trip_and_refuse_another(tmp_path, tiny_model, pooling):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = CrossEncoder.from_pretrained(tiny_model, dropout=0.0, pooling=pooling).eval()
    inputs = PairTokenizer(tokenizer, 8, 32)(TEXTS[:2], TEXTS[2:4])
    with torch.no_grad():
        scores = model(**inputs)
        hidden = model.backbone(**inputs).last_hidden_state
    mask = inputs["attention_mask"].bool()
    if pooling == "mean":  # the head on the mean over the pair's tokens, padding left out
        pooled = torch.stack([hidden[row][mask[row]].mean(0) for row in range(2)])
        assert torch.allclose(scores, model.score_head(pooled).squeeze(-1), atol=1e-6)
    else:  # 20 x cosine of the query segment's mean and the document segment's mean, before any training
        segment = inputs["token_type_ids"].bool()
        query = torch.stack([hidden[row][mask[row] & ~segment[row]].mean(0) for row in range(2)])
        document = torch.stack([hidden[row][mask[row] & segment[row]].mean(0) for row in range(2)])
        assert torch.allclose(scores, 20.0 * torch.cosine_similarity(query, document, dim=-1), atol=1e-5)
    model.save_pretrained(tmp_path / "saved")
    reloaded = CrossEncoder.from_pretrained(tmp_path / "saved", dropout=0.0).eval()  # the pooling comes back too
    with torch.no_grad():
        assert reloaded.pooling == pooling and torch.allclose(reloaded(**inputs), scores)
    with pytest.raises(InputError, match=f"pooling '{pooling}'"):
        CrossEncoder.from_pretrained(tmp_path / "saved", pooling="cls")


def test_losses_on_a_hand_computed_case():
    scores = torch.tensor([[2.0, 0.0, 0.0]])
    expected = -torch.log(torch.exp(torch.tensor(2.0)) / (torch.exp(torch.tensor(2.0)) + 2))
    assert listwise_softmax_ce(scores).item() == pytest.approx(expected.item())
    bce = pointwise_bce(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]))
    assert bce.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
