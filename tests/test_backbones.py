"""Every encoder architecture a ranker may meet (BERT, ELECTRA, DistilBERT, RoBERTa) loads, trains, saves and loads
back, as a cross-encoder and as a bi-encoder: tiny random configs built here (hidden 32), no download."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import ByteLevelBPETokenizer, processors
from transformers import (BertConfig, DistilBertConfig, ElectraConfig, MODEL_MAPPING, PreTrainedTokenizerFast,
                          RobertaConfig)

from lit_ir.data.rerank import GroupBatch
from lit_ir.models.bi_encoder import BiEncoder
from lit_ir.models.hub import build_random_bert
from lit_ir.modules.cross_encoder import CrossEncoderModule

TEXTS = ["wind tunnel flow over swept wings", "heat transfer in laminar boundary layers",
         "supersonic shock waves on cones", "buckling of thin cylindrical shells"] * 4
QUERY, POSITIVE, NEGATIVES = "shock waves", TEXTS[2], [TEXTS[0], TEXTS[1], TEXTS[3]]
SMALL = {"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "hidden_size": 32,
         "max_position_embeddings": 80}
CONFIGS = {  # the real models' layouts: RoBERTa embeds one segment, DistilBERT none, ELECTRA a smaller embedding
    "bert": lambda vocab: BertConfig(vocab_size=vocab, **SMALL),
    "electra": lambda vocab: ElectraConfig(vocab_size=vocab, embedding_size=16, **SMALL),
    "distilbert": lambda vocab: DistilBertConfig(vocab_size=vocab, dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                                                 max_position_embeddings=80),
    "roberta": lambda vocab: RobertaConfig(vocab_size=vocab, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                                           eos_token_id=2, **SMALL),
}
pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL_CLASSES = {"bert": "BertModel", "electra": "ElectraModel", "distilbert": "DistilBertModel",
                 "roberta": "RobertaModel"}


def roberta_tokenizer() -> PreTrainedTokenizerFast:
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))  # as roberta-base's tokenizer.json
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                   cls_token="<s>", sep_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                   mask_token="<mask>")


@functools.cache
def _backbone_folder(root: Path, architecture: str) -> Path:
    folder = root / architecture
    if architecture == "roberta":
        tokenizer = roberta_tokenizer()
    else:  # BERT, ELECTRA and DistilBERT share BERT's WordPiece tokenizer
        tokenizer = PreTrainedTokenizerFast.from_pretrained(build_random_bert(root / "wordpiece", 32, 1, TEXTS))
    config = CONFIGS[architecture](len(tokenizer))
    torch.manual_seed(0)
    MODEL_MAPPING[type(config)](config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    return lambda architecture: _backbone_folder(root, architecture)


def test_pairs_take_each_tokenizer_s_own_layout(backbone):
    from transformers import AutoTokenizer

    from lit_ir.models.tokenization import PairTokenizer

    separators = {"bert": 2, "roberta": 3}  # RoBERTa's pair is <s> query </s></s> document </s>
    for architecture, count in separators.items():
        tokenizer = AutoTokenizer.from_pretrained(backbone(architecture))
        pairs = PairTokenizer(tokenizer, max_query_length=16, max_length=40)
        encoded = pairs([QUERY], [POSITIVE])
        ids = encoded["input_ids"][0].tolist()
        assert ids == tokenizer(QUERY, POSITIVE)["input_ids"], architecture  # nothing cut: the tokenizer's own pair
        assert ids.count(tokenizer.sep_token_id) == count and ids[0] == tokenizer.cls_token_id
        document = tokenizer(POSITIVE, add_special_tokens=False)["input_ids"]
        assert encoded["token_type_ids"][0].tolist() == [0] * (len(ids) - len(document) - 1) + [1] * (len(document) + 1)


@pytest.mark.parametrize("architecture", sorted(CONFIGS))
def test_cross_encoder_loads_trains_and_round_trips_every_architecture(backbone, tmp_path, architecture):
    folder = backbone(architecture)
    module = CrossEncoderModule(str(folder), dropout=0.0, max_query_length=8, max_length=32,
                                optimizer=functools.partial(torch.optim.Adam, lr=3e-3))
    module.configure_model()
    model = module.model
    assert type(model.backbone).__name__ == MODEL_CLASSES[architecture]
    assert not [name for name, _ in model.named_parameters() if "pooler" in name]  # unused weights break DDP
    assert model.segments == {"bert": 2, "electra": 2, "distilbert": 0, "roberta": 1}[architecture]

    batch = GroupBatch(queries=[QUERY], docs=[[POSITIVE, *NEGATIVES]])
    optimizer, losses = module.configure_optimizers(), []
    for _ in range(9):  # the training step's own computation, without a trainer to log to
        loss = module.loss_fn(module.score([QUERY] * 4, batch.docs[0]).view(1, 4))
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
        optimizer.zero_grad()
    assert losses[-1] < 0.8 * losses[0], losses  # the listwise loss falls: the positive pulls ahead

    model.eval()
    with torch.no_grad():
        trained = module.score([QUERY] * 4, [POSITIVE, *NEGATIVES])
    assert int(trained.argmax()) == 0
    exported = module.export(tmp_path / "export")
    reloaded = CrossEncoderModule(str(exported), dropout=0.0, max_query_length=8, max_length=32)
    reloaded.configure_model()
    reloaded.model.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded.score([QUERY] * 4, [POSITIVE, *NEGATIVES]), trained, atol=1e-5)


@pytest.mark.parametrize("architecture", sorted(CONFIGS))
def test_bi_encoder_loads_every_architecture(backbone, tmp_path, architecture):
    encoder = BiEncoder.from_pretrained(backbone(architecture), pooling="mean", query_max_length=16,
                                      doc_max_length=64).eval()
    assert type(encoder.query_encoder).__name__ == MODEL_CLASSES[architecture]
    assert not [name for name, _ in encoder.named_parameters() if "pooler" in name]
    with torch.no_grad():
        embeddings = encoder.encode_docs(TEXTS[:3])
    assert embeddings.shape == (3, 32) and torch.isfinite(embeddings).all()
    shutil.copytree(backbone(architecture), tmp_path / "copy")
    encoder.save_pretrained(tmp_path / "copy")
    with torch.no_grad():
        assert torch.allclose(BiEncoder.from_pretrained(tmp_path / "copy").eval().encode_docs(TEXTS[:3]), embeddings)
