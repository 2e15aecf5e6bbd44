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


def test_random_bert_vocabulary_is_the_same_in_every_build(tmp_path):
    # words of equal frequency everywhere: tokenizers' WordPiece trainer broke such ties in hash order, so two
    # builds from the same texts had different vocabularies (and trained to different weights)
    texts = ["kaz ols tup rib vem", "xabcdefghijklmnopqrstuvwxyz"] * 3
    builds = [build_random_bert(tmp_path / str(build), hidden=16, layers=1, vocab_texts=texts) for build in range(3)]
    vocabularies = [(folder / "vocab.txt").read_text().split() for folder in builds]
    assert vocabularies[1:] == vocabularies[:1] * 2
    assert AutoTokenizer.from_pretrained(builds[0]).tokenize("kaz ols xabcdefghijklmnopqrstuvwxyz") == \
        ["kaz", "ols", "xabcdefghijklmnopqrstuvwxyz"]


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


# ---- model.max_length against the model's positions ---------------------------------------------------------------
@pytest.mark.parametrize("module_class", ["cross_encoder", "sir", "coarse_tuning"])
def test_a_max_length_beyond_the_position_embeddings_fails_when_the_model_is_built(tiny_model, module_class):
    from lit_ir.modules.coarse_tuning import CoarseTuningModule
    from lit_ir.modules.cross_encoder import CrossEncoderModule
    from lit_ir.modules.sir import SIRModule

    make = {"cross_encoder": CrossEncoderModule, "sir": SIRModule, "coarse_tuning": CoarseTuningModule}[module_class]
    module = make(str(tiny_model), max_length=1024)
    with pytest.raises(ValueError, match=r"model\.max_length=1024 is more than the 512 positions of .*"
                                         r"max_position_embeddings"):
        module.configure_model()
    make(str(tiny_model), max_length=512).configure_model()  # the model's own limit is fine


@pytest.mark.parametrize("setting", ["query_max_length", "doc_max_length"])
def test_a_bi_encoder_length_beyond_the_position_embeddings_fails_when_it_is_built(tiny_model, setting):
    from lit_ir.models.bi_encoder import BiEncoder
    from lit_ir.modules.coder import CoderModule

    with pytest.raises(ValueError, match=rf"encoder\.{setting}=1024 is more than the 512 positions"):
        BiEncoder.from_pretrained(tiny_model, **{setting: 1024})
    with pytest.raises(ValueError, match=rf"encoder\.{setting}=600 is more than the 512 positions"):
        CoderModule({"path": str(tiny_model), setting: 600}).configure_model()
    assert getattr(BiEncoder.from_pretrained(tiny_model, **{setting: 512}), setting) == 512


def test_position_limits_follow_the_model_family():
    from transformers import BertConfig, RobertaConfig

    from lit_ir.models.tokenization import position_limit

    assert position_limit(BertConfig(max_position_embeddings=512)) == 512
    # RoBERTa's positions start after its padding index: 514 embeddings hold 512 tokens
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512


# ---- truncation counts ---------------------------------------------------------------------------------------------
def test_pair_tokenizer_counts_the_queries_and_documents_it_cuts(tiny_model):
    from lit_ir.models.tokenization import TruncationCount

    tokenizer, count = AutoTokenizer.from_pretrained(tiny_model), TruncationCount()
    pairs = PairTokenizer(tokenizer, max_query_length=3, max_length=10)  # 3 special tokens: 7 for query + document
    long_query, short_query = TEXTS[0], "fiji"  # 5 tokens (cut to 3), 1 token
    five = "verasa tohuse polahu zida zoka"  # fits 6 tokens left by the short query, not 4 left by the long one
    pairs([long_query, long_query, short_query, short_query], [five, "kujo", five, "kujo bige"], count)
    assert count.summary() == {"queries": 2, "truncated_queries": 1, "documents": 4, "truncated_documents": 1}
    pairs([short_query], [five + " " + five], count)  # 10 tokens: cut to the 6 left
    assert count.summary() == {"queries": 2, "truncated_queries": 1, "documents": 5, "truncated_documents": 2}


def test_bi_encoder_counts_what_it_cuts(tiny_model):
    from lit_ir.models.bi_encoder import BiEncoder
    from lit_ir.models.tokenization import TruncationCount

    encoder, count = BiEncoder.from_pretrained(tiny_model, query_max_length=4, doc_max_length=5), TruncationCount()
    encoder.tokenize_queries([TEXTS[0], "fiji", TEXTS[0], "kujo bige"], count)  # 5 words do not fit in 4, 2 (+ 2) do
    encoder.tokenize_docs([TEXTS[0] + " fiji", "fiji kujo bige"], count)  # 6 words do not fit in 5, 3 (+ 2) do
    assert count.summary() == {"queries": 3, "truncated_queries": 1, "documents": 2, "truncated_documents": 1}
