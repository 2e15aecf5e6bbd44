"""The toy collection's structure and the reranking DataModule's handling of groups, pairs and bad input."""

from __future__ import annotations

import json

import pytest

from lit_ir.data.rerank import GroupDataset, PairDataset, RerankDataModule, TrainGroup, build_train_groups
from lit_ir.data.toy import ToyCollection, ToyConfig, generate_toy_collection
from lit_ir.errors import InputError

SMALL = dict(n_queries={"train": 20, "dev": 5, "test": 5}, n_background_docs=20, n_click_queries=10)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return ToyCollection(tmp_path_factory.mktemp("toy"), **SMALL)


def test_toy_is_deterministic_from_its_seed(tmp_path):
    a = generate_toy_collection(tmp_path / "a", ToyConfig(**SMALL))
    b = generate_toy_collection(tmp_path / "b", ToyConfig(**SMALL))
    c = generate_toy_collection(tmp_path / "c", ToyConfig(seed=1, **SMALL))
    for name in ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "clicks.tsv"]:
        assert (a / name).read_text() == (b / name).read_text()
    assert (a / "corpus.jsonl").read_text() != (c / "corpus.jsonl").read_text()


def test_toy_structure(toy):
    assert toy.splits() == ["dev", "test", "train"]
    doc_words = {word for text in toy.docs().values() for word in text.split()}
    queries = {**toy.queries("train"), **toy.queries("test")}
    unseen = [word for text in queries.values() for word in text.split() if word not in doc_words]
    # synonyms: a good share of query words never occur in any document, so exact match cannot use them
    assert len(unseen) > 0.3 * sum(len(text.split()) for text in queries.values())
    grades = {grade for judged in toy.qrels("train").values() for grade in judged.values()}
    assert grades == {0, 1, 3}
    clicks = list(toy.clicks())
    assert len(clicks) == 10 and all(click.doc_id in toy.docs() for click in clicks)


def test_toy_qrels_judge_every_document_that_meets_the_rule(tmp_path):
    # one anchor and two topics: every two queries share the anchor, and about half share the topic too, so their
    # relevant documents (on the topic, with the anchor) are the same set; the old qrels judged only a query's own
    toy = ToyCollection(tmp_path, n_topics=2, n_anchors=1, n_queries={"train": 12, "dev": 1, "test": 1},
                        n_background_docs=10, n_click_queries=1)
    qrels = toy.qrels("train")
    relevant = [frozenset(doc for doc, grade in judged.items() if grade >= 1) for judged in qrels.values()]
    assert len(set(relevant)) == 2  # one set per topic
    assert all(a == b or not a & b for a in relevant for b in relevant)
    for judged, own in zip(qrels.values(), relevant):
        # a query's distractors (grade 0) are about the other topic: relevant to that topic's queries
        distractors = {doc for doc, grade in judged.items() if grade == 0}
        assert distractors and distractors <= set().union(*relevant) - own


def test_toy_regenerates_when_settings_change(tmp_path):
    ToyCollection(tmp_path, **SMALL)
    changed = ToyCollection(tmp_path, **{**SMALL, "n_background_docs": 30})
    assert json.loads((tmp_path / "toy.json").read_text())["n_background_docs"] == 30
    assert len(changed.docs()) > 0


def test_train_groups_report_queries_that_cannot_train(caplog):
    queries = {"q1": "a", "q2": "b", "q3": "c"}
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 0}, "q3": {"d3": 2}}
    run = {"q1": {"d1": 3.0, "d4": 2.0}, "q2": {"d4": 1.0}, "q3": {"d3": 1.0}}
    groups = build_train_groups(queries, qrels, run, positive_level=1, depth=10, split="train")
    assert [(g.query_id, g.positives, g.negatives) for g in groups] == [("q1", ["d1"], ["d4"])]
    assert "no judged positive" in caplog.text and "q2" in caplog.text
    assert "no first-stage negative" in caplog.text and "q3" in caplog.text
    with pytest.raises(InputError, match="no query has both"):
        build_train_groups({"q2": "b"}, qrels, run, 1, 10, "train")


def test_group_sampling_depends_on_seed_epoch_and_index_only(toy):
    groups = build_train_groups(toy.queries("train"), toy.qrels("train"),
                                {q: {d: 1.0 for d in judged} for q, judged in toy.qrels("train").items()}, 1, 100, "train")
    a, b = GroupDataset(groups, toy.docs(), 3, seed=7), GroupDataset(groups, toy.docs(), 3, seed=7)
    assert [a[i] for i in range(5)] == [b[i] for i in reversed(range(5))][::-1]  # order of access does not matter
    query, docs = a[0]
    assert len(docs) == 4 and docs[0] in {toy.docs()[d] for d in groups[0].positives}
    b.set_epoch(1)
    assert any(a[i] != b[i] for i in range(len(groups)))  # new negatives every epoch


def test_per_positive_groups_cover_every_judged_positive_once_per_epoch():
    docs = {f"d{i}": f"text {i}" for i in range(8)}
    groups = [TrainGroup("q1", "a", ["d0", "d1", "d2"], ["d5", "d6"]), TrainGroup("q2", "b", ["d3"], ["d7"])]
    dataset = GroupDataset(groups, docs, num_negatives=2, seed=0, per_positive=True)
    assert len(dataset) == 4
    assert sorted(dataset[i][1][0] for i in range(4)) == ["text 0", "text 1", "text 2", "text 3"]
    assert [dataset[i][0] for i in range(4)] == ["a", "a", "a", "b"]
    assert dataset[3][1][1:] == ["text 7", "text 7"]  # a short negative pool is sampled with replacement
    assert len(GroupDataset(groups, docs, num_negatives=2, per_positive=False)) == 2


def test_pair_dataset_keeps_queries_without_candidates_and_rejects_unknown(toy, caplog):
    queries = toy.queries("test")
    first, *rest = list(queries)
    run = {query_id: {doc_id: 1.0 for doc_id in toy.qrels("test")[query_id]} for query_id in rest}
    pairs = PairDataset(queries, run, toy.docs(), depth=100, split="test")
    assert len(pairs) == sum(len(docs) for docs in run.values())
    assert "no first-stage candidates" in caplog.text and first in caplog.text
    with pytest.raises(InputError, match="not in the split"):
        PairDataset(queries, {**run, "nope": {"D00001": 1.0}}, toy.docs(), 100, "test")
    with pytest.raises(InputError, match="unknown document id 'D99999'"):
        PairDataset(queries, {rest[0]: {"D99999": 1.0}}, toy.docs(), 100, "test")[0]


def test_datamodule_rejects_a_missing_split(toy):
    datamodule = RerankDataModule(toy, first_stage=lambda collection, split: {}, train_split="nope", val_split=None,
                                  test_splits=[])
    with pytest.raises(InputError, match="no split 'nope'"):
        datamodule.setup("fit")
