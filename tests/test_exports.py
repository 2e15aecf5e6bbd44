"""Model exports (cross-encoder, coarse-tuning, CODER bi-encoder): written whole or not at all, and an export that
lost a file fails to load, naming it, instead of loading with a new random head or default settings."""

from __future__ import annotations

import shutil

import pytest
import torch

from lit_ir.errors import InputError
from lit_ir.models.bi_encoder import BiEncoder
from lit_ir.models.coarse import CoarseTuningModel
from lit_ir.models.cross_encoder import CrossEncoder
from lit_ir.models.hub import build_random_bert
from lit_ir.modules.coarse_tuning import CoarseTuningModule
from lit_ir.modules.coder import CoderModule
from lit_ir.modules.cross_encoder import CrossEncoderModule

TEXTS = ["kipoli polahu karotu fiji suce", "verasa tohuse polahu zida zoka", "muguze kujo bige mehuke"] * 5


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_random_bert(tmp_path_factory.mktemp("models"), hidden=32, layers=1, vocab_texts=TEXTS)


def built(module):
    module.configure_model()
    return module


def head_weights(model: CrossEncoder) -> torch.Tensor:
    return torch.cat([p.flatten() for p in model.score_head.parameters()])


def test_an_export_interrupted_part_way_leaves_the_previous_one_whole(tmp_path, tiny_model, monkeypatch):
    module = built(CrossEncoderModule(str(tiny_model), init_seed=1))
    path = module.export(tmp_path / "model")
    exported = head_weights(CrossEncoder.from_pretrained(path))
    with torch.no_grad():
        module.model.score_head.weight.add_(1.0)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the run is stopped while the head is being written

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        module.export(path)
    monkeypatch.undo()
    assert torch.equal(head_weights(CrossEncoder.from_pretrained(path)), exported)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no half-written folder beside it
    with pytest.raises(KeyboardInterrupt), monkeypatch.context() as patch:
        patch.setattr(torch, "save", killed)
        module.export(tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_a_cross_encoder_export_without_its_head_is_an_error_unless_a_new_head_is_asked_for(tmp_path, tiny_model):
    path = built(CrossEncoderModule(str(tiny_model))).export(tmp_path / "model")
    (path / "score_head.pt").unlink()
    with pytest.raises(InputError, match=r"model: an incomplete lit_ir cross_encoder export.*score_head\.pt"):
        CrossEncoder.from_pretrained(path)
    with pytest.raises(InputError, match=r"score_head\.pt.*model\.new_head=true"):
        built(CrossEncoderModule(str(path)))
    fresh = built(CrossEncoderModule(str(path), new_head=True, init_seed=3)).model
    plain = built(CrossEncoderModule(str(tiny_model), init_seed=3)).model
    assert torch.equal(head_weights(fresh), head_weights(plain))  # the seeded new head a plain model gets


def test_a_cross_encoder_export_that_lost_another_file_names_it(tmp_path, tiny_model):
    path = built(CrossEncoderModule(str(tiny_model))).export(tmp_path / "model")
    (path / "tokenizer.json").unlink()
    with pytest.raises(InputError, match=r"tokenizer\.json"):
        CrossEncoder.from_pretrained(path, new_head=True)


def test_plain_models_and_coarse_tuned_ones_start_a_new_score_head(tmp_path, tiny_model):
    assert CrossEncoder.from_pretrained(tiny_model).score_head.weight.shape == (1, 32)
    coarse = built(CoarseTuningModule(str(tiny_model))).export(tmp_path / "coarse")
    assert CrossEncoder.from_pretrained(coarse).score_head.weight.shape == (1, 32)  # coarse -> fine-tuning


def test_a_coarse_tuning_export_without_a_head_is_an_error(tmp_path, tiny_model):
    module = built(CoarseTuningModule(str(tiny_model), qdpp_head_as_score_head=True))
    path = module.export(tmp_path / "coarse")
    assert torch.equal(CoarseTuningModel.from_pretrained(path).qdpp_head.weight, module.model.qdpp_head.weight)
    # the QDPP head copied as the fine-tuning's score head
    assert torch.equal(CrossEncoder.from_pretrained(path).score_head.weight, module.model.qdpp_head.weight)
    damaged = shutil.copytree(path, tmp_path / "without_qdpp_head")
    (damaged / "qdpp_head.pt").unlink()
    with pytest.raises(InputError, match=r"incomplete lit_ir coarse_tuning export: its qdpp_head\.pt is missing"):
        CoarseTuningModel.from_pretrained(damaged)
    assert CoarseTuningModel.from_pretrained(damaged, new_head=True).qdpp_head.weight.shape == (1, 32)
    damaged = shutil.copytree(path, tmp_path / "without_score_head")
    (damaged / "score_head.pt").unlink()
    with pytest.raises(InputError, match=r"incomplete lit_ir coarse_tuning export: its score_head\.pt is missing"):
        CrossEncoder.from_pretrained(damaged)


@pytest.mark.parametrize("lost", ["bi_encoder.json", "doc_encoder"])
def test_a_bi_encoder_export_that_lost_a_file_is_an_error_not_default_settings(tmp_path, tiny_model, lost):
    module = built(CoderModule({"path": str(tiny_model), "pooling": "mean", "similarity": "cosine"}))
    path = module.export(tmp_path / "coder")
    loaded = BiEncoder.from_pretrained(path)
    assert (loaded.pooling, loaded.similarity, loaded.shared) == ("mean", "cosine", False)
    target = path / lost
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(InputError, match=rf"incomplete lit_ir bi_encoder export.*{lost}"):
        BiEncoder.from_pretrained(path)
