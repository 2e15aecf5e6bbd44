"""The SciFact experiments run unchanged on another BEIR folder of the same layout and on other splits:
`collection.source.path=<folder>` and `collection.test_splits=[...]` are all it takes (no code change), with the
model swapped for a tiny random one and the sizes shrunk."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

from lit_ir.data.toy import _pseudo_words
from lit_ir.pipelines.coarse_tuning import compose_train, run_comparison
from lit_ir.train import run

QUIET = ["logger=csv", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


@pytest.fixture(scope="module")
def beir_with_test(tmp_path_factory) -> Path:
    """A tiny BEIR folder (titled documents) with train, dev and test qrels, as BEIR's full SciFact has."""
    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("beir") / "mini"
    (folder / "qrels").mkdir(parents=True)
    words = _pseudo_words(rng, 150)
    docs, queries, qrels = [], [], {"train": [], "dev": [], "test": []}
    for d in range(60):
        title = rng.sample(words, 5)
        docs.append({"_id": f"d{d}", "title": " ".join(title), "text": " ".join(rng.sample(words, 20))})
        if d < 40:
            split = "train" if d < 24 else "dev" if d < 32 else "test"
            queries.append({"_id": f"q{d}", "text": " ".join(rng.sample(title, 3))})
            qrels[split].append(f"q{d}\td{d}\t1\n")
    (folder / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(query) + "\n" for query in queries))
    for split, rows in qrels.items():
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(rows))
    return folder


def elsewhere(folder: Path) -> list[str]:
    return [f"collection.source.path={folder}", "collection.source.held_out.size=6", "collection.test_splits=[test]"]


def test_coarse_scifact_on_another_folder_and_its_test_split(beir_with_test, tmp_path, shared_cache):
    tiny = [*QUIET, f"paths.cache_dir={shared_cache}", "model.max_length=48", "trainer.max_epochs=1"]
    coarse = [*tiny, f"collection.source.path={beir_with_test}", "collection.source.held_out.size=6",
              "data.held_out_fraction=0.2"]
    finetune = [*tiny, *elsewhere(beir_with_test), "data.rerank_depth=20", "data.first_stage.k=20"]
    comparisons = run_comparison("scifact", tmp_path, "random-bert-32x1", ["fine_only", "coarse"], coarse, finetune)
    assert list(comparisons) == ["test"] and comparisons["test"].num_queries == 8
    assert comparisons["test"].systems == ["bm25", "fine_only", "coarse"]
    held_out = json.loads((tmp_path / "coarse" / "coarse" / "metrics" / "held_out_clicks.json").read_text())
    assert held_out["clicks"]["clicks_read"] == 120  # 2 title spans of each of the 60 documents, built from titles
    stage = json.loads((tmp_path / "finetune" / "coarse" / "splits" / "config.yaml").parent.joinpath(
        "stage.json").read_text())
    assert "collection.test_splits=[test]" in stage["overrides"]


def _compare_base():
    path = Path(__file__).resolve().parents[1] / "experiments" / "coder" / "compare_base.py"
    spec = importlib.util.spec_from_file_location("coder_compare_base", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("experiment", ["coder_scifact", "coder_cranfield"])
def test_coder_experiments_on_another_folder_and_its_test_split(experiment, beir_with_test, tmp_path, shared_cache):
    cfg = compose_train(experiment, tmp_path, [
        *QUIET, *elsewhere(beir_with_test), f"paths.cache_dir={shared_cache}", "encoder=random",
        "data.num_candidates=20", "data.rerank_depth=20", "model.dense_k=20", "trainer.max_epochs=1",
        "trainer.val_check_interval=2"])
    run(cfg)
    compare_base = _compare_base()
    assert compare_base.test_splits([tmp_path]) == ["test"]
    text = compare_base.table([tmp_path], "test", ["ndcg@10", "mrr@10"])
    assert "dense (CODER)" in text and "reranker (CODER)" in text and "over the 8 test queries" in text
